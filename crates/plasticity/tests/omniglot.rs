//! Omniglot: the reader (generated folders and zips, errors, the shared data set), resizing
//! and rotation, the plastic dense layer (golden values, finite-difference gradients),
//! episodes, splits, learning and determinism.

use burn::tensor::{Device, Tensor, TensorData};
use plasticity::data::omniglot::{
    decode_png, resize_bilinear, rotate90, Character, Drawing, Omniglot, OmniglotSet,
};
use plasticity::dense::{DenseActivation, PlasticDenseConfig};
use plasticity::tasks::omniglot::{
    generate, softmax_bce, split_classes, translate, wilson_interval, ClassSet, EpisodeShape,
    OmniglotConfig, OmniglotTask, Split,
};
use plasticity::tensors::to_vec;
use plasticity::train::Experiment;
use plasticity::TraceRule;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

mod common;
use common::{
    assert_rejected, load_trained, metrics_without_time, options, resumed, shared_data, temp_dir,
    train_ok,
};

// ---------------------------------------------------------------- reader

/// A 1-bit PNG `w x h`, white paper with black ink where `ink(x, y)`.
fn png_1bit(w: u32, h: u32, ink: impl Fn(u32, u32) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut writer = enc.write_header().unwrap();
        let stride = w.div_ceil(8) as usize;
        let mut data = vec![0u8; stride * h as usize];
        for y in 0..h {
            for x in 0..w {
                if !ink(x, y) {
                    data[y as usize * stride + x as usize / 8] |= 0x80 >> (x % 8);
                }
            }
        }
        writer.write_image_data(&data).unwrap();
    }
    out
}

/// Files of a small set: (relative path, bytes). Two alphabets, 3 characters, 3 drawings each;
/// drawing `d` of character `c` inks column `c + d` of a 9x9 image.
fn small_set_files(set: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let chars = [
        ("Beta", "character02"),
        ("Alpha", "character10"),
        ("Alpha", "character2"),
    ];
    for (c, (alphabet, name)) in chars.iter().enumerate() {
        for d in 0..3u32 {
            let col = c as u32 + d;
            files.push((
                format!("{set}/{alphabet}/{name}/{:04}_{:02}.png", c + 1, d + 1),
                png_1bit(9, 9, |x, _| x == col),
            ));
        }
    }
    files
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, bytes) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn write_zip(path: &Path, files: &[(String, Vec<u8>)], dirs: &[&str]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for d in dirs {
        z.add_directory(*d, opts).unwrap();
    }
    for (rel, bytes) in files {
        z.start_file(rel.as_str(), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// Set, alphabet, character, file names and pixels of each character.
type CharacterSummary = (OmniglotSet, String, String, Vec<String>, Vec<Vec<u8>>);

fn summary(o: &Omniglot) -> Vec<CharacterSummary> {
    o.characters
        .iter()
        .map(|c| {
            (
                c.set,
                c.alphabet.clone(),
                c.name.clone(),
                c.drawings.iter().map(|d| d.file.clone()).collect(),
                c.drawings.iter().map(|d| d.pixels.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn folders_and_zips_read_the_same_characters_in_a_fixed_order() {
    let dir = temp_dir("reader");
    let tree = dir.join("tree");
    let zips = dir.join("zips");
    std::fs::create_dir_all(&zips).unwrap();
    let bg = small_set_files("images_background");
    let ev = small_set_files("images_evaluation");
    write_tree(&tree, &bg);
    write_tree(&tree, &ev);
    // Zip entries in reverse order: the reader sorts.
    let mut bg_rev = bg.clone();
    bg_rev.reverse();
    write_zip(&zips.join("images_background.zip"), &bg_rev, &[]);
    write_zip(&zips.join("images_evaluation.zip"), &ev, &[]);
    let sets = [OmniglotSet::Background, OmniglotSet::Evaluation];
    let from_tree = Omniglot::load(&tree, &sets, 9).unwrap();
    let from_zip = Omniglot::load(&zips, &sets, 9).unwrap();
    assert_eq!(summary(&from_tree), summary(&from_zip));
    assert_eq!(from_tree.characters.len(), 6);
    assert_eq!(from_tree.drawings(), 18);
    // Order: set, alphabet, character number (2 before 10).
    let names: Vec<String> = from_tree.characters[..3]
        .iter()
        .map(|c| format!("{}/{}", c.alphabet, c.name))
        .collect();
    assert_eq!(
        names,
        ["Alpha/character2", "Alpha/character10", "Beta/character02"]
    );
    assert_eq!(from_tree.characters[3].set, OmniglotSet::Evaluation);
    // Same size: resizing is the identity, ink (black) becomes 255 in column c + d.
    let ch = &from_tree.characters[2]; // Beta/character02 = index 0 of `chars`: column d
    for (d, drawing) in ch.drawings.iter().enumerate() {
        for y in 0..9 {
            for x in 0..9 {
                let want = if x == d { 255 } else { 0 };
                assert_eq!(drawing.pixels[y * 9 + x], want, "drawing {d} ({x},{y})");
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_data_gives_errors_naming_the_path() {
    let dir = temp_dir("bad");
    let sets = [OmniglotSet::Background];
    // Missing data folder.
    let err = Omniglot::load(&dir.join("nope"), &sets, 9).unwrap_err();
    assert!(err.contains("nope") && err.contains("not found"), "{err}");
    // Folder without the set.
    let err = Omniglot::load(&dir, &sets, 9).unwrap_err();
    assert!(err.contains("images_background.zip"), "{err}");
    // Corrupt PNG in a folder.
    let mut files = small_set_files("images_background");
    files[4].1.truncate(30);
    let bad_name = files[4].0.clone();
    write_tree(&dir.join("corrupt"), &files);
    let err = Omniglot::load(&dir.join("corrupt"), &sets, 9).unwrap_err();
    assert!(
        err.contains(bad_name.rsplit('/').next().unwrap()) && err.contains("corrupt"),
        "{err}"
    );
    // ... and in a zip.
    std::fs::create_dir_all(dir.join("corruptzip")).unwrap();
    write_zip(&dir.join("corruptzip/images_background.zip"), &files, &[]);
    let err = Omniglot::load(&dir.join("corruptzip"), &sets, 9).unwrap_err();
    assert!(
        err.contains("images_background.zip") && err.contains("corrupt"),
        "{err}"
    );
    // Empty character folder.
    let files = small_set_files("images_background");
    write_tree(&dir.join("empty"), &files);
    std::fs::create_dir_all(dir.join("empty/images_background/Alpha/character33")).unwrap();
    let err = Omniglot::load(&dir.join("empty"), &sets, 9).unwrap_err();
    assert!(
        err.contains("character33") && err.contains("empty character"),
        "{err}"
    );
    // Empty character in a zip (a directory entry without files).
    std::fs::create_dir_all(dir.join("emptyzip")).unwrap();
    write_zip(
        &dir.join("emptyzip/images_background.zip"),
        &files,
        &["images_background/Gamma/character01/"],
    );
    let err = Omniglot::load(&dir.join("emptyzip"), &sets, 9).unwrap_err();
    assert!(
        err.contains("Gamma/character01") && err.contains("empty"),
        "{err}"
    );
    // A file that is not a zip.
    std::fs::create_dir_all(dir.join("notzip")).unwrap();
    std::fs::write(dir.join("notzip/images_background.zip"), b"hello").unwrap();
    let err = Omniglot::load(&dir.join("notzip"), &sets, 9).unwrap_err();
    assert!(err.contains("not a readable zip"), "{err}");
    // Not a PNG at all.
    let err = decode_png(b"\x89PNG\r\n\x1a\nxxxx", "x.png").unwrap_err();
    assert!(err.starts_with("x.png: corrupt"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_shared_omniglot_data_set_reads_completely() {
    let Some(data) = shared_data("omniglot", "images_background.zip") else {
        return;
    };
    let o = Omniglot::load(
        &data,
        &[OmniglotSet::Background, OmniglotSet::Evaluation],
        31,
    )
    .unwrap();
    assert_eq!(o.characters.len(), 1623);
    assert_eq!(o.drawings(), 32_460);
    let bg = o
        .characters
        .iter()
        .filter(|c| c.set == OmniglotSet::Background)
        .count();
    assert_eq!(bg, 964);
    assert!(o.characters.iter().all(|c| c.drawings.len() == 20));
    // Ink covers a small part of each drawing (strokes on white paper).
    let first = &o.characters[0].drawings[0].pixels;
    let ink: f64 = first.iter().map(|&v| v as f64 / 255.0).sum::<f64>() / 961.0;
    assert!(ink > 0.01 && ink < 0.5, "ink fraction {ink}");
}

// ---------------------------------------------------------------- resize, rotate

#[test]
fn bilinear_resize_samples_pixel_centres_without_smoothing() {
    // 4x4 -> 2x2: output (r, c) samples y = (r + 0.5) * 2 - 0.5 = 0.5 or 2.5, so each output
    // is the mean of a 2x2 block.
    let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let out = resize_bilinear(&src, 4, 4, 2);
    assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
    // 105 -> 31: row 0 samples y = 0.5 * 105/31 - 0.5 = 1.19355; a single inked row 10 of
    // the source is seen by output row r where |y_r - 10| < 1: y_2 = 2.5*105/31 - .5 = 7.9677,
    // y_3 = 11.3548: row 3 gets 1 - 1.3548 = -0.35 -> 0, row 2 gets 0 (10 - 7.97 > 1)...
    // exactly: only output rows with floor(y) = 9 or 10 see it; y_3 = 11.35 misses, so a
    // one-pixel line at row 10 vanishes: no anti-aliasing.
    let mut line = vec![0.0f32; 105 * 105];
    line[10 * 105..11 * 105].fill(1.0);
    let out = resize_bilinear(&line, 105, 105, 31);
    assert!(out.iter().all(|&v| v == 0.0));
    // Row 11 is seen by output row 3 with weight 1 - 0.3548 = 0.6452.
    let mut line = vec![0.0f32; 105 * 105];
    line[11 * 105..12 * 105].fill(1.0);
    let out = resize_bilinear(&line, 105, 105, 31);
    let y3 = 3.5 * 105.0 / 31.0 - 0.5;
    assert!((out[3 * 31 + 7] - (1.0 - (y3 - 11.0)) as f32).abs() < 1e-6);
    assert_eq!(out.iter().filter(|&&v| v > 0.0).count(), 31);
    // Constant images stay constant.
    let out = resize_bilinear(&vec![0.25; 105 * 105], 105, 105, 31);
    assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-7));
}

#[test]
fn rotation_by_quarter_turns() {
    // 1 2 3        3 6 9
    // 4 5 6  ->    2 5 8   (90 degrees counter-clockwise)
    // 7 8 9        1 4 7
    let img = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(rotate90(&img, 3, 1), vec![3, 6, 9, 2, 5, 8, 1, 4, 7]);
    assert_eq!(rotate90(&img, 3, 2), vec![9, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(rotate90(&rotate90(&img, 3, 3), 3, 1), img.to_vec());
    assert_eq!(rotate90(&img, 3, 4), img.to_vec());
}

// ---------------------------------------------------------------- plastic dense layer

/// f64 reference of the layer (the module doc's equations), softmax or tanh output.
/// x: [B][T][I], offset: [B][T][O]; returns y: [B][T][O].
#[allow(clippy::too_many_arguments)]
fn reference(
    w: &[f64],
    alpha: &[f64],
    eta: f64,
    x: &[f64],
    offset: &[f64],
    dims: [usize; 4],
    rule: TraceRule,
    activation: DenseActivation,
) -> Vec<f64> {
    let [b, t, i_n, o_n] = dims;
    let mut ys = vec![0.0; b * t * o_n];
    for bb in 0..b {
        let mut h = vec![0.0; i_n * o_n];
        for s in 0..t {
            let xs = &x[(bb * t + s) * i_n..][..i_n];
            let mut pre: Vec<f64> = (0..o_n)
                .map(|j| {
                    (0..i_n)
                        .map(|i| xs[i] * (w[i * o_n + j] + alpha[i * o_n + j] * h[i * o_n + j]))
                        .sum::<f64>()
                        + offset[(bb * t + s) * o_n + j]
                })
                .collect();
            match activation {
                DenseActivation::Softmax => {
                    let m = pre.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = pre.iter().map(|p| (p - m).exp()).sum();
                    for p in &mut pre {
                        *p = (*p - m).exp() / z;
                    }
                }
                DenseActivation::Tanh => pre.iter_mut().for_each(|p| *p = p.tanh()),
                DenseActivation::Identity => {}
            }
            #[allow(clippy::needless_range_loop)] // the equation's indices
            for i in 0..i_n {
                for j in 0..o_n {
                    let k = i * o_n + j;
                    h[k] = match rule {
                        TraceRule::Oja => h[k] + eta * pre[j] * (xs[i] - h[k] * pre[j]),
                        TraceRule::Hebb => (1.0 - eta) * h[k] + eta * xs[i] * pre[j],
                    };
                }
            }
            ys[(bb * t + s) * o_n..][..o_n].copy_from_slice(&pre);
        }
    }
    ys
}

#[test]
fn plastic_dense_golden_values() {
    // I = 2, O = 2, T = 3, softmax, Oja, eta = 0.5, w = [[0.5, -0.5], [0.25, 0]] (row = input),
    // alpha = identity, x = [1, 0.5], [1, 1], [0, 1], offset 2 on output 1 at step 1.
    // Step 0: pre = x w = [1*0.5 + 0.5*0.25, -0.5] = [0.625, -0.5];
    //   y = softmax = [1/(1+e^-1.125), 1/(1+e^1.125)] = [0.7549150, 0.2450850];
    //   Hebb_ij = eta x_i y_j = [[0.3774575, 0.1225425], [0.1887287, 0.0612713]].
    // Step 1: w + alpha Hebb = [[0.8774575, -0.5], [0.25, 0.0612713]];
    //   pre = [0.8774575 + 0.25, -0.5 + 0.0612713 + 2] = [1.1274575, 1.5612713];
    //   y = [1/(1+e^0.4338138), ...] = [0.3932160, 0.6067840];
    //   Hebb_ij += eta y_j (x_i - Hebb_ij y_j):
    //   Hebb_11 = 0.0612713 + 0.5*0.6067840*(1 - 0.0612713*0.6067840) = 0.3533836.
    // Step 2: pre = [0.25, 0 + 1 * 0.3533836] -> y = [0.4741771, 0.5258229].
    let device = Device::flex().autodiff();
    let cfg = PlasticDenseConfig {
        inputs: 2,
        outputs: 2,
        ..PlasticDenseConfig::default()
    };
    let layer = cfg.from_values(
        vec![0.5, -0.5, 0.25, 0.0],
        vec![1.0, 0.0, 0.0, 1.0],
        0.5,
        &device,
    );
    let x = Tensor::<3>::from_data(
        TensorData::new(vec![1.0f32, 0.5, 1.0, 1.0, 0.0, 1.0], [1, 3, 2]),
        &device,
    );
    let c = Tensor::<3>::from_data(
        TensorData::new(vec![0.0f32, 0.0, 0.0, 2.0, 0.0, 0.0], [1, 3, 2]),
        &device,
    );
    let y = to_vec(layer.forward(x, Some(c)));
    let want = [
        0.7549150, 0.2450850, 0.3932160, 0.6067840, 0.4741771, 0.5258229,
    ];
    for (g, w) in y.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 2e-6, "{y:?} vs {want:?}");
    }
}

#[test]
fn plastic_dense_gradients_match_finite_differences() {
    let device = Device::flex().autodiff();
    let (b, t, i_n, o_n) = (2, 4, 5, 3);
    for (rule, activation) in [
        (TraceRule::Oja, DenseActivation::Softmax),
        (TraceRule::Hebb, DenseActivation::Tanh),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut rand =
            |n: usize, s: f64| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-s..s)).collect() };
        let w = rand(i_n * o_n, 0.8);
        let alpha = rand(i_n * o_n, 1.5);
        let eta = 0.3;
        let x = rand(b * t * i_n, 1.0);
        let offset = rand(b * t * o_n, 1.0);
        let weights = rand(b * t * o_n, 1.0); // loss = sum(weights * y)
        let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let cfg = PlasticDenseConfig {
            inputs: i_n,
            outputs: o_n,
            rule,
            activation,
            ..PlasticDenseConfig::default()
        };
        let layer = cfg.from_values(f32s(&w), f32s(&alpha), eta as f32, &device);
        let xt =
            Tensor::<3>::from_data(TensorData::new(f32s(&x), [b, t, i_n]), &device).require_grad();
        let ot = Tensor::<3>::from_data(TensorData::new(f32s(&offset), [b, t, o_n]), &device);
        let wt = Tensor::<3>::from_data(TensorData::new(f32s(&weights), [b, t, o_n]), &device);
        let y = layer.forward(xt.clone(), Some(ot));
        let dims = [b, t, i_n, o_n];
        let y_ref = reference(&w, &alpha, eta, &x, &offset, dims, rule, activation);
        for (a, r) in to_vec(y.clone()).iter().zip(&y_ref) {
            assert!((*a as f64 - r).abs() < 1e-5, "forward {rule:?}: {a} vs {r}");
        }
        let grads = (y * wt).sum().backward();
        let loss = |w: &[f64], alpha: &[f64], eta: f64, x: &[f64]| -> f64 {
            reference(w, alpha, eta, x, &offset, dims, rule, activation)
                .iter()
                .zip(&weights)
                .map(|(y, c)| y * c)
                .sum()
        };
        let h = 1e-6;
        let fd = |v: &[f64], f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            (0..v.len())
                .map(|k| {
                    let (mut p, mut m) = (v.to_vec(), v.to_vec());
                    p[k] += h;
                    m[k] -= h;
                    (f(&p) - f(&m)) / (2.0 * h)
                })
                .collect()
        };
        let checks: [(&str, Vec<f32>, Vec<f64>); 4] = [
            (
                "w",
                to_vec(layer.w.grad(&grads).unwrap()),
                fd(&w, &|v| loss(v, &alpha, eta, &x)),
            ),
            (
                "alpha",
                to_vec(layer.alpha.grad(&grads).unwrap()),
                fd(&alpha, &|v| loss(&w, v, eta, &x)),
            ),
            (
                "eta",
                to_vec(layer.eta.grad(&grads).unwrap()),
                fd(&[eta], &|v| loss(&w, &alpha, v[0], &x)),
            ),
            (
                "x",
                to_vec(xt.grad(&grads).unwrap()),
                fd(&x, &|v| loss(&w, &alpha, eta, v)),
            ),
        ];
        for (name, got, want) in checks {
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(scale > 1e-3, "{name}: gradient should not vanish");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() < 1e-4 * scale.max(1.0),
                    "{rule:?} d/d{name}: autodiff {g} vs finite difference {w}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- episodes, splits

/// Synthetic characters: each a random 31x31 prototype of 3 strokes; its drawings are the
/// prototype shifted by up to 1 pixel with 3% of the pixels flipped.
fn synthetic(chars: usize, drawings: usize, seed: u64) -> Omniglot {
    synthetic_noisy(chars, drawings, seed, 0.005, 1)
}

fn synthetic_noisy(chars: usize, drawings: usize, seed: u64, flip: f64, shift: i32) -> Omniglot {
    let side = 31;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let characters = (0..chars)
        .map(|c| {
            let mut proto = vec![0u8; side * side];
            for _ in 0..3 {
                let (x0, y0) = (rng.gen_range(4..27) as f64, rng.gen_range(4..27) as f64);
                let ang: f64 = rng.gen_range(0.0..std::f64::consts::PI);
                for k in -8..=8 {
                    let (x, y) = (x0 + k as f64 * ang.cos(), y0 + k as f64 * ang.sin());
                    if (0.0..side as f64).contains(&x) && (0.0..side as f64).contains(&y) {
                        proto[y as usize * side + x as usize] = 255;
                    }
                }
            }
            let drawings = (0..drawings)
                .map(|d| {
                    let (dx, dy) = (rng.gen_range(-shift..=shift), rng.gen_range(-shift..=shift));
                    let mut px = vec![0u8; side * side];
                    for y in 0..side as i32 {
                        for x in 0..side as i32 {
                            let (sx, sy) = (x - dx, y - dy);
                            let mut v = if (0..side as i32).contains(&sx)
                                && (0..side as i32).contains(&sy)
                            {
                                proto[(sy as usize) * side + sx as usize]
                            } else {
                                0
                            };
                            if rng.gen_bool(flip) {
                                v = 255 - v;
                            }
                            px[y as usize * side + x as usize] = v;
                        }
                    }
                    Drawing {
                        file: format!("{c:04}_{:02}.png", d + 1),
                        pixels: px,
                    }
                })
                .collect();
            Character {
                set: if c < chars / 2 {
                    OmniglotSet::Background
                } else {
                    OmniglotSet::Evaluation
                },
                alphabet: format!("A{}", c / 10),
                name: format!("character{:02}", c % 10 + 1),
                drawings,
            }
        })
        .collect();
    Omniglot { side, characters }
}

#[test]
fn episodes_have_labelled_support_steps_and_a_distinct_query() {
    let data = synthetic(12, 3, 1);
    let classes: Vec<usize> = (0..12).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (ways, shots, batch) = (5, 2, 50);
    let shape = |ways, shots, rotations, max_shift| EpisodeShape {
        ways,
        shots,
        rotations,
        max_shift,
        label_clamp: 1000.0,
        queries: 1,
    };
    let ep = generate(
        &data,
        &classes,
        &shape(ways, shots, true, 0),
        batch,
        &mut rng,
    );
    let t_len = ways * shots + 1;
    assert_eq!(ep.dims, [batch, t_len, ways]);
    assert_eq!(ep.images.len(), batch * t_len * 961);
    let mut rotations_seen = [0usize; 4];
    let mut query_labels = [0usize; 5];
    let mut orders = std::collections::HashSet::new();
    for (b, steps) in ep.steps.iter().enumerate() {
        assert_eq!(steps.len(), t_len);
        let (support, query) = (&steps[..t_len - 1], steps[t_len - 1]);
        // Each label `shots` times, one character and one rotation per label, distinct characters.
        for label in 0..ways {
            let of: Vec<_> = support.iter().filter(|s| s.label == label).collect();
            assert_eq!(of.len(), shots);
            assert!(of
                .iter()
                .all(|s| s.character == of[0].character && s.rotation == of[0].rotation));
            assert_ne!(
                of[0].drawing, of[1].drawing,
                "support drawings of a class differ"
            );
            rotations_seen[of[0].rotation as usize] += 1;
        }
        let chars: std::collections::HashSet<_> = support.iter().map(|s| s.character).collect();
        assert_eq!(chars.len(), ways);
        // The query is another drawing of one of the classes, same rotation and label.
        let same: Vec<_> = support.iter().filter(|s| s.label == query.label).collect();
        assert_eq!(same[0].character, query.character);
        assert_eq!(same[0].rotation, query.rotation);
        assert!(
            same.iter().all(|s| s.drawing != query.drawing),
            "query repeats a support drawing"
        );
        query_labels[query.label] += 1;
        orders.insert(support.iter().map(|s| s.label).collect::<Vec<_>>());
        // Clamp: label x 1000 at support steps, nothing at the query.
        for (t, s) in steps.iter().enumerate() {
            let row = &ep.clamp[(b * t_len + t) * ways..][..ways];
            for (j, &v) in row.iter().enumerate() {
                let want = if t + 1 < t_len && j == s.label {
                    1000.0
                } else {
                    0.0
                };
                assert_eq!(v, want);
            }
            // Images are the stored drawing, rotated, scaled to [0, 1].
            let img = &ep.images[(b * t_len + t) * 961..][..961];
            let src = rotate90(
                &data.characters[s.character].drawings[s.drawing].pixels,
                31,
                s.rotation,
            );
            assert!(img.iter().zip(&src).all(|(a, &p)| *a == p as f32 / 255.0));
            assert_eq!(s.shift, (0, 0));
        }
    }
    assert!(rotations_seen.iter().all(|&n| n > 30), "{rotations_seen:?}");
    assert!(query_labels.iter().all(|&n| n > 3), "{query_labels:?}");
    assert!(orders.len() > 40, "support steps come in random orders");
    // Without rotations every rotation is 0.
    let ep = generate(&data, &classes, &shape(3, 1, false, 0), 20, &mut rng);
    assert!(ep.steps.iter().flatten().all(|s| s.rotation == 0));
    // With shifts: every image is its rotated drawing translated by its own shift, shifts
    // cover [-2, 2] on both axes, and support and query of a class are shifted independently.
    let ep = generate(&data, &classes, &shape(5, 1, true, 2), 200, &mut rng);
    let mut seen = std::collections::HashSet::new();
    let mut query_differs = 0;
    for (b, steps) in ep.steps.iter().enumerate() {
        for (t, s) in steps.iter().enumerate() {
            assert!(
                s.shift.0.abs() <= 2 && s.shift.1.abs() <= 2,
                "{:?}",
                s.shift
            );
            seen.insert(s.shift);
            let img = &ep.images[(b * 6 + t) * 961..][..961];
            let rotated = rotate90(
                &data.characters[s.character].drawings[s.drawing].pixels,
                31,
                s.rotation,
            );
            let src = translate(&rotated, 31, s.shift);
            assert!(img.iter().zip(&src).all(|(a, &p)| *a == p as f32 / 255.0));
        }
        let q = steps[5];
        let support = steps[..5].iter().find(|s| s.label == q.label).unwrap();
        query_differs += usize::from(support.shift != q.shift);
    }
    assert_eq!(seen.len(), 25, "all 5 x 5 shifts occur");
    assert!(
        query_differs > 150,
        "{query_differs} of 200 queries shifted unlike their support"
    );
}

/// `queries > 1`: the support steps as with one query, then `queries` query steps, each of
/// a class of the episode (same character and rotation), a drawing that is neither that
/// class's support drawing nor another query's; no clamp at the queries; `targets()` lists
/// every query's label.
#[test]
fn episodes_with_several_queries_share_the_support_steps() {
    let data = synthetic(12, 8, 4);
    let classes: Vec<usize> = (0..12).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (ways, shots, queries, batch) = (5, 1, 6, 40);
    let shape = EpisodeShape {
        ways,
        shots,
        rotations: true,
        max_shift: 0,
        label_clamp: 1000.0,
        queries,
    };
    let ep = generate(&data, &classes, &shape, batch, &mut rng);
    let t_len = ways * shots + queries;
    assert_eq!(ep.dims, [batch, t_len, ways]);
    assert_eq!(ep.images.len(), batch * t_len * 961);
    let targets = ep.targets();
    assert_eq!(targets.len(), batch * queries);
    let mut labels_seen = [0usize; 5];
    let mut same_class_queries = 0;
    for (b, steps) in ep.steps.iter().enumerate() {
        let (support, qs) = steps.split_at(ways * shots);
        for (k, q) in qs.iter().enumerate() {
            assert_eq!(targets[b * queries + k], q.label);
            labels_seen[q.label] += 1;
            let s = support.iter().find(|s| s.label == q.label).unwrap();
            assert_eq!((s.character, s.rotation), (q.character, q.rotation));
            assert_ne!(s.drawing, q.drawing, "query repeats its support drawing");
            for other in &qs[k + 1..] {
                if other.label == q.label {
                    same_class_queries += 1;
                    assert_ne!(other.drawing, q.drawing, "two queries share a drawing");
                }
            }
        }
        for t in ways * shots..t_len {
            assert!(ep.clamp[(b * t_len + t) * ways..][..ways]
                .iter()
                .all(|&v| v == 0.0));
        }
        for t in 0..ways * shots {
            let row = &ep.clamp[(b * t_len + t) * ways..][..ways];
            assert_eq!(row[steps[t].label], 1000.0);
        }
    }
    assert!(labels_seen.iter().all(|&n| n > 20), "{labels_seen:?}");
    assert!(same_class_queries > 20, "{same_class_queries}");
    // One query: the paper's episode shape.
    let one = EpisodeShape {
        queries: 1,
        ..shape
    };
    let a = generate(&data, &classes, &one, 3, &mut ChaCha8Rng::seed_from_u64(9));
    assert_eq!(a.dims, [3, ways * shots + 1, ways]);
    assert_eq!(a.targets().len(), 3);
    // Too few drawings for the queries: the task refuses the configuration by name.
    let few = synthetic(12, 3, 4);
    let config = OmniglotConfig {
        test_classes: 5,
        queries: 3,
        ..OmniglotConfig::default()
    };
    let err = OmniglotTask::new(config, Arc::new(few)).unwrap_err();
    assert!(err.contains("queries"), "{err}");
}

#[test]
fn translate_moves_pixels_and_fills_with_zero() {
    // 3x3 image 1..9; down 1 and left 1: row r, col c takes source (r - 1, c + 1).
    let img: Vec<u8> = (1..=9).collect();
    assert_eq!(translate(&img, 3, (1, -1)), vec![0, 0, 0, 2, 3, 0, 5, 6, 0]);
    assert_eq!(translate(&img, 3, (0, 0)), img);
    assert_eq!(translate(&img, 3, (-2, 2)), vec![0, 0, 7, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn splits_are_fixed_by_the_split_seed_and_disjoint() {
    let data = synthetic(40, 2, 2);
    let paper = OmniglotConfig {
        test_classes: 10,
        ..OmniglotConfig::default()
    };
    let a = split_classes(&paper, &data).unwrap();
    let b = split_classes(&paper, &data).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.train.len(), a.test.len()), (30, 10));
    assert!(a.test.iter().all(|k| !a.train.contains(k)));
    assert_eq!(a.classes(ClassSet::Test), &a.test[..]);
    assert_eq!(a.classes(ClassSet::Train), &a.train[..]);
    let other = split_classes(
        &OmniglotConfig {
            split_seed: 1,
            ..paper.clone()
        },
        &data,
    )
    .unwrap();
    assert_ne!(a.test, other.test);
    let standard = split_classes(
        &OmniglotConfig {
            split: Split::Standard,
            ..paper.clone()
        },
        &data,
    )
    .unwrap();
    assert_eq!(standard.train, (0..20).collect::<Vec<_>>());
    assert_eq!(standard.test, (20..40).collect::<Vec<_>>());
    // Errors name the field.
    let err = split_classes(
        &OmniglotConfig {
            test_classes: 40,
            ..paper.clone()
        },
        &data,
    )
    .unwrap_err();
    assert!(err.starts_with("test_classes"), "{err}");
    let err = OmniglotTask::new(
        OmniglotConfig {
            shots: 2,
            ..paper.clone()
        },
        Arc::new(data.clone()),
    )
    .unwrap_err();
    assert!(
        err.starts_with("shots") && err.contains("character"),
        "{err}"
    );
    assert_rejected(
        &paper,
        |c| OmniglotTask::new(c, Arc::new(data.clone())),
        &[
            (|c| c.ways = 0, "ways"),
            (|c| c.side = 28, "side"),
            (|c| c.learning_rate = -1.0, "learning_rate"),
            (|c| c.ways = 31, "ways"),
            (|c| c.max_shift = 16, "max_shift"),
        ],
    );
}

#[test]
fn learning_rate_schedule_and_wilson_interval() {
    let c = OmniglotConfig {
        meta_batch: 10,
        ..OmniglotConfig::default()
    };
    assert_eq!(c.learning_rate_at(0), 3e-5);
    assert_eq!(c.learning_rate_at(99_999), 3e-5); // 999,990 episodes seen
    assert!((c.learning_rate_at(100_000) - 3e-5 * 0.666).abs() < 1e-15);
    assert!((c.learning_rate_at(250_000) - 3e-5 * 0.666 * 0.666).abs() < 1e-15);
    // The half cosine over 4,000,000 episodes (meta-batch 10: 400,000 updates).
    let cos = OmniglotConfig {
        lr_cosine_episodes: 4_000_000,
        ..c.clone()
    };
    assert_eq!(cos.learning_rate_at(0), 3e-5);
    assert!((cos.learning_rate_at(100_000) - 3e-5 * (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-15);
    assert!((cos.learning_rate_at(200_000) - 1.5e-5).abs() < 1e-15);
    assert!(cos.learning_rate_at(400_000).abs() < 1e-15);
    assert!(cos.learning_rate_at(900_000).abs() < 1e-15);
    assert_eq!(c.conv_layers(), 4);
    // Wilson 95% intervals (z = 1.959964), computed with the formula in a Python shell:
    // 8/10 -> (0.490162, 0.943318); 970/1000 -> (0.957497, 0.978906); 10/10 -> (0.722467, 1).
    for ((k, n), (lo, hi)) in [
        ((8, 10), (0.490162, 0.943318)),
        ((970, 1000), (0.957497, 0.978906)),
        ((10, 10), (0.722467, 1.0)),
    ] {
        let (l, h) = wilson_interval(k, n);
        assert!(
            (l - lo).abs() < 1e-6 && (h - hi).abs() < 1e-6,
            "{k}/{n}: {l} {h}"
        );
    }
}

// ---------------------------------------------------------------- learning, determinism

fn small_config() -> OmniglotConfig {
    OmniglotConfig {
        test_classes: 10,
        meta_batch: 8,
        learning_rate: 1e-3,
        ..OmniglotConfig::default()
    }
}

#[test]
fn a_synthetic_one_shot_task_is_learned() {
    // Drawings shifted by up to 1 pixel with 0.5% of the pixels flipped.
    let data = Arc::new(synthetic_noisy(60, 4, 5, 0.005, 1));
    let task = OmniglotTask::new(small_config(), data).unwrap();
    let device = Device::flex().autodiff();
    let init = task.init_model(&mut ChaCha8Rng::seed_from_u64(1), &device);
    let (c0, n0) = task
        .accuracy(
            &init,
            ClassSet::Test,
            400,
            5,
            1,
            100,
            &mut ChaCha8Rng::seed_from_u64(99),
        )
        .unwrap();
    let acc0 = c0 as f64 / n0 as f64;
    let out = temp_dir("learn");
    let summary = train_ok(&task, &options(out.clone(), 150, 1), &device);
    let (model, _) = load_trained(&task, &out, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let (correct, n) = task
        .accuracy(&model, ClassSet::Test, 400, 5, 1, 100, &mut rng)
        .unwrap();
    let acc = correct as f64 / n as f64;
    eprintln!(
        "synthetic 5-way 1-shot: held-out {acc0:.3} at initialisation; after training: train accuracy (last 50 updates) {:.3}, held-out {acc:.3} ({correct}/{n})",
        summary.final_metrics[0]
    );
    // Measured: 0.55 at initialisation (alpha starts at 0.5), 0.985 after 150 updates.
    assert!(acc0 < 0.7, "held-out accuracy at initialisation {acc0}");
    assert!(
        acc > 0.9 && acc > acc0 + 0.2,
        "held-out accuracy {acc} (chance 0.2)"
    );
    // The training classes, unshifted: learned at least as well (measured 0.99).
    let (correct, n) = task
        .accuracy(&model, ClassSet::Train, 400, 5, 1, 100, &mut rng)
        .unwrap();
    let train_acc = correct as f64 / n as f64;
    eprintln!("training classes, unshifted: {train_acc:.3} ({correct}/{n})");
    assert!(train_acc > 0.9, "training-class accuracy {train_acc}");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn same_seed_same_run_and_resume_continues_identically() {
    let data = Arc::new(synthetic(30, 3, 6));
    let task = OmniglotTask::new(small_config(), data).unwrap();
    let device = Device::flex().autodiff();
    let (a, b, c) = (temp_dir("det-a"), temp_dir("det-b"), temp_dir("det-c"));
    for dir in [&a, &b] {
        train_ok(&task, &options(dir.clone(), 20, 3), &device);
    }
    assert_eq!(metrics_without_time(&a), metrics_without_time(&b));
    train_ok(&task, &options(c.clone(), 10, 3), &device);
    train_ok(&task, &resumed(options(c.clone(), 20, 3)), &device);
    assert_eq!(metrics_without_time(&a), metrics_without_time(&c));
    for dir in [a, b, c] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn softmax_bce_golden_values_and_no_dead_gradient() {
    let device = Device::flex().autodiff();
    // logits [0, ln 3] -> p = [0.25, 0.75], target [0, 1]:
    // BCE = -(log(1 - 0.25) + log 0.75) / 2 = -log 0.75 = 0.2876821.
    let l = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 3f32.ln()], [1, 2]), &device);
    let t = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &device);
    let v = to_vec(softmax_bce(l, t))[0];
    assert!((v - 0.2876821).abs() < 1e-6, "{v}");
    // Confidently wrong: logits [0, 40], target [1, 0]. log p_0 = -40 and log(1 - p_1) =
    // log p_0 = -40, so BCE = 40 (a clamped p would give a constant and no gradient).
    let l =
        Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 40.0], [1, 2]), &device).require_grad();
    let t = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device);
    let loss = softmax_bce(l.clone(), t);
    assert!((to_vec(loss.clone())[0] - 40.0).abs() < 1e-4);
    let g = to_vec(l.grad(&loss.backward()).unwrap());
    // BCE = -(l_0 - LSE) = LSE - l_0 (both terms equal): dBCE/dl_0 = p_0 - 1 ~ -1, dl_1 = p_1 ~ 1.
    assert!(
        (g[0] + 1.0).abs() < 1e-4 && (g[1] - 1.0).abs() < 1e-4,
        "{g:?}"
    );
    // 5 outputs: matches the direct formula on moderate logits.
    let logits = [0.3f32, -1.2, 2.0, 0.0, 0.7];
    let z: f32 = logits.iter().map(|v| v.exp()).sum();
    let p: Vec<f32> = logits.iter().map(|v| v.exp() / z).collect();
    let direct: f32 =
        -(p[2].ln() + [0, 1, 3, 4].iter().map(|&k| (1.0 - p[k]).ln()).sum::<f32>()) / 5.0;
    let l = Tensor::<2>::from_data(TensorData::new(logits.to_vec(), [1, 5]), &device);
    let t = Tensor::<2>::from_data(
        TensorData::new(vec![0.0f32, 0.0, 1.0, 0.0, 0.0], [1, 5]),
        &device,
    );
    let v = to_vec(softmax_bce(l, t))[0];
    assert!((v - direct).abs() < 1e-5, "{v} vs {direct}");
}
