//! What every command shares: the run options, the error with its exit code, threads and
//! device, reading configurations and runs.

use clap::{Args, ValueEnum};
pub(crate) use plasticity::runtime::ProductThreads;
use plasticity::runtime::{self, ThreadsError};
use plasticity::tasks::Model;
use plasticity::train::{self, Experiment, TrainError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Options every training command shares.
#[derive(Args, Clone)]
pub(crate) struct CommonArgs {
    /// Optimiser updates of the run, each on --batch episodes (--episodes: the old name)
    /// [default: omniglot 100000, the others 1000].
    #[arg(long = "updates", visible_alias = "episodes")]
    pub(crate) updates: Option<u64>,
    /// Seed of the run (initialisation and episodes) [default: 0].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Run directory [default: `runs/<experiment>-<model>-seed<S>`].
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// JSON configuration file (fields of the experiment's configuration); options override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.json is used).
    #[arg(long, value_name = "DIR")]
    pub(crate) resume: Option<PathBuf>,
    /// Updates between checkpoints.
    #[arg(long, default_value_t = 50)]
    pub(crate) checkpoint_every: u64,
    /// Wall-clock budget in minutes (counting time before a resume): the run checkpoints and
    /// stops after the update that reaches it.
    #[arg(long, value_name = "MINUTES")]
    pub(crate) time_limit: Option<f64>,
    #[command(flatten)]
    pub(crate) machine: MachineArgs,
    /// Replace the run in --out if the folder holds one (without it, a new run never
    /// overwrites a run: exit 2).
    #[arg(long)]
    pub(crate) force: bool,
    /// Seconds between progress lines when stderr is not a terminal (a log file, nohup); a
    /// terminal shows a progress bar instead.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub(crate) progress_every: f64,
}
/// Where a command computes, for every command that does: its threads and its device.
#[derive(Args, Clone)]
pub(crate) struct MachineArgs {
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Device: cpu | wgpu[:INDEX] | cuda[:INDEX] (a GPU; needs a build with `--features wgpu` or `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
}

impl MachineArgs {
    /// Sizes the threads for `experiment`, a run's or a benchmark workload's name (see
    /// [`product_threads`]); returns rayon's count.
    pub(crate) fn set_threads(&self, experiment: &str) -> Result<usize, Failure> {
        set_threads(self.threads, product_threads(experiment))
    }

    /// `--device` other than `cpu` is refused: `--device: <what> runs on the CPU`.
    pub(crate) fn cpu_only(&self, what: &str) -> Result<(), Failure> {
        if self.device == "cpu" {
            Ok(())
        } else {
            Err(usage(format!("--device: {what} runs on the CPU")))
        }
    }
}

/// `--model` must be one of the task's models (`allowed`, e.g. `a2c::MODELS`).
pub(crate) fn check_model(model: Option<Model>, allowed: &[Model]) -> Result<(), Failure> {
    match model {
        Some(m) => m.check(allowed).map_err(|e| usage(format!("--model: {e}"))),
        None => Ok(()),
    }
}

/// How messages name `--updates`: as the user spelled it (`--episodes` is its old name), or
/// both names when it was not given.
pub(crate) fn updates_flag() -> &'static str {
    let typed =
        |name: &str| std::env::args().any(|a| a == name || a.starts_with(&format!("{name}=")));
    if typed("--episodes") {
        "--episodes"
    } else if typed("--updates") {
        "--updates"
    } else {
        "--updates (--episodes)"
    }
}

/// An error with its exit code (2: usage, configuration or data; 1: other).
pub(crate) struct Failure(pub(crate) u8, pub(crate) String);

impl From<TrainError> for Failure {
    fn from(e: TrainError) -> Self {
        let code = if matches!(e, TrainError::Usage(_)) {
            2
        } else {
            1
        };
        Failure(code, e.to_string())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename
/// ([`plasticity::train::write_atomic`], as checkpoints are); a failure is exit 1.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    plasticity::train::write_atomic(path, bytes).map_err(|e| Failure(1, e.to_string()))
}

/// A usage error (exit 2).
pub(crate) fn usage(msg: impl Into<String>) -> Failure {
    Failure(2, msg.into())
}

/// The product threads of an experiment or benchmark workload named on the command line:
/// one per product for `omniglot` (its convolutions run their products in parallel), else as
/// many as rayon's.
pub(crate) fn product_threads(experiment: &str) -> ProductThreads {
    if experiment == "omniglot" {
        ProductThreads::One
    } else {
        ProductThreads::PerRun
    }
}

/// Sizes the threads (`--threads`; see [`runtime::set_threads`]); returns rayon's count.
pub(crate) fn set_threads(
    threads: Option<usize>,
    products: ProductThreads,
) -> Result<usize, Failure> {
    runtime::set_threads(threads, products).map_err(|e| match e {
        ThreadsError::TooMany { asked, .. } => usage(format!("--threads {asked}: {e}")),
        ThreadsError::Zero => usage(format!("--threads: {e}")),
        ThreadsError::Pool(_) => Failure(1, e.to_string()),
    })
}

/// The autodiff device named by `--device`: `cpu` (burn's Flex backend with the fused
/// kernels), `wgpu[:INDEX]` (a GPU through burn's wgpu / CubeCL runtime: the default adapter,
/// or the INDEX-th discrete GPU; needs a build with `--features wgpu`) or `cuda[:INDEX]` (the
/// CPU backend with every plastic episode on CUDA device INDEX; `--features cuda`).
pub(crate) fn parse_device(name: &str) -> Result<burn::tensor::Device, Failure> {
    let (kind, index) = match name.split_once(':') {
        Some((kind, i)) => (
            kind,
            Some(i.parse::<usize>().map_err(|_| {
                usage(format!(
                    "--device {name}: the index after ':' must be a number"
                ))
            })?),
        ),
        None => (name, None),
    };
    match kind {
        "cpu" => Ok(burn::tensor::Device::flex().autodiff()),
        #[cfg(feature = "wgpu")]
        "wgpu" | "gpu" => {
            use burn::tensor::DeviceKind;
            let kind = index.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu);
            let device = burn::tensor::Device::wgpu(kind).autodiff();
            probe_device(&device).map_err(|e| {
                usage(format!(
                    "--device {name}: the GPU could not be used ({e}); is a Vulkan, Metal or DX12 driver installed?"
                ))
            })?;
            Ok(device)
        }
        #[cfg(not(feature = "wgpu"))]
        "wgpu" | "gpu" => {
            let _ = index;
            Err(usage(format!(
                "--device {name}: this binary was built without GPU support; build it with `cargo build --release --features wgpu`"
            )))
        }
        "cuda" => select_cuda(name, index.unwrap_or(0)),
        _ => Err(usage(format!(
            "--device {name}: unknown device (expected cpu, wgpu[:INDEX] or cuda[:INDEX])"
        ))),
    }
}

/// `--device cuda[:INDEX]`: runs every plastic episode on CUDA device INDEX (default 0), the
/// tensors around it on the CPU backend; a missing driver or NVRTC, or no such device, is a
/// usage error that says what was looked for.
#[cfg(feature = "cuda")]
fn select_cuda(name: &str, index: usize) -> Result<burn::tensor::Device, Failure> {
    let engine =
        plasticity::cuda::select(index).map_err(|e| usage(format!("--device {name}: {e}")))?;
    eprintln!("--device {name}: {}", engine.name());
    Ok(burn::tensor::Device::flex().autodiff())
}

#[cfg(not(feature = "cuda"))]
fn select_cuda(name: &str, _index: usize) -> Result<burn::tensor::Device, Failure> {
    Err(usage(format!(
        "--device {name}: this binary was built without --features cuda; build it with `cargo build --release --features cuda`"
    )))
}

/// Runs one tiny operation on `device`. burn's wgpu runtime panics (on its own thread, then on
/// ours) when no adapter is found: turn that into an error, without the panic messages.
#[cfg(feature = "wgpu")]
fn probe_device(device: &burn::tensor::Device) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| {
        burn::tensor::Tensor::<1>::zeros([1], device)
            .into_data()
            .try_to_vec::<f32>()
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    });
    std::panic::set_hook(hook);
    match result {
        Ok(r) => r,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the device failed to start".into())),
    }
}
/// A setting's name for people: its lower-case, hyphenated Debug name (`PerConnection` ->
/// `per-connection`), as the options and config.json spell them.
pub(crate) fn label<T: std::fmt::Debug>(v: &T) -> String {
    let mut out = String::new();
    for (k, ch) in format!("{v:?}").chars().enumerate() {
        if ch.is_uppercase() {
            if k > 0 {
                out.push('-');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Reads a JSON file; a missing file or invalid JSON is a usage error naming the file.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| usage(format!("{}: invalid JSON: {e}", path.display())))?;
    // Runs of the language model written before `modul` was a model of its own.
    plasticity::tasks::lm::upgrade_legacy_config(&mut json);
    if let Some(task) = json.get_mut("task") {
        plasticity::tasks::lm::upgrade_legacy_config(task);
    }
    Ok(json)
}

/// The name of an enum option's value as users spell it (`cue-reward`).
pub(crate) fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// `--rule`: the trace rule, passed to the configuration as `plasticity::TraceRule` by its
/// serde name (the kernels crate, which defines it, does not depend on clap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Rule {
    /// Decaying Hebb (ICML 2018 eq. 2).
    Hebb,
    /// Oja's rule (eq. 3).
    Oja,
}

/// `--alpha`: the shape of the plasticity coefficients, passed as `plasticity::AlphaShape` by
/// its serde name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Alpha {
    /// One coefficient per connection.
    PerConnection,
    /// One coefficient per postsynaptic neuron.
    PerNeuron,
    /// One coefficient for the whole network.
    Scalar,
}

/// Overrides the fields of configuration `c` with those of the JSON object in `path` (a
/// run's config.json, which holds the configuration under "task", is accepted as it is).
pub(crate) fn merge_config_file<T>(c: T, path: &Path) -> Result<T, Failure>
where
    T: Serialize + DeserializeOwned,
{
    let mut file = read_json(path)?;
    if let Some(task) = file.get("task").filter(|t| t.is_object()) {
        file = task.clone();
    }
    let obj = file
        .as_object()
        .ok_or_else(|| usage(format!("{}: expected a JSON object", path.display())))?;
    super::overlay::merge(c, obj, &path.display().to_string())
}

/// Builds the model of `task` and loads the last checkpoint of `run` into it.
pub(crate) fn load_run_model<E: Experiment>(
    task: &E,
    run: &Path,
    device: &burn::tensor::Device,
) -> Result<(E::Model, u64), Failure> {
    let mut init_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let model = task.init_model(&mut init_rng, device);
    Ok(train::load_model(run, model)?)
}

/// A run's config.json and its "task" configuration.
pub(crate) fn saved_run<C: DeserializeOwned>(
    run: &Path,
    experiment: &str,
) -> Result<(serde_json::Value, C), Failure> {
    let path = run.join("config.json");
    let saved = read_json(&path)?;
    check_experiment(&saved, &path, experiment)?;
    let config = serde_json::from_value(saved["task"].clone())
        .map_err(|e| usage(format!("{}: task: {e}", path.display())))?;
    Ok((saved, config))
}

/// A usage error about a run's config.json (its path, then `message`).
pub(crate) fn run_config_error(run: &Path) -> impl Fn(String) -> Failure + '_ {
    move |message| usage(format!("{}: {message}", run.join("config.json").display()))
}

/// The data directory recorded in a run's config.json (`None`: the run read no files).
pub(crate) fn saved_data_dir(saved: &serde_json::Value) -> Option<PathBuf> {
    saved["data_dir"].as_str().map(PathBuf::from)
}

/// The data folder: `given` (`--data-dir`), else the one recorded in `saved` (a run's
/// config.json), else `default`.
pub(crate) fn data_dir_or(
    given: Option<&PathBuf>,
    saved: Option<&serde_json::Value>,
    default: &str,
) -> PathBuf {
    given
        .cloned()
        .or_else(|| saved.and_then(saved_data_dir))
        .unwrap_or_else(|| PathBuf::from(default))
}

/// A run's config.json must be one of `experiment` (not a maze run given to `eval images`).
pub(crate) fn check_experiment(
    saved: &serde_json::Value,
    path: &Path,
    experiment: &str,
) -> Result<(), Failure> {
    match saved["experiment"].as_str() {
        Some(e) if e != experiment => Err(usage(format!(
            "{}: this is a run of experiment {e}, not {experiment} (use `plasticity {e}` or `plasticity eval {e}`)",
            path.display()
        ))),
        _ => Ok(()),
    }
}
