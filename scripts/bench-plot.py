#!/usr/bin/env python3
"""Plots the connection ladder of scripts/bench as an SVG, with the standard library only.

    python3 scripts/bench-plot.py OUT_DIR [SUBTITLE...]

Reads OUT_DIR/ladder-*.json (Sidecast) and OUT_DIR/node-ladder-*.json (Node's socket.io), each a
`sidecast bench --json` report of one step, and OUT_DIR/ladder-skipped.txt (steps not run, and
why), and writes OUT_DIR/ladder.svg: three small panels over the number of clients (log scale),
one line per server: the server's RSS per connection (right after connecting, dashed, and after
the warm-up's 40+ packets per client, solid), its CPU time per delivery in the 1 event/s window,
and the latency p50 (dashed) and p99 (solid) of that window.
"""

import glob
import json
import math
import os
import sys
from xml.sax.saxutils import escape

WIDTH = 900  # the height grows with the notes under the panels
PANEL_W, PANEL_H = 238, 220  # plot area of one panel
PANEL_TOP = 118
PANEL_LEFT = [62, 358, 654]
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"

SERVERS = [
    # (file prefix, label, colour)
    ("ladder-", "Sidecast (Redis broker)", "#1f77b4"),
    ("node-ladder-", "Node socket.io (no broker)", "#e6700f"),
]


def load(out):
    """The steps of each server: a list of dicts sorted by clients."""
    series = {}
    for prefix, label, colour in SERVERS:
        points = []
        for path in glob.glob(os.path.join(out, prefix + "*.json")):
            try:
                r = json.load(open(path))
            except (OSError, ValueError):
                continue
            s = r.get("server") or {}
            lat = r.get("latency_ms") or {}
            kib = lambda b: None if b is None else b / 1024
            points.append({
                "clients": r["clients"]["requested"],
                "rss_connect": kib(s.get("rss_per_connection_bytes")),
                "rss_warm": kib(s.get("rss_per_connection_after_warmup_bytes")),
                "cpu": s.get("cpu_us_per_delivery"),
                "p50": lat.get("p50"),
                "p99": lat.get("p99"),
            })
        if points:
            series[label] = (colour, sorted(points, key=lambda p: p["clients"]))
    return series


def nice_step(span, target=5):
    """A step of 1, 2 or 5 × 10^k giving about `target` intervals over `span`."""
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def y_axis(values):
    top = max([v for v in values if v is not None] or [1]) * 1.08
    step = nice_step(top)
    top = math.ceil(top / step) * step
    ticks = [i * step for i in range(int(round(top / step)) + 1)]
    return top, ticks


def x_axis(xs):
    lo, hi = min(xs), max(xs)
    if lo == hi:
        lo, hi = lo / 2, hi * 2
    lo, hi = lo / 1.3, hi * 1.3
    ticks = []
    for k in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** k
            if lo <= v <= hi:
                ticks.append(v)
    if len(ticks) > 7:  # several decades: label the powers of ten only
        ticks = [t for t in ticks if str(int(t)).startswith("1")]
    return lo, hi, ticks


def label(v):
    if v >= 1000 and v % 1000 == 0:
        return f"{int(v // 1000)}k"
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def fmt_y(v):
    return f"{v:g}" if v < 10 or v == int(v) else f"{v:.1f}"


def panel(svg, left, title, y_label, series, keys, xdom):
    """One panel: axes, grid, and a line per (server, key); keys: [(field, dashed)]."""
    lo, hi, xticks = xdom
    values = [p[f] for _, pts in series.values() for p in pts for f, _ in keys]
    top, yticks = y_axis(values)
    x = lambda v: left + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * PANEL_W
    y = lambda v: PANEL_TOP + PANEL_H - v / top * PANEL_H
    svg.append(f"<text x='{left}' y='{PANEL_TOP - 12}' font-size='13' font-weight='bold' {FONT}>{escape(title)}</text>")
    for t in yticks:
        svg.append(f"<line x1='{left}' x2='{left + PANEL_W}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#e5e5e5'/>")
        svg.append(f"<text x='{left - 6}' y='{y(t) + 4:.1f}' font-size='11' text-anchor='end' fill='#444' {FONT}>{fmt_y(t)}</text>")
    for t in xticks:
        svg.append(f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{PANEL_TOP}' y2='{PANEL_TOP + PANEL_H}' stroke='#eeeeee'/>")
        svg.append(f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{PANEL_TOP + PANEL_H}' y2='{PANEL_TOP + PANEL_H + 4}' stroke='#444'/>")
        svg.append(f"<text x='{x(t):.1f}' y='{PANEL_TOP + PANEL_H + 17}' font-size='11' text-anchor='middle' fill='#444' {FONT}>{label(t)}</text>")
    svg.append(f"<rect x='{left}' y='{PANEL_TOP}' width='{PANEL_W}' height='{PANEL_H}' fill='none' stroke='#888'/>")
    svg.append(f"<text x='{left + PANEL_W / 2}' y='{PANEL_TOP + PANEL_H + 34}' font-size='11' text-anchor='middle' fill='#444' {FONT}>clients (log scale)</text>")
    cy = PANEL_TOP + PANEL_H / 2
    svg.append(f"<text transform='translate({left - 44},{cy}) rotate(-90)' font-size='11' text-anchor='middle' fill='#444' {FONT}>{escape(y_label)}</text>")
    for colour, pts in series.values():
        for field, dashed in keys:
            xy = [(x(p["clients"]), y(p[field])) for p in pts if p[field] is not None]
            if not xy:
                continue
            dash = " stroke-dasharray='5 4'" if dashed else ""
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in xy)
            svg.append(f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='2'{dash}/>")
            for a, b in xy:
                fill = "white" if dashed else colour
                svg.append(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{fill}' stroke='{colour}' stroke-width='1.5'/>")


def style_key(svg, left, entries):
    """Solid/dashed key under a panel's title."""
    x = left
    for text, dashed in entries:
        dash = " stroke-dasharray='5 4'" if dashed else ""
        svg.append(f"<line x1='{x}' x2='{x + 22}' y1='{PANEL_TOP - 34}' y2='{PANEL_TOP - 34}' stroke='#555' stroke-width='2'{dash}/>")
        svg.append(f"<text x='{x + 27}' y='{PANEL_TOP - 30}' font-size='11' fill='#444' {FONT}>{escape(text)}</text>")
        x += 34 + 6.2 * len(text)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    subtitle = " ".join(sys.argv[2:])
    series = load(out)
    if not series:
        print(f"no ladder reports in {out}", file=sys.stderr)
        return 1
    skipped = []
    path = os.path.join(out, "ladder-skipped.txt")
    if os.path.exists(path):
        skipped = [line.strip() for line in open(path) if line.strip()]
    xdom = x_axis([p["clients"] for _, pts in series.values() for p in pts])

    svg = [f"<text x='20' y='28' font-size='17' font-weight='bold' {FONT}>Connection ladder: one server, the clients on the same machine</text>"]
    if subtitle:
        svg.append(f"<text x='20' y='47' font-size='11' fill='#555' {FONT}>{escape(subtitle)}</text>")
    # The servers' colours, top right of the title block.
    lx = 20
    for name, (colour, _) in series.items():
        svg.append(f"<rect x='{lx}' y='58' width='14' height='4' fill='{colour}'/>")
        svg.append(f"<text x='{lx + 19}' y='64' font-size='12' {FONT}>{escape(name)}</text>")
        lx += 40 + 7 * len(name)

    panel(svg, PANEL_LEFT[0], "Server RSS per connection", "KiB", series,
          [("rss_connect", True), ("rss_warm", False)], xdom)
    style_key(svg, PANEL_LEFT[0], [("at connect", True), ("after 40+ packets", False)])
    panel(svg, PANEL_LEFT[1], "Server CPU per delivery", "µs (1 event/s window)", series,
          [("cpu", False)], xdom)
    panel(svg, PANEL_LEFT[2], "Latency, publish to receipt", "ms", series,
          [("p50", True), ("p99", False)], xdom)
    style_key(svg, PANEL_LEFT[2], [("p50", True), ("p99", False)])

    # The steps not run, one line each; the hint of how to raise the limit once.
    hint = " (raise it: "
    raise_hint = next((l[l.index(hint) + 2:-1] for l in skipped if hint in l and l.endswith(")")), None)
    skipped = [l.split(hint)[0] for l in skipped]
    if raise_hint:
        skipped.append(raise_hint)
    y = PANEL_TOP + PANEL_H + 56
    for line in skipped[:4]:
        if len(line) > 150:
            line = line[:147] + "..."
        svg.append(f"<text x='20' y='{y}' font-size='10.5' fill='#777' {FONT}>{escape(line)}</text>")
        y += 14
    if len(skipped) > 4:
        svg.append(f"<text x='20' y='{y}' font-size='10.5' fill='#777' {FONT}>... and {len(skipped) - 4} more (ladder-skipped.txt)</text>")
        y += 14
    height = y + 4
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' viewBox='0 0 {WIDTH} {height}'>",
           f"<rect width='{WIDTH}' height='{height}' fill='white'/>"] + svg + ["</svg>"]
    target = os.path.join(out, "ladder.svg")
    with open(target, "w") as f:
        f.write("\n".join(svg) + "\n")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
