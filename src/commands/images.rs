//! `plasticity images` and `plasticity eval images`: natural-image memorisation and half-image
//! completion (ICML 2018, section 4.2), and the reconstructions picture.

use super::common::{
    check_model, load_run_model, parse_device, saved_run, usage, CommonArgs, Failure,
    ProductThreads,
};
use super::pattern::NetOptions;
use super::pipeline::{eval_run, unit, RunSpec, Session};
use crate::png;
use clap::Args;
use plasticity::data::{cifar, embedded, ImageSet, Split};
use plasticity::tasks::images::{ImageConfig, ImageTask};
use plasticity::tasks::ModelKind;
use plasticity::train::Experiment;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `plasticity images`.
#[derive(Args)]
pub(crate) struct ImagesArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Directory of CIFAR-10 binary files (data_batch_*.bin for training, test_batch.bin for
    /// evaluation) [default: the embedded public-domain/CC0 patches].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    options: NetOptions,
}

/// Training and test images: CIFAR-10 binary files in `data_dir`, or the embedded patches.
pub(crate) fn image_sets(data_dir: Option<&Path>) -> Result<(ImageSet, ImageSet), Failure> {
    match data_dir {
        Some(dir) => Ok((
            cifar::read_dir(dir, Split::Train).map_err(usage)?,
            cifar::read_dir(dir, Split::Test).map_err(usage)?,
        )),
        None => Ok((
            embedded::images(Split::Train),
            embedded::images(Split::Test),
        )),
    }
}

/// The data directory recorded in a run's config.json (`None`: embedded images).
fn saved_data_dir(saved: &serde_json::Value) -> Option<PathBuf> {
    saved["data_dir"].as_str().map(PathBuf::from)
}

/// `plasticity images`.
pub(crate) fn train_images(args: ImagesArgs) -> Result<(), Failure> {
    check_model::<ModelKind>(args.options.model)?;
    let s = Session::start(
        "images",
        &args.common,
        ProductThreads::PerRun,
        &args.options,
        &[("--data-dir", args.data_dir.is_some())],
    )?;
    let config = s.config(ImageConfig::default, &args.options, ImageConfig::validate)?;
    crate::safety::check_memory("images", &config.memory_estimate())?;
    let data_dir = match &s.base {
        Some(b) => saved_data_dir(b),
        None => args.data_dir.clone(),
    };
    let (train_set, test_set) = image_sets(data_dir.as_deref())?;
    let (n_train, n_test) = (train_set.len(), test_set.len());
    let task = ImageTask::new(config.clone(), train_set, test_set).map_err(usage)?;
    let data_json = data_dir.as_ref().map(|d| d.display().to_string());
    let model = serde_json::to_value(config.model).expect("serializes");
    let spec = RunSpec {
        out: s.out(&format!(
            "images-{}-seed{}",
            model.as_str().unwrap_or("model"),
            s.seed
        )),
        total: s.updates(1000),
        unit: unit(config.batch),
        task_json: serde_json::to_value(&config).expect("serializes"),
        extra: json!({
            "steps_per_episode": config.steps(),
            "data_dir": data_json,
            "train_images": n_train,
            "test_images": n_test,
        }),
        curves: &["loss", "erased_loss"],
    };
    s.check_updates_run(&spec.out, spec.total, spec.unit)?;
    let summary = s.train(&task, &spec, |p| {
        format!("loss {:.2}  erased_loss(50) {:.2}", p.loss, p.running[0])
    })?;
    s.finish(&summary, &spec)?;
    let out = &spec.out;
    let device = parse_device(&args.common.device)?;
    let (model, _) = load_run_model(&task, out, &device)?;
    write_reconstructions(&task, &model, &out.join("reconstructions.png"), 6, &device)?;
    let (loss, erased) = (summary.final_loss, summary.final_metrics[0]);
    s.report(
        &summary,
        &spec,
        config.batch,
        &format!("loss {loss:.3}, erased_loss {erased:.3} (training images)"),
    );
    Ok(())
}

/// Draws `rows` test episodes into a PNG: the three shown images, the test image with its
/// erased half (grey), the reconstruction, the truth.
fn write_reconstructions(
    task: &ImageTask,
    model: &<ImageTask as Experiment>::Model,
    path: &Path,
    rows: usize,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2018);
    let mut cells: Vec<Vec<f32>> = Vec::new();
    let columns = task.config.images + 3;
    for _ in 0..rows {
        let (ep, _, recon, _) = task
            .run_episodes(model, Split::Test, 1, &mut rng, device)
            .map_err(usage)?;
        let p = ep.dims[2];
        cells.extend(ep.shown.chunks(p).map(<[f32]>::to_vec));
        cells.push(
            ep.targets
                .iter()
                .zip(&ep.erased)
                .map(|(&v, &e)| if e { 0.0 } else { v })
                .collect(),
        );
        cells.push(recon);
        cells.push(ep.targets.clone());
    }
    let side = task.config.side;
    let (scale, gap) = (3, 4);
    let cell = side * scale;
    let width = columns * cell + (columns + 1) * gap;
    let height = rows * cell + (rows + 1) * gap;
    let mut img = vec![255u8; width * height];
    for (k, pixels) in cells.iter().enumerate() {
        let (r, c) = (k / columns, k % columns);
        let (x0, y0) = (gap + c * (cell + gap), gap + r * (cell + gap));
        for y in 0..cell {
            for x in 0..cell {
                let v = pixels[(y / scale) * side + x / scale].clamp(-1.0, 1.0);
                img[(y0 + y) * width + x0 + x] = ((v + 1.0) * 127.5).round() as u8;
            }
        }
    }
    std::fs::write(path, png::grey(width, height, &img))
        .map_err(|e| Failure(1, format!("{}: {e}", path.display())))
}

/// `plasticity eval images`: the erased-half loss on held-out images.
pub(crate) fn eval_images(
    run: &Path,
    episodes: u64,
    seed: u64,
    json_out: bool,
    data_dir: Option<PathBuf>,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let (saved, config): (_, ImageConfig) = saved_run(run, "images")?;
    let data_dir = data_dir.or_else(|| saved_data_dir(&saved));
    let (train_set, test_set) = image_sets(data_dir.as_deref())?;
    let task = ImageTask::new(config, train_set, test_set)
        .map_err(|e| usage(format!("{}: {e}", run.join("config.json").display())))?;
    let (means, trained, secs) = eval_run(&task, run, episodes, seed, device)?;
    let data = data_dir.map_or("embedded".into(), |d| d.display().to_string());
    if json_out {
        println!(
            "{}",
            json!({"experiment": "images", "episodes": episodes, "loss": means[0], "trained_episodes": trained, "seed": seed, "data": data})
        );
    } else {
        println!(
            "images: held-out erased-half loss {:.3} over {episodes} episodes on test images ({data}; model trained {trained} episodes; {secs:.1} s)",
            means[0],
        );
    }
    Ok(())
}
