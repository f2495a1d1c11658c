//! Checks of configuration values shared by every configuration's `validate`: each error names
//! the field and the value.

/// `v` must be finite and above 0.
pub(crate) fn positive(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{name}: must be positive (got {v})"))
    }
}

/// Checks fields of a configuration by name: `fields!(self, count: [bits, batch])` runs
/// `check::count("bits", self.bits)`, then `batch`, and returns the first error. The message
/// names each field as it is spelled (its JSON name), so names and fields cannot drift apart.
macro_rules! fields {
    ($config:ident, $($check:ident: [$($field:ident),+ $(,)?]),+ $(,)?) => {
        $($(crate::check::$check(stringify!($field), $config.$field)?;)+)+
    };
}
pub(crate) use fields;

/// A count must be positive.
pub(crate) fn count<T: PartialEq + Default>(name: &str, v: T) -> Result<(), String> {
    if v != T::default() {
        Ok(())
    } else {
        Err(format!("{name}: must be positive"))
    }
}

/// `v` must be finite and at least 0.
pub(crate) fn non_negative(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name}: must be finite and >= 0 (got {v})"))
    }
}

/// `v` must lie in `[0, 1)` (a dropout probability).
pub(crate) fn below_one(name: &str, v: f64) -> Result<(), String> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name}: must be in [0, 1) (got {v})"))
    }
}

/// The configuration's `model` must be one of the task's `allowed`.
pub(crate) fn model(
    model: crate::tasks::Model,
    allowed: &[crate::tasks::Model],
) -> Result<(), String> {
    model.check(allowed).map_err(|e| format!("model: {e}"))
}

/// `v` must lie in `[0, 1]`.
pub(crate) fn unit_interval(name: &str, v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name}: must be in [0, 1] (got {v})"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_name_the_field_and_value() {
        assert_eq!(super::positive("lr", 0.1), Ok(()));
        assert_eq!(
            super::positive("lr", f64::NAN).unwrap_err(),
            "lr: must be positive (got NaN)"
        );
        assert_eq!(
            super::positive("lr", 0.0).unwrap_err(),
            "lr: must be positive (got 0)"
        );
        struct Config {
            a: usize,
            b: usize,
            c: usize,
            p: f64,
        }
        let check = |config: Config| -> Result<(), String> {
            super::fields!(config, count: [a, b, c], unit_interval: [p]);
            Ok(())
        };
        assert_eq!(
            check(Config {
                a: 1,
                b: 2,
                c: 3,
                p: 0.5
            }),
            Ok(())
        );
        assert_eq!(
            check(Config {
                a: 1,
                b: 0,
                c: 0,
                p: 0.5
            })
            .unwrap_err(),
            "b: must be positive"
        );
        assert_eq!(
            check(Config {
                a: 1,
                b: 1,
                c: 1,
                p: -0.5
            })
            .unwrap_err(),
            "p: must be in [0, 1] (got -0.5)"
        );
        assert_eq!(
            super::non_negative("r", f64::INFINITY).unwrap_err(),
            "r: must be finite and >= 0 (got inf)"
        );
        assert_eq!(super::below_one("d", 0.0), Ok(()));
        assert_eq!(
            super::below_one("d", 1.0).unwrap_err(),
            "d: must be in [0, 1) (got 1)"
        );
        assert_eq!(super::unit_interval("p", 1.0), Ok(()));
        assert_eq!(
            super::unit_interval("p", 1.5).unwrap_err(),
            "p: must be in [0, 1] (got 1.5)"
        );
    }
}
