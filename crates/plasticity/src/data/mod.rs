//! Data sets the experiments read, from a directory the caller names (the CLI's `--data-dir`);
//! nothing downloads. Grey images ([`ImageSet`]) from CIFAR-10 binary files ([`cifar`]) or the
//! embedded default patches ([`embedded`]); Omniglot drawings ([`omniglot`]); Penn Treebank
//! words ([`ptb`]).

pub mod cifar;
pub mod embedded;
pub mod omniglot;
pub mod ptb;

/// Which part of a data set: training images or held-out test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training images.
    Train,
    /// Held-out test images (disjoint from the training images).
    Test,
}

/// Square grey images, each normalised to `[-1, 1]` by [`normalise`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Side of an image in pixels (32).
    pub side: usize,
    /// Pixels, `[count, side * side]`, row-major.
    pub pixels: Vec<f32>,
}

impl ImageSet {
    /// Pixels per image.
    pub fn pixels_per_image(&self) -> usize {
        self.side * self.side
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.pixels_per_image().max(1)
    }

    /// Whether the set has no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `k`, `[side * side]`.
    pub fn image(&self, k: usize) -> &[f32] {
        let p = self.pixels_per_image();
        &self.pixels[k * p..(k + 1) * p]
    }

    /// Builds a set from raw grey levels `[count, side * side]` (any scale), normalising each
    /// image.
    pub fn from_grey(side: usize, mut grey: Vec<f32>) -> Self {
        for img in grey.chunks_mut(side * side) {
            normalise(img);
        }
        ImageSet { side, pixels: grey }
    }
}

/// ICML 2018 section 4.2: subtracts the image's mean and divides by its largest absolute
/// value, so that the pixels lie in `[-1, 1]` (a constant image becomes all zeros).
pub fn normalise(img: &mut [f32]) {
    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len().max(1) as f64;
    let max = img
        .iter()
        .map(|&v| (v as f64 - mean).abs())
        .fold(0.0f64, f64::max);
    for v in img.iter_mut() {
        *v = if max > 0.0 {
            ((*v as f64 - mean) / max) as f32
        } else {
            0.0
        };
    }
}
