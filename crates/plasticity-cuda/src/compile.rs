//! The kernels' CUDA C sources and their compilation to PTX by NVRTC (at run time; NVRTC needs
//! no GPU, so CI compiles every source: `tests/ptx.rs`).

use crate::discovery::{self, Library, Missing};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::fmt;

/// One CUDA C source file of the repository and the kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// File name under `src/kernels/`.
    pub name: &'static str,
    /// The source text.
    pub code: &'static str,
    /// The `extern "C" __global__` functions the engine loads from it.
    pub kernels: &'static [&'static str],
}

/// The plastic episode's kernels (`src/kernels/episode.cu`).
pub const EPISODE: KernelSource = KernelSource {
    name: "episode.cu",
    code: include_str!("kernels/episode.cu"),
    kernels: &[
        "forward_step",
        "modulator",
        "update_trace",
        "pass_a",
        "rule_backprop",
        "pass_b",
        "grad_w",
    ],
};

/// Every kernel source of the repository.
pub const SOURCES: &[KernelSource] = &[EPISODE];

/// Why a source did not compile.
#[derive(Debug)]
pub enum CompileError {
    /// NVRTC was not found.
    Missing(Missing),
    /// NVRTC rejected the source: its log.
    Rejected {
        /// The source's file name.
        source: &'static str,
        /// NVRTC's message.
        log: String,
    },
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Missing(m) => m.fmt(f),
            CompileError::Rejected { source, log } => {
                write!(f, "NVRTC could not compile {source}: {log}")
            }
        }
    }
}

impl std::error::Error for CompileError {}

/// NVRTC's version `(major, minor)` (loads NVRTC first).
pub fn nvrtc_version() -> Result<(i32, i32), Missing> {
    discovery::load(Library::Nvrtc)?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded; nvrtcVersion writes two ints.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if status == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        Ok((major, minor))
    } else {
        Err(Missing {
            library: Library::Nvrtc,
            looked_in: Vec::new(),
            reason: format!("nvrtcVersion failed: {status:?}"),
        })
    }
}

/// The options every kernel is compiled with: no fused multiply-add (the CPU kernels use
/// none, so the GPU rounds as they do), IEEE division and square root, no flush to zero;
/// `arch` is `compute_XY` for a device of compute capability X.Y (`None`: NVRTC's default).
pub fn options(arch: Option<(i32, i32)>) -> Vec<String> {
    let mut opts = vec![
        "--fmad=false".to_string(),
        "--prec-div=true".to_string(),
        "--prec-sqrt=true".to_string(),
        "--ftz=false".to_string(),
    ];
    if let Some((major, minor)) = arch {
        opts.push(format!("--gpu-architecture=compute_{major}{minor}"));
    }
    opts
}

/// Compiles `source` to PTX with NVRTC for `arch` (see [`options`]).
pub fn compile(source: &KernelSource, arch: Option<(i32, i32)>) -> Result<Ptx, CompileError> {
    discovery::load(Library::Nvrtc).map_err(CompileError::Missing)?;
    let opts = CompileOptions {
        options: options(arch),
        name: Some(source.name.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source.code, opts).map_err(|e| {
        let log = match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        };
        CompileError::Rejected {
            source: source.name,
            log,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_the_engine_loads_is_defined_extern_c_in_its_source() {
        for src in SOURCES {
            for k in src.kernels {
                let decl = format!("extern \"C\" __global__ void {k}(");
                assert!(src.code.contains(&decl), "{}: no `{decl}`", src.name);
            }
            assert_eq!(
                src.code.matches("__global__").count(),
                src.kernels.len(),
                "{}: a kernel is defined but not listed (or listed twice)",
                src.name
            );
        }
    }

    #[test]
    fn options_ask_for_ieee_rounding_and_the_device_architecture() {
        let o = options(Some((9, 0)));
        assert!(o.contains(&"--fmad=false".to_string()));
        assert_eq!(o.last().unwrap(), "--gpu-architecture=compute_90");
        assert!(!options(None)
            .iter()
            .any(|o| o.starts_with("--gpu-architecture")));
    }
}
