# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Multi-scale evaluation: accuracy, speed, FLOPs and memory of checkpoints over a (frames x resolution) grid."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .flexible_training import FlexibleTrainingConfig, Scale
from .flops import count_flops
from .modeling_stretchysnake import StretchySnakePreTrainedModel

PATCH_RULES = ("static_tokens", "static_patch")
OK, OUT_OF_MEMORY, OVER_BUDGET, INVALID = "ok", "out of memory", "over token budget", "invalid scale"
CELL_LABELS = {OUT_OF_MEMORY: "OOM", OVER_BUDGET: "budget", INVALID: "n/a"}


@dataclasses.dataclass
class ScaleResult:
    """One cell of the grid for one model.

    `resolution` is the requested grid row; `image_size` the side actually evaluated (static_tokens rounds it to a
    multiple of the token grid, as training does). `in_training` is `None` when the training scales are unknown.
    `clips_per_second` counts model inputs (views) through the forward pass alone, decoding excluded;
    `peak_memory_mb` is torch's peak allocation on CUDA and the process's peak resident memory on CPU, during the
    cell's forward passes.
    """

    model: str
    num_frames: int
    resolution: int
    image_size: int
    patch_size: int
    num_tokens: int
    in_training: bool | None
    status: str
    num_videos: int = 0
    top1: float | None = None
    top5: float | None = None
    clips_per_second: float | None = None
    gflops_per_clip: float | None = None
    peak_memory_mb: float | None = None


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of `logits` (num_examples, num_classes) whose `k` highest scores include the label."""
    top = np.argsort(-logits, axis=-1)[:, :k]
    return float((top == labels[:, None]).any(axis=-1).mean())


def training_scales(config: Any) -> set[Scale] | None:
    """The scales a checkpoint trained on, read from `config.flexible_training` (written by `train_flex.py`)."""
    flexible = getattr(config, "flexible_training", None)
    return set(FlexibleTrainingConfig.from_dict(flexible).scales) if flexible else None


def spatial_settings(
    config: Any,
    resolutions: Sequence[int],
    patch_rule: str = "static_tokens",
    patch_sizes: Sequence[int] | None = None,
    token_grid: int | None = None,
) -> list[tuple[int, int, int]]:
    """The grid's rows for one model: `(resolution, image_size, patch_size)` per requested resolution.

    - "static_tokens": the token grid stays fixed (`token_grid`; by default the one the checkpoint trained with
      under static_tokens, else its base grid `image_size // patch_size`): `p = round(S / grid)`, evaluated at
      `grid * p`, the rule flexible training uses.
    - "static_patch": the patch size stays fixed (each of `patch_sizes`, default the checkpoint's), so the grid
      grows with S; one row per (resolution, patch size).
    """
    if patch_rule not in PATCH_RULES:
        raise ValueError(f"Unknown patch_rule {patch_rule!r}; choose one of {PATCH_RULES}.")
    if patch_rule == "static_patch":
        return [(s, s, p) for p in patch_sizes or [config.patch_size] for s in resolutions]
    if patch_sizes:
        raise ValueError("static_tokens derives the patch size from the token grid; patch_sizes is for static_patch.")
    if token_grid is None:
        flexible = getattr(config, "flexible_training", None) or {}
        static_tokens = flexible.get("variant") == "static_tokens"
        token_grid = flexible["token_grid"] if static_tokens else config.image_size // config.patch_size
    rows = []
    for resolution in resolutions:
        patch_size = max(1, round(resolution / token_grid))
        rows.append((resolution, token_grid * patch_size, patch_size))
    return rows


class _PeakMemory:
    """Peak memory of a block: torch's CUDA allocator statistics, or a thread sampling the process's RSS on CPU."""

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device, self.interval, self.peak = device, interval, 0
        self._process, self._done = psutil.Process(), threading.Event()

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self._process.memory_info().rss
            self._done.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._done.set()
            self._thread.join()
            self.peak = max(self.peak, self._process.memory_info().rss)


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


@dataclasses.dataclass
class _Cell:
    """Work and per-process tallies of one (model, frames, spatial setting)."""

    name: str
    model: StretchySnakePreTrainedModel
    result: ScaleResult
    micro_batch: int
    logits: list[np.ndarray] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    clips: int = 0
    peak: int = 0


def _plan_cells(
    models: Mapping[str, StretchySnakePreTrainedModel],
    frames: Sequence[int],
    resolutions: Sequence[int],
    patch_rule: str,
    patch_sizes: Sequence[int] | None,
    token_grid: int | None,
    batch_clips: int,
    max_tokens: int | None,
    known_scales: Iterable[Scale] | None,
) -> list[_Cell]:
    cells = []
    for name, model in models.items():
        config = model.config
        seen = set(known_scales) if known_scales is not None else training_scales(config)
        for resolution, image_size, patch_size in spatial_settings(
            config, resolutions, patch_rule, patch_sizes, token_grid
        ):
            for num_frames in frames:
                valid = image_size % patch_size == 0 and num_frames % config.tubelet_size == 0
                tokens = 1 + num_frames // config.tubelet_size * (image_size // patch_size) ** 2
                micro_batch = batch_clips if max_tokens is None else min(batch_clips, max_tokens // tokens)
                status = INVALID if not valid else OVER_BUDGET if micro_batch == 0 else OK
                scale = Scale(num_frames, image_size, patch_size)
                result = ScaleResult(
                    name, num_frames, resolution, image_size, patch_size, tokens, None if seen is None else scale in seen,
                    status,
                )  # fmt: skip
                if valid:
                    shape = (1, num_frames, config.num_channels, image_size, image_size)
                    result.gflops_per_clip = count_flops(model, shape, patch_size=patch_size) / 1e9
                cells.append(_Cell(name, model, result, micro_batch))
    return cells


@torch.no_grad()
def _forward(cell: _Cell, pixel_values: torch.Tensor, num_views: int) -> None:
    """Run `cell`'s model over one processed batch in token-budget micro-batches; average the softmax over views."""
    device = next(cell.model.parameters()).device
    outputs = []
    try:
        with _PeakMemory(device) as memory:
            for chunk in pixel_values.split(cell.micro_batch):
                chunk = chunk.to(device)
                if not cell.clips:  # untimed warm-up: fills the resize cache, compiles kernels for this shape
                    cell.model(chunk[:1], patch_size=cell.result.patch_size)
                start = time.perf_counter()
                logits = cell.model(chunk, patch_size=cell.result.patch_size).logits
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                cell.seconds += time.perf_counter() - start
                outputs.append(logits.float().cpu())
    except (RuntimeError, MemoryError) as error:
        if not _is_out_of_memory(error):
            raise
        cell.result.status = OUT_OF_MEMORY
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return
    cell.peak = max(cell.peak, memory.peak)
    cell.clips += len(pixel_values)
    # video-level scores: the softmax averaged over each video's views (VideoMamba's test protocol, as `predict`)
    cell.logits.append(torch.cat(outputs).softmax(-1).view(-1, num_views, outputs[0].shape[-1]).mean(1).numpy())


def _merge(cell: _Cell, labels: np.ndarray, gathered: list[dict[str, Any]]) -> ScaleResult:
    """Combine the tallies every process gathered for `cell` into its result."""
    result = cell.result
    if any(part["status"] == OUT_OF_MEMORY for part in gathered):
        result.status = OUT_OF_MEMORY
    if result.status != OK:
        return result
    logits = np.concatenate([part["logits"] for part in gathered if len(part["logits"])])
    result.num_videos = len(logits)
    result.top1 = top_k_accuracy(logits, labels, 1)
    result.top5 = top_k_accuracy(logits, labels, min(5, logits.shape[-1]))
    seconds = max(part["seconds"] for part in gathered)
    result.clips_per_second = sum(part["clips"] for part in gathered) / seconds if seconds > 0 else None
    result.peak_memory_mb = max(part["peak"] for part in gathered) / 2**20
    return result


def evaluate_scales(
    model: StretchySnakePreTrainedModel | Mapping[str, StretchySnakePreTrainedModel],
    processor: Any,
    videos: Sequence[Any],
    labels: Sequence[int],
    frames: Sequence[int],
    resolutions: Sequence[int],
    patch_rule: str = "static_tokens",
    patch_sizes: Sequence[int] | None = None,
    token_grid: int | None = None,
    batch_size: int = 8,
    max_tokens: int | None = None,
    known_training_scales: Iterable[Scale] | None = None,
    show_progress: bool = True,
) -> list[ScaleResult]:
    """Evaluate one model, or several (a name -> model mapping), on every (frames, resolution) cell.

    Each cell's clips are processed once (`processor(videos, num_frames=T, size=S)`, evaluation mode: a video is
    scored by the softmax averaged over its `num_clips` x `num_crops` views) and fed to every model with a row at
    that scale, so comparing six models decodes the data once, not six times. A resolution is decoded per cell rather than resized from a larger
    decode because the processor shrinks frames to twice the output size while decoding: reusing a larger decode
    would give different pixels.

    Args:
        model: a `StretchySnakeForVideoClassification` (named "model" in the results) or a mapping of name to model.
        processor: a `StretchySnakeVideoProcessor`.
        videos / labels: the evaluation videos (anything the processor reads) and their class indices.
        frames / resolutions: the grid's columns and rows.
        patch_rule / patch_sizes / token_grid: how each resolution gets its patch size; see `spatial_settings`.
        batch_size: videos per processor call; their views go through the model together unless `max_tokens` cuts
            them into smaller forward passes.
        max_tokens: token budget of one forward pass (`clips * (1 + frames * grid**2)`); a cell whose single clip
            exceeds it is reported `"over token budget"` without running. Cells that run out of memory are reported
            `"out of memory"`.
        known_training_scales: the scales the models trained on; by default read from each checkpoint's
            `config.flexible_training` (unknown: `in_training=None`).
        show_progress: a tqdm bar (main process only).

    Under `accelerate launch` every process evaluates its share of the videos and the results are gathered: all
    processes return the same list, one `ScaleResult` per model, spatial row and frame count.
    """
    models = {"model": model} if isinstance(model, torch.nn.Module) else dict(model)
    if len(videos) != len(labels):
        raise ValueError(f"Got {len(videos)} videos but {len(labels)} labels.")
    for each in models.values():
        each.eval()
    num_views = processor.num_clips * processor.num_crops
    state = PartialState()
    with state.split_between_processes(list(range(len(videos)))) as local:
        local = list(local)
    cells = _plan_cells(
        models, frames, resolutions, patch_rule, patch_sizes, token_grid, batch_size * num_views, max_tokens,
        known_training_scales,
    )  # fmt: skip
    groups: dict[tuple[int, int], list[_Cell]] = {}
    for cell in cells:
        if cell.result.status == OK:
            groups.setdefault((cell.result.num_frames, cell.result.image_size), []).append(cell)
    batches = [local[start : start + batch_size] for start in range(0, len(local), batch_size)]
    bar = tqdm(
        total=len(groups) * len(batches),
        desc="scales",
        unit="batch",
        disable=not (show_progress and state.is_main_process),
    )
    for (num_frames, image_size), group in groups.items():
        for batch in batches:
            pixel_values = processor([videos[i] for i in batch], num_frames=num_frames, size=image_size)[
                "pixel_values"
            ]
            for cell in group:
                if cell.result.status == OK:
                    _forward(cell, pixel_values, num_views)
            bar.update()
    bar.close()
    # gather_object concatenates in process order, the order of the shares split_between_processes made.
    ordered_labels = np.asarray(labels)[[i for share in gather_object([local]) for i in share]]
    results = []
    for cell in cells:
        part = {"status": cell.result.status, "seconds": cell.seconds, "clips": cell.clips, "peak": cell.peak}
        part["logits"] = np.concatenate(cell.logits) if cell.logits else np.empty((0, 0))
        results.append(_merge(cell, ordered_labels, gather_object([part])))
    return results


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


def save_results(results: Sequence[ScaleResult], output_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write `scales.csv`, `scales.md` and `scales.png` into `output_dir`; returns their paths by suffix."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {suffix: output / f"scales.{suffix}" for suffix in ("csv", "md", "png")}
    write_csv(results, paths["csv"])
    paths["md"].write_text(f"# {title or 'Multi-scale evaluation'}\n\n{results_markdown(results)}")
    plot_heatmaps(results, paths["png"], title)
    return paths
