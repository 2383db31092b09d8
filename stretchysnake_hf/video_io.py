# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Video decoding (PyAV, seeking to the sampled frames only) and the project's one mp4/webm writer."""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
from av.video.reformatter import VideoReformatter

logger = logging.getLogger(__name__)

VideoSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# 16 RGB frames of this many pixels already take ~1.6 GB; larger frames are refused rather than risking the host.
MAX_FRAME_PIXELS = 8192 * 4320

# A target further ahead than this (seconds) is reached by seeking to the keyframe before it; closer targets are
# reached by decoding forward, which is cheaper than re-decoding from a keyframe.
SEEK_GAP_SECONDS = 1.0


class VideoDecodeError(ValueError):
    """A video could not be decoded. The message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video stream.

    `num_frames` is the stream's frame count when the container stores one, otherwise `round(duration * fps)` (for
    variable frame rate video this is the number of frames at the average rate). Frame index `i` stands for the frame
    shown at `start_time + (i + 0.5) / fps` seconds, which is exactly frame `i` for constant frame rate video.
    """

    name: str
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    start_time: float = 0.0


def source_name(source: Any) -> str:
    """A short human-readable name of a video source for error messages."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


@contextmanager
def open_video(source: VideoSource) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open `source` (path, bytes or binary file object) and yield `(container, video_stream)`.

    Raises:
        FileNotFoundError: the path does not exist.
        VideoDecodeError: the data is not a readable container, or it has no video stream.
    """
    name = source_name(source)
    if isinstance(source, str | os.PathLike):
        if not Path(source).is_file():
            raise FileNotFoundError(f"{name}: video file not found")
    elif isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    try:
        container = av.open(source, mode="r")
    except av.error.FFmpegError as err:
        raise VideoDecodeError(
            f"{name}: cannot be opened as a video (corrupt, truncated or not a video): {err}"
        ) from err
    try:
        # FFmpeg's tty demuxer opens any text file as an "ANSI art" video stream.
        if container.format.name == "tty":
            raise VideoDecodeError(f"{name}: has no video stream (the file is text)")
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams}) or ["none"]
            raise VideoDecodeError(f"{name}: has no video stream (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"{name}: decoding failed (corrupt or truncated video): {err}") from err
    finally:
        container.close()


def _read_info(container: av.container.InputContainer, stream: av.VideoStream, name: str) -> VideoInfo:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{name}: the video stream has no frame size ({width}x{height})")
    if width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(
            f"{name}: frame size {width}x{height} is too large ({width * height} pixels, limit {MAX_FRAME_PIXELS})"
        )
    start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    num_frames = stream.frames
    if num_frames <= 0 and rate and duration:
        num_frames = round(duration * rate)
    if num_frames <= 0:
        # No count and no duration in the headers: count the packets (demuxing only, nothing is decoded).
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
    if num_frames <= 0:
        raise VideoDecodeError(f"{name}: the video stream has zero frames")
    fps = float(rate) if rate else num_frames / duration if duration else 1.0
    return VideoInfo(
        name=name,
        num_frames=num_frames,
        fps=fps,
        duration=duration or num_frames / fps,
        width=width,
        height=height,
        codec=stream.codec_context.name,
        pix_fmt=stream.codec_context.pix_fmt or "unknown",
        start_time=start_time,
    )


def probe_video(source: VideoSource) -> VideoInfo:
    """Read the metadata of a video without decoding any frame."""
    with open_video(source) as (container, stream):
        return _read_info(container, stream, source_name(source))


def _to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter, max_short_side: int | None) -> np.ndarray:
    """Any pixel format (8/10-bit YUV, gray, RGB...) to RGB uint8 `(height, width, 3)`, optionally shrunk."""
    width, height = frame.width, frame.height
    if max_short_side is not None and min(width, height) > max_short_side:
        scale = max_short_side / min(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return reformatter.reformat(frame, width, height, "rgb24", interpolation="AREA").to_ndarray()


def _decode_indices(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: VideoInfo,
    indices: Sequence[int],
    max_short_side: int | None,
) -> np.ndarray:
    """Decode the frames at `indices` (any order, repeats allowed), seeking between distant ones.

    Targets past the real end of the stream (a wrong frame count, a truncated file) get the last decodable frame.
    """
    decoded: dict[int, np.ndarray] = {}
    reformatter = VideoReformatter()  # one swscale context for all frames; a frame's own one is rebuilt per call
    frames_iter: Iterator[av.VideoFrame] | None = None
    current = ahead = None  # last frame shown at or before the target, first frame after it
    last_time = -math.inf
    ended = short_of_frames = False
    for index in sorted(set(indices)):
        target = info.start_time + (index + 0.5) / info.fps
        if frames_iter is None or target - last_time > SEEK_GAP_SECONDS:
            try:
                container.seek(int(target / stream.time_base), backward=True, any_frame=False, stream=stream)
            except av.error.FFmpegError:
                logger.debug("%s: seek to %.3f s failed; decoding on from the current position", info.name, target)
            frames_iter = container.decode(stream)
            current = ahead = None
            ended = False
        if ahead is not None and ahead.time <= target:
            current, ahead = ahead, None
        while ahead is None:
            try:
                frame = next(frames_iter)
            except StopIteration:
                ended = True
                break
            except av.error.FFmpegError as err:
                logger.warning(
                    "%s: decoding stopped at a damaged frame (%s); repeating the last good frame", info.name, err
                )
                ended = True
                break
            last_time = frame.time if frame.time is not None else last_time
            if frame.time is None or frame.time <= target:
                current = frame
            else:
                ahead = frame
        chosen = current if current is not None else ahead
        if chosen is None and not decoded:
            raise VideoDecodeError(f"{info.name}: no frame could be decoded (zero frames, or a corrupt video)")
        if ended and (chosen is None or (chosen.time is not None and chosen.time < target - 1 / info.fps)):
            short_of_frames = True
        decoded[index] = decoded[max(decoded)] if chosen is None else _to_rgb(chosen, reformatter, max_short_side)
    if short_of_frames and max(indices) < info.num_frames:
        logger.warning(
            "%s: the stream ends before its %d frames; later frames repeat the last one", info.name, info.num_frames
        )
    return np.stack([decoded[index] for index in indices])


def load_video(
    source: VideoSource,
    sample_indices: Callable[[VideoInfo], Sequence[int]] | None = None,
    max_short_side: int | None = None,
) -> tuple[np.ndarray, VideoInfo]:
    """Decode the frames of a video chosen by `sample_indices`, without decoding the whole video.

    Args:
        source: a path, the file's bytes, or a binary file object.
        sample_indices: maps the video's `VideoInfo` to the frame indices to return (any order, repeats allowed);
            `None` returns every frame.
        max_short_side: frames whose short side is longer are shrunk (area filter) while converting to RGB; bounds
            memory for 4K input.

    Returns:
        `(frames, info)`: frames is uint8 `(num_sampled, height, width, 3)` RGB.

    Raises:
        FileNotFoundError, VideoDecodeError: with the file name and the problem.
    """
    with open_video(source) as (container, stream):
        info = _read_info(container, stream, source_name(source))
        indices = list(range(info.num_frames)) if sample_indices is None else list(sample_indices(info))
        if not indices:
            raise ValueError(f"{info.name}: no frame index was requested")
        return _decode_indices(container, stream, info, indices, max_short_side), info


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    codec: str = "mpeg4",
    pix_fmt: str = "yuv420p",
    timestamps: Sequence[float] | None = None,
    bit_rate: int | None = None,
    gop_size: int | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames to a video file; the container comes from the extension (.mp4, .webm, .mkv, .avi).

    Args:
        path: output file.
        frames: uint8 `(num_frames, height, width, 3)` array or tensor, or an iterable of `(height, width, 3)`
            frames (a generator keeps long videos out of memory).
        fps: nominal frame rate.
        codec: encoder name, e.g. "mpeg4", "libx264", "libvpx-vp9", "ffv1" (lossless, odd sizes, gray, 10-bit).
        pix_fmt: pixel format of the stream, e.g. "yuv420p", "gray", "yuv420p10le".
        timestamps: presentation time of each frame in seconds, for variable frame rate video.
        bit_rate: target bit rate in bits per second.
        gop_size: frames between keyframes.
        options: extra encoder options, e.g. `{"preset": "ultrafast", "crf": "30"}`.
    """
    container = av.open(os.fspath(path), mode="w")
    try:
        stream = None
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(np.asarray(frame, dtype=np.uint8))
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = pix_fmt
                if bit_rate is not None:
                    stream.bit_rate = bit_rate
                if gop_size is not None:
                    stream.codec_context.gop_size = gop_size
                if timestamps is not None:
                    stream.codec_context.time_base = Fraction(1, 1000)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if timestamps is not None:
                video_frame.pts, video_frame.time_base = round(timestamps[i] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError(f"{os.fspath(path)}: no frames to write")
        container.mux(stream.encode())
    finally:
        container.close()
