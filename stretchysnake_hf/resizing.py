# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Resizing of patch kernels and position tables, shared by the any-scale forward and checkpoint loading."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers.utils import logging

from .geometry import PATCH_KERNEL, SPATIAL_POSITION_TABLE, TEMPORAL_POSITION_TABLE

logger = logging.get_logger(__name__)

# How the video processor resizes frames by default. PI-resize builds the patch kernel's resize basis with the same
# interpolation, so that a resized patch meets the resized kernel (FlexiViT); the processor takes its default from here.
FRAME_INTERPOLATION = "bilinear"


def _cached_outside_compilation(function: Callable) -> Callable:
    """`function` memoized (an LRU cache of 64 calls) in eager mode, and the function itself under torch.compile:
    Dynamo traces through a cache anyway, and warns about every cached function it meets."""
    cached = functools.lru_cache(maxsize=64)(function)

    @functools.wraps(function)
    def call(*args):
        return function(*args) if torch.compiler.is_compiling() else cached(*args)

    return call


@_cached_outside_compilation
def _resize_matrix_1d(old: int, new: int, mode: str) -> torch.Tensor:
    """(new, old) float64 matrix M with M @ x == F.interpolate(x, new) along one axis (align_corners=False)."""
    if old == new:
        return torch.eye(old, dtype=torch.float64)
    basis = torch.eye(old, dtype=torch.float64)
    if mode == "linear":
        columns = F.interpolate(basis[:, None, :], size=new, mode="linear", align_corners=False)[:, 0]
    else:
        # 1-D resize through a height-1 image: at equal height the filter samples the rows exactly.
        columns = F.interpolate(
            basis[:, None, None, :], size=(1, new), mode=mode, align_corners=False, antialias=new < old
        )[:, 0, 0]
    return columns.T.contiguous()


@_cached_outside_compilation
def _pi_resize_matrix(old_size: tuple[int, ...], new_size: tuple[int, ...]) -> torch.Tensor:
    """pinv(B) of shape (prod(old_size), prod(new_size)), B the kernel-resize operator (vec(resize(x)) = B vec(x)).

    Spatial axes use bilinear (antialiased when shrinking) and the temporal axis, when there is one, linear: the
    interpolation the video processor resizes frames with (its default), so a resized patch meets the resized
    kernel, as FlexiViT prescribes.
    """
    modes = [FRAME_INTERPOLATION] * len(old_size)
    if len(old_size) == 3:
        modes[0] = "linear"
    resize = torch.ones(1, 1, dtype=torch.float64)
    for old, new, mode in zip(old_size, new_size, modes, strict=True):
        resize = torch.kron(resize, _resize_matrix_1d(old, new, mode))
    return torch.linalg.pinv(resize)


@_cached_outside_compilation
def _pi_resize_matrix_on(
    old_size: tuple[int, ...], new_size: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return _pi_resize_matrix(old_size, new_size).to(device=device, dtype=dtype)


def pi_resize_patch_kernel(weight: torch.Tensor, new_size: tuple[int, ...]) -> torch.Tensor:
    """FlexiViT's pseudo-inverse resize of a patch-embedding kernel, differentiable in `weight`.

    Args:
        weight: `(out_channels, in_channels, *kernel_size)` with 2 (Conv2d) or 3 (Conv3d, time first) kernel dims.
        new_size: the new kernel size, one entry per kernel dim.

    The new kernel w' = pinv(B^T) w keeps every token unchanged, <x, w> == <B x, w'>, when the kernel grows
    (a p*p patch upsampled to a p'*p' patch gives the same embedding), and is the least-squares choice when it
    shrinks. So a B/8 model on a 2x larger frame sees what a B/16 model sees on the original frame.
    """
    new_size = tuple(int(s) for s in new_size)
    old_size = tuple(weight.shape[2:])
    if len(old_size) not in (2, 3) or len(new_size) != len(old_size):
        raise ValueError(
            f"pi_resize_patch_kernel needs a 4-D or 5-D kernel and a new size per kernel dim; got kernel "
            f"{tuple(weight.shape)} and new_size {new_size}."
        )
    if new_size == old_size:
        return weight
    compute_dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    pinv = _pi_resize_matrix_on(old_size, new_size, weight.device, compute_dtype)
    flat = weight.to(compute_dtype).reshape(*weight.shape[:2], -1)  # [out, in, prod(old_size)]
    return (flat @ pinv).reshape(*weight.shape[:2], *new_size).to(weight.dtype)


def resize_spatial_pos_embed(
    table: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """Bicubic resize of a spatial position table with a leading cls slot (kept as is).

    Args:
        table: `(1, 1 + old_h * old_w, hidden_size)`, the cls slot first, then the grid row-major.
        new_grid: `(new_h, new_w)`; non-square grids are fine.
        old_grid: the table's grid; a square grid is assumed when omitted.
    Returns:
        `(1, 1 + new_h * new_w, hidden_size)`, computed in float32 and cast back (bicubic in half precision drifts).
    """
    if table.dim() != 3 or table.shape[0] != 1:
        raise ValueError(f"Spatial position table must be (1, 1 + grid_h * grid_w, hidden); got {tuple(table.shape)}.")
    num_positions = table.shape[1] - 1
    if old_grid is None:
        side = math.isqrt(num_positions)
        if side * side != num_positions:
            raise ValueError(f"Cannot infer a square grid from {num_positions} spatial positions; pass old_grid.")
        old_grid = (side, side)
    old_grid, new_grid = tuple(old_grid), tuple(int(g) for g in new_grid)
    if old_grid[0] * old_grid[1] != num_positions:
        raise ValueError(f"old_grid {old_grid} does not match the table's {num_positions} spatial positions.")
    if new_grid == old_grid:
        return table
    cls_slot, grid = table[:, :1], table[:, 1:]
    grid = grid.reshape(1, *old_grid, -1).permute(0, 3, 1, 2).float()  # [1, hidden, old_h, old_w]
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], -1).to(table.dtype)
    return torch.cat([cls_slot, grid], dim=1)


def resize_temporal_pos_embed(table: torch.Tensor, new_length: int) -> torch.Tensor:
    """Linear resize of a temporal position table `(1, num_frames, hidden)` to `(1, new_length, hidden)`."""
    if table.dim() != 3 or table.shape[0] != 1:
        raise ValueError(f"Temporal position table must be (1, num_frames, hidden); got {tuple(table.shape)}.")
    new_length = int(new_length)
    if new_length == table.shape[1]:
        return table
    resized = F.interpolate(table.transpose(1, 2).float(), size=new_length, mode="linear", align_corners=False)
    return resized.transpose(1, 2).to(table.dtype)  # [1, new_length, hidden]


def rebase_tensor(name: str, tensor: torch.Tensor, target_shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Resize a checkpoint tensor that depends on the input scale to the scale of `target_shape`.

    The three scale-dependent tensors (`geometry.SCALE_DEPENDENT_PARAMETERS`) are recognised by the end of their
    parameter name: the spatial position table (bicubic; square grids, as a config's base grid is), the temporal
    table (linear) and the patch kernel (PI-resize). Only the scale dims are resized (grid, frame count, kernel size): a tensor whose channel dims differ
    from `target_shape` comes back with those dims unchanged, for the caller's size-mismatch check to report. Any
    other name, or an equal shape, returns `tensor` itself.
    """
    target_shape = tuple(target_shape)
    if tuple(tensor.shape) == target_shape or len(target_shape) != tensor.dim():
        return tensor
    if name.endswith(TEMPORAL_POSITION_TABLE):
        resized = resize_temporal_pos_embed(tensor, target_shape[1])
    elif name.endswith(SPATIAL_POSITION_TABLE):
        side = math.isqrt(target_shape[1] - 1)
        if side * side != target_shape[1] - 1:
            raise ValueError(f"{name}: target shape {target_shape} does not hold a square grid plus a cls slot.")
        resized = resize_spatial_pos_embed(tensor, (side, side))
    elif name.endswith(PATCH_KERNEL):
        resized = pi_resize_patch_kernel(tensor, target_shape[2:])
    else:
        return tensor
    logger.info(f"Resized {name} from {tuple(tensor.shape)} to {tuple(resized.shape)}.")
    return resized
