//! The host side of the kernels, kept apart from the driver so that CPU tests cover it: the
//! rule's scalars as the kernels read them, launch geometry, the checkpoint plan, the bytes
//! that cross the bus, and the final sums the host does over steps and episodes.

use plasticity_kernels::{
    AlphaShape, BackwardStrategy, EpisodeSpec, Modulation, RuleGrads, TraceRule,
};

/// Columns per block and row slices of the column-sum kernels (`COLS`, `SLICES` in
/// `episode.cu`).
pub const COLS: u32 = 32;
/// See [`COLS`].
pub const SLICES: u32 = 8;
/// Threads of the row and per-episode kernels (`THREADS` in `episode.cu`).
pub const THREADS: u32 = 256;
/// Blocks of the element-wise trace update (grid-stride beyond).
pub const MAX_UPDATE_BLOCKS: u32 = 65_535;

/// `RULE_*` of `episode.cu`.
pub const RULE_NONE: i32 = 0;
/// See [`RULE_NONE`].
pub const RULE_DECAYING: i32 = 1;
/// See [`RULE_NONE`].
pub const RULE_OJA: i32 = 2;
/// See [`RULE_NONE`].
pub const RULE_SIMPLE: i32 = 3;
/// See [`RULE_NONE`].
pub const RULE_RETROACTIVE: i32 = 4;

/// The rule's scalars as `struct RuleArgs` of `episode.cu` reads them (eight 4-byte fields in
/// this order; the source asserts its size is 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuleArgs {
    /// Fixed rate `eta` (decaying Hebb, Oja).
    pub eta: f32,
    /// Eligibility-trace rate `eta_E` (retroactive).
    pub eta_e: f32,
    /// Clip bound `c`; infinity without clipping.
    pub clip: f32,
    /// Modulator bias `m_b`.
    pub m_bias: f32,
    /// `RULE_*`.
    pub kind: i32,
    /// 0 per connection, 1 per neuron, 2 scalar.
    pub alpha_kind: i32,
    /// 1: `rate_j = v_j M + b_j`; 0: `rate_j = M`.
    pub fan_out: i32,
    /// Neurons `N`.
    pub n: i32,
}

// SAFETY: plain `repr(C)` data of 4-byte fields, the layout of `struct RuleArgs`.
unsafe impl cudarc::driver::DeviceRepr for RuleArgs {}

/// The parameters of an episode, in `f32`: a fixed-rate rule's or a modulated one's (the CPU
/// engine's [`plasticity_kernels::RuleParams`]).
pub type RuleParams<'a> = plasticity_kernels::RuleParams<'a, f32>;

/// Checks the parameters' sizes against `spec` (the CPU engine's checks; see
/// `plasticity_kernels::rnn`).
pub fn check(spec: &EpisodeSpec, p: &RuleParams<'_>) -> Result<(), String> {
    spec.validate().map_err(|e| e.0)?;
    let n = spec.neurons;
    let len = |what: &str, got: usize, want: usize| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: expected {want} values, got {got}"))
        }
    };
    len("w", p.w().len(), n * n)?;
    len(
        "alpha",
        p.alpha().len(),
        if spec.plastic { spec.alpha.len(n) } else { 0 },
    )?;
    match (p, spec.modulation) {
        (RuleParams::Plain(_), Modulation::None) => Ok(()),
        (RuleParams::Modulated(mp), m) if m != Modulation::None => {
            if !spec.plastic || spec.rule != TraceRule::Hebb {
                return Err(
                    "modulation needs a plastic network with the decaying-Hebb rule".into(),
                );
            }
            let md = &mp.modulator;
            len("m", md.m.len(), n)?;
            let fan = if m.fan_out() { n } else { 0 };
            len("fan_w", md.fan_w.len(), fan)?;
            len("fan_b", md.fan_b.len(), fan)
        }
        _ => Err(format!(
            "modulation {:?} does not match the parameters given",
            spec.modulation
        )),
    }
}

impl RuleArgs {
    /// The scalars of `spec` with parameters `p`.
    pub fn new(spec: &EpisodeSpec, p: &RuleParams<'_>) -> Self {
        let kind = match (spec.plastic, spec.modulation, spec.rule) {
            (false, _, _) => RULE_NONE,
            (true, Modulation::None, TraceRule::Hebb) => RULE_DECAYING,
            (true, Modulation::None, TraceRule::Oja) => RULE_OJA,
            (true, Modulation::Simple { .. }, _) => RULE_SIMPLE,
            (true, Modulation::Retroactive { .. }, _) => RULE_RETROACTIVE,
        };
        let (eta, eta_e, m_bias) = match p {
            RuleParams::Plain(p) => (p.eta, 0.0, 0.0),
            RuleParams::Modulated(p) => (0.0, p.modulator.eta_e, p.modulator.m_bias),
        };
        RuleArgs {
            eta,
            eta_e,
            clip: spec.clip.map_or(f32::INFINITY, |c| c as f32),
            m_bias,
            kind,
            alpha_kind: match spec.alpha {
                AlphaShape::PerConnection => 0,
                AlphaShape::PerNeuron => 1,
                AlphaShape::Scalar => 2,
            },
            fan_out: i32::from(spec.modulation.fan_out()),
            n: spec.neurons as i32,
        }
    }

    /// Whether the rule keeps a trace.
    pub fn plastic(&self) -> bool {
        self.kind != RULE_NONE
    }

    /// Whether the rule keeps an eligibility trace.
    pub fn eligibility(&self) -> bool {
        self.kind == RULE_RETROACTIVE
    }

    /// Whether the rule has a modulator.
    pub fn modulated(&self) -> bool {
        self.kind == RULE_SIMPLE || self.kind == RULE_RETROACTIVE
    }
}

/// A launch's grid and block, `(x, y, z)` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Blocks.
    pub grid: (u32, u32, u32),
    /// Threads per block.
    pub block: (u32, u32, u32),
}

impl Geometry {
    /// The driver's launch configuration.
    pub fn config(self) -> cudarc::driver::LaunchConfig {
        cudarc::driver::LaunchConfig {
            grid_dim: self.grid,
            block_dim: self.block,
            shared_mem_bytes: 0,
        }
    }
}

/// `forward_step`, `pass_a`: blocks of [`COLS`] columns x [`SLICES`] row slices, one row of
/// blocks per episode.
pub fn columns(n: usize, batch: usize) -> Geometry {
    Geometry {
        grid: ((n as u32).div_ceil(COLS), batch as u32, 1),
        block: (COLS, SLICES, 1),
    }
}

/// `modulator`, `rule_backprop`: one block per episode.
pub fn per_episode(batch: usize) -> Geometry {
    Geometry {
        grid: (batch as u32, 1, 1),
        block: (THREADS, 1, 1),
    }
}

/// `pass_b`: one block per row `i`.
pub fn rows(n: usize) -> Geometry {
    Geometry {
        grid: (n as u32, 1, 1),
        block: (THREADS, 1, 1),
    }
}

/// `update_trace`: one thread per entry of `[B, N, N]`, at most [`MAX_UPDATE_BLOCKS`] blocks
/// (the kernel strides over the rest).
pub fn entries(n: usize, batch: usize) -> Geometry {
    let total = (batch * n * n) as u64;
    let blocks = total
        .div_ceil(u64::from(THREADS))
        .clamp(1, u64::from(MAX_UPDATE_BLOCKS));
    Geometry {
        grid: (blocks as u32, 1, 1),
        block: (THREADS, 1, 1),
    }
}

/// `grad_w`: one thread per entry of `[N, N]`, a row of blocks per row `i`.
pub fn weights(n: usize) -> Geometry {
    Geometry {
        grid: ((n as u32).div_ceil(COLS), n as u32, 1),
        block: (COLS, 1, 1),
    }
}

/// Steps between the stored traces `Hebb_{kK}` (the GPU recomputes every segment from its
/// checkpoint; it never reverses a trace): `BackwardStrategy::Checkpoint { segment }` as
/// given, `StoreAll` 1, otherwise `ceil(sqrt(T))`, as the CPU engine plans.
pub fn segment(spec: &EpisodeSpec) -> usize {
    match spec.backward {
        BackwardStrategy::Checkpoint { segment } if segment > 0 => segment.min(spec.steps),
        BackwardStrategy::StoreAll => 1,
        _ => ((spec.steps as f64).sqrt().ceil() as usize).max(1),
    }
}

/// Checkpoints stored for `steps` steps every `segment`: `Hebb_0, Hebb_K, ...`.
pub fn checkpoints(steps: usize, segment: usize) -> usize {
    steps.div_ceil(segment)
}

/// Bytes copied host -> device and device -> host by one forward and one backward (the
/// first version copies each op's inputs and outputs over the bus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Host to device.
    pub to_device: u64,
    /// Device to host.
    pub to_host: u64,
}

/// The bytes of [`Transfers`] for one forward and backward of `spec`: inputs
/// `w, alpha, modulator, x, y0, Hebb_0, E_0` and `dL/dys` in; outputs `ys, Hebb_T, E_T, M` and
/// every gradient out (`dL/dw, dL/dalpha, dL/dx, dL/dy0, dL/dHebb_0, dL/dE_0`, the per-step
/// rule sums).
pub fn transfers(spec: &EpisodeSpec) -> Transfers {
    let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
    let traces = usize::from(spec.plastic) + usize::from(spec.modulation.has_eligibility());
    let alpha = if spec.plastic { spec.alpha.len(n) } else { 0 };
    let modulator = match spec.modulation {
        Modulation::None => 0,
        m if m.fan_out() => 3 * n,
        _ => n,
    };
    let modulated = spec.modulation != Modulation::None;
    let steps_out = if modulated { t * b } else { 0 };
    let to_device = n * n + alpha + modulator + t * b * n + b * n + traces * b * n * n + t * b * n;
    let rule_sums = if modulated {
        2 * t * b + t * b * n
    } else {
        t * b
    };
    let to_host = t * b * n + traces * b * n * n + steps_out // forward outputs
        + n * n + n * n + t * b * n + b * n + traces * b * n * n + rule_sums;
    Transfers {
        to_device: 4 * to_device as u64,
        to_host: 4 * to_host as u64,
    }
}

/// The bytes one step of the device stepper copies ([`crate::DeviceStepper::step`]): `x_t:
/// [B, N]` in; `y_t: [B, N]` and, when modulated, `M(t): [B]` out (one copy). The parameters,
/// `y0` and given initial traces cross once when the stepper starts.
pub fn step_transfers(spec: &EpisodeSpec) -> Transfers {
    let (n, b) = (spec.neurons, spec.batch);
    let modulator = if spec.plastic && spec.modulation != Modulation::None {
        b
    } else {
        0
    };
    Transfers {
        to_device: 4 * (b * n) as u64,
        to_host: 4 * (b * n + modulator) as u64,
    }
}

/// `dL/dalpha` in `alpha`'s shape from the kernels' `[N, N]` accumulation: as is per
/// connection, summed over `i` per neuron, summed over everything for a scalar (in the CPU
/// engine's order: rows, then columns).
pub fn alpha_grad(full: &[f32], shape: AlphaShape, n: usize) -> Vec<f32> {
    match shape {
        AlphaShape::PerConnection => full.to_vec(),
        AlphaShape::PerNeuron | AlphaShape::Scalar => {
            let mut per_neuron = vec![0.0f32; n];
            for row in full.chunks_exact(n) {
                for (g, &v) in per_neuron.iter_mut().zip(row) {
                    *g += v;
                }
            }
            if shape == AlphaShape::Scalar {
                vec![per_neuron.iter().sum()]
            } else {
                per_neuron
            }
        }
    }
}

/// What the backward's rule kernel leaves for the host, per step and episode.
#[derive(Clone, Debug)]
pub struct RuleSums<'a> {
    /// `dL/dq` of `M = tanh(q)`, `[T, B]` (modulated).
    pub gq: &'a [f32],
    /// The step's share of `dL/deta` (fixed rate) or `dL/deta_E` (retroactive), `[T, B]`.
    pub scal: &'a [f32],
    /// `dL/drate_j`, `[T, B, N]` (modulated).
    pub geta: &'a [f32],
    /// The modulator `M`, `[T, B]` (modulated).
    pub modulator: &'a [f32],
    /// The activities `y_t`, `[T, B, N]` (what the modulator reads).
    pub ys: &'a [f32],
}

/// The gradients of the rule's own parameters, summed over steps and episodes:
/// `dL/deta = sum scal` (fixed rate); `dL/dm_b = sum gq`, `dL/dm_j = sum gq y_j`,
/// `dL/dv_j = sum M geta_j`, `dL/db_j = sum geta_j` (fan-out), `dL/deta_E = sum scal`
/// (retroactive).
pub fn rule_grads(args: &RuleArgs, s: &RuleSums<'_>, n: usize) -> RuleGrads<f32> {
    let mut g = RuleGrads::default();
    if !args.plastic() {
        return g;
    }
    if !args.modulated() {
        g.eta = s.scal.iter().sum();
        return g;
    }
    let md = &mut g.modulator;
    md.m = vec![0.0; n];
    if args.fan_out != 0 {
        md.fan_w = vec![0.0; n];
        md.fan_b = vec![0.0; n];
    }
    for (tb, (&gq, &m)) in s.gq.iter().zip(s.modulator).enumerate() {
        md.m_bias += gq;
        let y = &s.ys[tb * n..(tb + 1) * n];
        for (gm, &yj) in md.m.iter_mut().zip(y) {
            *gm += gq * yj;
        }
        if args.fan_out != 0 {
            let geta = &s.geta[tb * n..(tb + 1) * n];
            for ((v, b), &ge) in md.fan_w.iter_mut().zip(md.fan_b.iter_mut()).zip(geta) {
                *v += m * ge;
                *b += ge;
            }
        }
    }
    if args.eligibility() {
        md.eta_e = s.scal.iter().sum();
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use plasticity_kernels::{ModulatedParams, ModulatorParams, Params};

    fn spec(n: usize, b: usize, t: usize) -> EpisodeSpec {
        EpisodeSpec::new(n, b, t)
    }

    #[test]
    fn rule_args_match_the_kernels_struct() {
        assert_eq!(core::mem::size_of::<RuleArgs>(), 32);
        assert_eq!(core::mem::align_of::<RuleArgs>(), 4);
        let s = EpisodeSpec {
            clip: Some(0.5),
            alpha: AlphaShape::PerNeuron,
            modulation: Modulation::Retroactive { fan_out: true },
            ..spec(7, 2, 3)
        };
        let p = ModulatedParams {
            w: &[],
            alpha: &[],
            modulator: ModulatorParams {
                m_bias: 0.25,
                eta_e: 0.125,
                ..ModulatorParams::default()
            },
        };
        let a = RuleArgs::new(&s, &RuleParams::Modulated(p));
        assert_eq!(
            a,
            RuleArgs {
                eta: 0.0,
                eta_e: 0.125,
                clip: 0.5,
                m_bias: 0.25,
                kind: RULE_RETROACTIVE,
                alpha_kind: 1,
                fan_out: 1,
                n: 7
            }
        );
        assert!(a.eligibility() && a.modulated() && a.plastic());
        let plain = Params {
            w: &[],
            alpha: &[],
            eta: 0.1,
        };
        let oja = RuleArgs::new(
            &EpisodeSpec {
                rule: TraceRule::Oja,
                ..spec(3, 1, 1)
            },
            &RuleParams::Plain(plain),
        );
        assert_eq!(
            (oja.kind, oja.clip, oja.eta),
            (RULE_OJA, f32::INFINITY, 0.1)
        );
        let none = RuleArgs::new(
            &EpisodeSpec {
                plastic: false,
                ..spec(3, 1, 1)
            },
            &RuleParams::Plain(plain),
        );
        assert_eq!(none.kind, RULE_NONE);
        assert!(!none.plastic());
        // The kernel source declares the same constants.
        let src = crate::compile::EPISODE.code;
        for (name, v) in [
            ("RULE_NONE", RULE_NONE),
            ("RULE_DECAYING", RULE_DECAYING),
            ("RULE_OJA", RULE_OJA),
            ("RULE_SIMPLE", RULE_SIMPLE),
            ("RULE_RETROACTIVE", RULE_RETROACTIVE),
        ] {
            assert!(src.contains(&format!("#define {name} {v}\n")), "{name}");
        }
        for (name, v) in [("COLS", COLS), ("SLICES", SLICES), ("THREADS", THREADS)] {
            assert!(src.contains(&format!("#define {name} {v}\n")), "{name}");
        }
    }

    #[test]
    fn geometry_covers_every_column_row_and_entry() {
        assert_eq!(
            columns(1001, 3),
            Geometry {
                grid: (32, 3, 1),
                block: (32, 8, 1)
            }
        );
        assert_eq!(columns(32, 1).grid, (1, 1, 1));
        assert_eq!(columns(33, 1).grid, (2, 1, 1));
        assert_eq!(rows(100).grid, (100, 1, 1));
        assert_eq!(per_episode(16).grid, (16, 1, 1));
        assert_eq!(weights(1001).grid, (32, 1001, 1));
        // 9 x 9 x 2 = 162 entries: one block; a pattern-sized trace: 3915 blocks; N = 16384
        // with 4 episodes: capped, the kernel strides.
        assert_eq!(entries(9, 2).grid, (1, 1, 1));
        assert_eq!(entries(1001, 1).grid, (3915, 1, 1));
        assert_eq!(entries(16384, 4).grid, (MAX_UPDATE_BLOCKS, 1, 1));
        for g in [
            columns(5, 2),
            per_episode(2),
            rows(5),
            entries(5, 2),
            weights(5),
        ] {
            let threads = g.block.0 * g.block.1 * g.block.2;
            assert!(threads <= 1024 && threads.is_power_of_two());
            assert!(g.grid.1 <= 65_535 && g.grid.2 <= 65_535);
        }
    }

    #[test]
    fn the_checkpoint_plan_follows_the_strategy() {
        let s = spec(4, 1, 106);
        assert_eq!(segment(&s), 11);
        assert_eq!(checkpoints(106, 11), 10);
        let store = EpisodeSpec {
            backward: BackwardStrategy::StoreAll,
            ..s
        };
        assert_eq!((segment(&store), checkpoints(106, 1)), (1, 106));
        let seg = |k| EpisodeSpec {
            backward: BackwardStrategy::Checkpoint { segment: k },
            ..s
        };
        assert_eq!(segment(&seg(5)), 5);
        assert_eq!(segment(&seg(0)), 11);
        assert_eq!(segment(&seg(500)), 106);
        assert_eq!(segment(&spec(4, 1, 1)), 1);
    }

    #[test]
    fn alpha_gradients_are_summed_to_alpha_shape() {
        let full = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            alpha_grad(&full, AlphaShape::PerConnection, 2),
            full.to_vec()
        );
        assert_eq!(alpha_grad(&full, AlphaShape::PerNeuron, 2), vec![4.0, 6.0]);
        assert_eq!(alpha_grad(&full, AlphaShape::Scalar, 2), vec![10.0]);
    }

    #[test]
    fn rule_gradients_sum_steps_and_episodes() {
        // T = 2 steps, B = 1, N = 2, retroactive with fan-out.
        let args = RuleArgs {
            fan_out: 1,
            ..RuleArgs::new(
                &EpisodeSpec {
                    modulation: Modulation::Retroactive { fan_out: true },
                    ..spec(2, 1, 2)
                },
                &RuleParams::Modulated(ModulatedParams {
                    w: &[],
                    alpha: &[],
                    modulator: ModulatorParams {
                        eta_e: 0.1,
                        ..ModulatorParams::default()
                    },
                }),
            )
        };
        let sums = RuleSums {
            gq: &[0.5, -1.0],
            scal: &[0.25, 0.5],
            geta: &[1.0, 2.0, 3.0, 4.0],
            modulator: &[0.5, 0.25],
            ys: &[0.1, 0.2, 0.3, 0.4],
        };
        let g = rule_grads(&args, &sums, 2);
        assert_eq!(g.modulator.m_bias, -0.5);
        // m_j = 0.5 y_0j - y_1j.
        assert!(
            (g.modulator.m[0] - (0.05 - 0.3)).abs() < 1e-7
                && (g.modulator.m[1] - (0.1 - 0.4)).abs() < 1e-7
        );
        // v_j = 0.5 geta_0j + 0.25 geta_1j; b_j = geta_0j + geta_1j.
        assert_eq!(g.modulator.fan_w, vec![1.25, 2.0]);
        assert_eq!(g.modulator.fan_b, vec![4.0, 6.0]);
        assert_eq!(g.modulator.eta_e, 0.75);
        assert_eq!(g.eta, 0.0);
        let plain = RuleArgs::new(
            &spec(2, 1, 2),
            &RuleParams::Plain(Params {
                w: &[],
                alpha: &[],
                eta: 0.1,
            }),
        );
        let g = rule_grads(&plain, &sums, 2);
        assert_eq!((g.eta, g.modulator.m.len()), (0.75, 0));
    }

    #[test]
    fn transfers_count_inputs_outputs_and_gradients() {
        // Pattern: N = 1001, B = 1, T = 106, decaying Hebb.
        let t = transfers(&spec(1001, 1, 106));
        let (n, steps) = (1001u64, 106u64);
        let inputs = n * n + n * n + steps * n + n + n * n + steps * n;
        assert_eq!(t.to_device, 4 * inputs);
        let outputs = steps * n + n * n + 2 * n * n + steps * n + n + n * n + steps;
        assert_eq!(t.to_host, 4 * outputs);
        // Without plasticity: no alpha, no trace.
        let t = transfers(&EpisodeSpec {
            plastic: false,
            ..spec(3, 2, 4)
        });
        assert_eq!(t.to_device, 4 * (9 + 24 + 6 + 24));
    }

    #[test]
    fn a_step_moves_x_in_and_y_with_the_modulator_out() {
        // The maze agent: N = 100, B = 30, retroactive: 12000 bytes in, 12120 out per step.
        let maze = EpisodeSpec {
            modulation: Modulation::Retroactive { fan_out: false },
            ..spec(100, 30, 200)
        };
        assert_eq!(
            step_transfers(&maze),
            Transfers {
                to_device: 12_000,
                to_host: 12_120
            }
        );
        // Without modulation no modulator comes back.
        assert_eq!(step_transfers(&spec(3, 2, 5)).to_host, 24);
    }

    #[test]
    fn parameters_are_checked_against_the_spec() {
        let s = spec(2, 1, 3);
        let w = [0.0; 4];
        let ok = Params {
            w: &w,
            alpha: &w,
            eta: 0.1,
        };
        assert!(check(&s, &RuleParams::Plain(ok)).is_ok());
        let short = Params {
            alpha: &w[..3],
            ..ok
        };
        assert!(check(&s, &RuleParams::Plain(short))
            .unwrap_err()
            .contains("alpha"));
        let m = ModulatedParams {
            w: &w,
            alpha: &w,
            modulator: ModulatorParams {
                m: &w[..2],
                ..ModulatorParams::default()
            },
        };
        assert!(check(&s, &RuleParams::Modulated(m)).is_err());
        let ms = EpisodeSpec {
            modulation: Modulation::Simple { fan_out: true },
            ..s
        };
        assert!(check(&ms, &RuleParams::Modulated(m))
            .unwrap_err()
            .contains("fan_w"));
    }
}
