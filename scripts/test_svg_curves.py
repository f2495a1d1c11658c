#!/usr/bin/env python3
"""Tests of scripts/svg_curves.py: charts drawn the way the old SVG plot code drew them (its
layout and its tick labels, `fmt_num`), from known curves, are read back within the stated
precision. Standard library only: python3 scripts/test_svg_curves.py
"""

import math
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svg_curves  # noqa: E402

COLOURS = ["#1f77b4", "#d62728"]


def fmt_num(v):
    """The old code's tick label."""
    if v == 0.0:
        return "0"
    if abs(v) >= 10000.0 or abs(v) < 0.01:
        m, e = f"{v:.1e}".split("e")
        return f"{m}e{int(e)}"
    if abs(v) >= 10.0:
        return f"{v:.0f}"
    return f"{round(v * 1000.0) / 1000.0:g}"


def old_svg(series, log_y):
    """An SVG laid out as the old code did: `series` = [(label, [(x, y)], [(lo, hi)] or None)]."""
    w, h, left, right, top, bottom = 720.0, 420.0, 70.0, 20.0, 40.0, 50.0
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [ty(y) for _, pts, band in series for y in [p[1] for p in pts] + list(sum(band or [], ()))]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda y: top + (1 - (ty(y) - y0) / (y1 - y0)) * (h - top - bottom)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">']
    out.append(f'<text x="360" y="22" text-anchor="middle" font-size="15">a title</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w - left - right}" '
               f'height="{h - top - bottom}" fill="none" stroke="black"/>')
    for k in range(5):
        f = k / 4
        xv, yt = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        yv = 10**yt if log_y else yt
        gx, gy = px(xv), top + (1 - f) * (h - top - bottom)
        out.append(f'<line x1="{gx}" y1="{top}" x2="{gx}" y2="{h - bottom}" stroke="#ddd"/>')
        out.append(f'<line x1="{left}" y1="{gy}" x2="{w - right}" y2="{gy}" stroke="#ddd"/>')
        out.append(f'<text x="{gx}" y="{h - bottom + 16}" text-anchor="middle">{fmt_num(xv)}</text>')
        out.append(f'<text x="{left - 6}" y="{gy + 4}" text-anchor="end">{fmt_num(yv)}</text>')
    out.append(f'<text x="385" y="{h - 12}" text-anchor="middle">episode</text>')
    out.append('<text x="16" y="205" text-anchor="middle" transform="rotate(-90 16 205)">err</text>')
    for k, (label, pts, band) in enumerate(series):
        c = COLOURS[k]
        if band:
            ring = [(px(x), py(hi)) for (x, _), (_, hi) in zip(pts, band)]
            ring += [(px(x), py(lo)) for (x, _), (lo, _) in reversed(list(zip(pts, band)))]
            ring = " ".join(f"{a:.1f},{b:.1f}" for a, b in ring)
            out.append(f'<polygon fill="{c}" fill-opacity="0.2" stroke="none" points="{ring}"/>')
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{line}"/>')
        ly = top + 16 + 16 * k
        out.append(f'<line x1="530" y1="{ly}" x2="550" y2="{ly}" stroke="{c}" stroke-width="3"/>')
        out.append(f'<text x="555" y="{ly + 4}">{label}</text>')
    return "\n".join(out + ["</svg>"])


def digitise(text):
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False) as f:
        f.write(text)
    try:
        return svg_curves.digitise(f.name)
    finally:
        os.unlink(f.name)


class Digitise(unittest.TestCase):
    def test_linear_curves_with_a_band_come_back_within_the_precision(self):
        # Updates 1..5000 (labels 1, 1251, ...: rounded), rewards 3.47..34.2 (3.5, 11, ...).
        a = [(x, 3.47 + 30.73 * (x / 5000) ** 0.5) for x in range(1, 5001, 3)]
        band = [(y - 0.5, y + 0.3) for _, y in a]
        b = [(x, 5.0 + 0.001 * x) for x in range(1, 5001, 3)]
        d = digitise(old_svg([("agent, 3 seeds", a, band), ("rnn", b, None)], False))
        self.assertFalse(d["x"].log or d["y"].log)
        self.assertEqual((d["title"], d["x_title"], d["y_title"]), ("a title", "episode", "err"))
        (la, pa, ba), (lb, pb, bb) = d["series"]
        self.assertEqual((la, lb, bb), ("agent, 3 seeds", "rnn", None))
        # The stated precision is small and it holds for every point and band edge.
        self.assertLess(d["y"].precision(), 0.01)
        self.assertTrue(d["whole_x"])
        for (x, y), (gx, gy) in zip(a + b, pa + pb):
            self.assertLessEqual(abs(gx - x), d["x"].error)
            self.assertLessEqual(abs(gy - y), d["y"].error)
        for (lo, hi), (glo, ghi) in zip(band, ba):
            self.assertLessEqual(max(abs(glo - lo), abs(ghi - hi)), d["y"].error)

    def test_a_log_axis_is_recognised_and_read_back(self):
        a = [(x, 0.27 * math.exp(-x / 60.0)) for x in range(1, 301)]
        d = digitise(old_svg([("error", a, None)], True))
        self.assertTrue(d["y"].log)
        # Labels from 1.8e-3 (two digits) to 0.27: about 1% of the value.
        self.assertLess(d["y"].precision(), 0.02)
        for (_, y), (_, gy) in zip(a, d["series"][0][1]):
            self.assertLessEqual(abs(gy / y - 1), d["y"].precision())

    def test_labels_that_no_mapping_explains_are_an_error(self):
        text = old_svg([("a", [(1, 1.0), (2, 2.0)], None)], False)
        text = text.replace(">1.25<", ">7<")
        with self.assertRaisesRegex(ValueError, "no linear or logarithmic mapping"):
            digitise(text)


if __name__ == "__main__":
    unittest.main()
