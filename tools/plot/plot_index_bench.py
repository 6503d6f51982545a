#!/usr/bin/env python3
"""Plot the recall / speed trade-off written by `recforge index-bench ... --out bench.csv`.

usage: tools/plot/plot_index_bench.py bench.csv [more.csv ...] [--out bench.png] [--title TEXT]

One curve per CSV (queries/s against recall@k, each point labelled with its nprobe or
efSearch), and the exact brute-force speed of each as a dashed line. Runs in .venv
(tools/setup.sh installs matplotlib).
"""

import argparse
import csv
import sys
from pathlib import Path

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("plot_index_bench: matplotlib is missing; run tools/setup.sh, then use .venv/bin/python")


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "recall" not in rows[0]:
        sys.exit(f"plot_index_bench: {path}: expected the CSV of recforge index-bench")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="PNG file (default: the first CSV with .png)")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    out = args.out or args.csv[0].with_suffix(".png")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, path in enumerate(args.csv):
        rows = read(path)
        color = f"C{i}"
        k = rows[0]["k"]
        label = path.stem
        for r in rows:
            if r["index"] == "exact":
                ax.axhline(float(r["qps"]), color=color, ls="--", lw=1,
                           label=f"{label}: exact ({float(r['qps']):.0f} q/s)")
        ann = [r for r in rows if r["index"] != "exact"]
        if not ann:
            continue
        x = [float(r["recall"]) for r in ann]
        y = [float(r["qps"]) for r in ann]
        ax.plot(x, y, "o-", color=color, label=f"{label}: {ann[0]['index']} ({ann[0]['param']})")
        for r, xi, yi in zip(ann, x, y):
            if r["param"] != "-":
                ax.annotate(r["value"], (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=8, color=color)
    ax.set_xlabel(f"recall@{k} against exact top-{k} (seen items filtered)")
    ax.set_ylabel("queries / second")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(args.title or "recforge index-bench")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"plot_index_bench: wrote {out}")


if __name__ == "__main__":
    main()
