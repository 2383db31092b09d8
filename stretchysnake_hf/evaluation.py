# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Multi-scale evaluation: accuracy, speed, FLOPs and memory of checkpoints over a (frames x resolution) grid."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import psutil
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers.utils import logging

from .cpu_sharing import sharing_cpu
from .flexible_training import FlexibleTrainingConfig, Scale, is_integer_at_least
from .flops import count_flops
from .geometry import clips_within_budget, grid_side, sequence_length, static_tokens_patch_size
from .modeling_stretchysnake import StretchySnakePreTrainedModel

logger = logging.get_logger(__name__)

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

    @property
    def latency_ms(self) -> float | None:
        """Forward time per clip in milliseconds, `1000 / clips_per_second` (batched, decoding excluded)."""
        return 1000 / self.clips_per_second if self.clips_per_second else None

    def describe(self) -> str:
        """'model: 8 frames, 64 px, p16' (the evaluated image size)."""
        return f"{self.model}: {self.num_frames} frames, {self.image_size} px, p{self.patch_size}"


COSTS = {"gflops": "gflops_per_clip", "latency": "latency_ms"}


def _cost(result: ScaleResult, cost: str) -> float | None:
    if cost not in COSTS:
        raise ValueError(f"Unknown cost {cost!r}; choose one of {list(COSTS)}.")
    return getattr(result, COSTS[cost])


def pareto_front(results: Iterable[ScaleResult], cost: str = "gflops") -> list[ScaleResult]:
    """The evaluated cells that no other cell beats on both top-1 and cost (GFLOPs per clip, or `cost="latency"`),
    cheapest first. A cell is beaten when another is at least as accurate and at most as costly, and strictly better
    on one of the two; cells without a top-1 or the cost are left out."""
    cells = [r for r in results if r.status == OK and r.top1 is not None and _cost(r, cost) is not None]

    def beats(a: ScaleResult, b: ScaleResult) -> bool:
        cost_a, cost_b = _cost(a, cost), _cost(b, cost)
        return a.top1 >= b.top1 and cost_a <= cost_b and (a.top1 > b.top1 or cost_a < cost_b)

    front = [cell for cell in cells if not any(beats(other, cell) for other in cells)]
    return sorted(front, key=lambda r: (_cost(r, cost), -r.top1))


def pick_scale(
    results: Iterable[ScaleResult],
    max_gflops: float | None = None,
    max_latency_ms: float | None = None,
    min_top1: float | None = None,
) -> ScaleResult:
    """The best evaluated cell within the constraints (top-1 as a fraction, e.g. `min_top1=0.8`).

    With a cost cap (or no constraint) the best cell is the most accurate one, ties going to fewer GFLOPs, then to
    lower latency; with only `min_top1`, it is the cheapest cell reaching it (fewest GFLOPs, then lowest latency,
    then the more accurate). A cell whose constrained value was not measured does not qualify. Raises `ValueError`
    naming the constraints and the best values available when no cell qualifies.
    """
    cells = [r for r in results if r.status == OK and r.top1 is not None]
    if not cells:
        raise ValueError("No evaluated cell to pick from (every cell failed or was not run).")
    limits = {"max_gflops": max_gflops, "max_latency_ms": max_latency_ms, "min_top1": min_top1}

    def qualifies(r: ScaleResult) -> bool:
        checks = [
            max_gflops is None or (r.gflops_per_clip is not None and r.gflops_per_clip <= max_gflops),
            max_latency_ms is None or (r.latency_ms is not None and r.latency_ms <= max_latency_ms),
            min_top1 is None or r.top1 >= min_top1,
        ]
        return all(checks)

    def known(value: float | None) -> float:
        return math.inf if value is None else value

    qualifying = [r for r in cells if qualifies(r)]
    if qualifying:
        if max_gflops is None and max_latency_ms is None and min_top1 is not None:
            return min(qualifying, key=lambda r: (known(r.gflops_per_clip), known(r.latency_ms), -r.top1))
        return min(qualifying, key=lambda r: (-r.top1, known(r.gflops_per_clip), known(r.latency_ms)))
    asked = ", ".join(f"{name}={value:g}" for name, value in limits.items() if value is not None)
    available = []
    if max_gflops is not None:
        cheapest = min(cells, key=lambda r: known(r.gflops_per_clip))
        available.append(f"the cheapest needs {cheapest.gflops_per_clip:.4g} GFLOPs ({cheapest.describe()})")
    timed = [r for r in cells if r.latency_ms is not None]
    if max_latency_ms is not None:
        fastest = min(timed, key=lambda r: r.latency_ms) if timed else None
        available.append(
            f"the fastest takes {fastest.latency_ms:.4g} ms ({fastest.describe()})" if fastest else "no cell was timed"
        )
    if min_top1 is not None:
        best = max(cells, key=lambda r: r.top1)
        available.append(f"the most accurate reaches top-1 {best.top1:.4g} ({best.describe()})")
    raise ValueError(f"No cell meets {asked} among {len(cells)} evaluated cells: {'; '.join(available)}.")


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of `logits` (num_examples, num_classes) whose `k` highest scores include the label.

    A row with a NaN or infinite score (a diverged model) counts as a miss: sorting would rank its classes in index
    order and score the share of low class indices among the labels.
    """
    finite = np.isfinite(logits).all(axis=-1)
    if not finite.all():
        logger.warning(
            f"top-{k} accuracy: {np.sum(~finite)} of {len(logits)} rows of scores are not finite; counted as misses."
        )
    top = np.argsort(-logits, axis=-1)[:, :k]
    return float(((top == labels[:, None]).any(axis=-1) & finite).mean())


def _check_positive_integers(name: str, values: Iterable[Any]) -> None:
    for value in values:
        if not is_integer_at_least(value, 1):
            raise ValueError(f"{name}: expected positive integers, got {value!r}.")


def _check_labels(labels: Sequence[int], models: Mapping[str, StretchySnakePreTrainedModel]) -> None:
    for name, model in models.items():
        num_labels = model.config.num_labels
        for index, label in enumerate(labels):
            if not is_integer_at_least(label, 0) or label >= num_labels:
                raise ValueError(
                    f"The label of video {index}, {label!r}, is not a class index of model {name!r} "
                    f"(0 to {num_labels - 1})."
                )


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
    _check_positive_integers("resolutions", resolutions)
    _check_positive_integers("patch_sizes", patch_sizes or ())
    _check_positive_integers("token_grid", () if token_grid is None else [token_grid])
    if patch_rule == "static_patch":
        return [(s, s, p) for p in patch_sizes or [config.patch_size] for s in resolutions]
    if patch_sizes:
        raise ValueError("static_tokens derives the patch size from the token grid; patch_sizes is for static_patch.")
    if token_grid is None:
        flexible = getattr(config, "flexible_training", None) or {}
        static_tokens = flexible.get("variant") == "static_tokens"
        token_grid = flexible["token_grid"] if static_tokens else grid_side(config.image_size, config.patch_size)
    rows = []
    for resolution in resolutions:
        patch_size = static_tokens_patch_size(resolution, token_grid)
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
    video_indices: list[int] = dataclasses.field(default_factory=list)  # the videos scored by `logits`, in order
    skipped_errors: list[str] = dataclasses.field(default_factory=list)  # the processor's, for undecodable videos
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
                tokens = sequence_length(num_frames, image_size, patch_size, config.tubelet_size)
                micro_batch = clips_within_budget(batch_clips, tokens, max_tokens)
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
def _forward(cell: _Cell, pixel_values: torch.Tensor, video_indices: list[int], num_views: int) -> None:
    """Run `cell`'s model over one processed batch (the views of `video_indices`) in token-budget micro-batches;
    average the softmax over views."""
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
    cell.video_indices += video_indices


def _merge(cell: _Cell, labels: np.ndarray, gathered: list[dict[str, Any]]) -> ScaleResult:
    """Combine the tallies every process gathered for `cell` into its result."""
    result = cell.result
    if any(part["status"] == OUT_OF_MEMORY for part in gathered):
        result.status = OUT_OF_MEMORY
    if result.status != OK:
        return result
    scored = [part for part in gathered if part["video_indices"]]
    if not scored:
        errors = [error for part in gathered for error in part["skipped_errors"]]
        raise ValueError(f"{result.describe()}: no video could be decoded; the first error: {errors[0]}")
    logits = np.concatenate([part["logits"] for part in scored])
    video_indices = [index for part in scored for index in part["video_indices"]]
    if len(logits) != len(video_indices):
        raise RuntimeError(f"{result.describe()}: {len(logits)} rows of scores for {len(video_indices)} videos.")
    result.num_videos = len(logits)
    result.top1 = top_k_accuracy(logits, labels[video_indices], 1)
    result.top5 = top_k_accuracy(logits, labels[video_indices], min(5, logits.shape[-1]))
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
    share_cpu: bool = True,
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
        videos / labels: the evaluation videos (anything the processor reads) and their class indices. With a
            processor whose `on_error="skip"`, a cell scores the videos it could decode (`num_videos`) and warns
            with the count and the errors of the others.
        frames / resolutions: the grid's columns and rows (positive integers).
        patch_rule / patch_sizes / token_grid: how each resolution gets its patch size; see `spatial_settings`.
        batch_size: videos per processor call (a positive integer); their views go through the model together
            unless `max_tokens` cuts them into smaller forward passes.
        max_tokens: token budget of one forward pass (`clips * (1 + frames * grid**2)`); a cell whose single clip
            exceeds it is reported `"over token budget"` without running. Cells that run out of memory are reported
            `"out of memory"`.
        known_training_scales: the scales the models trained on; by default read from each checkpoint's
            `config.flexible_training` (unknown: `in_training=None`).
        show_progress: a tqdm bar (main process only).
        share_cpu: with every model on CPU, run each batch on the cores other processes leave idle, as training
            does (`cpu_sharing.CpuShare`: torch's threads, which the numba kernels follow, are fitted to them before
            each batch and given back at the end); false keeps every thread.

    Under `accelerate launch` every process evaluates its share of the videos and the results are gathered: all
    processes return the same list, one `ScaleResult` per model, spatial row and frame count.
    """
    models = {"model": model} if isinstance(model, torch.nn.Module) else dict(model)
    if len(videos) != len(labels):
        raise ValueError(f"Got {len(videos)} videos but {len(labels)} labels.")
    if len(videos) == 0:
        raise ValueError("No videos to evaluate: the dataset is empty.")
    _check_labels(labels, models)
    _check_positive_integers("frames", frames)
    _check_positive_integers("batch_size", [batch_size])
    for each in models.values():
        each.eval()
    num_views = processor.num_clips * processor.num_crops
    state = PartialState()
    with state.split_between_processes(list(range(len(videos)))) as local:
        local = list(local)
    logger.info(
        f"Process {state.process_index} of {state.num_processes} evaluates {len(local)} of the {len(videos)} videos."
    )
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
    on_cpu = all(next(each.parameters()).device.type == "cpu" for each in models.values())
    with sharing_cpu(share_cpu and on_cpu) as cpu_share:
        for (num_frames, image_size), group in groups.items():
            for batch in batches:
                inputs = processor([videos[i] for i in batch], num_frames=num_frames, size=image_size)
                skipped = set(inputs.get("skipped_indices", ()))  # undecodable videos, with on_error="skip"
                decoded = [index for position, index in enumerate(batch) if position not in skipped]
                if cpu_share is not None:
                    cpu_share.update()
                for cell in group:
                    cell.skipped_errors += inputs.get("skipped_errors", [])
                    if cell.result.status == OK and decoded:
                        _forward(cell, inputs["pixel_values"], decoded, num_views)
                bar.update()
    bar.close()
    labels = np.asarray(labels)
    results = []
    cells_by_errors: dict[tuple[str, ...], list[str]] = {}
    for cell in cells:
        part = {"status": cell.result.status, "seconds": cell.seconds, "clips": cell.clips, "peak": cell.peak}
        part["logits"] = np.concatenate(cell.logits) if cell.logits else np.empty((0, 0))
        part["video_indices"], part["skipped_errors"] = cell.video_indices, cell.skipped_errors
        gathered = gather_object([part])
        errors = tuple(error for each in gathered for error in each["skipped_errors"])
        if errors:
            cells_by_errors.setdefault(errors, []).append(cell.result.describe())
        results.append(_merge(cell, labels, gathered))
    if state.is_main_process:
        _warn_undecodable(cells_by_errors, len(videos), sum(map(len, groups.values())))
    return results


def _warn_undecodable(cells_by_errors: Mapping[tuple[str, ...], list[str]], num_videos: int, num_run: int) -> None:
    """One warning per distinct set of undecodable videos, naming the cells that left them out, or "every cell" when
    all `num_run` cells that ran did (the usual case: a file that cannot be decoded at one scale cannot be at any)."""
    for errors, described in cells_by_errors.items():
        where = f"every cell ({num_run})" if len(described) == num_run > 1 else "; ".join(described)
        logger.warning(
            f"{where}: {len(errors)} of {num_videos} videos could not be decoded and are left out: "
            f"{'; '.join(errors[:3])}{'; ...' if len(errors) > 3 else ''}"
        )
