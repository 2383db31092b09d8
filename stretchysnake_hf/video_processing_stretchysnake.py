# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Video processor for StretchySnake: decode, sample frames and crop at any scale, normalize."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.utils import logging

from .resizing import FRAME_INTERPOLATION
from .video_augmentation import ERASING_MODES, parse_rand_augment, rand_augment, random_erase
from .video_io import VideoDecodeError, VideoInfo, load_video, source_name

logger = logging.get_logger(__name__)

SAMPLING_MODES = ("uniform", "dense")

# Float pixels are read as [0, 1]; values within half a grey level outside (resampling overshoot) round to 0 or 255.
FLOAT_PIXEL_TOLERANCE = 0.5 / 255


class StretchySnakeVideoProcessorKwargs(TypedDict, total=False):
    """Settings of `StretchySnakeVideoProcessor`, stored in `preprocessor_config.json`."""

    num_frames: int
    size: int
    patch_size: int | None
    sampling: str
    frame_stride: int
    num_clips: int
    num_crops: int
    do_random_resized_crop: bool
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    do_flip: bool
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    interpolation: str
    train_interpolation: str | None
    rand_augment: str | None
    random_erasing: float
    random_erasing_mode: str
    on_error: str


def require_positive(**counts: int) -> None:
    """Raise a `ValueError` naming the first of `counts` (frames, strides, clips, crops) that is not at least 1."""
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sample_frame_indices(
    num_video_frames: int,
    num_frames: int,
    sampling: str = "uniform",
    frame_stride: int = 4,
    clip_index: int = 0,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Frame indices of one clip of `num_frames` frames out of a video of `num_video_frames` frames.

    - "uniform" (TSN): the video is cut into `num_frames` equal segments and one frame is taken per segment, at the
      segment's centre (or, for clip k of `num_clips`, at offset `(k + 0.5) / num_clips` of it); with a generator
      (training) at a random offset. Covers the whole video, so it is the choice for long videos.
    - "dense": `num_frames` frames `frame_stride` apart; the window is centred (clip k of `num_clips`: windows evenly
      spread from the start to the end) or, with a generator, starts at a random frame.

    A video shorter than requested repeats frames: "uniform" gives `floor((i + 0.5) * n / num_frames)`, each frame
    repeated about `num_frames / n` times, and "dense" falls back to the same whole-video stretch when
    `(num_frames - 1) * frame_stride + 1` frames do not fit.
    """
    if num_frames < 1 or num_video_frames < 1:
        raise ValueError(f"Need at least one frame, got num_frames={num_frames}, video frames={num_video_frames}")
    require_positive(frame_stride=frame_stride, num_clips=num_clips)
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"Unknown sampling {sampling!r}; expected one of {SAMPLING_MODES}")
    span = (num_frames - 1) * frame_stride + 1
    if sampling == "dense" and span <= num_video_frames:
        slack = num_video_frames - span
        if generator is not None:
            start = int(torch.randint(slack + 1, (1,), generator=generator))
        elif num_clips > 1:
            start = round(slack * clip_index / (num_clips - 1))
        else:
            start = slack // 2
        return [start + i * frame_stride for i in range(num_frames)]
    segment = num_video_frames / num_frames
    if generator is not None:
        offsets = torch.rand(num_frames, generator=generator, dtype=torch.float64).tolist()
    else:
        offsets = [(clip_index + 0.5) / num_clips] * num_frames
    return [min(int((i + offset) * segment), num_video_frames - 1) for i, offset in enumerate(offsets)]


def segment_frames(num_video_frames: int, fps: float, start: float | None, end: float | None) -> range:
    """The indices of the frames a player shows during `[start, end)` seconds, cut to the video's frames.

    Times count from the first frame, which is shown from 0 to `1 / fps` (the time line of `VideoInfo`), so the
    segment runs from the frame shown at `start` to the one shown just before `end`. `None` leaves that side open.
    A segment that lies wholly outside the video gives an empty range.
    """
    # A microframe of tolerance: a segment at whole frame times (1.0 s at 30 fps = 30.000000000000004 frames) must
    # not reach the frame before or after.
    first = 0 if start is None else max(0, math.floor(start * fps + 1e-6))
    stop = num_video_frames if end is None else min(num_video_frames, math.ceil(end * fps - 1e-6))
    return range(first, stop)


def split_segment(video: Any) -> tuple[Any, tuple[float | None, float | None] | None]:
    """`(source, (start, end))` of a video given as a mapping `{"video": source, "start": s, "end": e}`, else
    `(video, None)`. Other keys are ignored, so a row of `load_video_dataset` (`video`, `label`, `start`, `end`) can
    be passed as it is; `start`/`end` in seconds, either may be `None` (open), both `None` mean the whole video."""
    if not isinstance(video, Mapping):
        return video, None
    if "video" not in video:
        raise ValueError(f"A video given as a mapping needs a 'video' key (its source); got keys {sorted(video)}")
    start, end = video.get("start"), video.get("end")
    if start is None and end is None:
        return video["video"], None
    start, end = None if start is None else float(start), None if end is None else float(end)
    if (start is not None and start < 0) or (start is not None and end is not None and end <= start):
        raise ValueError(f"{source_name(video['video'])}: invalid segment start={start} end={end} (seconds)")
    return video["video"], (start, end)


def random_resized_box(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """A random `(top, left, box_height, box_width)` covering `scale` of the area with aspect ratio in `ratio`.

    Inception-style random resized crop: up to 10 draws, then the largest centred box with a ratio in range.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        draws = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        box_w, box_h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < box_w <= width and 0 < box_h <= height:
            top = int(torch.randint(height - box_h + 1, (1,), generator=generator))
            left = int(torch.randint(width - box_w + 1, (1,), generator=generator))
            return top, left, box_h, box_w
    aspect = min(max(width / height, ratio[0]), ratio[1])
    box_w, box_h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def square_boxes(height: int, width: int, num_crops: int) -> list[tuple[int, int, int, int]]:
    """`num_crops` squares of side `min(height, width)` spread evenly along the long side (1: the centre one).

    Cropping such a square and resizing it to `size` equals resizing the short side to `size` and cropping.
    """
    require_positive(num_crops=num_crops)
    side = min(height, width)
    slack_y, slack_x = height - side, width - side
    fractions = [0.5] if num_crops == 1 else [k / (num_crops - 1) for k in range(num_crops)]
    return [(round(slack_y * f), round(slack_x * f), side, side) for f in fractions]


def _is_frame(item: Any) -> bool:
    """A single image: PIL image, or a 2-D/3-D array (one frame), as opposed to a whole video."""
    if hasattr(item, "getbands"):
        return True
    return isinstance(item, np.ndarray | torch.Tensor) and item.ndim in (2, 3)


def is_single_video(videos: Any) -> bool:
    """Whether `videos` is one video (a path, bytes, file, 4-D array, list of frames, segment mapping) rather than a
    batch."""
    if isinstance(videos, str | os.PathLike | bytes | bytearray | memoryview | Mapping) or hasattr(videos, "read"):
        return True
    if isinstance(videos, np.ndarray | torch.Tensor):
        return videos.ndim <= 4
    return isinstance(videos, list | tuple) and len(videos) > 0 and _is_frame(videos[0])


def _frames_to_tensor(video: Any) -> torch.Tensor:
    """In-memory video (array, tensor or list of frames) to uint8 `(num_frames, height, width, 3)`.

    Pixels are uint8, or floats in [0, 1]; any other dtype, or floats outside [0, 1], raise a `ValueError`.
    """
    if isinstance(video, list | tuple):
        video = np.stack([np.asarray(frame.convert("RGB")) if hasattr(frame, "convert") else frame for frame in video])
    frames = torch.as_tensor(np.asarray(video)) if not isinstance(video, torch.Tensor) else video
    if frames.ndim == 3:  # (num_frames, height, width): grayscale
        frames = frames.unsqueeze(-1)
    if frames.ndim != 4:
        raise ValueError(
            f"A video array must have 4 dimensions (num_frames, height, width, 3), got {tuple(frames.shape)}"
        )
    if frames.shape[-1] not in (1, 3, 4) and frames.shape[1] in (1, 3, 4):
        frames = frames.permute(0, 2, 3, 1)  # (num_frames, channels, height, width) -> channels last
    if frames.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Cannot find the channel axis (1, 3 or 4 channels) of a video of shape {tuple(frames.shape)}"
        )
    if frames.is_floating_point():
        low, high = (frames.min().item(), frames.max().item()) if frames.numel() else (0.0, 0.0)
        if not (low >= -FLOAT_PIXEL_TOLERANCE and high <= 1 + FLOAT_PIXEL_TOLERANCE):  # also refuses NaN
            raise ValueError(
                f"A float video must have pixel values in [0, 1], got values from {low:g} to {high:g} "
                "(divide 0-255 values by 255, or pass them as uint8)"
            )
        frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    elif frames.dtype != torch.uint8:
        raise ValueError(
            f"A video array must be uint8 (or float in [0, 1]), got {frames.dtype} "
            "(scale wider samples to 8 bits first, e.g. 10-bit values divided by 4)"
        )
    if frames.shape[-1] == 1:
        frames = frames.expand(-1, -1, -1, 3)
    return frames[..., :3]


class StretchySnakeVideoProcessor(BaseImageProcessor):
    r"""
    Turns videos into StretchySnake's `pixel_values` at any scale: PyAV decoding of only the sampled frames, temporal
    sampling ("uniform" or "dense"), a square crop resized to `size` (short-side resize + centre crop at evaluation,
    random resized crop + horizontal flip in training), ImageNet normalization.

    Every argument below is a default that a call can override.

    Args:
        num_frames (`int`, *optional*, defaults to 16):
            Frames per clip.
        size (`int`, *optional*, defaults to 224):
            Side of the square output frames; a multiple of `patch_size` when that is set.
        patch_size (`int`, *optional*):
            Patch size to return with the pixels (the model reads it in `forward`); `None` returns none.
        sampling (`str`, *optional*, defaults to `"uniform"`):
            "uniform" (one frame per equal segment; long videos) or "dense" (consecutive frames `frame_stride`
            apart; short clips). See `sample_frame_indices`.
        frame_stride (`int`, *optional*, defaults to 4):
            Distance between frames in "dense" sampling.
        num_clips (`int`, *optional*, defaults to 1):
            Clips per video at evaluation (VideoMamba's test protocol uses several); training always takes one.
        num_crops (`int`, *optional*, defaults to 1):
            Square crops per clip at evaluation, spread along the long side (3: left, centre, right).
        do_random_resized_crop (`bool`, *optional*, defaults to `True`):
            In training, crop a random box (`crop_scale` of the area, aspect in `crop_ratio`); if `False`, a random
            square of the short side.
        crop_scale (`tuple[float, float]`, *optional*, defaults to `(0.08, 1.0)`):
            Area fraction range of the random resized crop.
        crop_ratio (`tuple[float, float]`, *optional*, defaults to `(0.75, 1.3333)`):
            Aspect ratio range of the random resized crop.
        do_flip (`bool`, *optional*, defaults to `True`):
            In training, flip each clip horizontally with probability 0.5; turn off for direction-sensitive classes
            ("moving left" / "moving right").
        image_mean (`tuple[float, float, float]`, *optional*, defaults to ImageNet's):
            Per-channel mean subtracted after scaling to [0, 1].
        image_std (`tuple[float, float, float]`, *optional*, defaults to ImageNet's):
            Per-channel standard deviation divided by.
        interpolation (`str`, *optional*, defaults to `"bilinear"`):
            "bilinear" or "bicubic" (antialiased when shrinking).
        train_interpolation (`str`, *optional*):
            The interpolation of training crops and of RandAugment's geometric operations (VideoMamba's recipe:
            "bicubic"); `None` uses `interpolation`.
        rand_augment (`str`, *optional*):
            In training, RandAugment in timm's notation (VideoMamba's recipe: `"rand-m7-n4-mstd0.5-inc1"`), the same
            operations and magnitudes on every frame of a clip (`video_augmentation.rand_augment`); `None`: off.
        random_erasing (`float`, *optional*, defaults to 0.0):
            In training, the probability of erasing one random box of each clip, the same box on every frame
            (`video_augmentation.random_erase`; VideoMamba's recipe: 0.25).
        random_erasing_mode (`str`, *optional*, defaults to `"pixel"`):
            What fills the erased box: "pixel" (normal noise per pixel), "rand" (per channel) or "const" (zeros).
        on_error (`str`, *optional*, defaults to `"raise"`):
            What a video that cannot be decoded does: "raise" the error, or "skip" it with a warning (its index is
            listed in the output's `skipped_indices`, its error message, which names the file, in `skipped_errors`).
            A segment that lies wholly outside its video counts as such a video.

    Example:

    ```python
    >>> from stretchysnake_hf import StretchySnakeVideoProcessor

    >>> processor = StretchySnakeVideoProcessor()
    >>> inputs = processor(["a.mp4", "b.webm"], num_frames=8, size=128, patch_size=8)  # doctest: +SKIP
    >>> inputs["pixel_values"].shape  # doctest: +SKIP
    torch.Size([2, 8, 3, 128, 128])
    ```
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = StretchySnakeVideoProcessorKwargs

    num_frames = 16
    size = 224
    patch_size = None
    sampling = "uniform"
    frame_stride = 4
    num_clips = 1
    num_crops = 1
    do_random_resized_crop = True
    crop_scale = (0.08, 1.0)
    crop_ratio = (3 / 4, 4 / 3)
    do_flip = True
    image_mean = tuple(IMAGENET_DEFAULT_MEAN)
    image_std = tuple(IMAGENET_DEFAULT_STD)
    interpolation = FRAME_INTERPOLATION  # the basis PI-resize assumes (`resizing.FRAME_INTERPOLATION`)
    train_interpolation = None
    rand_augment = None
    random_erasing = 0.0
    random_erasing_mode = "pixel"
    on_error = "raise"

    def __init__(self, **kwargs: Any) -> None:
        settings = {key: kwargs.pop(key) for key in self.valid_kwargs.__annotations__ if key in kwargs}
        super().__init__(**kwargs)
        for key in self.valid_kwargs.__annotations__:
            value = settings.get(key, getattr(type(self), key))
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self._check_settings({key: getattr(self, key) for key in self.valid_kwargs.__annotations__})

    @staticmethod
    def _check_settings(settings: dict[str, Any]) -> None:
        """Refuse invalid settings, whether the processor's own or a call's overrides, naming the value."""
        if settings["on_error"] not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {settings['on_error']!r}")
        if settings["rand_augment"] is not None:
            parse_rand_augment(settings["rand_augment"])
        if not 0.0 <= settings["random_erasing"] <= 1.0:
            raise ValueError(f"random_erasing must be a probability in [0, 1], got {settings['random_erasing']!r}")
        if settings["random_erasing_mode"] not in ERASING_MODES:
            raise ValueError(
                f"random_erasing_mode must be one of {ERASING_MODES}, got {settings['random_erasing_mode']!r}"
            )
        require_positive(
            frame_stride=settings["frame_stride"], num_clips=settings["num_clips"], num_crops=settings["num_crops"]
        )

    def preprocess(
        self,
        videos: Any,
        num_frames: int | None = None,
        size: int | None = None,
        patch_size: int | None = None,
        sampling: str | None = None,
        training: bool = False,
        return_tensors: str | None = "pt",
        generator: torch.Generator | None = None,
        seed: int | None = None,
        do_sample_frames: bool = True,
        repeated_augmentation: int = 1,
        **kwargs: Any,
    ) -> BatchFeature:
        r"""
        Args:
            videos: one video or a list of videos; a video is a path (`str`/`Path`), the file's `bytes`, a binary
                file object, a uint8 array or tensor `(num_frames, height, width, 3)` (or `(num_frames, 3, height,
                width)`; floats must lie in [0, 1], other dtypes are refused), or a list of PIL images /
                `(height, width, 3)` arrays. A batch
                may mix kinds, lengths, sizes and frame rates. A file (path, bytes, file object) may come as a
                mapping `{"video": source, "start": seconds, "end": seconds}` (a row of `load_video_dataset`):
                frames are then sampled only among those shown in `[start, end)` (see `segment_frames`), with the
                same rules as over a whole video.
            num_frames, size, patch_size, sampling: override the processor's settings for this call.
            training (`bool`, defaults to `False`): random temporal offsets, random resized crop and flip.
            return_tensors: only "pt" (or `None`, which also gives torch tensors) is supported.
            generator / seed: the source of training randomness (a `torch.Generator`, or a seed to build one);
                without either, a generator seeded from torch's global RNG (reproducible under `torch.manual_seed`).
            do_sample_frames (`bool`, defaults to `True`): `False` keeps every frame (`num_frames` is ignored).
            repeated_augmentation (`int`, defaults to 1): in training, each video's sampled frames (decoded once)
                come out this many times, contiguous, each with its own crop, flip, RandAugment and erasing
                (VideoMamba's `num_sample`).
            kwargs: any other setting of the class (`frame_stride`, `num_clips`, `num_crops`, `do_flip`,
                `on_error`, ...).

        Returns:
            `BatchFeature` with `pixel_values`, float32 `(batch_size * num_views, num_frames, 3, size, size)`, where
            `num_views = num_clips * num_crops` at evaluation and `repeated_augmentation` in training, the views of a video contiguous
            (score a video by `logits.softmax(-1).view(batch_size, num_views, -1).mean(1)`); `patch_size` (an
            `int`) when set; when `on_error="skip"`, `skipped_indices` (input positions dropped, ascending) and `skipped_errors`
            (for each of them the error message as a `str`, which names the file and the problem).
        """
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"Unexpected arguments for {type(self).__name__}: {sorted(unknown)}")
        if return_tensors not in ("pt", None):
            raise ValueError(f"Only return_tensors='pt' is supported, got {return_tensors!r}")
        opts = {key: getattr(self, key) for key in self.valid_kwargs.__annotations__}
        opts.update(kwargs)
        call_settings = {"num_frames": num_frames, "size": size, "patch_size": patch_size, "sampling": sampling}
        opts.update({key: value for key, value in call_settings.items() if value is not None})
        self._check_settings(opts)
        size, patch_size = int(opts["size"]), opts["patch_size"]
        if size < 1 or (patch_size is not None and size % patch_size):
            raise ValueError(f"size {size} must be a positive multiple of the patch size {patch_size}")
        if seed is not None and generator is None:
            generator = torch.Generator().manual_seed(seed)
        if training and generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        num_clips, num_crops = (1, 1) if training else (opts["num_clips"], opts["num_crops"])
        if repeated_augmentation < 1:
            raise ValueError(f"repeated_augmentation must be a positive integer, got {repeated_augmentation!r}")
        copies = repeated_augmentation if training else 1

        videos = [videos] if is_single_video(videos) else list(videos)
        clips, skipped, errors = [], [], []
        for position, video in enumerate(videos):
            video, segment = split_segment(video)
            try:
                frames = self._sample_clips(
                    video,
                    segment,
                    opts,
                    num_clips,
                    None if not do_sample_frames else int(opts["num_frames"]),
                    generator,
                )
            except (VideoDecodeError, OSError) as err:
                if opts["on_error"] != "skip":
                    raise
                logger.warning("Skipping video %d (%s): %s", position, source_name(video), err)
                skipped.append(position)
                errors.append(str(err))
                continue
            for clip in frames:
                for _ in range(copies):
                    clips.extend(self._crop_views(clip, size, num_crops, training, opts, generator))
        pixel_values = torch.stack(clips) if clips else torch.empty(0, int(opts["num_frames"]), 3, size, size)
        output = BatchFeature({"pixel_values": pixel_values})
        if patch_size is not None:
            output["patch_size"] = int(patch_size)
        if opts["on_error"] == "skip":
            output["skipped_indices"] = skipped
            output["skipped_errors"] = errors
        return output

    def _sample_clips(
        self,
        video: Any,
        segment: tuple[float | None, float | None] | None,
        opts: dict[str, Any],
        num_clips: int,
        num_frames: int | None,
        generator: torch.Generator | None,
    ) -> list[torch.Tensor]:
        """Decode or gather the frames of `num_clips` clips: a list of uint8 `(num_frames, height, width, 3)`.

        With a `(start, end)` segment (seconds) the clips are sampled among the segment's frames only.
        """

        def clip_indices(num_video_frames: int) -> list[list[int]]:
            if num_frames is None:
                return [list(range(num_video_frames))]
            return [
                sample_frame_indices(
                    num_video_frames, num_frames, opts["sampling"], opts["frame_stride"], k, num_clips, generator
                )
                for k in range(num_clips)
            ]

        if isinstance(video, str | os.PathLike | bytes | bytearray | memoryview) or hasattr(video, "read"):
            per_clip: list[list[int]] = []

            def all_indices(info: VideoInfo) -> list[int]:
                shown = (
                    range(info.num_frames) if segment is None else segment_frames(info.num_frames, info.fps, *segment)
                )
                if not shown:
                    raise VideoDecodeError(
                        f"{info.name}: the segment {segment[0]} to {segment[1]} s lies outside the video "
                        f"(0 to {info.duration:.3f} s)"
                    )
                per_clip.extend([shown[i] for i in indices] for indices in clip_indices(len(shown)))
                return [index for indices in per_clip for index in indices]

            # Frames are shrunk while decoding to twice the output size at most: bounds memory for 4K input, and a
            # 2x antialiased reduction before the final resize keeps the detail the output can show.
            frames, _ = load_video(video, all_indices, max_short_side=2 * int(opts["size"]))
            frames = torch.from_numpy(frames)
            lengths = [len(indices) for indices in per_clip]
            return list(frames.split(lengths))
        if segment is not None:
            raise ValueError("A segment (start/end in seconds) needs a video file: an array carries no frame rate")
        frames = _frames_to_tensor(video)
        if len(frames) == 0:
            raise ValueError("A video array has zero frames")
        return [frames[indices] for indices in clip_indices(len(frames))]

    def _crop_views(
        self,
        clip: torch.Tensor,
        size: int,
        num_crops: int,
        training: bool,
        opts: dict[str, Any],
        generator: torch.Generator | None,
    ) -> list[torch.Tensor]:
        """uint8 `(num_frames, height, width, 3)` -> `num_crops` normalized float32 `(num_frames, 3, size, size)`;
        in training, with the settings' RandAugment (before normalizing) and random erasing (after)."""
        height, width = clip.shape[1:3]
        interpolation = (training and opts["train_interpolation"]) or opts["interpolation"]
        augment = parse_rand_augment(opts["rand_augment"]) if training and opts["rand_augment"] else None
        if not training:
            boxes = square_boxes(height, width, num_crops)
        elif opts["do_random_resized_crop"]:
            boxes = [random_resized_box(height, width, opts["crop_scale"], opts["crop_ratio"], generator)]
        else:
            side = min(height, width)
            top = int(torch.randint(height - side + 1, (1,), generator=generator))
            left = int(torch.randint(width - side + 1, (1,), generator=generator))
            boxes = [(top, left, side, side)]
        mean = torch.tensor(opts["image_mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(opts["image_std"], dtype=torch.float32).view(1, 3, 1, 1)
        views = []
        for top, left, box_h, box_w in boxes:
            # [num_frames, 3, box_h, box_w], uint8 in channels-last memory
            view = clip[:, top : top + box_h, left : left + box_w].permute(0, 3, 1, 2)
            if (box_h, box_w) != (size, size):
                # Resized as uint8: torch's vectorised antialiased kernel for channels-last uint8 is ~4x faster than
                # the float one, and differs from it by rounding only.
                view = F.interpolate(view, size=(size, size), mode=interpolation, align_corners=False, antialias=True)
            view = view.float() / 255
            if training and opts["do_flip"] and float(torch.rand(1, generator=generator)) < 0.5:
                view = view.flip(-1)
            if augment is not None:
                view = rand_augment(view, augment, generator, interpolation)
            view = (view - mean) / std
            if training and opts["random_erasing"] > 0:
                view = random_erase(view, opts["random_erasing"], opts["random_erasing_mode"], generator)
            views.append(view)
        return views


__all__ = ["StretchySnakeVideoProcessor", "is_single_video", "sample_frame_indices", "segment_frames", "split_segment"]
