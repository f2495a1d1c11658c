//! The GPU against the CPU kernels: outputs (activities, final traces, modulator) and every
//! gradient, for every rule, modulation (with and without fan-out), clip, alpha shape, input
//! mode, the network without plasticity, a store-every-trace backward and a batched
//! pattern-sized episode; and the device stepper against the CPU `Stepper` (the agents'
//! rollouts: activities and modulator of every step, the traces after the last) on the same
//! settings. Used by `tests/gpu.rs` and `plasticity check --device cuda`.

use crate::engine::{Engine, Error};
use crate::layout::RuleParams;
use plasticity_kernels::{
    AlphaShape, BackwardStrategy, EpisodeSpec, Grads, InputMode, Modulation, ModulatorParams,
};

/// Steps the stepper runs per setting (fewer when the setting has fewer).
pub const STEPPER_STEPS: usize = 8;

/// Largest relative differences allowed: outputs, gradients (f32 sums in another order).
pub const TOLERANCES: (f32, f32) = (1e-4, 1e-3);

/// The largest relative difference of each output and gradient of one setting (max abs
/// difference over the CPU value's max magnitude, at least 0.01; infinite when the lengths
/// differ).
#[derive(Clone, Debug)]
pub struct Difference {
    /// The setting.
    pub spec: EpisodeSpec,
    /// `ys`, `hebb`, `elig`, `modulator` of the episode; `step ys`, `step modulator`, `step
    /// hebb`, `step elig` of the stepper over [`STEPPER_STEPS`] steps.
    pub outputs: Vec<(&'static str, f32)>,
    /// `w`, `alpha`, `x`, `y0`, `hebb0`, `elig0`, `eta`, `m`, `m_bias`, `fan_w`, `fan_b`,
    /// `eta_e`.
    pub gradients: Vec<(&'static str, f32)>,
}

impl Difference {
    /// The worst output difference.
    pub fn worst_output(&self) -> f32 {
        self.outputs.iter().map(|o| o.1).fold(0.0, f32::max)
    }

    /// The worst gradient difference.
    pub fn worst_gradient(&self) -> f32 {
        self.gradients.iter().map(|g| g.1).fold(0.0, f32::max)
    }

    /// Whether both are within [`TOLERANCES`].
    pub fn ok(&self) -> bool {
        self.worst_output() < TOLERANCES.0 && self.worst_gradient() < TOLERANCES.1
    }
}

/// The settings compared: both fixed-rate rules x input modes x alpha shapes x clip at
/// `N = 9, B = 3, T = 13`; simple and retroactive modulation, with and without fan-out, x
/// clip x input mode (alternating alpha shapes) at `N = 11, B = 2, T = 12`; the network without
/// plasticity; a store-every-trace and a 4-step-segment backward; `N = 257, B = 4, T = 106`
/// (pattern-sized, several blocks of columns and rows, odd sizes).
pub fn settings() -> Vec<EpisodeSpec> {
    let mut specs = EpisodeSpec::new(9, 3, 13).fixed_rate_grid(0.08);
    let mut k = 0;
    for modulation in [
        Modulation::Simple { fan_out: false },
        Modulation::Simple { fan_out: true },
        Modulation::Retroactive { fan_out: false },
        Modulation::Retroactive { fan_out: true },
    ] {
        for clip in [None, Some(0.2)] {
            for input in InputMode::ALL {
                specs.push(EpisodeSpec {
                    modulation,
                    clip,
                    input,
                    alpha: AlphaShape::ALL[k % 3],
                    ..EpisodeSpec::new(11, 2, 12)
                });
                k += 1;
            }
        }
    }
    for input in InputMode::ALL {
        specs.push(EpisodeSpec {
            plastic: false,
            input,
            ..EpisodeSpec::new(10, 2, 9)
        });
    }
    specs.push(EpisodeSpec {
        backward: BackwardStrategy::StoreAll,
        clip: Some(0.1),
        ..EpisodeSpec::new(7, 2, 6)
    });
    specs.push(EpisodeSpec {
        backward: BackwardStrategy::Checkpoint { segment: 4 },
        modulation: Modulation::Retroactive { fan_out: true },
        ..EpisodeSpec::new(6, 1, 10)
    });
    specs.push(EpisodeSpec::new(257, 4, 106));
    specs
}

/// Values in `[-scale, scale)` from a fixed sequence (xorshift; no dependency on `rand`).
fn values(seed: &mut u64, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let unit = (*seed >> 40) as f32 / (1u64 << 24) as f32;
            scale * (2.0 * unit - 1.0)
        })
        .collect()
}

/// The inputs of one setting (fixed for a spec): parameters, `x`, `y0`, `hebb0`, `elig0`,
/// `gy`.
struct Inputs {
    w: Vec<f32>,
    alpha: Vec<f32>,
    m: Vec<f32>,
    fan_w: Vec<f32>,
    fan_b: Vec<f32>,
    x: Vec<f32>,
    y0: Vec<f32>,
    h0: Vec<f32>,
    e0: Vec<f32>,
    gy: Vec<f32>,
}

impl Inputs {
    fn new(spec: &EpisodeSpec) -> Self {
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (n * 1_000_003 + b * 1009 + t) as u64;
        let s = &mut seed;
        let alpha_len = if spec.plastic { spec.alpha.len(n) } else { 0 };
        let fan = if spec.modulation.fan_out() { n } else { 0 };
        let mut x = values(s, t * b * n, 1.0);
        if spec.input == InputMode::Clamped {
            for (k, v) in x.iter_mut().enumerate() {
                if k % 3 != 0 {
                    *v = 0.0;
                }
            }
        }
        Inputs {
            w: values(s, n * n, 1.5 / (n as f32).sqrt()),
            alpha: values(s, alpha_len, 0.3),
            m: values(s, n, 0.5),
            fan_w: values(s, fan, 0.5),
            fan_b: values(s, fan, 0.1),
            x,
            y0: values(s, b * n, 0.5),
            h0: values(s, b * n * n, 0.05),
            e0: values(s, b * n * n, 0.05),
            gy: values(s, t * b * n, 1.0),
        }
    }

    fn params(&self, spec: &EpisodeSpec) -> RuleParams<'_> {
        let modulator = ModulatorParams {
            m: &self.m,
            m_bias: 0.05,
            fan_w: &self.fan_w,
            fan_b: &self.fan_b,
            eta_e: 0.2,
        };
        RuleParams::new(spec.modulation, &self.w, &self.alpha, 0.1, modulator)
    }

    fn traces(&self, spec: &EpisodeSpec) -> (Option<&[f32]>, Option<&[f32]>) {
        let h0 = spec.plastic.then_some(self.h0.as_slice());
        let e0 = spec
            .modulation
            .has_eligibility()
            .then_some(self.e0.as_slice());
        (h0, e0)
    }
}

/// The CPU engine's outputs `[ys, hebb, elig, modulator]` and gradients.
fn cpu(spec: &EpisodeSpec, inp: &Inputs) -> Result<([Vec<f32>; 4], Grads<f32>), Error> {
    let (h0, e0) = inp.traces(spec);
    let spec_err = |e: plasticity_kernels::SpecError| Error::Spec(e.0);
    let p = inp.params(spec);
    let ep = plasticity_kernels::forward(spec, p, &inp.x, &inp.y0, h0, e0).map_err(spec_err)?;
    let out = ep.clone();
    let grads = plasticity_kernels::backward(p, ep, &inp.gy, None, None).map_err(spec_err)?;
    let ep = out;
    Ok(([ep.ys, ep.traces.hebb, ep.traces.elig, ep.modulator], grads))
}

/// The CPU `Stepper`'s `[ys, modulator, hebb, elig]` after `steps` steps of `inp.x`
/// (`ys: [steps, B, N]`, `modulator: [steps, B]`).
fn cpu_steps(spec: &EpisodeSpec, inp: &Inputs, steps: usize) -> Result<[Vec<f32>; 4], Error> {
    let (h0, e0) = inp.traces(spec);
    let spec_err = |e: plasticity_kernels::SpecError| Error::Spec(e.0);
    let mut st = plasticity_kernels::Stepper::new(spec, &inp.y0, h0, e0).map_err(spec_err)?;
    let (mut ys, mut modulator) = (Vec::new(), Vec::new());
    let bn = spec.batch * spec.neurons;
    for x in inp.x.chunks(bn).take(steps) {
        match inp.params(spec) {
            RuleParams::Plain(p) => ys.extend_from_slice(st.step(&p, x).map_err(spec_err)?),
            RuleParams::Modulated(p) => {
                let (y, m) = st.step_modulated(&p, x).map_err(spec_err)?;
                ys.extend_from_slice(y);
                modulator.extend_from_slice(m);
            }
        }
    }
    let (_, hebb, elig) = st.finish();
    Ok([ys, modulator, hebb, elig])
}

/// The device stepper's `[ys, modulator, hebb, elig]`, as [`cpu_steps`].
fn device_steps(
    engine: &Engine,
    spec: &EpisodeSpec,
    inp: &Inputs,
    steps: usize,
) -> Result<[Vec<f32>; 4], Error> {
    let (h0, e0) = inp.traces(spec);
    let mut st = engine.stepper(spec, &inp.params(spec), &inp.y0, h0, e0)?;
    let (mut ys, mut modulator) = (Vec::new(), Vec::new());
    let bn = spec.batch * spec.neurons;
    for x in inp.x.chunks(bn).take(steps) {
        let (y, m) = st.step(x)?;
        ys.extend_from_slice(y);
        modulator.extend_from_slice(m);
    }
    let (hebb, elig) = st.traces()?;
    Ok([ys, modulator, hebb, elig])
}

/// Max abs difference over the CPU value's max magnitude (at least 0.01); infinite when the
/// lengths differ or a value is not finite.
pub fn relative(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() || got.iter().any(|g| !g.is_finite()) {
        return f32::INFINITY;
    }
    let scale = want.iter().fold(0.01f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
    diff / scale
}

/// Runs `spec` on the GPU and on the CPU from the same inputs and compares.
pub fn compare(engine: &Engine, spec: &EpisodeSpec) -> Result<Difference, Error> {
    let inp = Inputs::new(spec);
    let (h0, e0) = inp.traces(spec);
    let p = inp.params(spec);
    let (fwd, ep) = engine.forward(spec, &p, &inp.x, &inp.y0, h0, e0)?;
    let g = engine.backward(ep, &inp.gy)?;
    let ([ys, hebb, elig, modulator], c) = cpu(spec, &inp)?;
    let steps = spec.steps.min(STEPPER_STEPS);
    let stepped = device_steps(engine, spec, &inp, steps)?;
    let want = cpu_steps(spec, &inp, steps)?;
    let mut outputs = vec![
        ("ys", relative(&fwd.ys, &ys)),
        ("hebb", relative(&fwd.traces.hebb, &hebb)),
        ("elig", relative(&fwd.traces.elig, &elig)),
        ("modulator", relative(&fwd.modulator, &modulator)),
    ];
    for (name, (got, want)) in ["step ys", "step modulator", "step hebb", "step elig"]
        .into_iter()
        .zip(stepped.iter().zip(&want))
    {
        outputs.push((name, relative(got, want)));
    }
    let gradients = vec![
        ("w", relative(&g.w, &c.w)),
        ("alpha", relative(&g.plastic.alpha, &c.plastic.alpha)),
        ("x", relative(&g.x, &c.x)),
        ("y0", relative(&g.y0, &c.y0)),
        ("hebb0", relative(&g.plastic.hebb0, &c.plastic.hebb0)),
        ("elig0", relative(&g.plastic.elig0, &c.plastic.elig0)),
        (
            "eta",
            relative(&[g.plastic.rule.eta], &[c.plastic.rule.eta]),
        ),
        (
            "m",
            relative(&g.plastic.rule.modulator.m, &c.plastic.rule.modulator.m),
        ),
        (
            "m_bias",
            relative(
                &[g.plastic.rule.modulator.m_bias],
                &[c.plastic.rule.modulator.m_bias],
            ),
        ),
        (
            "fan_w",
            relative(
                &g.plastic.rule.modulator.fan_w,
                &c.plastic.rule.modulator.fan_w,
            ),
        ),
        (
            "fan_b",
            relative(
                &g.plastic.rule.modulator.fan_b,
                &c.plastic.rule.modulator.fan_b,
            ),
        ),
        (
            "eta_e",
            relative(
                &[g.plastic.rule.modulator.eta_e],
                &[c.plastic.rule.modulator.eta_e],
            ),
        ),
    ];
    Ok(Difference {
        spec: *spec,
        outputs,
        gradients,
    })
}

/// [`compare`] for every one of [`settings`].
pub fn compare_all(engine: &Engine) -> Result<Vec<Difference>, Error> {
    settings().iter().map(|s| compare(engine, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plasticity_kernels::TraceRule;

    #[test]
    fn settings_cover_every_rule_modulation_clip_alpha_shape_and_input_mode() {
        let s = settings();
        for rule in TraceRule::ALL {
            assert!(s
                .iter()
                .any(|x| x.rule == rule && x.modulation == Modulation::None));
        }
        for m in [
            Modulation::Simple { fan_out: false },
            Modulation::Simple { fan_out: true },
            Modulation::Retroactive { fan_out: false },
            Modulation::Retroactive { fan_out: true },
        ] {
            for input in InputMode::ALL {
                for clip in [None, Some(0.2)] {
                    assert!(s
                        .iter()
                        .any(|x| x.modulation == m && x.input == input && x.clip == clip));
                }
            }
        }
        for alpha in AlphaShape::ALL {
            assert!(s
                .iter()
                .any(|x| x.alpha == alpha && x.modulation != Modulation::None));
        }
        assert!(s.iter().any(|x| !x.plastic));
        assert!(s.iter().any(|x| x.batch > 1 && x.neurons > 256));
        for spec in &s {
            assert!(spec.validate().is_ok());
        }
    }

    #[test]
    fn relative_differences_scale_by_the_cpu_values() {
        assert_eq!(relative(&[1.0, 2.0], &[1.0, 4.0]), 0.5);
        assert!((relative(&[0.001], &[0.0]) - 0.1).abs() < 1e-6);
        assert_eq!(relative(&[], &[]), 0.0);
        assert_eq!(relative(&[1.0], &[]), f32::INFINITY);
        assert_eq!(relative(&[f32::NAN], &[1.0]), f32::INFINITY);
    }

    #[test]
    fn the_cpu_side_of_every_setting_runs() {
        // The CPU reference of each setting (what the GPU is compared with) runs and returns
        // outputs of the documented lengths.
        for spec in settings().iter().filter(|s| s.neurons < 100) {
            let inp = Inputs::new(spec);
            let ([ys, hebb, elig, modulator], g) = cpu(spec, &inp).unwrap();
            let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
            assert_eq!(ys.len(), t * b * n);
            assert_eq!(hebb.len(), if spec.plastic { b * n * n } else { 0 });
            assert_eq!(
                elig.len(),
                if spec.modulation.has_eligibility() {
                    b * n * n
                } else {
                    0
                }
            );
            assert_eq!(
                modulator.len(),
                if spec.modulation == Modulation::None {
                    0
                } else {
                    t * b
                }
            );
            assert_eq!(g.x.len(), t * b * n);
            // The CPU stepper over the forward's steps gives the forward's activities,
            // modulator and final traces (what the device stepper is compared with).
            let [sys, smod, shebb, selig] = cpu_steps(spec, &inp, t).unwrap();
            assert!(relative(&sys, &ys) < 1e-5, "{spec:?}");
            assert!(relative(&smod, &modulator) < 1e-5, "{spec:?}");
            assert!(relative(&shebb, &hebb) < 1e-5, "{spec:?}");
            assert!(relative(&selig, &elig) < 1e-5, "{spec:?}");
        }
    }
}
