"""SVG plots of `flops bench learn`'s JSON (no plotting library needed).

    python3 scripts/plot_learn.py docs/ --variance docs/learn/variance.json \
        --curves docs/learn/curves.json docs/learn/exact.json

writes `learn_accuracy.svg` (validation accuracy against cumulative forward GFLOPs, mean of the
seeds with a +-1 sd band, per variant, from every curves file; a variant already drawn is not
drawn again) and `learn_variance.svg` (each variant's gradient-MSE gain over uniform-over-cells
at each checkpoint, with its bootstrap 90% interval).
"""
import json
import sys
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
W, H, L, R, T, B = 680, 400, 70, 200, 30, 50


def axes(title, xlabel, ylabel, xr, yr, xticks, yticks, fmt_x, fmt_y):
    (x0, x1), (y0, y1) = xr, yr
    sx = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">{ylabel}</text>']
    for x in xticks:
        out.append(f'<line x1="{sx(x)}" y1="{H - B}" x2="{sx(x)}" y2="{H - B + 5}" stroke="black"/>')
        out.append(f'<text x="{sx(x)}" y="{H - B + 18}" text-anchor="middle">{fmt_x(x)}</text>')
    for y in yticks:
        out.append(f'<line x1="{L - 5}" y1="{sy(y)}" x2="{W - R}" y2="{sy(y)}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 8}" y="{sy(y) + 4}" text-anchor="end">{fmt_y(y)}</text>')
    return out, sx, sy


def ticks(lo, hi, n=5):
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def accuracy_plot(d, path):
    curves = d["learning"]
    if not curves:
        return
    xmax = max(p["flops"] for c in curves for p in c["points"]) / 1e9
    accs = [p["accuracy"]["mean"] for c in curves for p in c["points"]]
    y0, y1 = max(0.0, min(accs) - 0.05), min(1.0, max(accs) + 0.05)
    out, sx, sy = axes("Validation accuracy against forward cost", "cumulative forward GFLOP (clean passes included)",
                       "validation accuracy", (0, xmax), (y0, y1), ticks(0, xmax), ticks(y0, y1),
                       lambda x: f"{x:.0f}", lambda y: f"{100 * y:.0f}%")
    for k, c in enumerate(curves):
        col = COLOURS[k % len(COLOURS)]
        pts = [(p["flops"] / 1e9, p["accuracy"]) for p in c["points"]]
        upper = " ".join(f"{sx(x)},{sy(a['mean'] + a['sd'])}" for x, a in pts)
        lower = " ".join(f"{sx(x)},{sy(a['mean'] - a['sd'])}" for x, a in reversed(pts))
        out.append(f'<polygon points="{upper} {lower}" fill="{col}" opacity="0.15"/>')
        line = " ".join(f"{sx(x)},{sy(a['mean'])}" for x, a in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{col}" stroke-width="2"/>')
        for x, a in pts:
            out.append(f'<circle cx="{sx(x)}" cy="{sy(a["mean"])}" r="3" fill="{col}"/>')
        out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * k}" fill="{col}">{c["variant"]}: '
                   f'{100 * c["final_accuracy"]["mean"]:.1f}% +- {100 * c["final_accuracy"]["sd"]:.1f}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def variance_plot(d, path):
    cps = d["variance"]
    if not cps:
        return
    names = [v["variant"] for v in cps[0]["variants"]]
    gains = [v["gain_interval"][1] for c in cps for v in c["variants"]]
    ymax = max(1.5, max(gains) * 1.1)
    n = len(cps)
    out, sx, sy = axes("Gradient MSE gain over uniform-over-cells (higher is better)", "checkpoint (steps)",
                       "uniform MSE / MSE", (0, n), (0, ymax), [], ticks(0, ymax), str, lambda y: f"{y:.1f}x")
    bw = (W - L - R) / n / (len(names) + 1)
    for i, c in enumerate(cps):
        out.append(f'<text x="{sx(i + 0.5)}" y="{H - B + 18}" text-anchor="middle">{c["step"]}</text>')
        for k, v in enumerate(c["variants"]):
            col = COLOURS[k % len(COLOURS)]
            x = sx(i) + bw * (k + 0.5)
            out.append(f'<rect x="{x}" y="{sy(v["gain"])}" width="{bw * 0.9}" height="{sy(0) - sy(v["gain"])}" fill="{col}"/>')
            lo, hi = v["gain_interval"]
            out.append(f'<line x1="{x + bw * 0.45}" y1="{sy(lo)}" x2="{x + bw * 0.45}" y2="{sy(hi)}" stroke="black"/>')
        out.append(f'<line x1="{sx(i)}" y1="{sy(c["predicted_site_gain"])}" x2="{sx(i + 1)}" y2="{sy(c["predicted_site_gain"])}" '
                   f'stroke="black" stroke-dasharray="4 3"/>')
    for k, name in enumerate(names):
        out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * k}" fill="{COLOURS[k % len(COLOURS)]}">{name}</text>')
    out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * len(names)}">--- predicted (sites)</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--variance", type=Path, required=True)
    ap.add_argument("--curves", type=Path, nargs="+", required=True)
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    curves, seen = [], set()
    for f in a.curves:
        for c in json.loads(f.read_text())["learning"]:
            if c["variant"] not in seen:
                seen.add(c["variant"])
                curves.append(c)
    dst = a.out
    accuracy_plot({"learning": curves}, dst / "learn_accuracy.svg")
    variance_plot(json.loads(a.variance.read_text()), dst / "learn_variance.svg")
    print(f"wrote {dst / 'learn_accuracy.svg'} and {dst / 'learn_variance.svg'}")


if __name__ == "__main__":
    main()
