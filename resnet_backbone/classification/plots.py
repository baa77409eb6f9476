"""PNG figures in the style of the paper: error curves (Fig. 4 / Fig. 6: thin or dashed training
error, bold validation/test error) and layer-response stds (Fig. 7: original and sorted order)."""
import csv
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curves(run_dir) -> Tuple[List[Tuple[int, float]], List[Tuple[int, float]]]:
    """(train, val) lists of (iteration, error %) from a run's metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give run folders written by tools/train_cls.py")
    train, val = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train_err"):
                train.append((int(row["iteration"]), float(row["train_err"])))
            if row.get("val_top1_err"):
                val.append((int(row["iteration"]), float(row["val_top1_err"])))
    return train, val


def plot_curves(runs: Dict[str, Tuple[Sequence, Sequence]], out_png, *, title: str = "",
                train_style: str = "thin", ylim=None) -> str:
    """One colour per run; training error thin (Fig. 4) or dashed (Fig. 6), validation bold."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (name, (train, val)), colour in zip(runs.items(), plt.cm.tab10.colors * 10):
        if train:
            it, err = zip(*train)
            ax.plot([i / 1e4 for i in it], err, color=colour, linewidth=0.8,
                    linestyle="--" if train_style == "dashed" else "-", label=f"{name} train")
        if val:
            it, err = zip(*val)
            ax.plot([i / 1e4 for i in it], err, color=colour, linewidth=2.2, label=f"{name} val")
    ax.set_xlabel("iter. (1e4)")
    ax.set_ylabel("error (%)")
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return str(out_png)


def plot_responses(results: Dict[str, List[float]], out_png, *, title: str = "") -> str:
    """Fig. 7: top, stds per 3x3 layer in network order; bottom, sorted in descending order."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6))
    for name, stds in results.items():
        top.plot(range(1, len(stds) + 1), stds, marker=".", linewidth=1, label=name)
        bottom.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), marker=".", linewidth=1, label=name)
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    top.set_title(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return str(out_png)
