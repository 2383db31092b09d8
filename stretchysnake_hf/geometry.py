# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The geometry of a clip at a scale, one home per rule: the model, the flexible-training sampler, the evaluation
grid and the model card import these instead of restating them.

A scale is (frames T, square side S, patch size p). The model embeds a clip as one cls token followed by
`(T // tubelet) * (S // p)**2` patch tokens; memory and time follow that sequence length, so token budgets count it.
"""

from __future__ import annotations

# Checkpoint tensors whose shape depends on the base scale (named by the end of their parameter name): the spatial
# position table (cls slot + grid), the temporal table (one row per tubelet) and the patch kernel. Loading resizes
# them to the requested scale; every other tensor has the same shape at every scale.
SPATIAL_POSITION_TABLE = "embeddings.position_embeddings"
TEMPORAL_POSITION_TABLE = "embeddings.temporal_position_embeddings"
PATCH_KERNEL = "patch_embeddings.projection.weight"
SCALE_DEPENDENT_PARAMETERS = (SPATIAL_POSITION_TABLE, TEMPORAL_POSITION_TABLE, PATCH_KERNEL)


def grid_side(image_size: int, patch_size: int) -> int:
    """Tokens along each side of a frame: `image_size // patch_size`."""
    return image_size // patch_size


def sequence_length(num_frames: int, image_size: int, patch_size: int, tubelet_size: int = 1) -> int:
    """Tokens the model processes for one clip: `1 + (num_frames // tubelet_size) * (image_size // patch_size)**2`
    (the cls token and the patches)."""
    return 1 + num_frames // tubelet_size * grid_side(image_size, patch_size) ** 2


def static_tokens_patch_size(resolution: int, token_grid: int) -> int:
    """The static_tokens rule: the patch size that keeps a `token_grid` x `token_grid` grid at about `resolution`
    pixels, `round(resolution / token_grid)` (at least 1); the clip is then `token_grid * p` pixels wide."""
    return max(1, round(resolution / token_grid))


def clips_within_budget(num_clips: int, tokens_per_clip: int, max_tokens: int | None) -> int:
    """How many of `num_clips` clips of `tokens_per_clip` tokens one forward pass takes under `max_tokens` (all of
    them without a budget; 0 when not even one fits)."""
    return num_clips if max_tokens is None else min(num_clips, max_tokens // tokens_per_clip)
