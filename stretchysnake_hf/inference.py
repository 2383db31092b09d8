# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""One-line inference: video file(s) to top-k labels with scores."""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers.utils import IMAGE_PROCESSOR_NAME, cached_file, logging

from .configuration_stretchysnake import StretchySnakeConfig
from .cpu_sharing import sharing_cpu
from .modeling_stretchysnake import StretchySnakeForVideoClassification
from .video_processing_stretchysnake import StretchySnakeVideoProcessor, is_single_video

Predictions = list[dict[str, Any]]
"""The top-k labels of one video, best first: `[{"label": str, "score": float}, ...]`."""

Failure = dict[str, str]
"""A video that could not be decoded, in place of its predictions: `{"error": message}` (the message names it)."""

logger = logging.get_logger(__name__)


def load_processor(model: str | os.PathLike | None, config: StretchySnakeConfig) -> StretchySnakeVideoProcessor:
    """The processor saved with the model `model` (a folder or Hub id; offline, the Hub cache); if it has none (or
    `model` is None), a default one at the model's `num_frames` and `image_size`."""
    # transformers raises the same bare OSError for a missing file and for a repo that cannot be reached, so the
    # file is looked up first: only its absence falls back to the default.
    if model is not None and cached_file(model, IMAGE_PROCESSOR_NAME, _raise_exceptions_for_missing_entries=False):
        logger.info(f"Using the processor saved with {model}.")
        return StretchySnakeVideoProcessor.from_pretrained(model)
    logger.info(
        f"Using a default processor ({config.num_frames} frames, {config.image_size} px): no {IMAGE_PROCESSOR_NAME} "
        f"with {model or 'the loaded model'}."
    )
    return StretchySnakeVideoProcessor(num_frames=config.num_frames, size=config.image_size)


def load_trained_classifier(model: str | os.PathLike, **kwargs: Any) -> StretchySnakeForVideoClassification:
    """`StretchySnakeForVideoClassification.from_pretrained(model, **kwargs)`, refusing weights without a classifier
    (a backbone), whose head would be random."""
    loaded, info = StretchySnakeForVideoClassification.from_pretrained(model, output_loading_info=True, **kwargs)
    untrained = sorted(key for key in info["missing_keys"] if key.startswith("classifier."))
    if untrained:
        raise ValueError(
            f"{model} has no trained classifier ({', '.join(untrained)} not in its weights): it is a backbone, and "
            "its predictions would come from a randomly initialised head. Fine-tune it on labelled videos first."
        )
    return loaded


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
    on_error: str | None = None,
    share_cpu: bool = True,
) -> Predictions | Failure | list[Predictions | Failure]:
    """Classify a video (or a list of videos) and return the `top_k` labels with their softmax scores.

    Args:
        videos: one video (path, bytes, file object, array...) or a list of them; anything the processor accepts.
        model: a model folder (or Hub id) or a loaded `StretchySnakeForVideoClassification`; a folder whose weights
            have no classifier (a backbone) raises a `ValueError`.
        num_frames: frames per clip; defaults to the processor's setting, or the model's `num_frames`.
        image_size: side of the square input; defaults to the processor's `size`, or the model's `image_size`.
        patch_size: patch size passed to the model; defaults to the model's own.
        top_k: how many labels to return.
        num_clips, num_crops: views per video; their softmax scores are averaged.
        processor: the processor to use; defaults to the one saved with the model (folder or Hub id), else a
            default one.
        device: where to run the model; defaults to where it is.
        on_error: what a video that cannot be decoded does: "raise" its error, or "skip" it, which puts a
            `{"error": message}` (the message names the file and the problem) in its place; `None` uses the
            processor's `on_error` setting.
        share_cpu: on CPU, run the forward pass on no more of torch's threads than the cores this process may use,
            which its CPU quota (`docker --cpus`, a Kubernetes limit) can make fewer than the machine's
            (`cpu_sharing.CpuShare`); torch's threads are given back after it. False: torch's threads as they are.

    Returns:
        For one video, a list of `{"label": str, "score": float}`, best first; for a list, one entry per video, in
        input order. With `on_error="skip"`, the entry of a video that could not be decoded is `{"error": message}`
        instead of a list (tell them apart with `isinstance(entry, dict)`).

    Example:

    ```python
    >>> import stretchysnake_hf

    >>> stretchysnake_hf.predict("clip.mp4", model="DIR", num_frames=16, image_size=224, top_k=5)  # doctest: +SKIP
    [{'label': 'juggling', 'score': 0.91}, ...]
    >>> stretchysnake_hf.predict(["clip.mp4", "broken.mp4"], model="DIR", top_k=1, on_error="skip")  # doctest: +SKIP
    [[{'label': 'juggling', 'score': 0.91}], {'error': 'broken.mp4: cannot be opened as a video (...)'}]
    ```
    """
    if on_error not in (None, "raise", "skip"):
        raise ValueError(f"on_error must be 'raise', 'skip' or None, got {on_error!r}")
    path = None
    if not isinstance(model, StretchySnakeForVideoClassification):
        path, model = model, load_trained_classifier(model)
    if processor is None:
        processor = load_processor(path, model.config)
    model.eval()
    if device is not None:
        model.to(device)

    single = is_single_video(videos)
    videos = [videos] if single else list(videos)
    inputs = processor(
        videos,
        num_frames=num_frames,
        size=image_size,
        patch_size=patch_size,
        num_clips=num_clips,
        num_crops=num_crops,
        on_error=on_error or processor.on_error,
    )
    failures = dict(zip(inputs.get("skipped_indices", []), inputs.get("skipped_errors", []), strict=True))
    predictions: list[Predictions] = []
    if len(failures) < len(videos):  # not every video failed: no forward pass on an empty batch
        pixel_values = inputs["pixel_values"].to(model.device, model.dtype)
        with torch.no_grad(), sharing_cpu(share_cpu and model.device.type == "cpu"):
            logits = model(pixel_values, patch_size=inputs.get("patch_size")).logits
        # [num_decoded_videos, num_views, num_labels] -> averaged over views
        probs = logits.float().softmax(-1).view(-1, num_clips * num_crops, logits.shape[-1]).mean(1)
        scores, ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        predictions = [
            [{"label": model.config.id2label[i], "score": s} for s, i in zip(row_scores, row_ids, strict=True)]
            for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True)
        ]
    decoded = iter(predictions)
    results = [{"error": failures[i]} if i in failures else next(decoded) for i in range(len(videos))]
    return results[0] if single else results
