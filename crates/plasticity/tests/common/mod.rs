//! Helpers shared by the tests of the burn operations (seeded random leaves, relative
//! differences, gradient checks) and of the training loop (scratch folders, runs, metrics).
// Each test file uses some of these.
#![allow(dead_code)]

use burn::tensor::{Device, Gradients, Tensor, TensorData};
use plasticity::tasks::completion::CompletionConfig;
use plasticity::tensors::{from_vec, to_vec};
use plasticity::train::{self, Experiment, RunOptions, Summary, TrainError};
use plasticity::{EpisodeSpec, Modulation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

mod shared_data;
// Each test file that reads a shared data set uses it.
#[allow(unused_imports)]
pub use shared_data::shared_data;

/// A completion task (`task`'s fields) small enough to learn in seconds: 2 cycles of 3 + 1
/// steps, `test_steps` test steps, Adam's rate 3e-3.
pub fn small_completion<T>(task: T, test_steps: usize) -> CompletionConfig<T>
where
    CompletionConfig<T>: Default,
{
    CompletionConfig {
        task,
        cycles: 2,
        present_steps: 3,
        gap_steps: 1,
        test_steps,
        learning_rate: 3e-3,
        ..CompletionConfig::default()
    }
}

/// `len` values uniform in `(-scale, scale)`.
pub fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| scale * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

/// The largest absolute difference of `a` and `b`, relative to the largest `|b|` (at least
/// `1e-6`).
pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// `named_grads!(grads, leaves; a, b)`: the gradients in `grads` of the tensors `leaves.a`,
/// `leaves.b`, named by their fields, as [`NamedGrads`].
macro_rules! named_grads {
    ($grads:expr, $leaves:expr; $($field:ident),+ $(,)?) => {
        vec![$((stringify!($field), $crate::common::grad(&$leaves.$field, $grads))),+]
    };
}
// Not every test file uses it.
#[allow(unused_imports)]
pub(crate) use named_grads;

/// Asserts that `config` reads back from its JSON unchanged.
pub fn assert_json_round_trip<C>(config: &C)
where
    C: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(config).unwrap();
    assert_eq!(&serde_json::from_str::<C>(&json).unwrap(), config);
}

/// The leaves of one test case, drawn in order from one seeded stream.
pub struct LeafRng<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl<'a> LeafRng<'a> {
    /// A stream seeded with `seed`, making tensors on `device`.
    pub fn new(seed: u64, device: &'a Device) -> Self {
        LeafRng {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        }
    }

    /// The next `shape` values, uniform in `(-scale, scale)`, as a tensor.
    pub fn tensor<const D: usize>(&mut self, scale: f32, shape: [usize; D]) -> Tensor<D> {
        let len = shape.iter().product();
        from_vec(random(&mut self.rng, len, scale), shape, self.device)
    }

    /// [`LeafRng::tensor`] as a leaf that requires its gradient.
    pub fn leaf<const D: usize>(&mut self, scale: f32, shape: [usize; D]) -> Tensor<D> {
        self.tensor(scale, shape).require_grad()
    }

    /// A one-element leaf holding `v` (draws nothing).
    pub fn scalar(&self, v: f32) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![v], [1]), self.device).require_grad()
    }
}

/// The gradient of `t` in `grads`, flat (`None`: it has none).
pub fn grad<const D: usize>(t: &Tensor<D>, grads: &Gradients) -> Option<Vec<f32>> {
    t.grad(grads).map(to_vec)
}

/// Asserts that the op's gradient `op` with respect to `name` equals burn autodiff's of the
/// reference, `reference`, to `1e-4` relative.
pub fn assert_grad_close(label: &str, name: &str, op: &[f32], reference: &[f32]) {
    let d = max_rel(op, reference);
    assert!(
        d < 1e-4,
        "{label}: d/d{name} differs from burn autodiff by {d:e}"
    );
}

/// Asserts that each named gradient exists, is not all zero and is finite.
pub fn assert_trained(label: &str, named: Vec<(&str, Option<Vec<f32>>)>) {
    for (name, g) in named {
        let g = g.unwrap_or_else(|| panic!("{label}: {name}: no gradient"));
        assert!(
            g.iter().any(|v| *v != 0.0) && g.iter().all(|v| v.is_finite()),
            "{label}: {name}: {g:?}"
        );
    }
}

/// The modulator's own parameters among an episode's leaves (ICLR 2019 section 3):
/// `M(t) = tanh(m . y(t) + m_bias)`, the fan-out `fan_w M + fan_b`, the eligibility rate `eta_e`.
#[derive(Clone)]
pub struct ModulatorLeaves {
    /// `m: [N]`.
    pub m: Tensor<1>,
    /// `m_bias: [1]`.
    pub m_bias: Tensor<1>,
    /// `fan_w: [N]`.
    pub fan_w: Tensor<1>,
    /// `fan_b: [N]`.
    pub fan_b: Tensor<1>,
    /// `eta_e: [1]` (0.3).
    pub eta_e: Tensor<1>,
}

/// The leaves of one plastic-RNN episode case (all require their gradient).
#[derive(Clone)]
pub struct EpisodeLeaves {
    /// `w: [N, N]`.
    pub w: Tensor<2>,
    /// `alpha`: the spec's alpha shape.
    pub alpha: Tensor<2>,
    /// The fixed-rate rule's `eta: [1]` (0.2).
    pub eta: Tensor<1>,
    /// The modulator's parameters (a modulated spec only).
    pub modulator: Option<ModulatorLeaves>,
    /// `x: [B, T, N]`.
    pub x: Tensor<3>,
    /// `y0: [B, N]`.
    pub y0: Tensor<2>,
    /// `hebb0: [B, N, N]`.
    pub hebb0: Tensor<3>,
    /// `elig0: [B, N, N]` (a modulated spec only).
    pub elig0: Option<Tensor<3>>,
}

impl EpisodeLeaves {
    /// The leaves of `spec`'s episode and the weights `[B, T, N]` of the loss `sum(ys *
    /// weights)`, drawn in order from one stream seeded with `seed`: `w`, `alpha`, the
    /// modulator's parameters, `x`, `y0`, `hebb0`, `elig0`, the weights.
    pub fn new(spec: &EpisodeSpec, seed: u64, device: &Device) -> (Self, Tensor<3>) {
        let mut r = LeafRng::new(seed, device);
        let (n, b, t) = (spec.neurons, spec.batch, spec.steps);
        let modulated = spec.modulation != Modulation::None;
        let l = EpisodeLeaves {
            w: r.leaf(0.4, [n, n]),
            alpha: r.leaf(0.5, spec.alpha.dims(n)),
            eta: r.scalar(0.2),
            modulator: modulated.then(|| ModulatorLeaves {
                m: r.leaf(1.0, [n]),
                m_bias: r.leaf(0.5, [1]),
                fan_w: r.leaf(1.0, [n]),
                fan_b: r.leaf(0.3, [n]),
                eta_e: r.scalar(0.3),
            }),
            x: r.leaf(1.0, [b, t, n]),
            y0: r.leaf(0.5, [b, n]),
            hebb0: r.leaf(0.1, [b, n, n]),
            elig0: modulated.then(|| r.leaf(0.3, [b, n, n])),
        };
        (l, r.tensor(1.0, [b, t, n]))
    }

    /// The modulator's parameters (panics for an unmodulated spec's leaves).
    pub fn modulator(&self) -> &ModulatorLeaves {
        self.modulator.as_ref().expect("a modulated spec's leaves")
    }

    /// The gradient of each leaf in `grads`, named, in the order of [`EpisodeLeaves::new`]
    /// (`eta` after `alpha`).
    pub fn grads(&self, grads: &Gradients) -> NamedGrads {
        let mut named = named_grads!(grads, self; w, alpha, eta);
        if let Some(md) = &self.modulator {
            named.extend(named_grads!(grads, md; m, m_bias, fan_w, fan_b, eta_e));
        }
        named.extend(named_grads!(grads, self; x, y0, hebb0));
        if let Some(elig0) = &self.elig0 {
            named.push(("elig0", grad(elig0, grads)));
        }
        named
    }
}

/// [`assert_op_matches_reference`] on the episode of `spec` (leaves seeded with 42, the loss
/// `sum(ys * weights)`, with autodiff on the CPU): `op` and `reference` map the spec and the
/// leaves to `ys: [B, T, N]`.
pub fn assert_op_on_episode(
    spec: &EpisodeSpec,
    unused: Unused,
    op: impl Fn(&EpisodeSpec, EpisodeLeaves) -> Tensor<3>,
    reference: impl Fn(&EpisodeSpec, EpisodeLeaves) -> Tensor<3>,
) -> usize {
    let device = Device::flex().autodiff();
    assert_op_matches_reference(&format!("{spec:?}"), unused, |use_op: bool| {
        let (l, weights) = EpisodeLeaves::new(spec, 42, &device);
        let ys = if use_op {
            op(spec, l.clone())
        } else {
            reference(spec, l.clone())
        };
        let grads = (ys.clone() * weights).sum().backward();
        (to_vec(ys), l.grads(&grads))
    })
}

/// Step `s` of the plastic recurrence as the paper writes it (ICML 2018 eq. 1), with burn
/// ops: `y_new = tanh(y (w + alpha Hebb) + x_s)`, `y: [B, N]`, `hebb: [B, N, N]`. Returns
/// `y_new: [B, N]` and the outer product `y y_new^T: [B, N, N]` of the trace rules.
pub fn reference_step(
    l: &EpisodeLeaves,
    y: &Tensor<2>,
    hebb: &Tensor<3>,
    s: usize,
) -> (Tensor<2>, Tensor<3>) {
    let [b, _, n] = l.x.dims();
    let xs = l.x.clone().slice([0..b, s..s + 1, 0..n]).reshape([b, n]);
    // [1, N|1, N|1] broadcasts to [B, N, N].
    let alpha3: Tensor<3> = l.alpha.clone().unsqueeze_dim(0);
    let weights = l.w.clone().unsqueeze_dim::<3>(0) + alpha3 * hebb.clone();
    let pre = y
        .clone()
        .unsqueeze_dim::<3>(1)
        .matmul(weights)
        .reshape([b, n]);
    let y_new = (pre + xs).tanh();
    let outer = y.clone().unsqueeze_dim::<3>(2) * y_new.clone().unsqueeze_dim::<3>(1);
    (y_new, outer)
}

/// Named gradients of a case's leaves (`None`: the leaf got none).
pub type NamedGrads = Vec<(&'static str, Option<Vec<f32>>)>;

/// What the op may report for a leaf whose gradient the reference does not have.
#[derive(Clone, Copy, Debug)]
pub enum Unused {
    /// No gradient either.
    None,
    /// No gradient, or an all-zero one.
    NoneOrZero,
}

/// Runs a case through the op (`run(true)`) and through the plain-burn reference
/// (`run(false)`), each giving its flat outputs and named gradients, and asserts that they
/// agree: outputs to `1e-5` relative, each gradient that both have by [`assert_grad_close`],
/// and the op has every gradient that the reference has. Returns the number of leaves with a
/// reference gradient.
pub fn assert_op_matches_reference(
    label: &str,
    unused: Unused,
    run: impl Fn(bool) -> (Vec<f32>, NamedGrads),
) -> usize {
    let (out_op, g_op) = run(true);
    let (out_ref, g_ref) = run(false);
    assert!(max_rel(&out_op, &out_ref) < 1e-5, "{label}: outputs differ");
    for ((name, a), (_, b)) in g_op.iter().zip(&g_ref) {
        match (a, b, unused) {
            (Some(a), Some(b), _) => assert_grad_close(label, name, a, b),
            (None, None, _) => {}
            // What the recurrence does not use.
            (Some(a), None, Unused::NoneOrZero) => assert!(
                a.iter().all(|v| *v == 0.0),
                "{label}: d/d{name} should be zero"
            ),
            (a, b, _) => panic!(
                "{label}: d/d{name}: op has {}, reference has {}",
                a.is_some(),
                b.is_some()
            ),
        }
    }
    g_ref.iter().filter(|(_, g)| g.is_some()).count()
}

/// A fresh, empty scratch folder for one test, named by the test file, `name` and the process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "plasticity-test-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The options of a fresh run of `updates` updates from `seed` into `out`, with a checkpoint
/// every 10 updates and no time limit.
pub fn options(out: PathBuf, updates: u64, seed: u64) -> RunOptions {
    RunOptions {
        updates,
        seed,
        out,
        resume: false,
        checkpoint_every: 10,
        time_limit: None,
    }
}

/// `opts` continuing the run in its folder from its checkpoint.
pub fn resumed(opts: RunOptions) -> RunOptions {
    RunOptions {
        resume: true,
        ..opts
    }
}

/// Trains `task` as `opts` says, recording an empty configuration and reporting no progress.
pub fn try_train<E: Experiment>(
    task: &E,
    opts: &RunOptions,
    device: &Device,
) -> Result<Summary, TrainError> {
    train::train(task, &serde_json::json!({}), opts, device, &mut |_| {})
}

/// [`try_train`] that must succeed.
pub fn train_ok<E: Experiment>(task: &E, opts: &RunOptions, device: &Device) -> Summary {
    try_train(task, opts, device).unwrap()
}

/// The model of the run in `run` (initialised from seed 0, then loaded from its checkpoint)
/// and the number of updates it was trained for.
pub fn load_trained<E: Experiment>(task: &E, run: &Path, device: &Device) -> (E::Model, u64) {
    let fresh = task.init_model(&mut ChaCha8Rng::seed_from_u64(0), device);
    train::load_model(run, fresh).unwrap()
}

/// The lines of a run's `metrics.csv` (its header first) without the last column (`seconds`,
/// the one that differs between identical runs).
pub fn metrics_without_time(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

/// A change to a configuration (one case of [`assert_rejected`]).
pub type Change<C> = fn(&mut C);

/// Asserts that `new` rejects each changed copy of `base` with a message that starts with the
/// case's field: `cases` are `(change, field)`.
pub fn assert_rejected<C: Clone, T>(
    base: &C,
    new: impl Fn(C) -> Result<T, String>,
    cases: &[(Change<C>, &str)],
) {
    for (change, field) in cases {
        let mut config = base.clone();
        change(&mut config);
        match new(config) {
            Ok(_) => panic!("a configuration with a bad {field} was accepted"),
            Err(err) => assert!(err.starts_with(field), "expected '{field}', got '{err}'"),
        }
    }
}
