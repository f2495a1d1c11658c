//! The fuzz targets' bodies (`fuzz/src/lib.rs`) on stable: every file of `fuzz/regressions/`
//! (inputs that once crashed a reader, kept so that they never do again) and of `fuzz/seeds/`,
//! then a short deterministic mutation run of each seed (truncations, byte flips, insertions),
//! so that CI exercises every reader a little; the long coverage-guided runs are
//! `scripts/fuzz.sh` (cargo-fuzz, nightly).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod bodies;

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn run(target: &str, body: fn(&[u8]), input: &[u8], what: &str) {
    let result = std::panic::catch_unwind(|| body(input));
    bodies::remove_scratch();
    if result.is_err() {
        panic!("fuzz target {target} panicked on {what}");
    }
}

#[test]
fn every_regression_and_seed_input_is_read_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, body) in bodies::TARGETS {
        let seeds = files(&root.join("seeds").join(target));
        assert!(!seeds.is_empty(), "no seed for fuzz target {target}");
        for path in seeds
            .iter()
            .chain(&files(&root.join("regressions").join(target)))
        {
            let bytes = std::fs::read(path).unwrap();
            run(target, *body, &bytes, &path.display().to_string());
        }
    }
}

#[test]
fn mutated_seeds_are_read_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(26);
    for (target, body) in bodies::TARGETS {
        // The checkpoint target builds a model per input: fewer of them.
        let rounds = if *target == "checkpoint" { 40 } else { 150 };
        for path in files(&root.join(target)) {
            let seed = std::fs::read(&path).unwrap();
            for round in 0..rounds {
                let mut m = seed.clone();
                for _ in 0..rng.gen_range(1..4) {
                    match rng.gen_range(0..4) {
                        0 if !m.is_empty() => m.truncate(rng.gen_range(0..m.len())),
                        1 if !m.is_empty() => {
                            let k = rng.gen_range(0..m.len());
                            m[k] ^= 1 << rng.gen_range(0..8);
                        }
                        2 if !m.is_empty() => {
                            let k = rng.gen_range(0..m.len());
                            m[k] = [0, 0xFF, b'"', b'-', b'9', b'e'][rng.gen_range(0..6)];
                        }
                        _ => {
                            let k = rng.gen_range(0..=m.len());
                            m.insert(k, rng.gen());
                        }
                    }
                }
                run(
                    target,
                    *body,
                    &m,
                    &format!("mutation {round} of {}", path.display()),
                );
            }
        }
    }
}
