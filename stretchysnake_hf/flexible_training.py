# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Flexible training: one (frames, resolution, patch size) per optimizer step, and the Trainer pieces that apply it."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.trainer_utils import EvalPrediction, seed_worker
from transformers.utils import SAFE_WEIGHTS_NAME, logging

from .cpu_sharing import CpuShare
from .geometry import clips_within_budget, grid_side, sequence_length, static_tokens_patch_size
from .mixing import MixupCutmix, soft_target_cross_entropy
from .optimization import ModelEma, check_layer_decay_rule, has_weight_decay, layer_decay_parameter_groups

logger = logging.get_logger(__name__)

STEP_KEY = "flexible_step"
"""Key of the optimizer step that `StepBatchSampler` attaches to every training example and batch."""
SEED_KEY = "flexible_batch_seed"
"""Key of the per-batch augmentation seed that `StepBatchSampler` attaches to every training example."""
VIEWS_KEY = "num_views"
"""Key of the number of views per video in an evaluation batch of several views (`FlexibleTrainer` averages them)."""
SOFT_LABELS_KEY = "soft_labels"
"""Key of the `(batch, num_labels)` soft targets of a mixed or label-smoothed training batch (in place of `labels`)."""
UNDECODED_BATCH_KEY = "undecoded_batch"
"""Key set on a training micro-batch none of whose videos could be decoded (`on_error="skip"`): it holds one blank clip,
whose loss `FlexibleTrainer` multiplies by zero, so the process still runs a forward and a backward (as DDP's gradient
all-reduce needs of every process) and adds zero gradients."""
UNDECODED_LABEL = -100
"""Label of an evaluation video the processor could not decode (`on_error="skip"`): the cross-entropy's ignore index.
`FlexibleTrainer` leaves these videos out of the loss and the metrics."""


class Scale(NamedTuple):
    """One training or evaluation scale: frames per clip, square frame side in pixels, spatial patch size."""

    num_frames: int
    image_size: int
    patch_size: int

    def sequence_length(self, tubelet_size: int = 1) -> int:
        """Tokens of one clip at this scale (`geometry.sequence_length`: the cls token and the patches)."""
        return sequence_length(self.num_frames, self.image_size, self.patch_size, tubelet_size)


# Each variant is a pure function of the config listing the scales it trains on (its support); the sampler draws
# uniformly from that list. Frame counts and spatial pairs are independent, so a uniform draw over the product is an
# independent uniform draw of T and of (S, p), the design table's rule. Listing the support (instead of drawing
# inside each rule) makes every rule checkable at construction: divisibility, the token budget, coverage tests.


def is_integer_at_least(value: Any, minimum: int) -> bool:
    """Whether `value` is an integer (Python or numpy, not a bool) of at least `minimum`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def _single(values: tuple[int, ...], name: str, variant: str) -> int:
    if len(values) != 1:
        raise ValueError(f"Variant {variant!r} holds {name} fixed: give exactly one value, got {values}.")
    return values[0]


def _fixed_patch(config: FlexibleTrainingConfig) -> int:
    """The patch size of variants that keep it fixed: `base_patch_size`, or a one-element `patch_sizes`."""
    if config.patch_sizes is None:
        return config.base_patch_size
    return _single(config.patch_sizes, "the patch size", config.variant)


def _divisible(resolution: int, patch_size: int, variant: str) -> tuple[int, int]:
    if resolution % patch_size:
        raise ValueError(f"Variant {variant!r}: resolution {resolution} is not divisible by patch size {patch_size}.")
    return resolution, patch_size


def _patch_sizes_dividing(config: FlexibleTrainingConfig, resolution: int) -> tuple[int, ...]:
    """The patch sizes a variant that samples p may use at a resolution: those of `patch_sizes` that divide it, by
    default its divisors from half to twice `base_patch_size` (FlexiViT's range). Raises if there are none."""
    low, high = max(1, math.ceil(config.base_patch_size / 2)), 2 * config.base_patch_size
    candidates = config.patch_sizes or tuple(range(low, high + 1))
    dividing = tuple(p for p in candidates if resolution % p == 0)
    if not dividing:
        raise ValueError(
            f"Variant {config.variant!r}: no patch size in {candidates} divides resolution {resolution}; give "
            "patch_sizes that do, or another resolution or base_patch_size."
        )
    return dividing


def static_tokens_scales(config: FlexibleTrainingConfig) -> list[Scale]:
    """Fixed `token_grid`; p sampled; S = token_grid * p (default p = round(S / grid) for S in `resolutions`)."""
    grid = config.token_grid
    patch_sizes = config.patch_sizes or tuple(sorted({static_tokens_patch_size(s, grid) for s in config.resolutions}))
    return [Scale(t, grid * p, p) for t in config.frames for p in patch_sizes]


def static_patch_scales(config: FlexibleTrainingConfig) -> list[Scale]:
    """Fixed patch size (`base_patch_size`); S sampled from `resolutions`, so the grid S / p varies."""
    patch_size = _fixed_patch(config)
    spatial = [_divisible(s, patch_size, config.variant) for s in config.resolutions]
    return [Scale(t, s, p) for t in config.frames for s, p in spatial]


def flexi_patch_scales(config: FlexibleTrainingConfig) -> list[Scale]:
    """FlexiViT: one fixed resolution; p sampled from `patch_sizes` (default: its divisors near the base patch)."""
    resolution = _single(config.resolutions, "the resolution", config.variant)
    if config.patch_sizes is not None:
        for patch_size in config.patch_sizes:
            _divisible(resolution, patch_size, config.variant)
    return [Scale(t, resolution, p) for t in config.frames for p in _patch_sizes_dividing(config, resolution)]


def random_scales(config: FlexibleTrainingConfig) -> list[Scale]:
    """S and p sampled independently among the pairs with S divisible by p (default p: divisors near the base)."""
    spatial = [(s, p) for s in config.resolutions for p in _patch_sizes_dividing(config, s)]
    return [Scale(t, s, p) for t in config.frames for s, p in spatial]


def temporal_only_scales(config: FlexibleTrainingConfig) -> list[Scale]:
    """One fixed resolution and patch size; T sampled."""
    resolution, patch_size = _divisible(
        _single(config.resolutions, "the resolution", config.variant), _fixed_patch(config), config.variant
    )
    return [Scale(t, resolution, patch_size) for t in config.frames]


def fixed_scales(config: FlexibleTrainingConfig) -> list[Scale]:
    """The control: one frame count, one resolution, one patch size (ordinary fixed-scale training)."""
    num_frames = _single(config.frames, "the frame count", config.variant)
    return [Scale(num_frames, s, p) for _, s, p in temporal_only_scales(config)]


VARIANTS: dict[str, Callable[[FlexibleTrainingConfig], list[Scale]]] = {
    "static_tokens": static_tokens_scales,
    "static_patch": static_patch_scales,
    "flexi_patch": flexi_patch_scales,
    "random": random_scales,
    "temporal_only": temporal_only_scales,
    "fixed": fixed_scales,
}


@dataclasses.dataclass(frozen=True)
class FlexibleTrainingConfig:
    """How a flexible run picks its scale each optimizer step (the variants of DESIGN.md's table).

    Args:
        variant: one of `VARIANTS`: "static_tokens" (the paper's best), "static_patch", "flexi_patch", "random",
            "temporal_only", or the control "fixed".
        frames: frame counts T to sample ("fixed" takes exactly one).
        resolutions: square frame sides S ("flexi_patch", "temporal_only" and "fixed" take exactly one;
            "static_tokens" uses them only to derive its default patch sizes).
        patch_sizes: patch sizes p; `None` derives them per variant: `round(S / token_grid)` for static_tokens, the
            divisors of S between `base_patch_size / 2` and `2 * base_patch_size` for flexi_patch and random,
            `base_patch_size` for the variants that keep p fixed.
        token_grid: spatial token grid side that static_tokens keeps fixed (S = token_grid * p).
        base_patch_size: the patch size of the variants that keep it fixed.
        seed: seed of the schedule; the scale of step k depends only on (seed, k).
        max_tokens_per_step: when set, a micro-batch keeps only as many clips as fit in this many tokens
            (`geometry.sequence_length` per clip, the cls token and the patches); must hold at least one clip of the
            largest scale.
        tubelet_size: the model's frames per temporal token (its `config.tubelet_size`): token counts use it, and
            every frame count must be a multiple of it.

    Invalid combinations (a size not divisible by its patch size, several values on a fixed axis, a budget smaller
    than one clip) raise `ValueError` here, not mid-training. `to_dict`/`from_dict` store the config in a trained
    model's config under `flexible_training`.
    """

    variant: str
    frames: tuple[int, ...] = (8, 16, 32, 64)
    resolutions: tuple[int, ...] = (96, 128, 224, 384)
    patch_sizes: tuple[int, ...] | None = None
    token_grid: int = 14
    base_patch_size: int = 16
    seed: int = 0
    max_tokens_per_step: int | None = None
    tubelet_size: int = 1

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown flexible-training variant {self.variant!r}; choose one of {sorted(VARIANTS)}.")
        for name in ("frames", "resolutions", "patch_sizes"):
            values = getattr(self, name)
            if values is None:
                continue
            values = tuple(values)
            if not values or not all(is_integer_at_least(v, 1) for v in values):
                raise ValueError(f"{name} must be a non-empty sequence of positive integers; got {values!r}.")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a value twice ({values!r}), which would draw it more often.")
            object.__setattr__(self, name, values)
        for name in ("token_grid", "base_patch_size", "tubelet_size"):
            if not is_integer_at_least(getattr(self, name), 1):
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)!r}.")
        if not is_integer_at_least(self.seed, 0):
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}.")
        if any(t % self.tubelet_size for t in self.frames):
            raise ValueError(
                f"Every frame count in {self.frames} must be a multiple of tubelet_size {self.tubelet_size}."
            )
        largest = max(self.scales, key=lambda scale: scale.sequence_length(self.tubelet_size))
        tokens = largest.sequence_length(self.tubelet_size)
        if self.max_tokens_per_step is not None and self.max_tokens_per_step < tokens:
            raise ValueError(
                f"max_tokens_per_step={self.max_tokens_per_step} cannot hold one clip of the largest scale {largest} "
                f"({tokens} tokens)."
            )

    @property
    def scales(self) -> list[Scale]:
        """Every scale this config can train on."""
        return VARIANTS[self.variant](self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FlexibleTrainingConfig:
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


VARIANT_NOTES = {"static_tokens": "the paper's best", "flexi_patch": "FlexiViT", "fixed": "the control"}


def variant_rules(variant: str) -> tuple[str, str]:
    """`(spatial rule, temporal rule)` of a variant in words, read off the scales its function lists for a config
    with two values on every axis the variant lets vary: the model card's table is generated from the definitions."""
    one_resolution = variant in ("flexi_patch", "temporal_only", "fixed")
    config = FlexibleTrainingConfig(
        variant, frames=(8,) if variant == "fixed" else (8, 16), resolutions=(224,) if one_resolution else (112, 224)
    )
    scales = config.scales

    def varies(value: Callable[[Scale], int]) -> bool:
        return len({value(scale) for scale in scales}) > 1

    sizes, patches = varies(lambda s: s.image_size), varies(lambda s: s.patch_size)
    grids = varies(lambda s: grid_side(s.image_size, s.patch_size))
    if not sizes and not patches:
        spatial = "S and p fixed"
    elif not grids:
        spatial = "token grid G = S/p fixed; patch size p sampled; resolution S = G·p"
    elif not patches:
        spatial = "p fixed; S sampled; the grid S/p varies"
    elif not sizes:
        spatial = "S fixed; p sampled; the grid S/p varies"
    else:
        spatial = "S and p sampled independently (S divisible by p); the grid S/p varies"
    return spatial, "T sampled" if varies(lambda s: s.num_frames) else "T fixed"


def variants_markdown_table() -> str:
    """The table of every variant's rules (`variant_rules`), in markdown."""
    rows = ["| variant | spatial rule per step | temporal rule per step |", "|---|---|---|"]
    for variant in VARIANTS:
        note = f" ({VARIANT_NOTES[variant]})" if variant in VARIANT_NOTES else ""
        rows.append(f"| `{variant}`{note} | {' | '.join(variant_rules(variant))} |")
    return "\n".join(rows)


class ScaleSampler:
    """The flexible schedule: `scale_for_step(step)` is a pure function of (config.seed, step).

    Every process of a distributed run, and a run resumed from a checkpoint, computes the same scale for the same
    optimizer step without communicating.
    """

    def __init__(self, config: FlexibleTrainingConfig) -> None:
        self.config = config
        self.scales = config.scales

    def scale_for_step(self, step: int) -> Scale:
        """The (num_frames, image_size, patch_size) of optimizer step `step`."""
        if step < 0:
            raise ValueError(f"step must be non-negative; got {step}.")
        rng = np.random.default_rng([self.config.seed, step])
        return self.scales[int(rng.integers(len(self.scales)))]

    def batch_size_for(self, scale: Scale, batch_size: int) -> int:
        """How many of `batch_size` clips a micro-batch at `scale` keeps under `max_tokens_per_step`.

        All micro-batches of one optimizer step, on every process, share the scale and hence this size, so the mean
        of their mean losses is the mean over every clip of the step: the loss stays a correct mean.
        """
        tokens = scale.sequence_length(self.config.tubelet_size)
        return clips_within_budget(batch_size, tokens, self.config.max_tokens_per_step)


class StepBatchSampler:
    """Per-process batch sampler that tags every index with the optimizer step its micro-batch belongs to.

    Epoch e is a permutation of the dataset seeded by (seed, e), cut into global batches of `batch_size *
    num_processes` (an incomplete last one is dropped); process r takes slice r of each. Its k-th micro-batch of
    epoch e belongs to optimizer step `e * ceil(K / grad_accum) + k // grad_accum` (K micro-batches per epoch), the
    Trainer's own count. The sampler runs in the main process, in order, so the tag is right however many workers
    prefetch, and a resumed run that skips the first batches still sees each batch with its original step.

    Yields lists of `(index, step, batch_seed)`; `StepTaggedDataset` turns them into tagged examples.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        gradient_accumulation_steps: int = 1,
        num_processes: int = 1,
        process_index: int = 0,
        seed: int = 0,
    ) -> None:
        if num_examples < batch_size * num_processes:
            raise ValueError(
                f"{num_examples} training examples cannot fill one batch of {batch_size} on each of "
                f"{num_processes} processes."
            )
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.num_processes = num_processes
        self.process_index = process_index
        self.seed = seed
        self.drop_last = True
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_examples // (self.batch_size * self.num_processes)

    @property
    def updates_per_epoch(self) -> int:
        return math.ceil(len(self) / self.gradient_accumulation_steps)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        # seeded by the pair: a seed's next epoch must not be the next seed's first (as with `seed + epoch`)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_examples)
        global_batch = self.batch_size * self.num_processes
        first_step = self.epoch * self.updates_per_epoch
        for k in range(len(self)):
            start = k * global_batch + self.process_index * self.batch_size
            step = first_step + k // self.gradient_accumulation_steps
            batch_seed = int(np.random.default_rng([self.seed, self.epoch, k, self.process_index]).integers(2**62))
            yield [(int(i), step, batch_seed) for i in order[start : start + self.batch_size]]


class StepTaggedDataset(Dataset):
    """Wraps a map-style dataset of dict examples; `dataset[(index, step, seed)]` adds the step and seed tags."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        index, step, batch_seed = key
        return {**self.dataset[index], STEP_KEY: step, SEED_KEY: batch_seed}


class FlexibleVideoCollator:
    """Trainer `data_collator` that decodes a batch of raw examples at the scale of its optimizer step.

    Training examples carry the step (and an augmentation seed) attached by `StepBatchSampler`, which
    `FlexibleTrainer` installs; the collator asks `sampler.scale_for_step(step)`, cuts the batch to the token budget,
    and calls the processor with `training=True`. Examples without a tag (evaluation) are processed at `eval_scale`
    with `training=False`, as `eval_num_clips` x `eval_num_crops` views per video. Videos the processor skips
    (`on_error="skip"`) are dropped with their labels in training (a micro-batch left with none holds one blank clip
    marked `UNDECODED_BATCH_KEY`, which trains with zero loss); at evaluation each keeps its place in the batch, as
    blank views labelled `UNDECODED_LABEL`, so that every process gathers batches of one size and each prediction
    stays next to its video's label. An example with a `start` and/or `end` (seconds, as COIN rows of
    `load_video_dataset` have) is sampled within that segment only.

    Args:
        processor: a `StretchySnakeVideoProcessor` (or anything with its call signature).
        sampler: the `ScaleSampler` of the run.
        eval_scale: the fixed evaluation scale; `None` uses the processor's and the model's defaults.
        video_key / label_key: example fields holding the video (path, bytes, array, ...) and the class index.
        eval_num_clips / eval_num_crops: the views of each evaluation video (VideoMamba's test protocol: 4 x 3);
            `FlexibleTrainer` scores a video by its softmax averaged over them.
        repeated_augmentation: in training, each video comes `repeated_augmentation` times, contiguous, from one
            decode with independent augmentations (VideoMamba's `num_sample`); the token budget counts every copy.
        mixing: a `MixupCutmix`, applied to each training batch after the processor (at the step's scale) with a
            generator seeded by the batch's seed; the batch then carries `soft_labels` instead of `labels`.

    Returns dicts with `pixel_values` `(batch_size * views, num_frames, 3, image_size, image_size)`, `labels`
    (one per clip), `patch_size`, in training `flexible_step` (which `FlexibleTrainer` checks and removes), and at
    evaluation with several views `num_views` (`labels` one per video).
    """

    def __init__(
        self,
        processor: Any,
        sampler: ScaleSampler,
        eval_scale: Scale | Sequence[int] | None = None,
        video_key: str = "video",
        label_key: str = "label",
        eval_num_clips: int = 1,
        eval_num_crops: int = 1,
        repeated_augmentation: int = 1,
        mixing: MixupCutmix | None = None,
    ) -> None:
        self.processor = processor
        self.sampler = sampler
        self.eval_scale = Scale(*eval_scale) if eval_scale is not None else None
        self.video_key = video_key
        self.label_key = label_key
        self.eval_num_clips = eval_num_clips
        self.eval_num_crops = eval_num_crops
        self.repeated_augmentation = repeated_augmentation
        self.mixing = mixing
        for name in ("repeated_augmentation", "eval_num_clips", "eval_num_crops"):
            if not is_integer_at_least(getattr(self, name), 1):
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)!r}.")
        largest = max(sampler.scales, key=lambda scale: scale.sequence_length(sampler.config.tubelet_size))
        if sampler.batch_size_for(largest, repeated_augmentation) < repeated_augmentation:
            raise ValueError(
                f"max_tokens_per_step={sampler.config.max_tokens_per_step} cannot hold the {repeated_augmentation} "
                f"copies of one video (repeated_augmentation) at the largest scale {largest}."
            )

    def _video(self, example: dict[str, Any]) -> Any:
        """The example's video, as a segment mapping for the processor when it has a `start` or `end`."""
        if example.get("start") is None and example.get("end") is None:
            return example[self.video_key]
        return {"video": example[self.video_key], "start": example.get("start"), "end": example.get("end")}

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        step = examples[0].get(STEP_KEY)
        if step is None:
            scale, training, seed = self.eval_scale, False, None
        else:
            scale, seed = self.sampler.scale_for_step(step), examples[0][SEED_KEY]
            copies = self.repeated_augmentation
            examples = examples[: self.sampler.batch_size_for(scale, len(examples) * copies) // copies]
            training = True
        num_frames, image_size, patch_size = scale if scale is not None else (None, None, None)
        inputs = self.processor(
            [self._video(example) for example in examples],
            num_frames=num_frames,
            size=image_size,
            patch_size=patch_size,
            training=training,
            seed=seed,
            return_tensors="pt",
            num_clips=self.eval_num_clips,
            num_crops=self.eval_num_crops,
            **(
                {"repeated_augmentation": self.repeated_augmentation}
                if training and self.repeated_augmentation > 1
                else {}
            ),
        )
        skipped = set(inputs.get("skipped_indices", ()))
        pixel_values = inputs["pixel_values"]
        undecoded_batch = training and len(skipped) == len(examples)
        if undecoded_batch:
            logger.warning(
                f"No video of a micro-batch of step {step} could be decoded: it trains on one blank clip with zero loss."
            )
            pixel_values, labels = pixel_values.new_zeros(1, *pixel_values.shape[1:]), torch.zeros(1, dtype=torch.long)
        elif training:
            labels = [example[self.label_key] for i, example in enumerate(examples) if i not in skipped]
            labels = torch.tensor(labels, dtype=torch.long).repeat_interleave(self.repeated_augmentation)
        else:
            labels = [
                UNDECODED_LABEL if i in skipped else example[self.label_key] for i, example in enumerate(examples)
            ]
            labels = torch.tensor(labels, dtype=torch.long)
            if skipped:
                pixel_values = _blank_views_for(
                    skipped, pixel_values, len(examples), self.eval_num_clips * self.eval_num_crops
                )
        batch = {"pixel_values": pixel_values, "labels": labels}
        if undecoded_batch:
            batch[UNDECODED_BATCH_KEY] = True
        elif training and self.mixing is not None:
            rng = np.random.default_rng([seed, 1])  # stream 1 of the batch seed; the processor draws from its own
            batch["pixel_values"], batch[SOFT_LABELS_KEY] = self.mixing(batch["pixel_values"], labels, rng)
            del batch["labels"]
        if inputs.get("patch_size") is not None:
            batch["patch_size"] = inputs["patch_size"]
        if training:
            batch[STEP_KEY] = step
        elif self.eval_num_clips * self.eval_num_crops > 1:
            batch[VIEWS_KEY] = self.eval_num_clips * self.eval_num_crops
        return batch


def _blank_views_for(skipped: set[int], pixel_values: torch.Tensor, num_videos: int, views: int) -> torch.Tensor:
    """`pixel_values` (the views of the decoded videos, in order) with `views` zero views in each skipped video's
    place: `(num_videos * views, num_frames, 3, size, size)`."""
    decoded = iter(pixel_values.split(views))
    blank = pixel_values.new_zeros(views, *pixel_values.shape[1:])
    return torch.cat([blank if index in skipped else next(decoded) for index in range(num_videos)])


def _scoring_decoded_videos(compute_metrics: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
    """`compute_metrics` on the rows of the videos that were decoded (label not `UNDECODED_LABEL`), with a warning
    that counts the others. Each field with one row per video (predictions, labels, and `include_for_metrics`'
    losses) keeps the decoded rows; other fields (inputs of several views per video) pass unchanged."""

    def compute(prediction: EvalPrediction, **kwargs: Any) -> dict[str, float]:
        decoded = np.asarray(prediction.label_ids) != UNDECODED_LABEL
        if decoded.all():
            return compute_metrics(prediction, **kwargs)
        logger.warning(
            f"{np.sum(~decoded)} of {decoded.size} evaluation videos could not be decoded (skipped with "
            f'on_error="skip"); the metrics score the other {np.sum(decoded)}.'
        )

        def decoded_rows(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, tuple):
                return tuple(map(decoded_rows, value))
            value = np.asarray(value)
            return value[decoded] if value.ndim and len(value) == decoded.size else value

        fields = (prediction.predictions, prediction.label_ids, prediction.inputs, prediction.losses)
        return compute_metrics(EvalPrediction(*map(decoded_rows, fields)), **kwargs)

    return compute


class _EpochFromStepCallback(TrainerCallback):
    """Sets the batch sampler's epoch from the global step at each epoch start.

    The Trainer's own `set_epoch` does not reach a batch sampler behind accelerate's `SkipBatchSampler` in the first
    epoch of a resumed run; `global_step // updates_per_epoch` is the epoch in both fresh and resumed runs.
    """

    def __init__(self, batch_sampler: StepBatchSampler) -> None:
        self.batch_sampler = batch_sampler

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.batch_sampler.set_epoch(state.global_step // self.batch_sampler.updates_per_epoch)


EMA_FOLDER = "ema"
"""Sub-folder of a saved model or checkpoint holding the EMA weights (a model folder of its own)."""


class _CpuShareCallback(TrainerCallback):
    """Before every optimizer step on CPU, fits torch's threads to the cores other processes leave idle; gives back
    the threads it started with when training ends (evaluation and the rest of the process run as before)."""

    def __init__(self) -> None:
        self.share = CpuShare()

    def on_step_begin(self, args, state, control, **kwargs):
        self.share.update()

    def on_train_end(self, args, state, control, **kwargs):
        self.share.restore()


class _EmaCallback(TrainerCallback):
    """Updates the trainer's EMA after every optimizer step (before any checkpoint of that step is written)."""

    def __init__(self, trainer: FlexibleTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.ema.update(self.trainer.accelerator.unwrap_model(self.trainer.model))


class FlexibleTrainer(Trainer):
    """A `Trainer` for flexible training with a `FlexibleVideoCollator`.

    Its training dataloader uses `StepBatchSampler`, so each batch is decoded (in the dataloader workers) at the
    scale of the optimizer step that will consume it; this stays right with gradient accumulation, several workers,
    several processes and `resume_from_checkpoint`. Each training step checks that its batch was made for it, and
    the scale of the last step joins the logged loss. Pass `scale_log_file` to also write one JSON line per
    micro-batch (`step`, `rank`, `num_frames`, `image_size`, `patch_size`, `batch_size`) per process, to the path
    with `.rank{r}` appended. At evaluation with several views per video (the collator's `eval_num_clips` x
    `eval_num_crops`), a video's prediction is the log of its softmax averaged over its views (so metrics see one
    row per video) and the loss is the negative log of that average at the label.

    Training batches with `soft_labels` (the collator's `mixing`) train on the soft-target cross-entropy.
    `layer_decay` builds the optimizer's parameter groups with `optimization.layer_decay_parameter_groups` by
    `layer_decay_rule` (through the Trainer's optimizer hook, so `--optim`, schedulers, DeepSpeed and resume are
    untouched; an optimizer passed in as `optimizers` or `optimizer_cls_and_kwargs` would bypass it and is refused).
    `ema_decay` keeps a `ModelEma` updated after every optimizer step, evaluated next to the model (metrics prefixed
    `eval_ema_`, or `eval_<name>_ema_` for each of a dict of evaluation datasets), saved wherever the model is saved
    as the folder `ema/` (weights, config, processor), and restored on resume and with `load_best_model_at_end` (the
    best checkpoint's EMA). Weight decay follows VideoMamba's exemptions (`optimization.has_weight_decay`) with and
    without `layer_decay`. The loss of an accumulated step is the mean of its micro-batches' means (the model sets
    `accepts_loss_kwargs = False`), for hard and soft labels alike.
    Training on CPU, `share_cpu` (on by default) runs each step on the cores other processes leave idle
    (`cpu_sharing.CpuShare`; the threads join the logged scale as `cpu_threads`).

    Needs `remove_unused_columns=False` (the collator reads the raw video column).
    """

    def __init__(
        self,
        *args: Any,
        scale_log_file: str | os.PathLike | None = None,
        layer_decay: float | None = None,
        layer_decay_rule: str = "depth",
        ema_decay: float | None = None,
        share_cpu: bool = True,
        **kwargs: Any,
    ) -> None:
        check_layer_decay_rule(layer_decay_rule)
        super().__init__(*args, **kwargs)
        if layer_decay is not None and (self.optimizer is not None or self.optimizer_cls_and_kwargs is not None):
            given = "optimizers" if self.optimizer is not None else "optimizer_cls_and_kwargs"
            raise ValueError(
                f"layer_decay={layer_decay} builds the optimizer's parameter groups, and `{given}` brings its own "
                "optimizer: pass one or the other."
            )
        on_cpu = self.args.device.type == "cpu"
        if on_cpu:
            # Pinned memory only speeds up copies to an accelerator; on CPU every loader would warn that it is unused.
            self.args.dataloader_pin_memory = False
        self.layer_decay, self.layer_decay_rule = layer_decay, layer_decay_rule
        self.cpu_share = _CpuShareCallback() if share_cpu and on_cpu else None
        if self.cpu_share is not None:
            self.add_callback(self.cpu_share)
        if ema_decay is not None and (self.is_fsdp_enabled or is_deepspeed_zero3_enabled()):
            raise ValueError(
                f"ema_decay={ema_decay}: the EMA averages the full weights on each process, and FSDP / DeepSpeed "
                "ZeRO-3 shard them; train without the EMA, or with DDP or ZeRO-1/2."
            )
        self.ema = None if ema_decay is None else ModelEma(self.model, ema_decay)
        if self.ema is not None:
            self.add_callback(_EmaCallback(self))
        if not isinstance(self.data_collator, FlexibleVideoCollator):
            raise TypeError("FlexibleTrainer needs a FlexibleVideoCollator as data_collator.")
        if self.args.ignore_data_skip:
            raise ValueError(
                "FlexibleTrainer needs TrainingArguments(ignore_data_skip=False): each batch is made for its optimizer "
                "step (its scale and seed), so a resumed run must skip the batches it already trained on."
            )
        if self.args.remove_unused_columns:
            raise ValueError(
                "FlexibleTrainer needs TrainingArguments(remove_unused_columns=False): the collator reads the raw "
                "video column, which the Trainer would drop."
            )
        self.scale_log_file = scale_log_file
        self._step_scale: dict[str, int] | None = None
        if self.compute_metrics is not None:
            self.compute_metrics = _scoring_decoded_videos(self.compute_metrics)

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        batch_sampler = StepBatchSampler(
            len(self.train_dataset),
            batch_size=self._train_batch_size,
            gradient_accumulation_steps=self.args.gradient_accumulation_steps,
            num_processes=self.args.world_size,
            process_index=self.args.process_index,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )
        num_workers = self.args.dataloader_num_workers
        dataloader = DataLoader(
            StepTaggedDataset(self.train_dataset),
            batch_sampler=batch_sampler,
            collate_fn=self.data_collator,
            num_workers=num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and num_workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if num_workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=num_workers, rank=self.args.process_index),
        )
        dataloader = self.accelerator.prepare(dataloader)
        # The sampler already shards by process: make accelerate's BatchSamplerShard wrapper a passthrough (as the
        # Trainer does for its own rank-aware BatchRebalanceSampler).
        shard = getattr(dataloader, "batch_sampler", None)
        if shard is not None and getattr(shard, "batch_sampler", None) is batch_sampler:
            shard.num_processes, shard.process_index = 1, 0
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, _EpochFromStepCallback):
                self.callback_handler.remove_callback(callback)
        self.add_callback(_EpochFromStepCallback(batch_sampler))
        return dataloader

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None):
        step = inputs.pop(STEP_KEY)
        if step != self.state.global_step:
            raise RuntimeError(f"Batch made for optimizer step {step} reached step {self.state.global_step}.")
        pixel_values = inputs["pixel_values"]
        self._step_scale = {
            "num_frames": pixel_values.shape[1],
            "image_size": pixel_values.shape[-1],
            "patch_size": int(inputs.get("patch_size") or self.model.config.patch_size),
            "batch_size": pixel_values.shape[0],
        }
        if self.scale_log_file is not None:
            with open(f"{self.scale_log_file}.rank{self.args.process_index}", "a") as log_file:
                log_file.write(json.dumps({"step": step, "rank": self.args.process_index, **self._step_scale}) + "\n")
        return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        num_views = inputs.pop(VIEWS_KEY, 1)
        if num_views == 1:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        labels = inputs.pop("labels")
        _, logits, _ = super().prediction_step(model, inputs, False, ignore_keys)
        # [batch_size * num_views, num_labels] -> [batch_size, num_labels]: the video-level probabilities, as logs
        log_probs = logits.float().softmax(-1).view(len(labels), num_views, -1).mean(1).log()
        labels = labels.to(log_probs.device)
        loss = F.nll_loss(log_probs, labels)
        return loss, None if prediction_loss_only else log_probs, labels

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._step_scale is not None:
            logs = {**logs, **{f"scale_{key}": value for key, value in self._step_scale.items()}}
            if self.cpu_share is not None:
                logs["cpu_threads"] = torch.get_num_threads()
        super().log(logs, start_time)

    def get_optimizer_cls_and_kwargs(self, args: Any, model: torch.nn.Module | None = None) -> tuple[Any, Any]:
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if self.layer_decay is not None:
            optimizer_kwargs["params"] = layer_decay_parameter_groups(
                model, args.learning_rate, args.weight_decay, self.layer_decay, rule=self.layer_decay_rule
            )
        return optimizer_cls, optimizer_kwargs

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """The parameters the optimizer decays without `layer_decay`: VideoMamba's rule
        (`optimization.has_weight_decay`), the one `layer_decay` applies, instead of the Trainer's name patterns (which
        decay the cls token, the position tables, `D` and the final norm)."""
        return [name for name, parameter in model.named_parameters() if has_weight_decay(name, parameter)]

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        if inputs.pop(UNDECODED_BATCH_KEY, False):
            outputs = model(**inputs)
            loss = outputs.loss * 0.0
            return (loss, outputs) if return_outputs else loss
        soft_labels = inputs.pop(SOFT_LABELS_KEY, None)
        if soft_labels is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**inputs)
        loss = soft_target_cross_entropy(outputs.logits, soft_labels)
        return (loss, outputs) if return_outputs else loss

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        # With a dict of datasets, Trainer.evaluate has called this method once per dataset, the EMA included.
        if self.ema is not None and not isinstance(self.eval_dataset if eval_dataset is None else eval_dataset, dict):
            with self.ema.swapped_into(self.accelerator.unwrap_model(self.model)):
                metrics.update(super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_ema"))
        return metrics

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.ema is not None and self.args.should_save:
            folder = os.path.join(output_dir or self.args.output_dir, EMA_FOLDER)
            self.ema.module.save_pretrained(folder)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_ema(resume_from_checkpoint, "Resuming")

    def _load_best_model(self) -> None:
        super()._load_best_model()
        self._load_ema(self.state.best_model_checkpoint, "Loading the best model at the end")

    def _load_ema(self, checkpoint: str, purpose: str) -> None:
        """With an EMA, load the one saved in `checkpoint` (its `ema/` folder), so the EMA stays the average of the
        weights it is saved next to."""
        if self.ema is None:
            return
        weights = os.path.join(checkpoint, EMA_FOLDER, SAFE_WEIGHTS_NAME)
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"{purpose} with an EMA (ema_decay={self.ema.decay}) needs the checkpoint's EMA weights, and {weights} "
                "does not exist (was the run started without --ema_decay?)."
            )
        self.ema.module.load_state_dict(load_file(weights, device=str(next(self.ema.module.parameters()).device)))
