//! Finding the CUDA driver (`libcuda`) and NVRTC (`libnvrtc`) before cudarc touches them.
//!
//! cudarc opens its libraries by *name* (`dlopen("libnvrtc.so.13")`, ...; see
//! `cudarc::get_lib_name_candidates`) and panics when none opens. Datacenter images often have
//! NVRTC off the loader path (`/usr/local/cuda-13.0/targets/x86_64-linux/lib`), and a pip
//! install puts it in `site-packages/nvidia/cu13/lib`. So [`load`] searches the places CUDA
//! installs put them, opens the file it finds by its full path and keeps it open: the dynamic
//! loader then answers cudarc's `dlopen` by name with that same library (glibc matches a loaded
//! library's soname). It then asks cudarc whether its library is present, which now opens
//! without searching: what we found is what cudarc uses. When a library is missing, the error
//! names it and every directory looked in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A library the CUDA engine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    /// The CUDA driver, `libcuda.so.1` (installed with the NVIDIA driver).
    Driver,
    /// NVRTC, the CUDA run-time compiler, `libnvrtc.so.13` / `.12` (CUDA toolkit, or
    /// `pip install nvidia-cuda-nvrtc`). Needs no GPU.
    Nvrtc,
}

impl Library {
    /// The file name's stem: `libcuda.so`, `libnvrtc.so`.
    pub fn stem(self) -> &'static str {
        match self {
            Library::Driver => "libcuda.so",
            Library::Nvrtc => "libnvrtc.so",
        }
    }

    /// The file names cudarc (feature `cuda-13000`) can open by name, most wanted first: the
    /// loaded file's soname must be one of them.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Library::Driver => &["libcuda.so.1", "libcuda.so"],
            Library::Nvrtc => &[
                "libnvrtc.so.13",
                "libnvrtc.so.12",
                "libnvrtc.so.11",
                "libnvrtc.so",
            ],
        }
    }

    /// The environment variable that names the file directly.
    pub fn override_var(self) -> &'static str {
        match self {
            Library::Driver => "PLASTICITY_LIBCUDA",
            Library::Nvrtc => "PLASTICITY_LIBNVRTC",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Library::Driver => "libcuda (the CUDA driver, installed with the NVIDIA driver)",
            Library::Nvrtc => {
                "libnvrtc (NVRTC, the CUDA run-time compiler: CUDA toolkit, or `pip install nvidia-cuda-nvrtc`)"
            }
        }
    }
}

/// A library that was not found (or did not open): which, and where we looked.
#[derive(Clone, Debug, PartialEq)]
pub struct Missing {
    /// The library.
    pub library: Library,
    /// The directories searched, in order.
    pub looked_in: Vec<PathBuf>,
    /// Why a file that was found could not be used (empty when none was found).
    pub reason: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lib = self.library;
        if self.reason.is_empty() {
            write!(f, "{} not found", lib.describe())?;
        } else {
            write!(f, "{} could not be used: {}", lib.describe(), self.reason)?;
        }
        let dirs: Vec<String> = self
            .looked_in
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        write!(
            f,
            "; looked for {} in: {}; set {}=/path/to/{} or add its directory to LD_LIBRARY_PATH",
            lib.names().join(", "),
            if dirs.is_empty() {
                "(nowhere)".to_string()
            } else {
                dirs.join(", ")
            },
            lib.override_var(),
            lib.names()[0],
        )
    }
}

impl std::error::Error for Missing {}

/// The directories searched for `lib`, in order, from the environment `env` (a variable's
/// value, `None` when unset) and the loader's configuration `ld_conf_dirs`: first where the
/// dynamic loader itself looks (`LD_LIBRARY_PATH`, `/etc/ld.so.conf` directories, the system
/// directories), so that a library found there is also the one cudarc's `dlopen` by name would
/// find; then, for NVRTC, CUDA installations (`CUDA_HOME`, `CUDA_PATH`, `/usr/local/cuda*`)
/// and pip's `nvidia` packages (`VIRTUAL_ENV`, the user's and the system's site-packages).
/// Directories that do not exist are kept (the error message lists them); `glob` expands the
/// `*` patterns (see [`expand`]).
pub fn search_dirs(
    lib: Library,
    env: &dyn Fn(&str) -> Option<String>,
    ld_conf_dirs: &[PathBuf],
    glob: &dyn Fn(&str) -> Vec<PathBuf>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |d: PathBuf| {
        if !d.as_os_str().is_empty() && !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    if let Some(path) = env("LD_LIBRARY_PATH") {
        path.split(':').map(PathBuf::from).for_each(&mut add);
    }
    ld_conf_dirs.iter().cloned().for_each(&mut add);
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib/x86_64-linux-gnu",
        "/lib64",
        "/lib",
        "/usr/lib/wsl/lib",
    ] {
        add(PathBuf::from(d));
    }
    if lib == Library::Nvrtc {
        let mut roots: Vec<String> = ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"]
            .iter()
            .filter_map(|v| env(v))
            .collect();
        roots.push("/usr/local/cuda".into());
        for root in roots {
            add(Path::new(&root).join("lib64"));
            add(Path::new(&root).join("lib"));
            glob(&format!("{root}/targets/*/lib"))
                .into_iter()
                .for_each(&mut add);
        }
        // Versioned installations, newest first (`glob` sorts them).
        for pattern in ["/usr/local/cuda-*/targets/*/lib", "/usr/local/cuda-*/lib64"] {
            glob(pattern).into_iter().for_each(&mut add);
        }
        add(PathBuf::from("/opt/cuda/lib64"));
        let mut site: Vec<String> = Vec::new();
        if let Some(venv) = env("VIRTUAL_ENV") {
            // A relative one (`VIRTUAL_ENV=target/python-venv`) is below the working directory.
            let venv = std::path::absolute(&venv).map_or(venv, |p| p.display().to_string());
            site.push(format!("{venv}/lib/python3*/site-packages"));
        }
        if let Some(home) = env("HOME") {
            site.push(format!("{home}/.local/lib/python3*/site-packages"));
        }
        site.push("/usr/local/lib/python3*/dist-packages".into());
        site.push("/usr/local/lib/python3*/site-packages".into());
        site.push("/usr/lib/python3/dist-packages".into());
        for s in site {
            for pkg in ["cu13", "cu12", "cuda_nvrtc"] {
                glob(&format!("{s}/nvidia/{pkg}/lib"))
                    .into_iter()
                    .for_each(&mut add);
            }
        }
    }
    dirs
}

/// The paths matching `pattern`, where a `*` stands for any part of one path component;
/// sorted newest version first (descending by name). No match: nothing.
pub fn expand(pattern: &str) -> Vec<PathBuf> {
    if !pattern.starts_with('/') {
        return Vec::new();
    }
    let mut found = vec![PathBuf::from("/")];
    for part in Path::new(pattern).components().skip(1) {
        let part = part.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for dir in &found {
            match part.split_once('*') {
                None => next.push(dir.join(&part)),
                Some((prefix, suffix)) => {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| {
                            n.len() >= prefix.len() + suffix.len()
                                && n.starts_with(prefix)
                                && n.ends_with(suffix)
                        })
                        .collect();
                    names.sort_by(|a, b| b.cmp(a));
                    next.extend(names.into_iter().map(|n| dir.join(n)));
                }
            }
        }
        found = next;
    }
    found.into_iter().filter(|p| p.exists()).collect()
}

/// The directories `/etc/ld.so.conf` names (following `include` lines, one level of `*`).
pub fn ld_conf_dirs(conf: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(conf) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(pattern) = line.strip_prefix("include") {
            for file in expand(pattern.trim()) {
                dirs.extend(ld_conf_dirs(&file));
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
    dirs
}

/// The first of `lib`'s [`Library::names`] present in the first directory that has one.
pub fn find_in(lib: Library, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        lib.names()
            .iter()
            .map(|name| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Where `lib` is: the file named by its [`Library::override_var`], or the search of
/// [`search_dirs`] in this process's environment.
pub fn locate(lib: Library) -> Result<PathBuf, Missing> {
    let env = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    if let Some(file) = env(lib.override_var()) {
        let path = PathBuf::from(&file);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Missing {
                library: lib,
                looked_in: vec![path],
                reason: format!("{}={file} is not a file", lib.override_var()),
            })
        };
    }
    let conf = ld_conf_dirs(Path::new("/etc/ld.so.conf"));
    let dirs = search_dirs(lib, &env, &conf, &expand);
    find_in(lib, &dirs).ok_or(Missing {
        library: lib,
        looked_in: dirs,
        reason: String::new(),
    })
}

/// Opens `path` and keeps it open for the process's life; for NVRTC also its
/// `libnvrtc-builtins` from the same directory (NVRTC opens it by name).
fn open_for_good(lib: Library, path: &Path) -> Result<(), String> {
    let keep = |p: &Path| -> Result<(), String> {
        // SAFETY: loading a CUDA library runs its initialisers, which have no preconditions.
        let handle = unsafe { libloading::Library::new(p) }.map_err(|e| e.to_string())?;
        std::mem::forget(handle);
        Ok(())
    };
    if lib == Library::Nvrtc {
        if let Some(dir) = path.parent() {
            let mut builtins: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("libnvrtc-builtins.so"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            // The most specific name (`.so.13.0`) is the one libnvrtc asks for.
            builtins.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
            if let Some(b) = builtins.first() {
                keep(b)?;
            }
        }
    }
    keep(path)
}

/// Finds `lib`, opens it, and checks that cudarc now opens the same library; once per process
/// (later calls return the first answer). Returns the file's path.
pub fn load(lib: Library) -> Result<PathBuf, Missing> {
    static DRIVER: OnceLock<Result<PathBuf, Missing>> = OnceLock::new();
    static NVRTC: OnceLock<Result<PathBuf, Missing>> = OnceLock::new();
    let cell = match lib {
        Library::Driver => &DRIVER,
        Library::Nvrtc => &NVRTC,
    };
    cell.get_or_init(|| {
        let path = locate(lib)?;
        let unusable = |reason: String| Missing {
            library: lib,
            looked_in: vec![path.clone()],
            reason,
        };
        open_for_good(lib, &path).map_err(|e| unusable(format!("{}: {e}", path.display())))?;
        // SAFETY: `is_culib_present` only tries to open the library by its names.
        let present = unsafe {
            match lib {
                Library::Driver => cudarc::driver::sys::is_culib_present(),
                Library::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
            }
        };
        if present {
            Ok(path)
        } else {
            Err(unusable(format!(
                "{} opened, but its soname is none of {:?}, the names cudarc opens",
                path.display(),
                lib.names()
            )))
        }
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |v| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, s)| s.to_string())
        }
    }

    #[test]
    fn the_loader_path_comes_first_then_cuda_homes_then_pip_packages() {
        let env = env_of(&[
            ("LD_LIBRARY_PATH", "/a:/b::/a"),
            ("CUDA_HOME", "/opt/cuda-x"),
            ("VIRTUAL_ENV", "/venv"),
        ]);
        let glob = |p: &str| vec![PathBuf::from(p.replace('*', "X"))];
        let dirs = search_dirs(Library::Nvrtc, &env, &[PathBuf::from("/conf")], &glob);
        let pos = |d: &str| {
            dirs.iter()
                .position(|x| x == Path::new(d))
                .unwrap_or_else(|| panic!("{d} not searched: {dirs:?}"))
        };
        // Empty and repeated entries are dropped.
        assert_eq!(
            &dirs[..3],
            [Path::new("/a"), Path::new("/b"), Path::new("/conf")]
        );
        assert!(pos("/usr/lib") < pos("/opt/cuda-x/lib64"));
        assert!(pos("/opt/cuda-x/lib64") < pos("/opt/cuda-x/targets/X/lib"));
        assert!(pos("/opt/cuda-x/targets/X/lib") < pos("/usr/local/cuda/lib64"));
        assert!(
            pos("/usr/local/cuda-X/targets/X/lib")
                < pos("/venv/lib/python3X/site-packages/nvidia/cu13/lib")
        );
        pos("/venv/lib/python3X/site-packages/nvidia/cuda_nvrtc/lib");
        // The driver is looked for where the loader looks only.
        let driver = search_dirs(Library::Driver, &env, &[], &glob);
        assert!(driver.iter().all(|d| !d.starts_with("/opt/cuda-x")));
        assert!(driver.contains(&PathBuf::from("/usr/lib64")));
    }

    #[test]
    fn a_relative_virtual_env_is_below_the_working_directory() {
        let env = env_of(&[("VIRTUAL_ENV", "target/venv")]);
        let glob = |p: &str| vec![PathBuf::from(p.replace('*', "X"))];
        let dirs = search_dirs(Library::Nvrtc, &env, &[], &glob);
        let want = std::env::current_dir()
            .unwrap()
            .join("target/venv/lib/python3X/site-packages/nvidia/cu13/lib");
        assert!(dirs.contains(&want), "{want:?} not in {dirs:?}");
    }

    #[test]
    fn find_in_takes_the_first_directory_with_a_name_cudarc_opens() {
        let root =
            std::env::temp_dir().join(format!("plasticity-cuda-find-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // A name cudarc does not open is ignored; within a directory the newest soname wins.
        std::fs::write(a.join("libnvrtc.so.10"), b"").unwrap();
        std::fs::write(b.join("libnvrtc.so"), b"").unwrap();
        std::fs::write(b.join("libnvrtc.so.12"), b"").unwrap();
        let found = find_in(Library::Nvrtc, &[root.join("none"), a.clone(), b.clone()]);
        assert_eq!(found, Some(b.join("libnvrtc.so.12")));
        assert_eq!(find_in(Library::Driver, &[a, b]), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn expand_matches_one_component_and_sorts_newest_first() {
        let root =
            std::env::temp_dir().join(format!("plasticity-cuda-glob-{}", std::process::id()));
        for d in [
            "cuda-12.4/lib64",
            "cuda-13.0/lib64",
            "cuda-13.0/other",
            "cudnn/lib64",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let got = expand(&format!("{}/cuda-*/lib64", root.display()));
        assert_eq!(
            got,
            vec![root.join("cuda-13.0/lib64"), root.join("cuda-12.4/lib64")]
        );
        assert!(expand(&format!("{}/nothing-*/lib64", root.display())).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ld_conf_follows_includes() {
        let root =
            std::env::temp_dir().join(format!("plasticity-cuda-ldconf-{}", std::process::id()));
        std::fs::create_dir_all(root.join("conf.d")).unwrap();
        std::fs::write(
            root.join("ld.so.conf"),
            format!(
                "include {}/conf.d/*.conf\n/usr/first\n# comment\n",
                root.display()
            ),
        )
        .unwrap();
        std::fs::write(root.join("conf.d/cuda.conf"), "/usr/local/cuda/lib64\n").unwrap();
        assert_eq!(
            ld_conf_dirs(&root.join("ld.so.conf")),
            vec![
                PathBuf::from("/usr/local/cuda/lib64"),
                PathBuf::from("/usr/first")
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_library_says_which_and_where_we_looked() {
        let m = Missing {
            library: Library::Nvrtc,
            looked_in: vec![
                PathBuf::from("/usr/lib"),
                PathBuf::from("/usr/local/cuda/lib64"),
            ],
            reason: String::new(),
        };
        let text = m.to_string();
        for part in [
            "libnvrtc",
            "not found",
            "/usr/lib, /usr/local/cuda/lib64",
            "PLASTICITY_LIBNVRTC",
            "libnvrtc.so.13",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
    }
}
