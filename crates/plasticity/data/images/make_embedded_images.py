#!/usr/bin/env python3
"""Regenerates the embedded default images of `plasticity images` (train.u8, test.u8).

Cuts 32x32 grey patches from public-domain / CC0 photographs shipped by scikit-image
(`pip install scikit-image`; tested with 0.26.0). Each source photo is converted to grey,
downscaled by block averaging so that its shorter side is 128 (and, separately, 64) pixels,
and tiled into non-overlapping 32x32 patches; nearly flat patches (grey standard deviation
below 6 levels) are dropped. Photos are split between train and test: the two sets share no
source photo. Output: raw bytes, 1024 per patch (row-major, one u8 grey level per pixel).
The licence of every source photo is in LICENSES.md beside this script.

Usage: python make_embedded_images.py [OUTPUT_DIR]   (default: this script's folder)
"""
import os
import sys

import numpy as np
import skimage
from skimage import color, data

# (skimage.data function, split). Licences: see LICENSES.md.
SOURCES = [
    ("astronaut", "train"),
    ("camera", "train"),
    ("coffee", "train"),
    ("rocket", "train"),
    ("brick", "train"),
    ("grass", "train"),
    ("hubble_deep_field", "train"),
    ("chelsea", "test"),
    ("gravel", "test"),
]
SIDE = 32
SCALES = (128, 64)  # shorter side after downscaling
MIN_STD = 6.0


def grey(name):
    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3]) * 255.0
    return img.astype(np.float64)


def downscale(img, shorter):
    """Block-average so that the shorter side becomes about `shorter` pixels."""
    f = min(img.shape) // shorter
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    img = img[:h, :w]
    return img.reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def patches(img):
    out = []
    for r in range(0, img.shape[0] - SIDE + 1, SIDE):
        for c in range(0, img.shape[1] - SIDE + 1, SIDE):
            p = img[r : r + SIDE, c : c + SIDE]
            if p.std() >= MIN_STD:
                out.append(np.clip(np.round(p), 0, 255).astype(np.uint8))
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    sets = {"train": [], "test": []}
    for name, split in SOURCES:
        img = grey(name)
        got = [p for s in SCALES for p in patches(downscale(img, s))]
        print(f"{name:20s} {split:5s} {img.shape} -> {len(got)} patches")
        sets[split].extend(got)
    for split, ps in sets.items():
        path = os.path.join(out_dir, f"{split}.u8")
        with open(path, "wb") as f:
            f.write(np.stack(ps).tobytes())
        print(f"{path}: {len(ps)} patches (scikit-image {skimage.__version__})")


if __name__ == "__main__":
    main()
