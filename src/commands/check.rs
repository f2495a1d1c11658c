//! `plasticity check`: compares the plastic episode on a device (a GPU) with the CPU kernels.

use super::common::{label, parse_device, usage, Failure};

/// `plasticity check [--device D]`.
pub(crate) fn check(device: Option<String>) -> Result<(), Failure> {
    match device {
        Some(d) => check_device(&d),
        None if cfg!(feature = "wgpu") => check_device("wgpu"),
        None => Err(usage(
            "check: this binary was built without GPU support, so there is no GPU to check; build it with `cargo build --release --features wgpu` (--device cpu compares the CPU kernels with themselves)",
        )),
    }
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
            "| {} | {} | {} | {} | {} | {} | {} | {:.1e} | {worst:.1e} | {} |",
            label(&s.rule),
            label(&s.input),
            label(&s.alpha),
            s.clip.map_or("none".to_string(), |c| c.to_string()),
            s.neurons,
            s.batch,
            s.steps,
            d.outputs,
            if ok { "yes" } else { "NO" }
        );
    }
    if failed > 0 {
        return Err(Failure(
            1,
            format!("{failed} of {} settings differ from the CPU beyond the tolerances ({tol_out:e} outputs, {tol_grad:e} gradients)", diffs.len()),
        ));
    }
    eprintln!(
        "{name}: all {} settings agree with the CPU kernels",
        diffs.len()
    );
    Ok(())
}
