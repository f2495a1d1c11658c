//! The embedded default images: 32x32 grey patches cut from public-domain and CC0 photographs
//! shipped by scikit-image (`crates/plasticity/data/images/`: the patches, the script that
//! regenerates them, and each photograph's licence in `LICENSES.md`). Training and test
//! patches come from different photographs.

use super::{ImageSet, Split};

/// Side of a patch.
pub const SIDE: usize = 32;

static TRAIN: &[u8] = include_bytes!("../../data/images/train.u8");
static TEST: &[u8] = include_bytes!("../../data/images/test.u8");

/// The embedded patches of `split`, normalised like CIFAR-10 images.
pub fn images(split: Split) -> ImageSet {
    let bytes = match split {
        Split::Train => TRAIN,
        Split::Test => TEST,
    };
    ImageSet::from_grey(SIDE, bytes.iter().map(|&b| b as f32).collect())
}
