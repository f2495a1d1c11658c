//! The plastic-network configuration that every task's configuration embeds, and the guard
//! that keeps an embedding configuration strict about unknown fields.
//!
//! A task's JSON stays flat (`"eta": 0.1` beside `"batch": 30`): the embedded
//! [`PlasticityConfig`] is `#[serde(flatten)]`ed, and since serde cannot combine `flatten` with
//! `deny_unknown_fields`, each embedding configuration ends with a flattened [`NoOtherFields`],
//! which takes the keys nobody else took and refuses them by name.

use plasticity_kernels::{AlphaShape, BackwardStrategy, TraceRule};
use serde::de::{Deserializer, Error, IgnoredAny};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the plastic connections learn (ICML 2018 eq. 1-3): the trace rule and its parameters,
/// the initialisation of `w` and `alpha`, the trace's clip and the backward strategy. Declared
/// and checked once ([`PlasticityConfig::validate`]); each task sets its paper's defaults and
/// refuses, by name, the fields its network does not use ([`PlasticityConfig::unused`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlasticityConfig {
    /// Trace rule: decaying Hebb (eq. 2) or Oja's rule (eq. 3).
    pub rule: TraceRule,
    /// Shape of `alpha`: one per connection, per postsynaptic neuron, or one scalar.
    pub alpha: AlphaShape,
    /// Initial plasticity rate `eta` (with retroactive modulation: the eligibility trace's
    /// rate), in `[0, 1]`.
    pub eta: f64,
    /// Whether `eta` is learned (otherwise fixed).
    pub learn_eta: bool,
    /// `w` and `alpha` start as `init_std * N(0, 1)`.
    pub init_std: f64,
    /// Standard deviation of the initial `alpha` when it differs from `init_std` (`None`:
    /// `init_std`).
    pub alpha_init_std: Option<f64>,
    /// Clip the trace to `[-clip, clip]` (`None`: no clipping).
    pub clip: Option<f64>,
    /// How the backward pass recovers the traces.
    pub backward: BackwardStrategy,
}

impl Default for PlasticityConfig {
    /// The pattern experiment's settings (ICML 2018 section 4.1).
    fn default() -> Self {
        PlasticityConfig {
            rule: TraceRule::Hebb,
            alpha: AlphaShape::PerConnection,
            eta: 0.01,
            learn_eta: true,
            init_std: 0.01,
            alpha_init_std: None,
            clip: None,
            backward: BackwardStrategy::Auto,
        }
    }
}

impl PlasticityConfig {
    /// Checks every field; the message names the field and the value.
    pub fn validate(&self) -> Result<(), String> {
        if !self.eta.is_finite() {
            return Err(format!("eta: must be finite (got {})", self.eta));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            // (1 - eta) Hebb + eta y y: outside [0, 1] the trace grows without bound.
            return Err(format!("eta: must be in [0, 1] (got {})", self.eta));
        }
        let non_negative = [
            ("init_std", Some(self.init_std)),
            ("alpha_init_std", self.alpha_init_std),
        ];
        for (name, v) in non_negative {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(format!("{name}: must be finite and >= 0 (got {v})"));
            }
        }
        if let Some(c) = self.clip.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(format!("clip: must be positive or null (got {c})"));
        }
        Ok(())
    }

    /// Refuses each of `fields` that differs from the default `used`: a network that does not
    /// read a field must not let a configuration pretend it does. `why` names the network.
    pub fn unused(
        &self,
        used: &PlasticityConfig,
        fields: &[&str],
        why: &str,
    ) -> Result<(), String> {
        let (given, default) = (to_map(self), to_map(used));
        for &f in fields {
            if given.get(f) != default.get(f) {
                return Err(format!(
                    "{f}: {why} does not use it (got {}; leave it at {})",
                    given[f], default[f]
                ));
            }
        }
        Ok(())
    }
}

fn to_map(c: &PlasticityConfig) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(c).expect("the configuration serializes") {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a struct serializes to an object"),
    }
}

/// The last, flattened field of a configuration that embeds another: it receives the keys no
/// other field took and refuses them (`unknown field `bitz``), as `deny_unknown_fields` would.
/// Never serialized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NoOtherFields {}

impl<'de> Deserialize<'de> for NoOtherFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rest = BTreeMap::<String, IgnoredAny>::deserialize(d)?;
        match rest.keys().next() {
            Some(k) => Err(D::Error::custom(format!("unknown field `{k}`"))),
            None => Ok(NoOtherFields {}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PlasticityConfig;
    use crate::tasks::{
        cue_reward::CueRewardConfig, images::ImageConfig, lm::LmConfig, maze::MazeConfig,
        omniglot::OmniglotConfig, pattern::PatternConfig,
    };
    use serde::{de::DeserializeOwned, Serialize};
    use serde_json::{json, Value};

    /// Serializes flat (the plastic fields beside the task's), reads back equal, refuses an
    /// unknown field by name, and takes a partial object's fields over the rest.
    fn flat_round_trip<C: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(c: C) {
        let v = serde_json::to_value(&c).unwrap();
        for key in [
            "rule",
            "alpha",
            "eta",
            "learn_eta",
            "init_std",
            "clip",
            "backward",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert!(v.get("plasticity").is_none() && v.get("no_other_fields").is_none());
        assert_eq!(serde_json::from_value::<C>(v.clone()).unwrap(), c);
        let mut bad = v.clone();
        bad["etaa"] = json!(0.1);
        let err = serde_json::from_value::<C>(bad).unwrap_err().to_string();
        assert!(err.contains("unknown field `etaa`"), "{err}");
        let mut changed = v;
        changed["eta"] = json!(0.25);
        let read: Value =
            serde_json::to_value(serde_json::from_value::<C>(changed).unwrap()).unwrap();
        assert_eq!(read["eta"], json!(0.25));
    }

    #[test]
    fn every_task_embeds_the_plastic_fields_flat_and_strict() {
        flat_round_trip(PatternConfig::default());
        flat_round_trip(ImageConfig::default());
        flat_round_trip(MazeConfig::default());
        flat_round_trip(CueRewardConfig::default());
        flat_round_trip(OmniglotConfig::default());
        flat_round_trip(LmConfig::default());
        flat_round_trip(crate::PlasticNetConfig::default());
    }

    #[test]
    fn a_run_written_before_the_embedding_still_reads() {
        // A maze run's config.json as it was written before the plastic fields were shared
        // (no alpha, learn_eta or backward): the missing fields take the shared defaults.
        let old = json!({"size": 13, "steps": 200, "batch": 30, "reward": 10.0,
            "wall_penalty": 0.0, "model": "modul", "neurons": 0, "fan_out": false,
            "rule": "hebb", "clip": 1.0, "eta": 0.1, "init_std": 0.0, "alpha_init_std": 0.01,
            "gamma": 0.9, "value_weight": 0.1, "prob_penalty": 0.03, "learning_rate": 0.0001,
            "adam_epsilon": 0.0001, "max_grad_norm": 4.0});
        assert_eq!(
            serde_json::from_value::<MazeConfig>(old).unwrap(),
            MazeConfig::default()
        );
    }

    #[test]
    fn a_partial_object_takes_each_tasks_own_defaults() {
        let maze: MazeConfig = serde_json::from_value(json!({"size": 9})).unwrap();
        let cue: CueRewardConfig = serde_json::from_value(json!({"cues": 3})).unwrap();
        assert_eq!((maze.env.size, maze.env.steps, maze.neurons), (9, 200, 0));
        assert_eq!((cue.env.cues, cue.env.steps, cue.neurons), (3, 120, 200));
        assert_eq!((maze.neurons(), cue.neurons()), (100, 200));
        let images: ImageConfig = serde_json::from_value(json!({"side": 8})).unwrap();
        let pattern: PatternConfig = serde_json::from_value(json!({"bits": 8})).unwrap();
        assert_eq!(
            (images.cycles, images.present_steps, images.lstm_cells),
            (3, 20, 330)
        );
        assert_eq!(
            (pattern.cycles, pattern.present_steps, pattern.lstm_cells),
            (2, 6, 2000)
        );
    }

    #[test]
    fn checks_name_the_field() {
        let check = |c: PlasticityConfig| c.validate().unwrap_err();
        let d = PlasticityConfig::default;
        assert_eq!(
            check(PlasticityConfig {
                eta: f64::NAN,
                ..d()
            }),
            "eta: must be finite (got NaN)"
        );
        assert_eq!(
            check(PlasticityConfig { eta: 1.5, ..d() }),
            "eta: must be in [0, 1] (got 1.5)"
        );
        assert!(check(PlasticityConfig {
            init_std: -1.0,
            ..d()
        })
        .starts_with("init_std:"));
        assert!(check(PlasticityConfig {
            alpha_init_std: Some(f64::NAN),
            ..d()
        })
        .starts_with("alpha_init_std:"));
        assert!(check(PlasticityConfig {
            clip: Some(0.0),
            ..d()
        })
        .starts_with("clip:"));
        let clipped = PlasticityConfig {
            clip: Some(2.0),
            ..d()
        };
        assert_eq!(
            clipped
                .unused(&d(), &["rule", "clip"], "the layer")
                .unwrap_err(),
            "clip: the layer does not use it (got 2.0; leave it at null)"
        );
        assert_eq!(clipped.unused(&d(), &["rule"], "the layer"), Ok(()));
        let mut omniglot = OmniglotConfig::default();
        omniglot.plasticity.backward = plasticity_kernels::BackwardStrategy::StoreAll;
        assert!(omniglot.validate().unwrap_err().starts_with("backward:"));
        let mut lm = LmConfig::default();
        lm.plasticity.clip = None;
        assert!(lm.validate().unwrap_err().starts_with("clip:"));
    }
}
