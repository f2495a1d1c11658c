//! `plasticity images` and `plasticity eval images`: natural-image memorisation and half-image
//! completion (ICML 2018, section 4.2), and the reconstructions picture.

use super::common::{
    check_model, load_run_model, parse_device, run_config_error, saved_data_dir, saved_run, usage,
    CommonArgs, Failure,
};
use super::eval::eval_run;
use super::eval::EvalArgs;
use super::pattern::NetOptions;
use super::pipeline::{unit, Session};
use crate::picture::{self, text_style};
use clap::Args;
use plasticity::data::{cifar, embedded, ImageSet, Split};
use plasticity::tasks::images::{ImageConfig, ImageTask};
use plasticity::train::Experiment;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `plasticity images`.
#[derive(Args)]
pub(crate) struct ImagesArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Directory of CIFAR-10 binary files (data_batch_*.bin for training, test_batch.bin for
    /// evaluation) [default: the embedded public-domain/CC0 patches].
    #[arg(long, value_name = "DIR")]
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

/// `plasticity images`.
pub(crate) fn train_images(args: ImagesArgs) -> Result<(), Failure> {
    check_model(args.options.model, plasticity::tasks::completion::MODELS)?;
    let fixed = [("--data-dir", args.data_dir.is_some())];
    let s = Session::start("images", &args.common, &args.options, &fixed)?;
    let config = s.task_config(ImageConfig::default, &args.options)?;
    let data_dir = match &s.base {
        Some(b) => saved_data_dir(b),
        None => args.data_dir.clone(),
    };
    let (train_set, test_set) = image_sets(data_dir.as_deref())?;
    let (n_train, n_test) = (train_set.len(), test_set.len());
    let task = ImageTask::new(config.clone(), train_set, test_set).map_err(usage)?;
    let data_json = data_dir.as_ref().map(|d| d.display().to_string());
    let spec = s
        .model_run(config.model, &config, &["loss", "erased_loss"])
        .counting(unit(config.batch))
        .recording(json!({
            "steps_per_episode": config.steps(),
            "data_dir": data_json,
            "train_images": n_train,
            "test_images": n_test,
        }));
    s.run(&task, &spec, config.batch)?;
    let out = &spec.out;
    let device = parse_device(&args.common.machine.device)?;
    let (model, updates) = load_run_model(&task, out, &device)?;
    let path = out.join("reconstructions.png");
    write_reconstructions(&task, &model, updates, &path, 6, &device)?;
    Ok(())
}

/// Draws `rows` test episodes into a PNG, one per row, under column headers: the images shown,
/// the test image with its erased half (grey), the network's completion, the original. The
/// title says how many `updates` trained the model.
fn write_reconstructions(
    task: &ImageTask,
    model: &<ImageTask as Experiment>::Model,
    updates: u64,
    path: &Path,
    rows: usize,
    device: &burn::tensor::Device,
) -> Result<(), Failure> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2018);
    let mut cells: Vec<Vec<f32>> = Vec::new();
    let shown = task.config.task.images;
    let columns = shown + 3;
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
    let mut headers: Vec<[String; 2]> = (1..=shown)
        .map(|k| [format!("shown {k}"), String::new()])
        .collect();
    for [a, b] in [
        ["input: half", "erased (grey)"],
        ["network's", "completion"],
        ["original", "(target)"],
    ] {
        headers.push([a.into(), b.into()]);
    }
    let side = task.config.task.side;
    let scale = (96 / side).max(1) as i32;
    let image = side as i32 * scale;
    let cell = image.max(110);
    // A wider gap between the shown images and the test columns.
    let (gap, split, top, title_h) = (8, 24, 44, 40);
    let x_of = |c: usize| gap + c as i32 * (cell + gap) + if c >= shown { split } else { 0 };
    let width = x_of(columns - 1) + cell + gap;
    let height = title_h + top + rows as i32 * (image + gap) + gap;
    let bytes = picture::png(width as u32, height as u32, |root| {
        root.fill(&WHITE)?;
        let centre = |size| text_style(size, BLACK, HPos::Center, VPos::Top);
        let title = format!("images: {rows} test episodes (one per row), after {updates} updates");
        root.draw(&Text::new(title, (width / 2, 8), centre(19.0)))?;
        for (c, [a, b]) in headers.iter().enumerate() {
            let x = x_of(c) + cell / 2;
            root.draw(&Text::new(a.clone(), (x, title_h), centre(14.0)))?;
            root.draw(&Text::new(b.clone(), (x, title_h + 18), centre(14.0)))?;
        }
        for (k, pixels) in cells.iter().enumerate() {
            let (r, c) = (k / columns, k % columns);
            let x = x_of(c) + (cell - image) / 2;
            let y = title_h + top + r as i32 * (image + gap);
            picture::grey_image(root, (x, y), pixels, side, scale)?;
        }
        Ok(())
    })
    .map_err(|e| Failure(1, e))?;
    super::common::write_atomic(path, &bytes)
}

/// `plasticity eval images`: the erased-half loss on held-out images.
pub(crate) fn eval_images(a: &EvalArgs, device: &burn::tensor::Device) -> Result<(), Failure> {
    let (saved, config): (_, ImageConfig) = saved_run(&a.run, "images")?;
    let data_dir = a.data_dir.clone().or_else(|| saved_data_dir(&saved));
    let (train_set, test_set) = image_sets(data_dir.as_deref())?;
    let task = ImageTask::new(config, train_set, test_set).map_err(run_config_error(&a.run))?;
    let batch = task.config.batch;
    let ev = eval_run(&task, a, (100, batch), device)?;
    let data = data_dir.map_or("embedded".into(), |d| d.display().to_string());
    if a.json {
        println!(
            "{}",
            ev.json("images", a.seed, json!({"loss": ev.means[0], "data": data}))
        );
    } else {
        println!(
            "images: held-out erased-half loss {:.3} over {} episodes on test images ({data}; model trained {} updates of {batch} episodes; {:.1} s)",
            ev.means[0], ev.episodes, ev.trained_updates, ev.seconds,
        );
    }
    Ok(())
}
