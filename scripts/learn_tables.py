"""Markdown tables of `flops bench learn`'s JSON, for docs/results.md (numbers are printed, never
typed in by hand).

    python3 scripts/learn_tables.py --variance docs/learn/variance.json \\
        --curves docs/learn/curves.json docs/learn/exact.json

prints (a) the gradient-MSE gains over uniform over cells at each checkpoint with their bootstrap
90% intervals and the predicted site-level gain, and (b) each variant's accuracy along the run
(mean +- sd over seeds) at equal FLOPs, with the share of uniform's FLOPs it needs to reach
uniform's final accuracy and that share's bootstrap interval.
"""
import argparse
import json
from pathlib import Path


def fmt_interval(lo, hi):
    f = lambda v: "not reached" if v is None else f"{v:.2f}"
    return f"[{f(lo)}, {f(hi)}]"


def variance_table(d):
    cps = d["variance"]
    names = [v["variant"] for v in cps[0]["variants"]]
    print("| checkpoint | " + " | ".join(names) + " | predicted (sites) |")
    print("|---" * (len(names) + 2) + "|")
    for c in cps:
        cells = []
        for v in c["variants"]:
            if v["variant"] == "uniform":
                cells.append(f"1 (MSE {v['mse']:.3g})")
            else:
                lo, hi = v["gain_interval"]
                cells.append(f"{v['gain']:.2f}x [{lo:.2f}, {hi:.2f}]")
        print(f"| {c['step']} steps | " + " | ".join(cells) + f" | {c['predicted_site_gain']:.2f}x |")
    print()
    print("| checkpoint | " + " | ".join(f"{n}: MFLOP per estimate, gain per FLOP" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for c in cps:
        print(f"| {c['step']} | " + " | ".join(f"{v['flops_per_estimate'] / 1e6:.0f}, {v['gain_equal_flops']:.2f}x" for v in c["variants"]) + " |")


def curves_table(files):
    seen, curves = set(), []
    for f in files:
        for c in json.loads(Path(f).read_text())["learning"]:
            if c["variant"] not in seen:
                seen.add(c["variant"])
                curves.append(c)
    quarters = lambda pts: [pts[(len(pts) - 1) * k // 4] for k in (1, 2, 3, 4)]
    print("| variant | steps | at 25% of the FLOPs | 50% | 75% | 100% (final) | FLOPs to reach uniform's final, share [90% CI] | s per run |")
    print("|---|---|---|---|---|---|---|---|")
    for c in curves:
        cells = [f"{100 * p['accuracy']['mean']:.1f} +- {100 * p['accuracy']['sd']:.1f}" for p in quarters(c["points"])]
        r = c.get("reach") or {}
        share = r.get("share_of_uniform")
        reach = "not reached" if share is None else f"{share:.2f} {fmt_interval(*r['share_interval'])}"
        print(f"| {c['variant']} | {c['steps']} | " + " | ".join(cells) + f" | {reach} | {c['seconds']['mean']:.0f} |")
    total = curves[0]["points"][-1]["flops"] / 1e9
    print(f"\n(every run: {total:.0f} GFLOP of forward passes, clean ones included; target "
          f"{100 * curves[0]['reach']['target']:.1f}%)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variance", type=Path)
    ap.add_argument("--curves", type=Path, nargs="*", default=[])
    a = ap.parse_args()
    if a.variance:
        variance_table(json.loads(a.variance.read_text()))
        print()
    if a.curves:
        curves_table(a.curves)


if __name__ == "__main__":
    main()
