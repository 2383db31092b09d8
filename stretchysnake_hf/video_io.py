# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Video decoding (PyAV, seeking to the sampled frames only) and the project's one mp4/webm writer."""

from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from packaging.version import Version
from torch.utils.data import get_worker_info
from transformers.utils import logging

from .selective_scan import cores_per_process, usable_cpus

try:  # decoding needs PyAV; the processor's in-memory videos (arrays, frames) do not
    import av
    from av.video.reformatter import VideoReformatter
except ImportError:
    av = VideoReformatter = None

logger = logging.get_logger(__name__)

PYAV_MIN_VERSION = Version("17")  # VideoReformatter.reformat(threads=...)
FFMPEG_MAX_AUTO_THREADS = 16  # libavcodec's cap on the threads it starts by itself (MAX_AUTO_THREADS)

VideoSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# 16 RGB frames of this many pixels already take ~1.6 GB; larger frames are refused rather than risking the host.
MAX_FRAME_PIXELS = 8192 * 4320

# A target further ahead than this (seconds) is reached by seeking to the keyframe before it; closer targets are
# reached by decoding forward, which is cheaper than re-decoding from a keyframe.
SEEK_GAP_SECONDS = 1.0

# Raw elementary streams (.h264, .hevc, .m2v, ...): no container, so no frame count and no (or only interpolated)
# timestamps. The parser cuts one frame per packet, so their frames are counted as packets.
RAW_STREAM_FORMATS = frozenset({"mpegvideo", "h264", "hevc", "m4v", "cavsvideo", "vc1"})

# Containers whose frame times cannot locate a frame: MPEG program streams (DVD, camcorder .mpg, .vob) carry a
# timestamp every few packets and FFmpeg interpolates the others, going backwards around small B-frames; raw
# elementary streams have none. Their frames are located by their ordinal in decoding order (see `_picks_by_ordinal`).
SEQUENTIAL_FORMATS = frozenset({"mpeg", "vob"}) | RAW_STREAM_FORMATS

# Formats FFmpeg's probe misses in small files (an MPEG-TS of a few frames, under about 2 KB, scores too low), by the
# file extensions that name them: opened with the named format when the probe fails.
FORMATS_BY_EXTENSION = {".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts"}

# Containers whose timestamps are MPEG's 33-bit 90 kHz clock, which wraps every 26.5 hours: FFmpeg unwraps a stream
# that crosses the wrap to a negative start, where a seek to time 0 lands in the middle of the file.
MPEG_CLOCK_FORMATS = frozenset({"mpegts", "mpeg"})

# Containers with a full sample table (mp4, mov, 3gp): FFmpeg's index holds every sample the edit list keeps, marking
# those it hides at the start as discarded and leaving out those after the edit's end, while the stored frame count
# includes them all.
MOV_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})

# Containers whose duration is the time the file ends at, counted from zero (Matroska's segment duration); FFmpeg
# gives other containers' durations from their first timestamp.
DURATION_FROM_ZERO_FORMATS = frozenset({"matroska,webm"})

# A file whose packets all end this much (seconds) before the duration its header declares is truncated. Headers
# round (flv stores milliseconds, and some count from the first timestamp, others from zero).
TRUNCATION_SECONDS = 0.5

# A seek that lands after its target is retried this much further back (seconds), doubling each time.
SEEK_RETRY_SECONDS = 1.0


class VideoDecodeError(ValueError):
    """A video could not be decoded. The message names the file and the problem."""


def _require_pyav() -> None:
    if av is None:
        raise ImportError("Reading and writing video files needs PyAV: `pip install av`.")
    if Version(av.__version__) < PYAV_MIN_VERSION:  # a remote-code user's environment is not checked by pip
        raise ImportError(
            f"Reading and writing video files needs PyAV {PYAV_MIN_VERSION} or newer, found {av.__version__}: "
            "`pip install -U av`."
        )


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video stream.

    `num_frames` is the number of frames a player shows: the sample table less the samples an edit list hides (mp4,
    mov), the stored count (avi), or, for containers whose duration is only an estimate (mkv, webm, MPEG-TS/PS, flv),
    the time span of the stream's packets at the average rate (for variable frame rate video, the number of frames at
    the average rate; MPEG-TS gives no average for it, and the rate its timestamps are on, the fastest, is used: a
    finer grid of times, so more indices than stored frames, each still the frame shown at its time). Frame index `i`
    stands for the frame shown at `start_time + (i + 0.5) / fps` seconds, which is exactly frame `i` for constant
    frame rate video; where frame times cannot locate a frame (`_picks_by_ordinal`), it is the `i`-th frame decoded
    (in AVI, a dropped frame's empty chunk counts, shown as the frame before it). `width` and `height` are the stored
    size; decoded frames come out as displayed (pixel aspect ratio and rotation applied).
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
    sample_aspect_ratio: float = 1.0


def source_name(source: Any) -> str:
    """A short human-readable name of a video source for error messages."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _rewound(source: VideoSource) -> VideoSource:
    """`source`, with a file object moved back to its start (a video can be read twice)."""
    if hasattr(source, "seek"):
        source.seek(0)
    return source


def _check_source(source: Any, name: str) -> None:
    """Errors a player would give before reading a byte: a missing path, a folder, a file object opened as text."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            raise IsADirectoryError(f"{name}: is a directory, not a video file")
        if not path.is_file():
            raise FileNotFoundError(f"{name}: video file not found")
    elif isinstance(source, io.TextIOBase):
        raise VideoDecodeError(f"{name}: the file object is open in text mode; open the video with mode 'rb'")


def select_video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    """The video stream a player shows: the first one marked default, else the first one; never cover art."""
    Disposition = av.stream.Disposition
    streams = [stream for stream in container.streams.video if not stream.disposition & Disposition.attached_pic]
    if not streams:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        if container.streams.video:
            kinds = ["cover art"] + [kind for kind in kinds if kind != "video"]
        raise VideoDecodeError(f"{name}: has no video stream (streams found: {', '.join(kinds)})")
    return next((stream for stream in streams if stream.disposition & Disposition.default), streams[0])


def ffmpeg_thread_count() -> int:
    """Threads for FFmpeg's decoder and its scaler (swscale): 0, FFmpeg's own choice (one more than the CPUs of the
    affinity mask, at most `FFMPEG_MAX_AUTO_THREADS`), unless this process's share of the CPUs is smaller; then that
    share. FFmpeg reads neither a cgroup CPU quota (`docker --cpus`, Kubernetes CPU limits) nor how many processes
    decode at once: the share is the CPUs within the quota, divided among a launcher's processes on this machine
    (`cores_per_process`) and, in a dataloader worker, what the main process leaves, divided among the workers. The
    main process keeps one CPU: it trains while the workers decode (on CPU, `cpu_sharing.CpuShare` goes down to that
    one thread, never below). Threads beyond the share only take turns, and a decoder's each hold frames of their
    own."""
    share = cores_per_process()
    worker = get_worker_info()
    if worker is not None:
        share = max(1, (share - 1) // worker.num_workers)
    return share if share < min(len(usable_cpus()), FFMPEG_MAX_AUTO_THREADS) else 0


def _open_container(source: str | os.PathLike | BinaryIO) -> av.container.InputContainer:
    """`av.open(source)`; a path whose extension names a format FFmpeg's probe can miss (`FORMATS_BY_EXTENSION`) is
    opened with that format when the probe fails."""
    try:
        return av.open(source, mode="r")
    except av.error.FFmpegError:
        named = (
            FORMATS_BY_EXTENSION.get(Path(source).suffix.lower()) if isinstance(source, str | os.PathLike) else None
        )
        if named is None:
            raise
        return av.open(source, mode="r", format=named)


@contextmanager
def open_video(
    source: VideoSource, frame_threads: bool = True, threads: int | None = None
) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open `source` (path, bytes or binary file object) and yield `(container, video_stream)`.

    The stream is the one `select_video_stream` picks; its decoder uses frame and slice threads, or slice threads
    only with `frame_threads=False`: `threads` of them (0: FFmpeg's choice; default `ffmpeg_thread_count()`).

    Raises:
        FileNotFoundError: the path does not exist.
        IsADirectoryError: the path is a folder.
        VideoDecodeError: the data is not a readable container, has no video stream, or is a text-mode file object.
    """
    _require_pyav()
    name = source_name(source)
    _check_source(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    try:
        container = _open_container(source)
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoDecodeError(
            f"{name}: cannot be opened as a video (corrupt, truncated or not a video): {err}"
        ) from err
    try:
        # FFmpeg's tty demuxer opens any text file as an "ANSI art" video stream.
        if container.format.name == "tty":
            raise VideoDecodeError(f"{name}: has no video stream (the file is text)")
        stream = select_video_stream(container, name)
        stream.thread_type = "AUTO" if frame_threads else "SLICE"
        stream.thread_count = ffmpeg_thread_count() if threads is None else threads
        yield container, stream
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"{name}: decoding failed (corrupt or truncated video): {err}") from err
    finally:
        container.close()


def _rewind(container: av.container.InputContainer) -> None:
    """Go back to the start of the file: a seek to time 0, or to byte 0 where a format has no seeking by time (flv)
    or time 0 may lie anywhere in the file (`MPEG_CLOCK_FORMATS`)."""
    if container.format.name in MPEG_CLOCK_FORMATS:
        container.seek(0, unsupported_byte_offset=True)
        return
    try:
        container.seek(0)
    except av.error.FFmpegError:
        container.seek(0, unsupported_byte_offset=True)


def _scan_end(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float | None, float]:
    """`(time of the stream's last frame, end of the file's data)` in seconds, from the packets at the end of the file.

    Seeks to a little before the container's end and demuxes every stream (nothing is decoded); if no packet of
    `stream` comes after that point (its end is earlier, e.g. audio outlasts the video), it looks four times further
    back, and so on, until the start of the file. The data's end is the latest packet end of any stream.
    """
    start = container.start_time / av.time_base if container.start_time is not None else 0.0
    end = _declared_end(container) or start
    lookback = 2.0
    while True:
        from_start = end - lookback <= start
        if not from_start:
            try:
                container.seek(int((end - lookback) / stream.time_base), backward=True, stream=stream)
            except av.error.FFmpegError:
                from_start = True
        if from_start:
            _rewind(container)
        last, data_end = None, -math.inf
        try:
            for packet in container.demux():
                if packet.size and packet.pts is not None:
                    data_end = max(data_end, float((packet.pts + packet.duration) * packet.time_base))
                    if packet.stream is stream:
                        last = packet.pts if last is None else max(last, packet.pts)
        except av.error.FFmpegError:
            pass  # a truncated end: the packets before it count
        if last is not None or from_start:
            return (None if last is None else float(last * stream.time_base)), data_end
        lookback *= 4


def _declared_end(container: av.container.InputContainer) -> float | None:
    """The time (seconds) the header says the file ends at, or `None` if it says nothing."""
    if not container.duration:
        return None
    duration = container.duration / av.time_base
    if container.format.name in DURATION_FROM_ZERO_FORMATS or container.start_time is None:
        return duration
    return container.start_time / av.time_base + duration


def _packet_durations(container: av.container.InputContainer, stream: av.VideoStream) -> list[int]:
    """The duration (in `stream.time_base`, 0 where unknown) of each of the stream's packets, from the start."""
    _rewind(container)
    return [packet.duration or 0 for packet in container.demux(stream) if packet.size]


def _count_frames(
    container: av.container.InputContainer, stream: av.VideoStream, start_time: float, rate: float | None
) -> tuple[int, float | None]:
    """`(frames a player shows, their average rate)` (see `VideoInfo`); 0 frames if the stream has no packet."""
    index = stream.index_entries
    sample_table = index is not None and (
        len(index) == stream.frames or (container.format.name in MOV_FORMATS and 0 < len(index) < stream.frames)
    )
    if stream.frames > 0 and sample_table:
        # An edit list (a cut made without re-encoding) hides samples, which the stored count and FFmpeg's average
        # rate (count / edited duration) include; the rate the timestamps are on (exact for constant frame rate
        # video) is used instead.
        shown = sum(1 for entry in index if not entry.is_discard)
        if shown < stream.frames and stream.guessed_rate:
            rate = float(stream.guessed_rate)
        return shown, rate
    if stream.frames > 0:
        return stream.frames, rate
    if container.format.name in RAW_STREAM_FORMATS:
        return len(_packet_durations(container, stream)), rate
    if container.format.name in SEQUENTIAL_FORMATS and not stream.average_rate:
        # A program stream of a few frames, too short for FFmpeg to measure a rate: its time line is a guess (MPEG-2's
        # field rate, no start time) but its packets are its frames, each as long as its frame.
        durations = _packet_durations(container, stream)
        if durations and durations[0]:
            rate = 1 / float(durations[0] * stream.time_base)
        return len(durations), rate
    last, data_end = _scan_end(container, stream)
    if last is None:
        return 0, rate
    if not rate:  # no time line to measure on: count the packets
        return len(_packet_durations(container, stream)), rate
    declared_end = _declared_end(container)
    if declared_end is not None and data_end < declared_end - TRUNCATION_SECONDS:
        # Every stream's data stops well before the end the header declares: a truncated file. Its frames are
        # counted as the header says; decoding then repeats the last decodable frame, with a warning.
        return round((declared_end - start_time) * rate), rate
    return round((last - start_time) * rate) + 1, rate


def _read_info(container: av.container.InputContainer, stream: av.VideoStream, name: str) -> VideoInfo:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{name}: the video stream has no frame size ({width}x{height})")
    if width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(
            f"{name}: frame size {width}x{height} is too large ({width * height} pixels, limit {MAX_FRAME_PIXELS})"
        )
    start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    num_frames, fps = _count_frames(container, stream, start_time, float(rate) if rate else None)
    if num_frames <= 0:
        raise VideoDecodeError(f"{name}: the video stream has zero frames")
    if not fps:
        duration = stream.duration * stream.time_base if stream.duration else container.duration / av.time_base
        fps = num_frames / float(duration) if duration else 1.0
    aspect = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return VideoInfo(
        name=name,
        num_frames=num_frames,
        fps=fps,
        duration=num_frames / fps,
        width=width,
        height=height,
        codec=stream.codec_context.name,
        pix_fmt=stream.codec_context.pix_fmt or "unknown",
        start_time=start_time,
        sample_aspect_ratio=float(aspect) if aspect else 1.0,
    )


def probe_video(source: VideoSource) -> VideoInfo:
    """Read the metadata of a video without decoding any frame."""
    with open_video(source) as (container, stream):
        return _read_info(container, stream, source_name(source))


def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's display matrix (FFmpeg's 3x3 row-major int32, 16.16 fixed point) or `None`.

    Read once per video: the matrix belongs to the stream, and PyAV's side-data view and its frame refer to each other,
    so every frame it is read from waits for the garbage collector (16 720p frames held 20 MB more).
    """
    side_data = frame.side_data.get("DISPLAYMATRIX")
    return None if side_data is None else np.frombuffer(bytes(side_data), np.int32)


def orient(image: np.ndarray, matrix: np.ndarray | None, name: str = "video") -> np.ndarray:
    """Turn and mirror `(height, width, channels)` pixels as a display matrix says, the way ffmpeg's autorotate does.

    Quarter turns and mirrors only; another angle is left as stored, with a warning. Phones record upright video as
    landscape pixels plus a matrix, so skipping this returns sideways frames.
    """
    if matrix is None:
        return image
    scale = (math.hypot(matrix[0], matrix[3]), math.hypot(matrix[1], matrix[4]))
    if not scale[0] or not scale[1]:
        return image
    clockwise = math.degrees(math.atan2(matrix[1] / scale[1], matrix[0] / scale[0])) % 360
    quarter = round(clockwise / 90) % 4
    if abs(clockwise - 90 * round(clockwise / 90)) > 1:
        logger.warning(
            "%s: rotation of %.0f degrees is not a quarter turn; frames are left as stored", name, clockwise
        )
        return image
    if quarter == 1:  # a clockwise quarter turn, or a transpose when mirrored
        return image.transpose(1, 0, 2) if matrix[3] > 0 else np.rot90(image, -1)
    if quarter == 3:
        return np.rot90(image, -1)[::-1] if matrix[3] < 0 else np.rot90(image, 1)
    if quarter == 2:
        image = image[:, ::-1] if matrix[0] < 0 else image
    return image[::-1] if matrix[4] < 0 else image


def _to_rgb(
    frame: av.VideoFrame,
    reformatter: VideoReformatter,
    threads: int,
    info: VideoInfo,
    max_short_side: int | None,
    display_matrix: np.ndarray | None,
) -> np.ndarray:
    """Any pixel format (8/10-bit YUV, gray, RGB...) to RGB uint8 `(height, width, 3)` as displayed, converted by
    swscale on `threads` threads (`ffmpeg_thread_count`).

    Non-square pixels are resized to their display aspect, `display_matrix` (rotation) is applied, and frames whose
    short side is longer than `max_short_side` are shrunk.
    """
    width, height = frame.width * info.sample_aspect_ratio, frame.height
    if max_short_side is not None and min(width, height) > max_short_side:
        width, height = width * max_short_side / min(width, height), height * max_short_side / min(width, height)
    width, height = max(1, round(width)), max(1, round(height))
    image = reformatter.reformat(frame, width, height, "rgb24", interpolation="AREA", threads=threads).to_ndarray()
    return orient(image, display_matrix, info.name)


def _decode_forward(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    damaged: list[str],
    give_up_after: float | None = None,
) -> Iterator[av.VideoFrame]:
    """Frames decoded from the container's position to the end of its data.

    With `give_up_after` (seconds; after a seek) decoding starts at the first keyframe, and nothing comes out if no
    keyframe comes before that time. A packet the decoder rejects is skipped; it and packets the demuxer marks as
    corrupt are described in `damaged`. The end of the readable data, even a truncated one, flushes the decoder.
    """
    packets = container.demux(stream)
    started = give_up_after is None
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return  # PyAV's last packet (size 0) has flushed the decoder
        except av.error.FFmpegError as err:
            damaged.append(f"the data ends in a damaged packet ({err})")
            break
        if not started:
            if packet.size and not packet.is_keyframe:
                time = packet.pts if packet.pts is not None else packet.dts
                if time is not None and time * stream.time_base > give_up_after:
                    return
                continue
            started = True
        if packet.is_corrupt:  # e.g. cut short by the end of a truncated file
            damaged.append(f"the packet at {packet.pts} is incomplete or corrupt")
        try:
            yield from packet.decode()
        except av.error.FFmpegError as err:
            damaged.append(f"a damaged packet at {packet.pts} was skipped ({err})")
    try:
        yield from stream.codec_context.decode(None)
    except av.error.FFmpegError:
        return


def _frames_from(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: VideoInfo,
    target: float,
    damaged: list[str],
) -> tuple[Iterator[av.VideoFrame], bool]:
    """Frames from the one shown at `target` (seconds) or earlier on, after a seek checked to land there, and whether
    seeking failed (then the file is decoded from its start, and later targets should be reached without seeking).

    A backward seek can land after its target: MPEG-TS/PS seek by binary search on timestamps, not to keyframes, and
    the leading frames of an open GOP's keyframe cannot be decoded after a seek to it. So the first decoded frame is
    compared with the target and the seek retried further back (`SEEK_RETRY_SECONDS`, doubling), and last of all the
    file is decoded from its start. Targets near the start decode from the start without seeking.
    """
    lookback, sought = 0.0, False
    while target - lookback > info.start_time + SEEK_GAP_SECONDS:
        try:
            container.seek(int((target - lookback) / stream.time_base), backward=True, stream=stream)
        except av.error.FFmpegError:
            break
        sought = True
        frames = _decode_forward(container, stream, damaged, give_up_after=target)
        first = next(frames, None)
        if first is not None and (first.time is None or first.time <= target):
            return itertools.chain([first], frames), False
        lookback = max(2 * lookback, SEEK_RETRY_SECONDS)
    _rewind(container)
    return _decode_forward(container, stream, damaged), sought


def _picks_by_ordinal(container: av.container.InputContainer, stream: av.VideoStream) -> bool:
    """Whether frame `i` is found by counting the frames the decoder outputs from the start of the file (then the
    file is decoded straight through, never seeking; see `_display_ordinals`), rather than as the frame shown at its
    time (see `VideoInfo`).

    By ordinal: `SEQUENTIAL_FORMATS`, and AVI with B-frames. AVI stores no presentation times, only the number of each
    chunk in decoding order, so FFmpeg gives a reordered frame the time of the packet that made the decoder output it:
    one frame late (mpeg4 with B-frames), or not even in display order (h264).
    """
    if container.format.name == "avi":
        return bool(stream.codec_context.has_b_frames)
    return container.format.name in SEQUENTIAL_FORMATS


def _display_ordinals(
    frames: Iterator[av.VideoFrame], fps: float, counts_dropped: bool
) -> Iterator[tuple[int, av.VideoFrame]]:
    """`(ordinal, frame)` for frames decoded from the start of the file, which come out in display order.

    Without `counts_dropped` the ordinal counts them. With it (AVI) it is the frame's decode timestamp less the first
    frame's, in frames: an AVI's timestamps are chunk numbers, and a capture that dropped a frame stores an empty chunk
    in its place, which the decoder skips. The decoder stamps each frame it outputs with the chunk number of the
    packet that made it output the frame, a constant reordering delay after the frame's own, so the dropped frame's
    ordinal is left out as a player leaves its time to the frame before it. A frame without a timestamp (the last
    ones, flushed at the end of the data) or with one that would not move forward follows the frame before it.
    """
    first_dts = None
    ordinal = -1
    for frame in frames:
        if counts_dropped and frame.dts is not None:
            if first_dts is None:
                first_dts = frame.dts
            stamped = round(float((frame.dts - first_dts) * frame.time_base) * fps)
            ordinal = stamped if stamped > ordinal else ordinal + 1
        else:
            ordinal += 1
        yield ordinal, frame


def _shown_at(
    frames: Iterator[av.VideoFrame], info: VideoInfo, by_ordinal: bool, counts_dropped: bool
) -> Iterator[tuple[float | None, av.VideoFrame]]:
    """`(time the frame is shown from, frame)`: its timestamp, or, by ordinal, the time of index `ordinal`
    (`_display_ordinals`; the first frame decoded is the time origin)."""
    if not by_ordinal:
        return ((frame.time, frame) for frame in frames)
    ordinals = _display_ordinals(frames, info.fps, counts_dropped)
    return ((info.start_time + ordinal / info.fps, frame) for ordinal, frame in ordinals)


def _decode_indices(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: VideoInfo,
    indices: Sequence[int],
    max_short_side: int | None,
    damaged: list[str],
    threads: int,
) -> tuple[np.ndarray, bool]:
    """Decode the frames at `indices` (any order, repeats allowed), seeking between distant ones, converting them
    on `threads` of swscale's threads.

    Returns the frames and whether the stream ended before the video's frame count (a truncated file): targets past
    the real end get the last decodable frame. Damaged packets are described in `damaged`.
    """
    decoded: dict[int, np.ndarray] = {}
    reformatter = VideoReformatter()  # one swscale context for all frames; a frame's own one is rebuilt per call
    timed_frames: Iterator[tuple[float | None, av.VideoFrame]] | None = None
    # (time, frame) of the last frame shown at or before the target, and of the first frame after it
    current = ahead = None
    last_time = -math.inf
    ended = short_of_frames = False
    by_ordinal = _picks_by_ordinal(container, stream)
    seekable = not by_ordinal
    for index in sorted(set(indices)):
        target = info.start_time + (index + 0.5) / info.fps
        if timed_frames is None or (seekable and not ended and target - last_time > SEEK_GAP_SECONDS):
            frames, seeking_failed = _frames_from(
                container, stream, info, target if seekable else info.start_time, damaged
            )
            timed_frames = _shown_at(frames, info, by_ordinal, container.format.name == "avi")
            seekable = seekable and not seeking_failed
            current = ahead = None
        if ahead is not None and (ahead[0] is None or ahead[0] <= target):
            current, ahead = ahead, None
        while ahead is None and not ended:
            timed_frame = next(timed_frames, None)
            if timed_frame is None:
                ended = True
                break
            time = timed_frame[0]
            last_time = time if time is not None else last_time
            if time is None or time <= target:
                current = timed_frame
            else:
                ahead = timed_frame
        if current is None and ahead is None:
            raise VideoDecodeError(f"{info.name}: no frame could be decoded (zero frames, or a corrupt video)")
        time, chosen = current if current is not None else ahead
        if ended and time is not None and time < target - 1 / info.fps:
            short_of_frames = True
        if not decoded:
            display_matrix = _display_matrix(chosen)
        decoded[index] = _to_rgb(chosen, reformatter, threads, info, max_short_side, display_matrix)
    return np.stack([decoded[index] for index in indices]), short_of_frames


def load_video(
    source: VideoSource,
    sample_indices: Callable[[VideoInfo], Sequence[int]] | None = None,
    max_short_side: int | None = None,
) -> tuple[np.ndarray, VideoInfo]:
    """Decode the frames of a video chosen by `sample_indices`, without decoding the whole video.

    Args:
        source: a path, the file's bytes, or a binary file object.
        sample_indices: maps the video's `VideoInfo` to the frame indices to return (any order, repeats allowed,
            each in `[0, info.num_frames)`); `None` returns every frame.
        max_short_side: frames whose short side is longer are shrunk (area filter) while converting to RGB; bounds
            memory for 4K input.

    Returns:
        `(frames, info)`: frames is uint8 `(num_sampled, height, width, 3)` RGB.

    Raises:
        FileNotFoundError, VideoDecodeError: with the file name and the problem.
        ValueError: no index, or an index outside the video's frames, was requested.
    """
    indices = None
    threads = ffmpeg_thread_count()  # once: it reads the cgroup's files (about 0.35 ms)
    # A frame-threaded decoder reports a damaged packet late and drops the frames it held with it: a damaged video
    # is decoded again without frame threads, which keeps every decodable frame (as ffmpeg shows them).
    for frame_threads in (True, False):
        damaged: list[str] = []
        with open_video(_rewound(source), frame_threads, threads) as (container, stream):
            info = _read_info(container, stream, source_name(source))
            if indices is None:
                indices = list(range(info.num_frames)) if sample_indices is None else list(sample_indices(info))
                if not indices:
                    raise ValueError(f"{info.name}: no frame index was requested")
                outside = sorted({index for index in indices if not 0 <= index < info.num_frames})
                if outside:
                    raise ValueError(
                        f"{info.name}: frame indices {outside} are outside the video's {info.num_frames} frames "
                        f"(0 to {info.num_frames - 1})"
                    )
            try:
                frames, short_of_frames = _decode_indices(
                    container, stream, info, indices, max_short_side, damaged, threads
                )
            except VideoDecodeError:
                if not (damaged and frame_threads):
                    raise
                continue
        if not (damaged and frame_threads):
            break
    if damaged:
        logger.warning("%s: %d damaged packet(s) skipped; the first: %s", info.name, len(damaged), damaged[0])
    if short_of_frames:
        logger.warning(
            "%s: the stream ends before its %d frames (truncated?); later frames repeat the last decodable one",
            info.name,
            info.num_frames,
        )
    return frames, info


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
    _require_pyav()
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
