"""Test clips whose frames carry their own index, and PyAV writers for the real-world layouts the decoder must read."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from stretchysnake_hf import video_io

BITS = 8


def indexed_frames(num_frames: int, height: int = 48, width: int = 64, offset: int = 0) -> np.ndarray:
    """uint8 (num_frames, height, width, 3): frame i shows i + offset in binary as 8 horizontal bands (bit b white)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    band = height / BITS
    for i in range(num_frames):
        for bit in range(BITS):
            if (i + offset) >> bit & 1:
                frames[i, round(bit * band) : round((bit + 1) * band)] = 255
    return frames


def read_indices(frames: np.ndarray | torch.Tensor) -> list[int]:
    """The index drawn by `indexed_frames` into each of (num_frames, height, width, 3) uint8 frames."""
    frames = torch.as_tensor(frames).float()
    height = frames.shape[1]
    rows = [int((bit + 0.5) * height / BITS) for bit in range(BITS)]
    bits = frames[:, rows].mean(dim=(2, 3)) > 127  # [num_frames, BITS]
    return [sum(int(b) << k for k, b in enumerate(row)) for row in bits.tolist()]


def noisy(frames: np.ndarray, amplitude: int = 40, seed: int = 0) -> np.ndarray:
    """Frames with uniform noise added (hard to compress: the media data outweighs the headers)."""
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude, frames.shape)
    return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _add_video_stream(container, codec: str, fps: float, frames: np.ndarray, pix_fmt: str = "yuv420p", **options):
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options or None)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = pix_fmt
    return stream


def _encode(container, stream, frames: np.ndarray) -> None:
    for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
    container.mux(stream.encode())


def _encode_silence(container, audio, seconds: float) -> None:
    samples = audio.codec_context.frame_size or 1152
    for pts in range(0, int(seconds * audio.codec_context.sample_rate), samples):
        frame = av.AudioFrame(format=audio.codec_context.format.name, layout="mono", samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = audio.codec_context.sample_rate, pts
        container.mux(audio.encode(frame))
    container.mux(audio.encode())


def write_clip(
    path: Path,
    frames: np.ndarray,
    fps: float,
    codec: str,
    container_format: str | None = None,
    start: float = 0.0,
    dropped: tuple[int, ...] = (),
    container_options: dict | None = None,
    **options,
) -> None:
    """`frames` encoded with `options` (e.g. `bf="2"` for B-frames) as `container_format` (default: from the name).

    `start` (seconds, a whole number of frames) is the first frame's timestamp, as in a cut or a recording that keeps
    its source's clock. The frames numbered in `dropped` are left out, their time kept empty (a capture that dropped
    frames; AVI stores a zero-size chunk for each).
    """
    time_base = 1 / Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        stream = _add_video_stream(container, codec, fps, frames, **options)
        for index, frame in enumerate(frames):
            if index in dropped:
                continue
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts, video_frame.time_base = round(start / time_base) + index, time_base
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def write_oriented(path: Path, frames: np.ndarray, degrees: int, hflip: bool = False, codec: str = "libx264") -> None:
    """A clip stored as `frames` with a display matrix: turn `degrees` counter-clockwise, then mirror (as phones do)."""
    with av.open(str(path), "w") as container:
        stream = _add_video_stream(container, codec, 10, frames, "yuv444p" if codec == "ffv1" else "yuv420p")
        stream.set_display_rotation(degrees, hflip=hflip)
        _encode(container, stream, frames)


def write_with_audio(path: Path, frames: np.ndarray, fps: float, codec: str, audio_codec: str, audio_seconds: float):
    """Video plus a silent audio track that lasts `audio_seconds` (longer than the video: the container's duration)."""
    with av.open(str(path), "w") as container:
        video = _add_video_stream(container, codec, fps, frames)
        video.codec_context.gop_size = 12
        audio = container.add_stream(audio_codec, rate=44100)
        _encode(container, video, frames)
        _encode_silence(container, audio, audio_seconds)


def write_two_video_streams(path: Path, first: np.ndarray, second: np.ndarray, default: int) -> None:
    """Two video streams (e.g. two camera angles); only stream `default` (0 or 1) carries the default disposition."""
    with av.open(str(path), "w") as container:
        streams = [_add_video_stream(container, "ffv1", 10, frames) for frames in (first, second)]
        for index, stream in enumerate(streams):
            stream.disposition = av.stream.Disposition.default if index == default else av.stream.Disposition(0)
        for frame_a, frame_b in zip(first, second, strict=True):
            for stream, frame in zip(streams, (frame_a, frame_b), strict=True):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        for stream in streams:
            container.mux(stream.encode())


def remux(
    source: Path, target: Path, start: float | None = None, length: float | None = None, options: dict | None = None
) -> None:
    """Copy the video packets of `source` to `target` without re-encoding, like `ffmpeg -ss START -t LENGTH -c copy`.

    A cut keeps the packets from the keyframe before `start` and shifts time so that `start` becomes 0: the packets
    before it get negative times, which mp4 stores as an edit list that hides them. `options` go to the muxer
    (e.g. `{"movflags": "faststart"}`).
    """
    with av.open(str(source)) as reader, av.open(str(target), "w", options=options or {}) as writer:
        video = reader.streams.video[0]
        output = writer.add_stream_from_template(video)
        packets = [packet for packet in reader.demux(video) if packet.dts is not None]
        shift = 0 if start is None else round(start / video.time_base)
        first = 0
        if start is not None:
            first = max(i for i, p in enumerate(packets) if p.is_keyframe and p.pts <= shift)
        for packet in packets[first:]:
            if length is not None and (packet.pts - shift) * video.time_base >= length:
                continue
            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            packet.stream = output
            writer.mux(packet)


def set_edit_list_duration(path: Path, seconds: float) -> None:
    """Rewrite the one edit of mp4 `path` to show `seconds` of its media, as a trim without re-encoding does: the
    samples after the edit's end stay in the file (and in its stored frame count) but a player does not show them."""
    data = bytearray(path.read_bytes())
    mvhd, elst = data.find(b"mvhd"), data.find(b"elst")
    assert mvhd > 0 and elst > 0 and data[elst + 8 : elst + 12] == b"\x00\x00\x00\x01", "expected one edit"
    timescale = struct.unpack_from(">I", data, mvhd + (16 if data[mvhd + 4] == 0 else 24))[0]
    layout = ">I" if data[elst + 4] == 0 else ">Q"
    struct.pack_into(layout, data, elst + 12, round(seconds * timescale))
    path.write_bytes(bytes(data))


def decode_all_single_threaded(path: Path) -> list[int]:
    """Indices of every frame libavcodec decodes from `path` in order, packet by packet, skipping failed packets."""
    indices = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            indices += [read_indices(frame.to_ndarray(format="rgb24")[None])[0] for frame in frames]
    return indices


def write_song_with_cover_art(path: Path) -> None:
    """An mp4 with one audio track and album art (an mjpeg picture marked as an attached picture), no video."""
    with av.open(str(path), "w") as container:
        art = container.add_stream("mjpeg")
        art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        audio = container.add_stream("aac", rate=44100)
        picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
        for packet in [*art.encode(picture), *art.encode()]:
            container.mux(packet)
        _encode_silence(container, audio, 1.0)


def count_decoded_frames(monkeypatch) -> list[int]:
    """A list that collects the timestamp of every frame the decoder produces from now on (for the test's duration)."""
    decoded = []
    real_decode_forward = video_io._decode_forward

    def counting_decode_forward(*args, **kwargs):
        for frame in real_decode_forward(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(video_io, "_decode_forward", counting_decode_forward)
    return decoded
