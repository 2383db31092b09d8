"""Decoding real-world files exactly: frames read back by the index each one carries in its pixels.

Containers and codecs as cameras, phones, broadcasts and editors write them: B-frames, open GOPs, MPEG-TS/PS seeking,
edit lists, durations that count the audio, rotation, non-square pixels, several video streams, truncation.
"""

from __future__ import annotations

import io
import logging
import os
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import psutil
import pytest
import torch
from indexed_video import (
    count_decoded_frames,
    decode_all_single_threaded,
    indexed_frames,
    noisy,
    read_indices,
    remux,
    set_edit_list_duration,
    write_clip,
    write_oriented,
    write_song_with_cover_art,
    write_two_video_streams,
    write_with_audio,
)

from stretchysnake_hf import StretchySnakeVideoProcessor, selective_scan, video_io
from stretchysnake_hf.video_io import VideoDecodeError, load_video, orient, probe_video, write_video
from stretchysnake_hf.video_processing_stretchysnake import sample_frame_indices

OPEN_GOP_264 = {"x264-params": "keyint=24:min-keyint=24:open-gop=1:bframes=3:scenecut=0"}
OPEN_GOP_265 = {"x265-params": "keyint=24:min-keyint=24:open-gop=1:bframes=4:scenecut=0:log-level=error"}

# name: (codec, options for write_video); 96 frames at 24 fps each.
FORMATS = {
    "h264_bframes.mp4": ("libx264", {"gop_size": 12, "options": {"bf": "3"}}),
    "h264_open_gop.mp4": ("libx264", {"options": OPEN_GOP_264}),
    "h264_open_gop.mkv": ("libx264", {"options": OPEN_GOP_264}),
    "h264_open_gop.ts": ("libx264", {"options": OPEN_GOP_264}),
    "h264.m2ts": ("libx264", {"gop_size": 12}),
    "h264.mov": ("libx264", {"gop_size": 12}),
    "h264.flv": ("libx264", {"gop_size": 12}),
    "hevc_open_gop.mp4": ("libx265", {"options": OPEN_GOP_265}),
    "hevc.mkv": ("libx265", {"options": OPEN_GOP_265}),
    "vp9.webm": ("libvpx-vp9", {"gop_size": 12}),
    "mpeg2.ts": ("mpeg2video", {"gop_size": 12}),
    "mpeg2.mpg": ("mpeg2video", {"gop_size": 12}),
    "mjpeg.avi": ("mjpeg", {"pix_fmt": "yuvj420p"}),
    "mpeg4.avi": ("mpeg4", {"gop_size": 12, "bit_rate": 2_000_000}),
}
NUM_FRAMES, FPS = 96, 24


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    paths = {}
    for name, (codec, kwargs) in FORMATS.items():
        paths[name] = folder / name
        write_video(paths[name], indexed_frames(NUM_FRAMES), FPS, codec, **kwargs)
    return paths


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("num_samples", [8, 16])
@pytest.mark.parametrize("seek_gap", [0.0, 1e9], ids=["seeking", "sequential"])
def test_sampled_frames_are_exactly_the_requested_ones(formats, monkeypatch, name, num_samples, seek_gap):
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", seek_gap)  # seek to every target / decode straight through
    assert probe_video(formats[name]).num_frames == NUM_FRAMES
    for indices in (
        sample_frame_indices(NUM_FRAMES, num_samples),
        sample_frame_indices(NUM_FRAMES, num_samples, generator=torch.Generator().manual_seed(num_samples)),
        sample_frame_indices(NUM_FRAMES, num_samples, "dense", frame_stride=5, clip_index=1, num_clips=3),
    ):
        frames, _ = load_video(formats[name], lambda info, indices=indices: indices)
        assert read_indices(frames) == indices


# ---------------------------------------------------------------------------------------------------- MPEG-TS


@pytest.mark.parametrize("extension", ["ts", "m2ts"])
def test_transport_stream_seeks_land_on_the_requested_frames(tmp_path, monkeypatch, extension):
    # FFmpeg seeks in a TS by binary search on timestamps: a "backward" seek can land after its target.
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", 0.0)
    path = tmp_path / f"gop10.{extension}"
    write_video(path, indexed_frames(30), 30, "libx264", gop_size=10, options={"sc_threshold": "0"})
    indices = [1, 5, 9, 13, 16, 20, 24, 28]
    frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == indices  # was [10, 10, 10, 13, 16, 20, 24, 28]


def test_transport_stream_with_a_single_keyframe_decodes_once_from_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", 0.0)
    path = tmp_path / "one_keyframe.ts"
    write_video(path, indexed_frames(300), 30, "libx264", gop_size=1000, options={"sc_threshold": "0"})
    decoded = count_decoded_frames(monkeypatch)
    indices = sample_frame_indices(300, 16)
    frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == [index % 256 for index in indices]  # was "no frame could be decoded"
    # Once no seek lands, the rest is decoded straight through, not again from the start for every target.
    assert len(decoded) <= 300 + 16


def test_long_transport_stream_samples_are_not_moved_to_keyframes(tmp_path):
    path = tmp_path / "one_minute.ts"  # a keyframe every 2 s
    write_video(path, indexed_frames(1800, 16, 16), 30, "libx264", gop_size=60, options={"sc_threshold": "0"})
    indices = sample_frame_indices(1800, 16)
    frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == [index % 256 for index in indices]


# ---------------------------------------------------------------------------------------------------- frame counts


def test_edit_list_cut_counts_and_samples_the_frames_a_player_shows(tmp_path, caplog):
    source, cut = tmp_path / "source.mp4", tmp_path / "cut.mp4"
    write_video(source, indexed_frames(200), 28, "libx264", gop_size=28, options={"sc_threshold": "0"})
    remux(source, cut, start=2.4, length=4.0)  # ffmpeg -ss 2.4 -t 4 -c copy: an edit list hides the lead-in
    shown = decode_all_single_threaded(cut)
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames > len(shown)  # the sample table counts the hidden frames too
    info = probe_video(cut)
    assert info.num_frames == len(shown) == 112
    indices = sample_frame_indices(info.num_frames, 16) + [info.num_frames - 1]
    with caplog.at_level(logging.WARNING):
        frames, _ = load_video(cut, lambda info: indices)
    assert read_indices(frames) == [shown[i] % 256 for i in indices]
    assert caplog.text == ""  # an intact file: no truncation warning


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_edit_list_that_ends_before_the_media_counts_only_the_frames_it_shows(tmp_path, caplog, codec):
    path = tmp_path / "trimmed.mp4"
    write_video(path, indexed_frames(100), 25, codec, gop_size=25)
    set_edit_list_duration(path, 1.0)  # a trim of the first second, without re-encoding
    shown = decode_all_single_threaded(path)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 100  # the stored count includes the trimmed-off samples
    info = probe_video(path)
    assert info.num_frames == len(shown) == 25 and info.fps == 25
    indices = sample_frame_indices(info.num_frames, 8) + [24]
    with caplog.at_level(logging.WARNING):
        frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == [shown[i] for i in indices] == indices
    assert caplog.text == ""  # an intact file: no truncation warning


@pytest.mark.parametrize(
    ("name", "codec", "audio_codec"),
    [("audio.flv", "flv", "mp3"), ("audio.mpg", "mpeg2video", "mp2"), ("audio.mkv", "libx264", "aac")],
)
def test_duration_estimates_that_include_the_audio_do_not_add_frames(tmp_path, caplog, name, codec, audio_codec):
    path = tmp_path / name
    write_with_audio(path, indexed_frames(60), 25, codec, audio_codec, audio_seconds=4.0)  # video: 2.4 s
    with av.open(str(path)) as container:
        assert container.duration / av.time_base > 3.5  # the container's estimate is the audio's
    info = probe_video(path)
    assert info.num_frames == len(decode_all_single_threaded(path)) == 60
    with caplog.at_level(logging.WARNING):
        frames, _ = load_video(path, lambda info: sample_frame_indices(info.num_frames, 8) + [59])
    assert read_indices(frames) == sample_frame_indices(60, 8) + [59]
    assert caplog.text == ""


# ---------------------------------------------------------------------------------------------------- frame order


@pytest.mark.parametrize(
    ("name", "codec", "options"),
    [
        ("late.mkv", "libx264", {}),
        ("late.webm", "libvpx-vp9", {"deadline": "realtime"}),
        ("late.mp4", "libx264", {}),
        ("late.ts", "libx264", {}),
    ],
)
def test_a_video_whose_first_frame_is_late_counts_and_samples_its_own_frames(tmp_path, caplog, name, codec, options):
    # Matroska's duration counts from zero, other containers' from the first timestamp: 1 s of lead-in counted in
    # the duration of the mkv/webm added 20 frames and a false truncation warning.
    path = tmp_path / name
    write_clip(path, indexed_frames(40), 20, codec, start=1.0, **options)
    info = probe_video(path)
    assert (info.num_frames, info.start_time) == (40, 1.0)  # was 60 for mkv/webm
    indices = sample_frame_indices(40, 8) + [39]
    with caplog.at_level(logging.WARNING):
        frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == indices
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("name", "codec", "container_format", "options"),
    [
        ("camera.h264", "libx264", "h264", {"g": "12", "bf": "2"}),
        ("camera.hevc", "libx265", "hevc", {"x265-params": "keyint=12:bframes=2:log-level=error"}),
        ("camera.m2v", "mpeg2video", "mpeg2video", {"g": "12", "bf": "2"}),
    ],
)
def test_raw_elementary_streams_give_their_frames_in_order(tmp_path, name, codec, container_format, options):
    # No container: no frame count and no timestamps (h264/hevc), or timestamps that start a frame late (m2v).
    path = tmp_path / name
    write_clip(path, indexed_frames(30), 25, codec, container_format, **options)
    assert probe_video(path).num_frames == 30  # was "zero frames" (h264, hevc), 31 (m2v)
    indices = [13, 0, 1, 29, 7, 7]
    frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == indices  # was every frame the last one (h264, hevc), one frame late (m2v)


@pytest.mark.parametrize(
    ("codec", "options"),
    [("mpeg4", {"bf": "2", "g": "12", "b": "2M"}), ("libx264", {"bf": "3", "g": "12", "sc_threshold": "0"})],
    ids=["xvid_style", "h264"],
)
@pytest.mark.parametrize("seek_gap", [0.0, 1e9], ids=["seeking", "sequential"])
def test_avi_with_b_frames_gives_the_requested_frames(tmp_path, monkeypatch, codec, options, seek_gap):
    # AVI stores no presentation times: a reordered frame gets the time of the packet that made the decoder output it.
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", seek_gap)
    path = tmp_path / "ucf_style.avi"
    write_clip(path, indexed_frames(60), 25, codec, **options)
    frames, info = load_video(path)
    assert info.num_frames == 60
    assert read_indices(frames) == list(range(60))  # was [0, 0, 1, 2, ...] (mpeg4), [0, 0, 1, 1, 3, 3, ...] (h264)
    indices = [59, *sample_frame_indices(60, 8), 0]
    assert read_indices(load_video(path, lambda info: indices)[0]) == indices


@pytest.mark.parametrize("seek_gap", [0.0, 1e9], ids=["seeking", "sequential"])
def test_avi_dropped_frames_show_the_frame_before_them(tmp_path, monkeypatch, seek_gap):
    # Without B-frames an AVI's chunk numbers are its frames' times; a dropped frame is a zero-size chunk, which a
    # player shows as the frame before it.
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", seek_gap)
    path = tmp_path / "capture.avi"
    write_clip(path, indexed_frames(40), 10, "mpeg4", dropped=(10, 11, 30), b="2M", g="12")
    frames, info = load_video(path)
    assert info.num_frames == 40
    assert read_indices(frames) == [{10: 9, 11: 9, 30: 29}.get(index, index) for index in range(40)]


@pytest.mark.parametrize(
    ("codec", "options"),
    [("mpeg4", {"bf": "2", "g": "12", "b": "2M"}), ("libx264", {"bf": "3", "g": "12", "sc_threshold": "0"})],
    ids=["xvid_style", "h264"],
)
def test_avi_with_b_frames_and_dropped_frames_shows_the_frame_before_each_drop(tmp_path, codec, options):
    # With B-frames, frames are counted from the start; a dropped frame's empty chunk must count too.
    path = tmp_path / "capture.avi"
    write_clip(path, indexed_frames(40), 10, codec, dropped=(10, 11, 30), **options)
    expected = [{10: 9, 11: 9, 30: 29}.get(index, index) for index in range(40)]
    frames, info = load_video(path)
    assert info.num_frames == 40
    assert read_indices(frames) == expected  # was 2 frames late after the first drop, 3 after the second
    indices = [39, 10, 11, 12, 29, 30, 31, 0]
    assert read_indices(load_video(path, lambda info: indices)[0]) == [expected[index] for index in indices]


def test_program_stream_with_b_frames_gives_every_frame_once(tmp_path):
    # FFmpeg interpolates the timestamps a program stream leaves out; around small B-frames they go backwards.
    path = tmp_path / "camcorder.mpg"
    write_clip(path, indexed_frames(60), 25, "mpeg2video", bf="2", g="12", b="4M")
    frames, info = load_video(path)
    assert info.num_frames == 60
    assert read_indices(frames) == list(range(60))  # was [..., 10, 13, 14, 15, 16, ...]: 11 and 12 skipped


@pytest.mark.parametrize("codec", ["mpeg1video", "mpeg2video"])
@pytest.mark.parametrize("num_frames", [1, 2])
def test_program_stream_of_one_or_two_frames_counts_its_frames(tmp_path, caplog, codec, num_frames):
    # too short for FFmpeg to measure a rate: the guessed one is MPEG-2's field rate, and no start time is known
    path = tmp_path / "short.mpg"
    write_video(path, indexed_frames(num_frames), 25, codec)
    info = probe_video(path)
    assert info.num_frames == len(decode_all_single_threaded(path)) == num_frames and info.fps == 25
    with caplog.at_level(logging.WARNING):
        frames, _ = load_video(path, lambda info: sample_frame_indices(info.num_frames, 8))
    assert read_indices(frames) == sample_frame_indices(num_frames, 8)
    assert caplog.text == ""


@pytest.mark.parametrize("codec", ["libx264", "mpeg2video"])
@pytest.mark.parametrize("num_frames", [1, 2, 4])
def test_transport_stream_of_a_few_frames_opens(tmp_path, codec, num_frames):
    # under about 2 KB FFmpeg's format probe misses MPEG-TS ("End of file"); the extension names the format
    path = tmp_path / "short.ts"
    write_video(path, indexed_frames(num_frames), 25, codec)
    assert path.stat().st_size < 2600
    frames, info = load_video(path)
    shown = [min(int((i + 0.5) / info.fps * 25), num_frames - 1) for i in range(info.num_frames)]
    assert read_indices(frames) == shown and set(shown) == set(range(num_frames))


def test_a_file_named_ts_that_is_not_one_is_refused_with_its_name(tmp_path):
    path = tmp_path / "notes.ts"
    path.write_bytes(b"not a transport stream\n" * 20)
    with pytest.raises(VideoDecodeError, match=r"notes\.ts: cannot be opened as a video"):
        probe_video(path)


def test_transport_stream_whose_clock_wraps_is_rewound_to_its_start(tmp_path):
    # MPEG's 33-bit 90 kHz clock wraps at 95443.7 s; FFmpeg unwraps a stream that crosses it to a negative start,
    # and a seek to time 0 lands at the wrap, 0.5 s (12 frames) into this file.
    path = tmp_path / "broadcast.ts"
    write_clip(
        path, indexed_frames(40), 25, "libx264", container_options={"output_ts_offset": "95443.2"}, g="12", bf="2"
    )
    info = probe_video(path)
    assert info.start_time < 0 and info.num_frames == 40
    indices = [0, 5, 11, 12, 20, 39]
    frames, _ = load_video(path, lambda info: indices)
    assert read_indices(frames) == indices  # was [12, 12, 12, 12, 20, 39]


# ---------------------------------------------------------------------------------------------------- truncation


@pytest.fixture(scope="module")
def faststart_mp4(tmp_path_factory) -> Path:
    """60 hard-to-compress frames, a keyframe every 10, the index (moov) before the media data."""
    folder = tmp_path_factory.mktemp("faststart")
    write_video(folder / "plain.mp4", noisy(indexed_frames(60, 96, 128)), 30, "libx264", gop_size=10)
    remux(folder / "plain.mp4", folder / "faststart.mp4", options={"movflags": "faststart"})
    return folder / "faststart.mp4"


def test_truncated_faststart_mp4_repeats_its_last_decodable_frame(faststart_mp4, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", 0.0)
    data = faststart_mp4.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 3 // 10])
    last_decodable = decode_all_single_threaded(path)[-1]
    assert 5 < last_decodable < 40
    with caplog.at_level(logging.WARNING):
        frames, info = load_video(path, lambda info: [0, 5, 40, 59])
    assert info.num_frames == 60
    assert read_indices(frames) == [0, 5, last_decodable, last_decodable]  # was [0, 5, 5, 5]
    assert "cut.mp4: the stream ends before its 60 frames" in caplog.text


def test_tiny_truncated_file_gives_the_frames_ffmpeg_decodes(faststart_mp4, tmp_path):
    data = faststart_mp4.read_bytes()
    path = tmp_path / "tiny.mp4"
    path.write_bytes(data[: len(data) // 10])
    decodable = decode_all_single_threaded(path)
    assert 1 <= len(decodable) <= 3
    frames, _ = load_video(path, lambda info: [0, 30, 59])  # was "no frame could be decoded"
    assert read_indices(frames) == [decodable[0], decodable[-1], decodable[-1]]


# ---------------------------------------------------------------------------------------------------- pixels as shown

# A picture that no turn or mirror maps onto itself: coloured corners and an off-centre bar.
PICTURE = np.zeros((48, 64, 3), np.uint8)
PICTURE[:16, :16], PICTURE[:16, 48:], PICTURE[32:, :16], PICTURE[20:28, 20:52] = (255, 0, 0), (0, 255, 0), 255, 128


@pytest.mark.parametrize("extension", ["mp4", "mov", "mkv"])
@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip", [False, True])
def test_display_matrix_turns_and_mirrors_the_frames(tmp_path, extension, degrees, hflip):
    path = tmp_path / f"oriented.{extension}"
    write_oriented(path, np.stack([PICTURE] * 3), degrees, hflip, codec="ffv1" if extension == "mkv" else "libx264")
    frames, info = load_video(path, lambda info: [0])
    expected = np.rot90(PICTURE, degrees // 90)  # counter-clockwise turns, then the mirror
    expected = expected[:, ::-1] if hflip else expected
    assert (info.width, info.height) == (64, 48)  # the stored size
    assert frames[0].shape == expected.shape
    assert np.abs(frames[0].astype(int) - expected).mean() < 6


def test_phone_video_rotated_90_is_processed_as_players_show_it(tmp_path):
    # `ffmpeg -i in.mp4 -metadata:s:v:0 rotate=90 -c copy out.mp4`: "rotate" counts clockwise, PyAV counter-clockwise.
    frames = noisy(indexed_frames(12, 240, 320), amplitude=10)
    write_video(tmp_path / "stored.mp4", frames, 10, "libx264", options={"crf": "0"})
    write_oriented(tmp_path / "phone.mp4", frames, -90)
    processor = StretchySnakeVideoProcessor(num_frames=4, size=64)
    rotated = processor(tmp_path / "phone.mp4")["pixel_values"]
    upright = processor(torch.from_numpy(np.ascontiguousarray(np.rot90(frames, -1, axes=(1, 2)))))["pixel_values"]
    stored = processor(tmp_path / "stored.mp4")["pixel_values"]
    assert (rotated - upright).abs().mean() < 0.05
    assert (rotated - stored).abs().mean() > 0.3


def test_a_turn_that_is_not_a_quarter_turn_is_left_as_stored_with_a_warning(caplog):
    angle = np.deg2rad(30)
    matrix = np.array([np.cos(angle), np.sin(angle), 0, -np.sin(angle), np.cos(angle), 0, 0, 0, 1]) * 65536
    with caplog.at_level(logging.WARNING):
        assert orient(PICTURE, matrix.astype(np.int32), "tilted.mp4") is PICTURE
    assert "tilted.mp4: rotation of 30 degrees is not a quarter turn" in caplog.text


def test_non_square_pixels_are_shown_at_their_display_aspect(tmp_path):
    path = tmp_path / "anamorphic.mp4"  # 32x48 stored, pixels twice as wide as tall: shown 64x48
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 32, 48, "yuv444p"
        stream.codec_context.sample_aspect_ratio = Fraction(2)
        for frame in PICTURE[None, :, ::2].repeat(3, 0):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    frames, info = load_video(path, lambda info: [0])
    assert info.sample_aspect_ratio == 2 and (info.width, info.height) == (32, 48)
    assert frames.shape == (1, 48, 64, 3)
    assert np.abs(frames[0].astype(int) - PICTURE).mean() < 12


# ---------------------------------------------------------------------------------------------------- streams


@pytest.mark.parametrize("default", [0, 1])
def test_the_default_video_stream_is_the_one_decoded(tmp_path, default):
    path = tmp_path / "two_angles.mkv"
    write_two_video_streams(path, indexed_frames(10), indexed_frames(10, offset=100), default)
    frames, _ = load_video(path, lambda info: [0, 9])
    assert read_indices(frames) == ([0, 9] if default == 0 else [100, 109])


def test_album_art_is_not_a_video(tmp_path):
    path = tmp_path / "song.m4a.mp4"
    write_song_with_cover_art(path)
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1  # FFmpeg lists the picture as a video stream
    with pytest.raises(
        VideoDecodeError, match=r"song.m4a.mp4: has no video stream \(streams found: cover art, audio\)"
    ):
        load_video(path)


# ---------------------------------------------------------------------------------------------------- bad inputs


def test_a_pyav_older_than_the_minimum_is_named_with_the_fix(formats, monkeypatch):
    # A remote-code user's environment is whatever it is: pip never checked its PyAV against our pin.
    monkeypatch.setattr(av, "__version__", "16.1.0")
    with pytest.raises(ImportError, match=r"PyAV 17 or newer, found 16\.1\.0: `pip install -U av`"):
        load_video(formats["mpeg4.avi"])


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"{tmp_path.name}: is a directory, not a video file"):
        load_video(tmp_path)
    out = StretchySnakeVideoProcessor(on_error="skip")([tmp_path], num_frames=2, size=16)
    assert out["skipped_indices"] == [0] and "is a directory" in out["skipped_errors"][0]


def test_a_file_opened_in_text_mode_is_refused_with_its_name(formats):
    with open(formats["mpeg2.ts"]) as text_file, pytest.raises(VideoDecodeError, match="mpeg2.ts.*text mode.*'rb'"):
        load_video(text_file)
    with pytest.raises(VideoDecodeError, match="StringIO.*text mode"):
        load_video(io.StringIO("not a video"))
    with open(formats["mpeg2.ts"], "rb") as binary_file:
        assert read_indices(load_video(binary_file, lambda info: [3])[0]) == [3]


# ---------------------------------------------------------------------------------------------------- decoder threads


@pytest.mark.parametrize(
    ("cpus", "quota", "local_processes", "workers", "expected"),
    [
        (4, None, 1, None, 0), (4, 1.0, 1, None, 1), (4, 1.5, 1, None, 2), (4, 4.0, 1, None, 0),
        (64, 8.0, 1, None, 8), (64, 16.0, 1, None, 0), (64, 20.0, 1, None, 0),
        (4, None, 1, 1, 3), (4, None, 1, 3, 1), (4, None, 1, 8, 1), (2, None, 1, 1, 1), (64, None, 1, 2, 0),
        (64, None, 1, 8, 7), (64, 8.0, 1, 4, 1), (64, 9.0, 1, 4, 2), (4, None, 2, None, 2), (2, None, 2, None, 1),
        (64, None, 8, 2, 3), (64, None, 4, None, 0),
    ],
)  # fmt: skip
def test_ffmpeg_threads_are_ffmpegs_choice_unless_the_process_share_is_smaller(
    monkeypatch, cpus, quota, local_processes, workers, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(selective_scan, "cpu_quota", lambda: quota)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_processes))
    worker = None if workers is None else SimpleNamespace(num_workers=workers)
    monkeypatch.setattr(video_io, "get_worker_info", lambda: worker)
    assert video_io.ffmpeg_thread_count() == expected


class _DecoderThreads(torch.utils.data.Dataset):
    """Item i: the threads FFmpeg's decoder runs on, after decoding frame i of `path` as `load_video` opens it."""

    def __init__(self, path: Path, length: int) -> None:
        self.path, self.length = path, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        with video_io.open_video(self.path) as (container, stream):
            for _ in zip(range(index + 1), container.decode(stream), strict=False):
                pass
            return stream.codec_context.thread_count


@pytest.mark.skipif(
    len(selective_scan.usable_cpus()) < 2, reason="on 1 CPU FFmpeg's own choice is 1 thread too: the share can't show"
)
def test_dataloader_workers_decode_on_their_share_of_the_cpus(formats):
    cpus = len(selective_scan.usable_cpus())
    dataset = _DecoderThreads(formats["h264_bframes.mp4"], 4)
    # FFmpeg's own choice in the main process (libavcodec's frame threads: one more than the CPUs)
    ffmpeg_threads = min(cpus + 1, video_io.FFMPEG_MAX_AUTO_THREADS)
    assert set(dataset[i] for i in range(4)) == {ffmpeg_threads}
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    share = max(1, (cpus - 1) // 2)  # the main process keeps a CPU
    assert set(int(threads) for threads in loader) == {share if share < min(cpus, 16) else ffmpeg_threads}


@pytest.mark.parametrize("quota", [None, 1.0])
def test_under_a_cpu_quota_decoding_starts_no_threads_beyond_it(formats, monkeypatch, quota):
    monkeypatch.setattr(selective_scan, "cpu_quota", lambda: quota)
    cpus = len(selective_scan.usable_cpus())
    process = psutil.Process()
    threads_before = process.num_threads()
    decoders = []
    real_decode_forward = video_io._decode_forward

    def watched_decode_forward(container, stream, *args, **kwargs):
        for frame in real_decode_forward(container, stream, *args, **kwargs):
            decoders.append((stream.codec_context.thread_count, process.num_threads()))
            yield frame

    monkeypatch.setattr(video_io, "_decode_forward", watched_decode_forward)
    indices = sample_frame_indices(NUM_FRAMES, 16)
    frames, _ = load_video(formats["h264_bframes.mp4"], lambda info: indices)
    assert read_indices(frames) == indices
    # FFmpeg's own choice (libavcodec's frame threads: one more than the CPUs, when there are several) is what a
    # container limited to 1 CPU got before.
    ffmpeg_threads = min(cpus + 1, video_io.FFMPEG_MAX_AUTO_THREADS) if cpus > 1 else 1
    assert {thread_count for thread_count, _ in decoders} == {ffmpeg_threads if quota is None else 1}
    extra_threads = max(threads for _, threads in decoders) - threads_before
    assert (extra_threads > 0) == (quota is None and ffmpeg_threads > 1)
