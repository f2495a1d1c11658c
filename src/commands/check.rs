//! `plasticity check`: compares the plastic episode on a device (a GPU) with the CPU kernels.

use super::common::{label, parse_device, usage, Failure};

/// `plasticity check [--device D]`.
pub(crate) fn check(device: Option<String>) -> Result<(), Failure> {
    match device {
        Some(d) if d.split(':').next() == Some("cuda") => check_cuda(&d),
        Some(d) => check_device(&d),
        None if cfg!(feature = "wgpu") => check_device("wgpu"),
        None if cfg!(feature = "cuda") => check_cuda("cuda"),
        None => Err(usage(
            "check: this binary was built without GPU support, so there is no GPU to check; build it with `cargo build --release --features wgpu` or `--features cuda` (--device cpu compares the CPU kernels with themselves)",
        )),
    }
}

/// `check --device cuda[:INDEX]`: every setting of `plasticity_cuda::check` (every rule,
/// modulation, clip, alpha shape, input mode; outputs and every gradient) on the GPU against
/// the CPU kernels. The "outputs" column also covers the agents' one-step device stepper (8
/// steps of `y` and `M(t)`, and the final traces, against the CPU stepper).
#[cfg(feature = "cuda")]
fn check_cuda(name: &str) -> Result<(), Failure> {
    use plasticity::cuda::check::{compare_all, TOLERANCES};
    parse_device(name)?;
    let engine = plasticity::cuda::selected().expect("parse_device selected the engine");
    let diffs = compare_all(&engine).map_err(|e| Failure(1, format!("check: {e}")))?;
    println!(
        "| rule | modulation | input | alpha | clip | N | B | T | outputs | worst gradient | ok |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = 0;
    for d in &diffs {
        let s = &d.spec;
        let worst = d
            .gradients
            .iter()
            .fold(("", 0.0f32), |w, g| if g.1 > w.1 { *g } else { w });
        failed += usize::from(!d.ok());
        println!(
            "| {} | {} | {} | {:.1e} | {:.1e} ({}) | {} |",
            if s.plastic {
                label(&s.rule)
            } else {
                "none".into()
            },
            modulation_label(s.modulation),
            setting_cells(s),
            d.worst_output(),
            worst.1,
            worst.0,
            if d.ok() { "yes" } else { "NO" }
        );
    }
    let (tol_out, tol_grad) = TOLERANCES;
    let bytes = engine.transferred();
    eprintln!(
        "{name}: {}; bus: {:.1} MB to the device, {:.1} MB back",
        engine.name(),
        bytes.to_device as f64 / 1e6,
        bytes.to_host as f64 / 1e6
    );
    verdict(name, failed, diffs.len(), (tol_out, tol_grad))
}

/// The table cells `input | alpha | clip | N | B | T` of a setting.
fn setting_cells(s: &plasticity::EpisodeSpec) -> String {
    format!(
        "{} | {} | {} | {} | {} | {}",
        label(&s.input),
        label(&s.alpha),
        s.clip.map_or("none".to_string(), |c| c.to_string()),
        s.neurons,
        s.batch,
        s.steps
    )
}

/// Exit 1 when `failed` of `total` settings differ beyond the tolerances `(outputs,
/// gradients)`; otherwise says all agree.
fn verdict(name: &str, failed: usize, total: usize, tol: (f32, f32)) -> Result<(), Failure> {
    let (tol_out, tol_grad) = tol;
    if failed > 0 {
        return Err(Failure(
            1,
            format!("{failed} of {total} settings differ from the CPU beyond the tolerances ({tol_out:e} outputs, {tol_grad:e} gradients)"),
        ));
    }
    eprintln!("{name}: all {total} settings agree with the CPU kernels");
    Ok(())
}

/// `none`, `simple`, `simple fan-out`, `retroactive`, `retroactive fan-out`.
#[cfg(feature = "cuda")]
fn modulation_label(m: plasticity::Modulation) -> String {
    use plasticity::Modulation;
    let (name, fan_out) = match m {
        Modulation::None => return "none".into(),
        Modulation::Simple { fan_out } => ("simple", fan_out),
        Modulation::Retroactive { fan_out } => ("retroactive", fan_out),
    };
    if fan_out {
        format!("{name} fan-out")
    } else {
        name.into()
    }
}

#[cfg(not(feature = "cuda"))]
fn check_cuda(name: &str) -> Result<(), Failure> {
    parse_device(name).map(|_| ())
}

fn check_device(name: &str) -> Result<(), Failure> {
    use plasticity::device_check::{compare_with_cpu, TOLERANCES};
    let device = parse_device(name)?;
    let (tol_out, tol_grad) = TOLERANCES;
    let diffs = compare_with_cpu(&device);
    println!("| rule | input | alpha | clip | N | B | T | outputs | worst gradient | ok |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = 0;
    for d in &diffs {
        let s = &d.spec;
        let worst = d.gradients.iter().copied().fold(0.0, f32::max);
        let ok = d.outputs < tol_out && worst < tol_grad;
        failed += usize::from(!ok);
        println!(
            "| {} | {} | {:.1e} | {worst:.1e} | {} |",
            label(&s.rule),
            setting_cells(s),
            d.outputs,
            if ok { "yes" } else { "NO" }
        );
    }
    verdict(name, failed, diffs.len(), (tol_out, tol_grad))
}
