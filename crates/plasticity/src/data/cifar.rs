//! Reader for the official CIFAR-10 binary format.
//!
//! A file is a sequence of 3073-byte records: one label byte, then 3072 pixel bytes: the
//! 1024 red values, then the 1024 green, then the 1024 blue, each plane row-major 32x32.
//! The grey level of a pixel is `R + G + B` (ICML 2018 section 4.2); each image is then
//! normalised by [`super::normalise`]. Labels are not used.
//!
//! A directory in the official layout holds `data_batch_1.bin` ... `data_batch_5.bin`
//! (training) and `test_batch.bin` (test): [`read_dir`] reads every `data_batch_*.bin` for
//! [`Split::Train`] and `test_batch.bin` for [`Split::Test`], so the two are disjoint.

use super::{ImageSet, Split};
use std::path::{Path, PathBuf};

/// Side of a CIFAR-10 image.
pub const SIDE: usize = 32;
/// Bytes per record: label + 3 planes of 32x32.
pub const RECORD: usize = 1 + 3 * SIDE * SIDE;

/// Decodes the bytes of one file (`name` is used in error messages).
pub fn decode(bytes: &[u8], name: &str) -> Result<ImageSet, String> {
    if bytes.is_empty() {
        return Err(format!(
            "{name}: empty file (expected CIFAR-10 records of {RECORD} bytes)"
        ));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        return Err(format!(
            "{name}: size {} bytes is not a multiple of the CIFAR-10 record size {RECORD} (truncated or not a CIFAR-10 binary file: {} whole records and {} bytes left over)",
            bytes.len(),
            bytes.len() / RECORD,
            bytes.len() % RECORD
        ));
    }
    let plane = SIDE * SIDE;
    let mut grey = Vec::with_capacity(bytes.len() / RECORD * plane);
    for rec in bytes.chunks_exact(RECORD) {
        if rec[0] > 9 {
            return Err(format!(
                "{name}: record {} has label {} (CIFAR-10 labels are 0..9): not a CIFAR-10 binary file?",
                grey.len() / plane,
                rec[0]
            ));
        }
        let (r, rest) = rec[1..].split_at(plane);
        let (g, b) = rest.split_at(plane);
        grey.extend((0..plane).map(|k| r[k] as f32 + g[k] as f32 + b[k] as f32));
    }
    Ok(ImageSet::from_grey(SIDE, grey))
}

/// Reads and concatenates the images of `files`, in order.
pub fn read_files(files: &[PathBuf]) -> Result<ImageSet, String> {
    let mut set = ImageSet {
        side: SIDE,
        pixels: Vec::new(),
    };
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        set.pixels
            .extend(decode(&bytes, &f.display().to_string())?.pixels);
    }
    Ok(set)
}

/// The files of `split` in directory `dir`: `data_batch_*.bin` (sorted) or `test_batch.bin`.
pub fn split_files(dir: &Path, split: Split) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match split {
                Split::Train => name.starts_with("data_batch_") && name.ends_with(".bin"),
                Split::Test => name == "test_batch.bin",
            }
        })
        .collect();
    files.sort();
    if files.is_empty() {
        let want = match split {
            Split::Train => "data_batch_*.bin",
            Split::Test => "test_batch.bin",
        };
        return Err(format!(
            "{}: no {want} (expected the CIFAR-10 binary version: data_batch_*.bin and test_batch.bin)",
            dir.display()
        ));
    }
    Ok(files)
}

/// Reads the `split` images of a CIFAR-10 binary directory.
pub fn read_dir(dir: &Path, split: Split) -> Result<ImageSet, String> {
    read_files(&split_files(dir, split)?)
}
