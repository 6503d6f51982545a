#!/usr/bin/env python3
"""Plot the metric-per-iteration curves written by `recforge compare RUN_DIR... --out DIR`.

usage: tools/plot/plot_curves.py curves.csv [--out curves.png] [--metric ndcg@20] [--title TEXT]

Left: the validation metric against the iteration, one line per run (runs trained without
model.eval_every have no validation curve). Right: the training loss. `recforge compare` runs
this with .venv/bin/python (tools/setup.sh installs matplotlib). Exits with status 3 when
matplotlib is missing.
"""

import argparse
import csv
import sys
from collections import OrderedDict
from pathlib import Path


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"run", "iteration", "loss"} <= set(rows[0]):
        sys.exit(f"plot_curves: {path}: expected the curves.csv of recforge compare")
    runs = OrderedDict()
    for r in rows:
        runs.setdefault(r["run"], []).append(r)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--out", type=Path, help="PNG file (default: the CSV with .png)")
    ap.add_argument("--metric", default="", help="validation metric NAME@K (default: the first)")
    ap.add_argument("--title", default="")
    ap.add_argument("--quiet-missing", action="store_true",
                    help="exit with status 3 without a message when matplotlib is missing")
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:  # pragma: no cover - depends on the environment
        if not args.quiet_missing:
            print("plot_curves: matplotlib is missing; run tools/setup.sh, then use "
                  ".venv/bin/python", file=sys.stderr)
        sys.exit(3)

    runs = read(args.csv)
    out = args.out or args.csv.with_suffix(".png")
    first = next(iter(runs.values()), [])
    metrics = [c for c in (first[0].keys() if first else []) if "@" in c]
    metric = args.metric or (metrics[0] if metrics else "")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    drawn = 0
    for i, (name, rows) in enumerate(runs.items()):
        color = f"C{i % 10}"
        pts = [(int(r["iteration"]), float(r[metric])) for r in rows
               if metric and r.get(metric, "") != ""]
        if pts:
            left.plot(*zip(*pts), marker="o", ms=3, color=color, label=name)
            drawn += 1
        loss = [(int(r["iteration"]), float(r["loss"])) for r in rows if r["loss"] != ""]
        if loss:
            right.plot(*zip(*loss), color=color, label=name)
    left.set_xlabel("iteration")
    left.set_ylabel(f"validation {metric}" if metric else "validation")
    if not drawn:
        left.text(0.5, 0.5, "no validation curve\n(train with model.eval_every > 0)",
                  ha="center", va="center", transform=left.transAxes)
    right.set_xlabel("iteration")
    right.set_ylabel("training loss")
    right.set_yscale("log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if runs:
        (left if drawn else right).legend(fontsize=8)
    fig.suptitle(args.title or f"{len(runs)} run(s): {metric}")
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
