#!/usr/bin/env python3
"""Digitises a line chart drawn by this project's earlier hand-written SVG plot code.

Reads one such SVG (a title <text>, the plot <rect>, grey grid <line>s with a <text> tick label
each, the axis titles, one <polyline> per curve with its stroke colour, a <polygon> band of the
same colour where seeds were grouped, and legend <line>/<text> pairs naming each colour) and
writes the curves back in data coordinates as a long-format CSV:

    series,x,y,low,high        (low, high: the band at x; empty where the curve has none)

preceded by `#` comment lines: the source, the title, the axis titles, each axis's scale and
the precision of the digitised values. `plasticity plot --table FILE` draws such a file.

Precision. The old tick labels are rounded (e.g. "3.5" for 3.4975, "1.3e5" for 130,000.75),
so the pixel -> data mapping is only known within the labels' rounding: every label is taken
as its value +- its rounding (see `number_and_half_unit`), and the mapping (linear, or logarithmic when the
labels fit no straight line) is the centre of all mappings that agree with every label within
its rounding. The stated precision of an axis is the largest distance, anywhere on the plot,
between that centre and any mapping that agrees with the labels, plus the old file's rounding
of coordinates to 0.1 pixel. It is a bound on the digitising error, not on the run's noise.

Usage: scripts/svg_curves.py OLD.svg OUT.csv
Standard library only.
"""

import csv
import math
import re
import sys
import xml.etree.ElementTree as ET

GRID = "#ddd"


def number_and_half_unit(label):
    """The value of a tick label and its rounding (half a unit of its last rounded digit).

    The old code (`fmt_num`, src/plot.rs before the plotters charts) wrote 1.3e5 for values
    from 10,000 and below 0.01 (one decimal of mantissa), whole numbers from 10 to 10,000, and
    below 10 the value rounded to 3 decimals with trailing zeros dropped ("0.5", "-1", "9.75");
    an earlier version wrote 3 decimals above 10 too ("75.75"): a label with decimals is taken
    to 3 decimals, a whole label from 10 to 10,000 to the unit.
    """
    m = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?(?:e(-?\d+))?", label.strip())
    if not m:
        raise ValueError(f"tick label '{label}' is not a number")
    sign, whole, frac, exp = m.groups()
    value = float(f"{sign}{whole}.{frac or '0'}") * 10.0 ** int(exp or 0)
    if exp is not None:
        return value, 0.5 * 10.0 ** (int(exp) - len(frac or ""))
    if frac or abs(value) < 10:
        return value, 0.0005
    return value, 0.5


def points(attr):
    """The (x, y) pairs of a points="x,y x,y" attribute."""
    out = []
    for pair in attr.split():
        x, y = pair.split(",")
        out.append((float(x), float(y)))
    return out


def feasible_mappings(ticks, log):
    """The corners (a, b) of the set of mappings value = a + b * pixel (log10 of the value on
    a log axis) that agree with every tick (pixel, value, half unit) within its rounding."""
    rows = []
    for p, v, h in ticks:
        lo, hi = v - h, v + h
        if log:
            if lo <= 0:
                return []
            lo, hi = math.log10(lo), math.log10(hi)
        rows.append((p, lo, hi))
    bounds = [(p, c) for p, lo, hi in rows for c in (lo, hi)]
    corners = []
    for i, (p1, c1) in enumerate(bounds):
        for p2, c2 in bounds[i + 1 :]:
            if abs(p1 - p2) < 1e-9:
                continue
            b = (c1 - c2) / (p1 - p2)
            a = c1 - b * p1
            tol = 1e-9 * max(1.0, max(abs(c) for _, c in bounds))
            if all(lo - tol <= a + b * p <= hi + tol for p, lo, hi in rows):
                corners.append((a, b))
    return corners


class Axis:
    """The pixel -> data mapping of one axis, from its tick labels."""

    def __init__(self, name, ticks, edges):
        if len(ticks) < 2:
            raise ValueError(f"{name} axis: fewer than two tick labels")
        self.name = name
        self.log = False
        corners = feasible_mappings(ticks, log=False)
        if not corners:
            corners = feasible_mappings(ticks, log=True)
            self.log = True
        if not corners:
            raise ValueError(
                f"{name} axis: no linear or logarithmic mapping agrees with the labels "
                + ", ".join(f"{v:g}" for _, v, _ in ticks)
            )
        self.a = sum(a for a, _ in corners) / len(corners)
        self.b = sum(b for _, b in corners) / len(corners)
        # The largest disagreement with the centre at the plot's edges (the set is convex and
        # the error is linear in the pixel, so its corners and the edges bound it), in data
        # units (log10 units on a log axis), plus 0.05 pixel of coordinate rounding.
        worst = max(abs((a - self.a) + (b - self.b) * p) for a, b in corners for p in edges)
        self.error = worst + abs(self.b) * 0.05
        self.span = abs(self.value(edges[1]) - self.value(edges[0]))

    def value(self, pixel):
        v = self.a + self.b * pixel
        return 10.0**v if self.log else v

    def describe(self):
        """The scale and the precision, for the CSV's comments."""
        if self.log:
            rel = 100.0 * (10.0**self.error - 1.0)
            return f"logarithmic; digitised values within {rel:.2g}% of their value"
        rel = 100.0 * self.error / self.span if self.span > 0 else 0.0
        return f"linear; digitised values within +-{self.error:.3g} = {rel:.2g}% of the axis span"

    def precision(self):
        """The precision as a number: a fraction of the value (log) or of the span (linear)."""
        if self.log:
            return 10.0**self.error - 1.0
        return self.error / self.span if self.span > 0 else 0.0


def digitise(path):
    root = ET.parse(path).getroot()
    ns = re.match(r"\{.*\}", root.tag)
    ns = ns.group(0) if ns else ""
    els = list(root.iter())

    def tag(e):
        return e.tag[len(ns) :]

    def num(e, k):
        return float(e.get(k))

    def first(items, what):
        for item in items:
            return item
        raise ValueError(f"no {what}: not a figure of the old SVG plot code")

    frame = first((e for e in els if tag(e) == "rect" and e.get("x") is not None), "plot frame")
    left, top = num(frame, "x"), num(frame, "y")
    right, bottom = left + num(frame, "width"), top + num(frame, "height")
    texts = [e for e in els if tag(e) == "text"]
    title = first((e.text for e in texts if e.get("font-size") == "15"), "title")
    grid = [e for e in els if tag(e) == "line" and e.get("stroke") == GRID]
    verticals = sorted({num(g, "x1") for g in grid if g.get("x1") == g.get("x2")})
    horizontals = sorted({num(g, "y1") for g in grid if g.get("y1") == g.get("y2")})

    x_ticks, y_ticks, x_title, y_title = [], [], None, None
    for t in texts:
        x, y = num(t, "x"), num(t, "y")
        if t.get("transform", "").startswith("rotate"):
            y_title = t.text
        elif t.get("text-anchor") == "end" and x < left:
            p = min(horizontals, key=lambda g: abs(g - y))
            y_ticks.append((p, *number_and_half_unit(t.text)))
        elif t.get("text-anchor") == "middle" and bottom < y < bottom + 24:
            p = min(verticals, key=lambda g: abs(g - x))
            x_ticks.append((p, *number_and_half_unit(t.text)))
        elif t.get("text-anchor") == "middle" and y >= bottom + 24:
            x_title = t.text
    xa = Axis("x", x_ticks, (left, right))
    ya = Axis("y", y_ticks, (bottom, top))

    # The legend: a short thick line of the curve's colour, its text just right of it.
    names = {}
    for e in els:
        if tag(e) == "line" and e.get("stroke") != GRID and e.get("stroke-width") == "3":
            y, x2 = num(e, "y1"), num(e, "x2")
            label = min(
                (t for t in texts if num(t, "x") > x2 and abs(num(t, "y") - 4 - y) < 6),
                key=lambda t: abs(num(t, "y") - 4 - y),
            )
            names[e.get("stroke")] = label.text

    bands = {e.get("fill"): points(e.get("points")) for e in els if tag(e) == "polygon"}
    series = []
    for e in els:
        if tag(e) != "polyline":
            continue
        colour = e.get("stroke")
        pts = [(xa.value(px), ya.value(py)) for px, py in points(e.get("points"))]
        band = None
        if colour in bands:
            ring = bands[colour]
            n = len(pts)
            if len(ring) != 2 * n:
                raise ValueError(f"{path}: band of {colour} has {len(ring)} points, curve {n}")
            upper, lower = ring[:n], ring[n:][::-1]
            band = []
            for (px, _), (ux, uy), (lx, ly) in zip(points(e.get("points")), upper, lower):
                if abs(ux - px) > 0.15 or abs(lx - px) > 0.15:
                    raise ValueError(f"{path}: band of {colour} does not follow its curve")
                a, b = ya.value(uy), ya.value(ly)
                band.append((min(a, b), max(a, b)))
        series.append((names.get(colour, colour), pts, band))

    # Whole x values (updates, steps) are written whole when rounding moves no point by more
    # than the stated x precision and keeps each curve's points apart.
    def roundable(pts):
        xs = [round(x) for x, _ in pts]
        close = all(abs(x - r) <= xa.error for (x, _), r in zip(pts, xs))
        return close and len(set(xs)) == len(xs)

    whole_x = not xa.log and all(roundable(p) for _, p, _ in series)
    return {
        "title": title,
        "x_title": x_title,
        "y_title": y_title,
        "x": xa,
        "y": ya,
        "whole_x": whole_x,
        "series": series,
    }


def fmt(v):
    return f"{v:.5g}"


def write_csv(d, source, out):
    with open(out, "w", newline="") as f:
        f.write(f"# digitised from {source} by scripts/svg_curves.py\n")
        f.write(f"# title: {d['title']}\n")
        f.write(f"# x: {d['x_title']} ({d['x'].describe()})\n")
        f.write(f"# y: {d['y_title']} ({d['y'].describe()})\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["series", "x", "y", "low", "high"])
        for name, pts, band in d["series"]:
            for k, (x, y) in enumerate(pts):
                xs = str(round(x)) if d["whole_x"] else fmt(x)
                lo, hi = (fmt(band[k][0]), fmt(band[k][1])) if band else ("", "")
                w.writerow([name, xs, fmt(y), lo, hi])


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    try:
        d = digitise(argv[1])
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError) as e:
        print(f"{argv[1]}: cannot digitise: {e}", file=sys.stderr)
        return 2
    write_csv(d, argv[1], argv[2])
    print(f"{argv[1]}: {len(d['series'])} curves; x {d['x'].describe()}; y {d['y'].describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
