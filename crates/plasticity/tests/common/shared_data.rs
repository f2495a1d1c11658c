//! Where the tests find the shared copies of the data sets (also used by the command-line
//! tests of the root crate).

use std::path::{Path, PathBuf};

/// The shared copy of the data set `name` (a `shared/data/<name>` folder beside the checkout or
/// above it) when it holds `file`; `None`, saying the test is skipped, when there is none.
pub fn shared_data(name: &str, file: &str) -> Option<PathBuf> {
    let found = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/data").join(name))
        .find(|d| d.join(file).exists());
    if found.is_none() {
        eprintln!("skipped: no shared copy of {name} ({file}) above the checkout");
    }
    found
}
