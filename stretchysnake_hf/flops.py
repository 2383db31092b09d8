# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Counting the floating-point operations of a StretchySnake forward pass at a given scale."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .modeling_stretchysnake import StretchySnakeMixer, StretchySnakePreTrainedModel


def selective_scan_flops(batch_size: int, channels: int, length: int, state_size: int) -> int:
    """FLOPs of one direction of the selective scan with skip term and gate.

    Per state element and step: dt*A, exp, decay*h, dt*B, (dt*B)*u, the add, h*C and the sum over states (8);
    per channel and step: D*u, its add and the gate multiply (3).
    """
    return batch_size * channels * length * (8 * state_size + 3)


def count_flops(
    model: StretchySnakePreTrainedModel, input_shape: tuple[int, int, int, int, int], patch_size: int | None = None
) -> int:
    """FLOPs of one inference forward pass on `pixel_values` of shape `input_shape` (batch, frames, C, H, W).

    Matmuls and convolutions are counted by torch's `FlopCounterMode` on a meta-device copy of the model (no
    arithmetic runs, so any scale is counted in milliseconds); the selective scans, which run no step on meta tensors
    (`selective_scan.resolve_backend`), are added with `selective_scan_flops` (two directions per block), so the count
    is the same for every `scan_backend`. Elementwise ops are left out, as in fvcore and torch's counter, and so is the
    one-off resize of the patch kernel (cached at inference).
    """
    with torch.device("meta"):
        meta_model = type(model)(model.config).eval()
    pixel_values = torch.empty(input_shape, device="meta")
    scan_flops = 0

    def add_scan_flops(mixer: StretchySnakeMixer, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal scan_flops
        batch_size, length, _ = inputs[0].shape
        scan_flops += 2 * selective_scan_flops(batch_size, mixer.intermediate_size, length, mixer.ssm_state_size)

    hooks = [
        m.register_forward_hook(add_scan_flops) for m in meta_model.modules() if isinstance(m, StretchySnakeMixer)
    ]
    try:
        with torch.no_grad():
            meta_model(pixel_values, patch_size=patch_size)  # fills the resize cache
            scan_flops = 0
            with FlopCounterMode(display=False) as counter:
                meta_model(pixel_values, patch_size=patch_size)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops() + scan_flops
