# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""One-line inference: video file(s) to top-k labels with scores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .modeling_stretchysnake import StretchySnakeForVideoClassification
from .video_processing_stretchysnake import StretchySnakeVideoProcessor, is_single_video


def predict(
    videos: Any,
    model: str | os.PathLike | StretchySnakeForVideoClassification,
    num_frames: int | None = None,
    image_size: int | None = None,
    patch_size: int | None = None,
    top_k: int = 5,
    num_clips: int = 1,
    num_crops: int = 1,
    processor: StretchySnakeVideoProcessor | None = None,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """Classify a video (or a list of videos) and return the `top_k` labels with their softmax scores.

    Args:
        videos: one video (path, bytes, file object, array...) or a list of them; anything the processor accepts.
        model: a model folder (or Hub id) or a loaded `StretchySnakeForVideoClassification`.
        num_frames: frames per clip; defaults to the processor's setting, or the model's `num_frames`.
        image_size: side of the square input; defaults to the processor's `size`, or the model's `image_size`.
        patch_size: patch size passed to the model; defaults to the model's own.
        top_k: how many labels to return.
        num_clips, num_crops: views per video; their softmax scores are averaged.
        processor: the processor to use; defaults to the one saved in the model folder, else a default one.
        device: where to run the model; defaults to where it is.

    Returns:
        For one video, a list of `{"label": str, "score": float}`, best first; for a list, one such list per video.

    Example:

    ```python
    >>> import stretchysnake_hf

    >>> stretchysnake_hf.predict("clip.mp4", model="DIR", num_frames=16, image_size=224, top_k=5)  # doctest: +SKIP
    [{'label': 'juggling', 'score': 0.91}, ...]
    ```
    """
    if not isinstance(model, StretchySnakeForVideoClassification):
        if processor is None and (Path(model) / "preprocessor_config.json").is_file():
            processor = StretchySnakeVideoProcessor.from_pretrained(model)
        model = StretchySnakeForVideoClassification.from_pretrained(model)
    if processor is None:
        processor = StretchySnakeVideoProcessor(num_frames=model.config.num_frames, size=model.config.image_size)
    model.eval()
    if device is not None:
        model.to(device)

    single = is_single_video(videos)
    inputs = processor(
        videos, num_frames=num_frames, size=image_size, patch_size=patch_size, num_clips=num_clips, num_crops=num_crops
    )
    pixel_values = inputs["pixel_values"].to(model.device, model.dtype)
    with torch.no_grad():
        logits = model(pixel_values, patch_size=inputs.get("patch_size")).logits
    # [batch_size, num_views, num_labels] -> averaged over views
    probs = logits.float().softmax(-1).view(-1, num_clips * num_crops, logits.shape[-1]).mean(1)
    scores, ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    results = [
        [{"label": model.config.id2label[i], "score": s} for s, i in zip(row_scores, row_ids, strict=True)]
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True)
    ]
    return results[0] if single else results
