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

/// Each count must be positive; the first that is 0 is named.
pub(crate) fn counts(fields: &[(&str, usize)]) -> Result<(), String> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(format!("{name}: must be positive")),
        None => Ok(()),
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
        assert_eq!(super::counts(&[("a", 1), ("b", 2)]), Ok(()));
        assert_eq!(
            super::counts(&[("a", 1), ("b", 0), ("c", 0)]).unwrap_err(),
            "b: must be positive"
        );
        assert_eq!(super::unit_interval("p", 1.0), Ok(()));
        assert_eq!(
            super::unit_interval("p", 1.5).unwrap_err(),
            "p: must be in [0, 1] (got 1.5)"
        );
    }
}
