#!/usr/bin/env python3
"""Draw the documentation's figures from the measured results in docs/results/*.json.

    python scripts/plot_results.py [--results docs/results] [--output docs/img]

Writes, from the JSON files alone (nothing is measured here):

- bleu_vs_parameters.png: test2016 BLEU against parameters, one marker per kind of model
  (shared LSTM, separate LSTMs, published references), from multi30k.json;
- learning_curves.png: validation BLEU by epoch of the Multi30k runs, from
  learning_curves.json;
- speed_vs_torch.png: ours / PyTorch for each training and decoding case, and
- speed_scaling.png: training tokens/s by hidden size and batch, from speed.json;
- peers.png: validation BLEU against minutes of training, ours beside Joey NMT, from
  peers.json;
- frontier.png: test2016 BLEU against parameters, one line per kind (shared, separate),
  greedy and beam 5, from frontier.json (scripts/frontier.py).

Needs matplotlib (`pip install -e ".[docs]"`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STYLE = {  # kind -> marker, colour, legend label
    "shared": ("o", "tab:blue", "one shared LSTM"),
    "separate": ("s", "tab:orange", "separate encoder and decoder LSTMs"),
    "reference": ("^", "tab:gray", "published reference (not re-run)"),
}


def read(results: Path, name: str) -> dict[str, Any]:
    path = results / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file; run from the repository root")
    with path.open(encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file)
    return data


def save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    # No "Software" stamp: the same JSON gives byte-identical PNGs across versions.
    figure.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(figure)
    print(f"wrote {path}")


def bleu_vs_parameters(multi30k: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for kind, (marker, colour, label) in STYLE.items():
        runs = [run for run in multi30k["runs"] if run["kind"] == kind]
        for index, run in enumerate(runs):
            filled = run["attention"]
            axes.scatter(
                run["parameters_millions"],
                run["bleu_lowercased"],
                marker=marker,
                s=70,
                color=colour if filled else "white",
                edgecolors=colour,
                linewidths=1.5,
                label=label if index == 0 else None,
                zorder=3,
            )
            axes.annotate(
                run["id"],
                (run["parameters_millions"], run["bleu_lowercased"]),
                textcoords="offset points",
                xytext=(6, -3),
                fontsize=8,
            )
    axes.set_xlabel("parameters (millions)")
    axes.set_ylabel("test2016 BLEU, lowercased (greedy)")
    axes.set_title("Multi30k de-en: BLEU against parameters (filled: attention)")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    save(figure, path)


def learning_curves(curves: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for run in curves["runs"]:
        marker, colour, _ = STYLE[run["kind"]]
        epochs = [point[0] for point in run["val_bleu"]]
        bleu = [point[1] for point in run["val_bleu"]]
        dashed = "no attention" in run["label"]
        axes.plot(
            epochs,
            bleu,
            marker=marker,
            markersize=4,
            linestyle="--" if dashed else "-",
            color=colour if "H=707" not in run["label"] else "tab:green",
            label=run["label"],
        )
    axes.set_xlabel("epoch (fractional: the validation at the 60-minute limit)")
    axes.set_ylabel("val BLEU (greedy)")
    axes.set_title("Multi30k de-en: validation BLEU by epoch")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def speed_vs_torch(speed: dict[str, Any], path: Path) -> None:
    rows = speed["torch_comparison"]["rows"]
    figure, axes = plt.subplots(figsize=(7.5, 3.8))
    names = [row["short"] for row in rows]
    ratios = [row["ratio"] for row in rows]
    colours = ["tab:blue" if ratio >= 1 else "tab:red" for ratio in ratios]
    bars = axes.barh(names, ratios, color=colours)
    axes.bar_label(bars, labels=[f"{ratio:.2f}" for ratio in ratios], padding=3, fontsize=8)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.invert_yaxis()
    axes.set_xlabel("ours / PyTorch (medians of 3 rounds; > 1: ours faster)")
    axes.set_title("Speed beside plain PyTorch, 2-core CPU")
    axes.set_xlim(0, max(ratios) * 1.15)
    save(figure, path)


def speed_scaling(speed: dict[str, Any], path: Path) -> None:
    rows = speed["scaling"]["rows"]
    hiddens = sorted({row["hidden"] for row in rows})
    batches = sorted({row["batch"] for row in rows})
    width = 0.8 / len(batches)
    figure, axes = plt.subplots(figsize=(7.5, 3.8))
    for offset, batch in enumerate(batches):
        values = [
            next(
                r["train_tokens_per_second"]
                for r in rows
                if r["hidden"] == h and r["batch"] == batch
            )
            for h in hiddens
        ]
        positions = [
            index + (offset - (len(batches) - 1) / 2) * width for index in range(len(hiddens))
        ]
        bars = axes.bar(positions, values, width, label=f"batch {batch}")
        axes.bar_label(bars, labels=[f"{value:,}" for value in values], fontsize=7, padding=2)
    axes.set_xticks(range(len(hiddens)), [f"H={h}" for h in hiddens])
    axes.set_ylabel("training, target tokens/s")
    axes.set_title("Training speed by hidden size and batch, 2-core CPU")
    axes.legend(fontsize=8)
    save(figure, path)


def peers(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for row in results["rows"]:
        minutes = [point[0] for point in row["validation_curve"]]
        bleu = [point[1] for point in row["validation_curve"]]
        label = f"{row['toolkit']}, {row['name']} ({row['parameters'] / 1e6:.1f}M parameters)"
        axes.plot(minutes, bleu, marker="o", markersize=4, label=label)
    axes.set_xlabel("minutes of training")
    axes.set_ylabel("val BLEU (greedy, each toolkit's own scorer)")
    axes.set_title("Multi30k de-en: validation BLEU against time, side by side")
    axes.set_xlim(0, 62)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def frontier(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for kind in ("shared", "separate"):
        marker, colour, label = STYLE[kind]
        points = sorted(
            (p for p in results["points"] if p["kind"] == kind), key=lambda p: p["parameters"]
        )
        if not points:  # (a kind not measured yet: no empty legend entry)
            continue
        millions = [point["parameters"] / 1e6 for point in points]
        for search, style in (("greedy", "-"), ("beam5", ":")):
            bleu = [point[search]["bleu_lowercase"] for point in points]
            name = f"{label}, {'greedy' if search == 'greedy' else 'beam 5'}"
            axes.plot(millions, bleu, style, marker=marker, color=colour, label=name)
    axes.set_xscale("log")
    axes.set_xticks([1, 2, 5, 10], labels=["1M", "2M", "5M", "10M"])
    axes.set_xlabel("parameters (log scale)")
    axes.set_ylabel("test2016 BLEU, lowercased")
    axes.set_title("Multi30k de-en, 60 CPU-minutes each: BLEU against parameters")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img")
    arguments = parser.parse_args()
    arguments.output.mkdir(parents=True, exist_ok=True)
    speed = read(arguments.results, "speed.json")
    bleu_vs_parameters(
        read(arguments.results, "multi30k.json"), arguments.output / "bleu_vs_parameters.png"
    )
    learning_curves(
        read(arguments.results, "learning_curves.json"), arguments.output / "learning_curves.png"
    )
    speed_vs_torch(speed, arguments.output / "speed_vs_torch.png")
    speed_scaling(speed, arguments.output / "speed_scaling.png")
    peers(read(arguments.results, "peers.json"), arguments.output / "peers.png")
    frontier(read(arguments.results, "frontier.json"), arguments.output / "frontier.png")


if __name__ == "__main__":
    main()
