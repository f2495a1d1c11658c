//! Omniglot (Lake et al., 2015) in its official distribution forms.
//!
//! A set is read from `<dir>/images_background/` (or `images_evaluation/`) when that folder
//! exists, otherwise from `<dir>/images_background.zip` (`images_evaluation.zip`). Both have
//! the layout `images_<set>/<Alphabet>/characterNN/<id>_<drawer>.png`: 105x105 1-bit PNGs,
//! ink black (0) on white (1), 20 drawings per character.
//!
//! Each drawing is decoded once, inverted (ink = 1, paper = 0), resized to `side x side`
//! (31 x 31 for the ICML 2018 experiment, section 4.3) by [`resize_bilinear`] and kept in
//! memory as `u8` (ink `0..=255`): the full dataset (32,460 drawings) takes 31 MB and decodes
//! in a few seconds (rayon, one PNG per task).
//!
//! Characters are ordered by set (background, then evaluation), alphabet name and character
//! folder (`character01`, `character02`, ... by number), drawings by file name, so a split
//! defined on character indices (see `tasks::omniglot`) does not depend on the order of the
//! files in a zip or a directory listing.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// One of the two official sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OmniglotSet {
    /// `images_background`: 30 alphabets, 964 characters.
    Background,
    /// `images_evaluation`: 20 alphabets, 659 characters.
    Evaluation,
}

impl OmniglotSet {
    /// Folder name (and zip name without `.zip`) of the set.
    pub fn dir_name(self) -> &'static str {
        match self {
            OmniglotSet::Background => "images_background",
            OmniglotSet::Evaluation => "images_evaluation",
        }
    }
}

/// One drawing, resized: `pixels: [side * side]` row-major, ink intensity `0..=255`.
#[derive(Clone, Debug)]
pub struct Drawing {
    /// File name (`<id>_<drawer>.png`).
    pub file: String,
    /// Ink intensity, row-major `[side, side]` (0: paper, 255: full ink).
    pub pixels: Vec<u8>,
}

/// One character (class): its drawings.
#[derive(Clone, Debug)]
pub struct Character {
    /// Set it belongs to.
    pub set: OmniglotSet,
    /// Alphabet folder name.
    pub alphabet: String,
    /// Character folder name (`characterNN`).
    pub name: String,
    /// Its drawings, ordered by file name.
    pub drawings: Vec<Drawing>,
}

/// The characters of one or more sets, decoded and resized.
#[derive(Clone, Debug)]
pub struct Omniglot {
    /// Side of the (square) resized drawings.
    pub side: usize,
    /// Characters, ordered by set, alphabet and character number.
    pub characters: Vec<Character>,
}

impl Omniglot {
    /// Reads `sets` from `dir` (extracted folders or zips), resizing every drawing to
    /// `side x side`. Errors name the file or folder at fault.
    pub fn load(dir: &Path, sets: &[OmniglotSet], side: usize) -> Result<Self, String> {
        if side == 0 {
            return Err("omniglot: image side must be positive".into());
        }
        if !dir.is_dir() {
            return Err(format!(
                "{}: Omniglot data folder not found (expected images_background.zip / images_evaluation.zip or their extracted folders)",
                dir.display()
            ));
        }
        let mut characters = Vec::new();
        for &set in sets {
            characters.extend(load_set(dir, set, side)?);
        }
        Ok(Omniglot { side, characters })
    }

    /// Number of drawings in all characters.
    pub fn drawings(&self) -> usize {
        self.characters.iter().map(|c| c.drawings.len()).sum()
    }
}

/// A character's raw files before decoding: where it is (for messages) and its PNG bytes.
struct RawCharacter {
    alphabet: String,
    name: String,
    location: String,
    files: Vec<(String, Vec<u8>)>,
}

/// Sort key of a character folder: `characterNN` by number, then by name.
fn character_key(name: &str) -> (u64, String) {
    let num = name
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse::<u64>()
        .unwrap_or(u64::MAX);
    (num, name.to_string())
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with("__MACOSX")
}

fn is_png(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".png")
}

/// Reads one set from its folder or, when absent, its zip.
fn load_set(dir: &Path, set: OmniglotSet, side: usize) -> Result<Vec<Character>, String> {
    let folder = dir.join(set.dir_name());
    let zip = dir.join(format!("{}.zip", set.dir_name()));
    let mut raw = if folder.is_dir() {
        read_folder(&folder)?
    } else if zip.is_file() {
        read_zip(&zip, set)?
    } else {
        return Err(format!(
            "{}: missing Omniglot set: neither the folder {}/ nor {} exists",
            dir.display(),
            folder.display(),
            zip.display()
        ));
    };
    if raw.is_empty() {
        return Err(format!(
            "{}: no characters found (expected <Alphabet>/characterNN/*.png)",
            if folder.is_dir() { &folder } else { &zip }.display()
        ));
    }
    raw.sort_by(|a, b| {
        (&a.alphabet, character_key(&a.name)).cmp(&(&b.alphabet, character_key(&b.name)))
    });
    for c in &mut raw {
        if c.files.is_empty() {
            return Err(format!("{}: empty character (no PNG drawings)", c.location));
        }
        c.files.sort_by(|a, b| a.0.cmp(&b.0));
    }
    raw.into_par_iter()
        .map(|c| {
            let drawings = c
                .files
                .into_par_iter()
                .map(|(file, bytes)| {
                    let what = format!("{}/{file}", c.location);
                    let (ink, w, h) = decode_png(&bytes, &what)?;
                    let small = resize_bilinear(&ink, w, h, side);
                    let pixels = small
                        .iter()
                        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                        .collect();
                    Ok(Drawing { file, pixels })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Character {
                set,
                alphabet: c.alphabet,
                name: c.name,
                drawings,
            })
        })
        .collect()
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !hidden(&name) {
            out.push((name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `<folder>/<Alphabet>/characterNN/*.png`; files other than PNGs are ignored.
fn read_folder(folder: &Path) -> Result<Vec<RawCharacter>, String> {
    let mut chars = Vec::new();
    for (alphabet, apath) in sorted_entries(folder)? {
        if !apath.is_dir() {
            continue;
        }
        for (name, cpath) in sorted_entries(&apath)? {
            if !cpath.is_dir() {
                continue;
            }
            let files: Vec<(String, PathBuf)> = sorted_entries(&cpath)?
                .into_iter()
                .filter(|(n, p)| is_png(n) && p.is_file())
                .collect();
            chars.push((alphabet.clone(), name, cpath, files));
        }
    }
    chars
        .into_par_iter()
        .map(|(alphabet, name, cpath, files)| {
            let files = files
                .into_iter()
                .map(|(n, p)| {
                    fs::read(&p)
                        .map(|b| (n, b))
                        .map_err(|e| format!("{}: {e}", p.display()))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(RawCharacter {
                alphabet,
                name,
                location: cpath.display().to_string(),
                files,
            })
        })
        .collect()
}

/// Entries `[images_<set>/]<Alphabet>/characterNN/<file>.png` of a zip.
fn read_zip(path: &Path, set: OmniglotSet) -> Result<Vec<RawCharacter>, String> {
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{}: not a readable zip archive: {e}", path.display()))?;
    let mut chars: std::collections::BTreeMap<(String, String), RawCharacter> = Default::default();
    for k in 0..archive.len() {
        let mut entry = archive
            .by_index(k)
            .map_err(|e| format!("{}: entry {k}: {e}", path.display()))?;
        let full = entry.name().to_string();
        let mut parts: Vec<&str> = full.split('/').filter(|p| !p.is_empty()).collect();
        if parts.iter().any(|p| hidden(p)) {
            continue;
        }
        if parts.first() == Some(&set.dir_name()) {
            parts.remove(0);
        }
        let is_dir = entry.is_dir();
        let (alphabet, name) = match (parts.as_slice(), is_dir) {
            ([a, c], true) | ([a, c, _], false) => (a.to_string(), c.to_string()),
            _ => continue,
        };
        let c = chars
            .entry((alphabet.clone(), name.clone()))
            .or_insert_with(|| RawCharacter {
                location: format!("{}:{}/{alphabet}/{name}", path.display(), set.dir_name()),
                alphabet,
                name,
                files: Vec::new(),
            });
        if !is_dir && is_png(parts[2]) {
            // The declared size only sizes the buffer up to the limit (a corrupt header may
            // declare anything); reading stops one byte past the limit (a zip bomb).
            let mut bytes = Vec::with_capacity(entry.size().min(1 << 20) as usize);
            (&mut entry)
                .take(MAX_ZIP_ENTRY_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {full}: {e}", path.display()))?;
            if bytes.len() as u64 > MAX_ZIP_ENTRY_BYTES {
                return Err(format!(
                    "{}: {full}: decompresses to more than {MAX_ZIP_ENTRY_BYTES} bytes: not an Omniglot drawing",
                    path.display()
                ));
            }
            c.files.push((parts[2].to_string(), bytes));
        }
    }
    Ok(chars.into_values().collect())
}

/// Most pixels a drawing may have (Omniglot's are 105 x 105): a PNG whose header declares more
/// is an error, not an allocation of that size.
pub const MAX_PNG_PIXELS: u64 = 1 << 24;

/// Most bytes a PNG file inside an Omniglot zip may decompress to (a drawing is about 300).
pub const MAX_ZIP_ENTRY_BYTES: u64 = 1 << 26;

/// Decodes a PNG (any colour type and bit depth) into ink intensity `[h * w]` in `[0, 1]`
/// (1 - luminance: black ink = 1, white paper = 0). Returns `(ink, width, height)`.
/// `what` names the file in error messages.
pub fn decode_png(bytes: &[u8], what: &str) -> Result<(Vec<f32>, usize, usize), String> {
    let bad = |e: &dyn std::fmt::Display| format!("{what}: corrupt or unreadable PNG: {e}");
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w as u64 * h as u64 > MAX_PNG_PIXELS {
        return Err(bad(&format!(
            "image of {w} x {h} pixels, more than a drawing can have ({MAX_PNG_PIXELS})"
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad(&"image too large"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
    let (w, h) = (info.width as usize, info.height as usize);
    if w == 0 || h == 0 {
        return Err(bad(&"empty image"));
    }
    let channels = info.color_type.samples();
    let mut ink = Vec::with_capacity(w * h);
    for row in buf.chunks(info.line_size).take(h) {
        for px in row[..w * channels].chunks(channels) {
            let lum = match info.color_type {
                png::ColorType::Rgb | png::ColorType::Rgba => {
                    (px[0] as f32 + px[1] as f32 + px[2] as f32) / 3.0
                }
                _ => px[0] as f32,
            };
            ink.push(1.0 - lum / 255.0);
        }
    }
    Ok((ink, w, h))
}

/// Bilinear resize of `src: [h, w]` to `[side, side]`, without anti-aliasing (ICML 2018,
/// section 4.3: "resized to 31x31 by bilinear interpolation, without anti-aliasing").
///
/// Sampling convention (pixel centres, as OpenCV `INTER_LINEAR` and PyTorch
/// `interpolate(mode="bilinear", align_corners=False)`): output pixel `(r, c)` samples the
/// source at `y = (r + 0.5) h / side - 0.5`, `x = (c + 0.5) w / side - 0.5`, clamped to
/// `[0, h - 1]` and `[0, w - 1]`, interpolating linearly between the 2 x 2 nearest source
/// pixels. No low-pass filter: each output reads only those 4 pixels, so thin strokes can
/// fall between samples (what "without anti-aliasing" means). The mapping is symmetric
/// under `r -> side - 1 - r`, so resizing commutes with 90-degree rotations.
pub fn resize_bilinear(src: &[f32], w: usize, h: usize, side: usize) -> Vec<f32> {
    let axis = |n: usize, k: usize| {
        let s = ((k as f64 + 0.5) * n as f64 / side as f64 - 0.5).clamp(0.0, (n - 1) as f64);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, (s - i0 as f64) as f32)
    };
    let mut out = Vec::with_capacity(side * side);
    for r in 0..side {
        let (y0, y1, fy) = axis(h, r);
        for c in 0..side {
            let (x0, x1, fx) = axis(w, c);
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Rotates a square image `[side, side]` by `quarter_turns x 90` degrees counter-clockwise.
pub fn rotate90<T: Copy>(img: &[T], side: usize, quarter_turns: u8) -> Vec<T> {
    let mut out = img.to_vec();
    for _ in 0..quarter_turns % 4 {
        let prev = out.clone();
        for r in 0..side {
            for c in 0..side {
                // Counter-clockwise: new (r, c) takes old (c, side - 1 - r).
                out[r * side + c] = prev[c * side + (side - 1 - r)];
            }
        }
    }
    out
}
