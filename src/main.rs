//! `plasticity`: the command line of the differentiable-plasticity experiments: the command
//! table and the dispatch. Each experiment is a module of [`commands`]; they share one
//! train / eval / bench pipeline (`commands::pipeline`). Commands and outputs: run directory,
//! `eval --json`, exit codes 0 / 1 / 2 / 130.

mod axis;
mod chart;
mod commands;
mod picture;
mod plot;
mod png;
mod safety;
mod sweep_spec;

use clap::{CommandFactory, Parser, Subcommand};
use commands::common::Failure;
use commands::{bench, check, eval, images, lm, omniglot, pattern, rl, sweep};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "plasticity",
    version,
    about = "Differentiable plasticity (Miconi et al., ICML 2018; ICLR 2019): train, evaluate and benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Binary pattern memorisation and completion (ICML 2018, section 4.1).
    Pattern(Box<pattern::PatternArgs>),
    /// Natural-image memorisation and half-image completion (ICML 2018, section 4.2).
    Images(Box<images::ImagesArgs>),
    /// Grid-maze exploration with neuromodulated plasticity, advantage actor-critic (ICLR 2019,
    /// section 4.2; ICML 2018, section 4.4).
    Maze(Box<rl::MazeArgs>),
    /// Cue-reward association with neuromodulated plasticity, advantage actor-critic (ICLR 2019,
    /// section 4.1).
    CueReward(Box<rl::CueRewardArgs>),
    /// One-shot classification of Omniglot characters with a plastic output layer (ICML 2018,
    /// section 4.3).
    Omniglot(Box<omniglot::OmniglotArgs>),
    /// Word-level language modelling on Penn Treebank with LSTMs, plastic LSTMs and
    /// neuromodulated plastic LSTMs (ICLR 2019, section 4.3).
    Lm(Box<lm::LmArgs>),
    /// Evaluate the last checkpoint of a run on fresh episodes.
    Eval(Box<eval::EvalArgs>),
    /// Time full training steps: updates (forward, backward, optimizer step).
    Bench(Box<bench::BenchArgs>),
    /// Compare the plastic episode on a device (a GPU) with the CPU kernels: outputs and every
    /// gradient, for every trace rule, input mode, alpha shape and clipping setting (on cuda also
    /// every modulation, and the agents' one-step stepper).
    Check {
        /// Device to check: wgpu[:INDEX] or cuda[:INDEX] (or cpu, which compares the CPU with itself)
        /// [default: wgpu in a build with `--features wgpu`].
        #[arg(long)]
        device: Option<String>,
    },
    /// Draw the smoothed learning curves of several runs into one chart (SVG, or PNG).
    Plot(Box<commands::plot::PlotArgs>),
    /// Many seeds and settings as one command: every point of a grid (a TOML or JSON spec) as
    /// a run folder, here (`--jobs` at a time) or as a Slurm job array; resumable. `sweep
    /// status DIR`, `sweep report DIR`.
    Sweep(Box<sweep::SweepArgs>),
}

fn main() -> ExitCode {
    plasticity::runtime::single_malloc_arena();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(msg) = negative_number_message(&e).or_else(|| invalid_value_message(&e)) {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(safety::INTERRUPTED, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(safety::INTERRUPTED)
        }
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Pattern(args) => pattern::train_pattern(*args),
        Command::Images(args) => images::train_images(*args),
        Command::Maze(args) => rl::train_maze(*args),
        Command::CueReward(args) => rl::train_cue_reward(*args),
        Command::Omniglot(args) => {
            args.common.machine.cpu_only("omniglot")?;
            omniglot::train_omniglot(*args)
        }
        Command::Lm(args) => lm::train_lm(*args),
        Command::Eval(args) => eval::eval(*args),
        Command::Bench(args) => bench::bench(*args),
        Command::Check { device } => check::check(device),
        Command::Plot(args) => commands::plot::plot_runs(*args),
        Command::Sweep(args) => sweep::sweep(*args),
    }
}

/// clap reads a negative value such as `--episodes -5` as an unknown option `-5`; say instead
/// that the option's value must be >= 0.
fn negative_number_message(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    arg.parse::<f64>().ok()?;
    let args: Vec<String> = std::env::args().collect();
    let k = args.iter().position(|a| a == arg)?;
    let option = args[..k]
        .last()
        .filter(|o| o.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "the value".into());
    Some(format!(
        "{option} {arg}: must be >= 0 (this option takes no negative value)"
    ))
}

/// Options whose value names a thing: a wrong value is an "unknown model", not an "invalid
/// value".
const NAMED_VALUES: &[&str] = &["model", "preset", "split", "experiment", "workload"];

/// clap's message for a value outside an enum option's choices, in this command's words:
/// `--model: unknown model 'mlp' (expected plastic, rnn or lstm)`, or for a command's subject
/// `bench: unknown workload 'x' (available: pattern (N=1001, T=106, B=1), ...)`.
fn invalid_value_message(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let ContextValue::String(value) = e.get(ContextKind::InvalidValue)? else {
        return None;
    };
    let ContextValue::Strings(valid) = e.get(ContextKind::ValidValue)? else {
        return None;
    };
    let option = arg.split_whitespace().next()?;
    let name = option
        .trim_start_matches("--")
        .trim_matches(['<', '>'])
        .to_lowercase();
    let what = if NAMED_VALUES.contains(&name.as_str()) {
        format!("unknown {name}")
    } else {
        "invalid value".into()
    };
    if option.starts_with("--") {
        let list = match valid.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        return Some(format!("{option}: {what} '{value}' (expected {list})"));
    }
    // A command's subject: name each value with its help.
    let sub = std::env::args().skip(1).find(|a| !a.starts_with('-'))?;
    let cmd = Cli::command();
    let arg = cmd
        .find_subcommand(&sub)?
        .get_arguments()
        .find(|a| a.get_id().as_str() == name)?;
    let list: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|v| match v.get_help() {
            Some(help) => format!("{} ({help})", v.get_name()),
            None => v.get_name().to_string(),
        })
        .collect();
    Some(format!(
        "{sub}: {what} '{value}' (available: {})",
        list.join(", ")
    ))
}
