# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Mixup and CutMix of video batches with soft targets, and the soft-target cross-entropy that trains on them.

The semantics are timm's `Mixup` in "batch" mode, which VideoMamba's fine-tuning uses: one draw per batch; with
probability `prob` the batch is mixed with its own reverse (clip i with clip batch_size - 1 - i), by CutMix with
probability `switch_prob` when both are enabled, else by Mixup; lambda ~ Beta(alpha, alpha). CutMix pastes one box,
the same on every frame, and lambda becomes the kept area fraction. Targets are `lambda * y_i + (1 - lambda) *
y_reversed`, where `y` are one-hot vectors smoothed by `label_smoothing` (off value `s / C`, on value `1 - s + s / C`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """`(batch,)` class indices -> `(batch, num_classes)` targets: `1 - smoothing + smoothing / num_classes` at the
    label, `smoothing / num_classes` elsewhere (each row sums to 1)."""
    off = smoothing / num_classes
    targets = torch.full((len(labels), num_classes), off, dtype=torch.float32)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `-sum_c targets[c] * log_softmax(logits)[c]`; `logits`, `targets` `(batch, classes)`."""
    return -(targets.to(logits.device) * logits.float().log_softmax(-1)).sum(-1).mean()


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """timm's `rand_bbox`: a box of sides `int(side * sqrt(1 - lam))` centred at a uniform pixel, clipped to the
    frame; returns `(top, bottom, left, right)`."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = np.clip([centre_y - cut_h // 2, centre_y + cut_h // 2], 0, height)
    left, right = np.clip([centre_x - cut_w // 2, centre_x + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


@dataclass(frozen=True)
class MixupCutmix:
    """Batch-level Mixup/CutMix with label smoothing (see the module docstring for the rules).

    Args:
        num_classes: classes of the soft targets.
        mixup_alpha / cutmix_alpha: Beta parameters; 0 disables that kind of mixing.
        prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix rather than Mixup when both are enabled.
        label_smoothing: smoothing of the one-hot targets (applied whether or not the batch is mixed).
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("prob", "switch_prob", "label_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive; got {self.num_classes}")

    def draw(self, rng: np.random.Generator) -> tuple[float, bool]:
        """`(lambda, use_cutmix)` of one batch; lambda 1.0 leaves the batch as it is."""
        enabled = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        if not enabled or rng.random() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(rng.beta(alpha, alpha)), use_cutmix

    def __call__(
        self, pixel_values: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix `pixel_values` `(batch, frames, 3, H, W)` and turn `labels` `(batch,)` into soft targets
        `(batch, num_classes)`. Returns new tensors; the inputs are left as they are."""
        lam, use_cutmix = self.draw(rng)
        mixed = pixel_values
        if lam < 1.0 and use_cutmix:
            top, bottom, left, right = cutmix_box(*pixel_values.shape[-2:], lam, rng)
            mixed = pixel_values.clone()
            mixed[..., top:bottom, left:right] = pixel_values.flip(0)[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (pixel_values.shape[-2] * pixel_values.shape[-1])
        elif lam < 1.0:
            mixed = pixel_values * lam + pixel_values.flip(0) * (1.0 - lam)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        return mixed, targets * lam + targets.flip(0) * (1.0 - lam)
