# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Reports of a multi-scale evaluation (`evaluation.evaluate_scales`): CSV, markdown tables, heatmaps, Pareto plot."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .evaluation import CELL_LABELS, OK, ScaleResult, pareto_front


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _row_label(row: tuple[int, int, int]) -> str:
    """'224 px / p16' for a (resolution, image_size, patch_size) row; '96→98 px / p7' when rounded to the grid."""
    resolution, image_size, patch_size = row
    size = f"{resolution}" if image_size == resolution else f"{resolution}→{image_size}"
    return f"{size} px / p{patch_size}"


def _grid(results: Sequence[ScaleResult]) -> tuple[list[int], list[tuple[int, int, int]], dict]:
    """Columns (frame counts), rows (spatial settings) and cells keyed by (row, frames) of one model's results."""
    columns = sorted({r.num_frames for r in results})
    rows = list(dict.fromkeys((r.resolution, r.image_size, r.patch_size) for r in results))
    cells = {((r.resolution, r.image_size, r.patch_size), r.num_frames): r for r in results}
    return columns, rows, cells


def _by_model(results: Sequence[ScaleResult]) -> dict[str, list[ScaleResult]]:
    models: dict[str, list[ScaleResult]] = {}
    for result in results:
        models.setdefault(result.model, []).append(result)
    return models


def write_csv(results: Sequence[ScaleResult], path: str | Path) -> None:
    """One line per (model, cell), every `ScaleResult` field."""
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[field.name for field in dataclasses.fields(ScaleResult)])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(result) for result in results)


def read_csv(path: str | Path) -> list[ScaleResult]:
    """The results `write_csv` wrote, with their types: empty fields are None, `in_training` a bool."""
    fields = {field.name: field.type for field in dataclasses.fields(ScaleResult)}

    def parse(name: str, text: str) -> object:
        kind = fields[name]
        if text == "" and "None" in kind:
            return None
        if kind.startswith("bool"):
            if text not in ("True", "False"):
                raise ValueError(f"{path}: {name} must be True, False or empty, got {text!r}.")
            return text == "True"
        return int(text) if kind == "int" else float(text) if kind.startswith("float") else text

    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if set(reader.fieldnames or ()) != fields.keys():
            raise ValueError(f"{path}: expected the columns {list(fields)}, got {reader.fieldnames}.")
        return [ScaleResult(**{name: parse(name, text) for name, text in row.items()}) for row in reader]


def accuracy_grid_markdown(results: Sequence[ScaleResult]) -> str:
    """Top-1 (%) of one model as a resolution x frames table; `*` marks scales outside the training sets."""
    columns, rows, cells = _grid(results)
    lines = ["| resolution / patch | " + " | ".join(f"{t} frames" for t in columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for row in rows:
        entries = []
        for num_frames in columns:
            cell = cells.get((row, num_frames))
            if cell is None:
                entries.append("")
                continue
            text = _percent(cell.top1) if cell.status == OK else CELL_LABELS[cell.status]
            entries.append(text + ("*" if cell.in_training is False else ""))
        lines.append(f"| {_row_label(row)} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def results_markdown(results: Sequence[ScaleResult]) -> str:
    """Per model: the accuracy grid, then every measured column of every cell."""
    sections = []
    for name, model_results in _by_model(results).items():
        header = (
            "| frames | resolution | image size | patch | tokens | in training | top-1 % | top-5 % | clips/s "
            "| GFLOPs/clip | peak MB | status |"
        )
        lines = [header, "|" + "---:|" * 11 + "---|"]
        for r in model_results:
            seen = {True: "yes", False: "no", None: "?"}[r.in_training]
            numbers = [
                _percent(r.top1),
                _percent(r.top5),
                "" if r.clips_per_second is None else f"{r.clips_per_second:.1f}",
                "" if r.gflops_per_clip is None else f"{r.gflops_per_clip:.3f}",
                "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}",
            ]
            lines.append(
                f"| {r.num_frames} | {r.resolution} | {r.image_size} | {r.patch_size} | {r.num_tokens} | {seen} | "
                + " | ".join(numbers) + f" | {r.status} |"
            )  # fmt: skip
        sections.append(
            f"## {name}\n\nTop-1 accuracy (%); `*`: scale outside the training sets.\n\n"
            f"{accuracy_grid_markdown(model_results)}\n\n{chr(10).join(lines)}\n"
        )
    return "\n".join(sections)


def plot_heatmaps(results: Sequence[ScaleResult], path: str | Path, title: str | None = None) -> None:
    """Top-1 heatmaps (resolution x frames), one panel per model, three to a row; hatched cells were not trained on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    models = _by_model(results)
    first_columns, first_rows, _ = _grid(next(iter(models.values())))
    width, height = 0.8 * len(first_columns) + 2.0, 0.5 * len(first_rows) + 1.4
    num_columns = min(3, len(models))
    num_rows = math.ceil(len(models) / num_columns)
    figure, axes = plt.subplots(
        num_rows,
        num_columns,
        figsize=(width * num_columns + 1, height * num_rows),
        squeeze=False,
        layout="constrained",
    )
    for axis in axes.flat[len(models) :]:
        axis.set_visible(False)
    for index, (axis, (name, model_results)) in enumerate(zip(axes.flat, models.items(), strict=False)):
        columns, rows, cells = _grid(model_results)
        values = np.full((len(rows), len(columns)), np.nan)
        for (i, row), (j, num_frames) in itertools.product(enumerate(rows), enumerate(columns)):
            cell = cells.get((row, num_frames))
            if cell is None:
                continue
            if cell.status == OK:
                values[i, j] = 100 * cell.top1
            label = f"{100 * cell.top1:.0f}" if cell.status == OK else CELL_LABELS[cell.status]
            colour = "white" if cell.status == OK and cell.top1 < 0.6 else "black"
            axis.text(j, i, label, ha="center", va="center", fontsize=9, color=colour)
            if cell.in_training is False:
                axis.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0))
        image = axis.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        axis.set_xticks(range(len(columns)), [str(t) for t in columns])
        axis.set_yticks(range(len(rows)), [_row_label(row) for row in rows])
        axis.set_xlabel("frames")
        if index % num_columns == 0:
            axis.set_ylabel("resolution / patch size")
        axis.set_title(name)
    figure.colorbar(image, ax=axes.ravel().tolist(), label="top-1 accuracy (%)", shrink=0.9)
    figure.suptitle(title or "Top-1 accuracy over scales (hatched: not in the training sets)", fontsize=10)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def plot_pareto(results: Sequence[ScaleResult], path: str | Path, title: str | None = None) -> None:
    """Top-1 against GFLOPs per clip (log x axis): per model, its Pareto front (`evaluation.pareto_front`) as a curve
    with each cell labelled by its scale, and its other cells as faint dots in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 5), layout="constrained")
    for index, (name, model_results) in enumerate(_by_model(results).items()):
        colour = f"C{index % 10}"
        cells = [r for r in model_results if r.status == OK and r.gflops_per_clip is not None]
        front = pareto_front(cells)
        axis.scatter(
            [r.gflops_per_clip for r in cells], [100 * r.top1 for r in cells], s=12, color=colour, alpha=0.3, lw=0
        )
        axis.plot(
            [r.gflops_per_clip for r in front], [100 * r.top1 for r in front], "o-", color=colour, ms=4, label=name
        )
        for r in front:
            axis.annotate(
                f"{r.num_frames}f {r.image_size}px p{r.patch_size}",
                (r.gflops_per_clip, 100 * r.top1),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=7,
                color=colour,
            )
    axis.set_xscale("log")
    axis.set_xlabel("GFLOPs per clip")
    axis.set_ylabel("top-1 accuracy (%)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title or "Accuracy against cost: each model's Pareto front (faint: dominated cells)", fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save_results(results: Sequence[ScaleResult], output_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write `scales.csv`, `scales.md` and `scales.png` into `output_dir`; returns their paths by suffix."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {suffix: output / f"scales.{suffix}" for suffix in ("csv", "md", "png")}
    write_csv(results, paths["csv"])
    paths["md"].write_text(f"# {title or 'Multi-scale evaluation'}\n\n{results_markdown(results)}")
    plot_heatmaps(results, paths["png"], title)
    return paths
