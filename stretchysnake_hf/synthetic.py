# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""A small action-recognition dataset of real mp4 clips whose classes need both space and time to tell apart.

Usage: `python -m stretchysnake_hf.synthetic --output-dir DIR --videos-per-class N --seed S`, or
`generate_dataset(DIR, videos_per_class=N, seed=S)` (one process per CPU writes the clips). It writes the UCF-101
layout

    DIR/labels.txt                       one class name per line, line i = label id i
    DIR/metadata.csv                     split, path, label, fps, num_frames, width, height of every clip
    DIR/{train,validation,test}/<class>/<class>_<i>.mp4

Every class is a motion: a shape moving left/right/up/down, rotating clockwise/counter-clockwise, approaching
(growing) or receding (shrinking), or two shapes appearing left-then-right or right-then-left. A single frame says
nothing about the class; the order of frames does. Backgrounds, colours, shapes, sizes, distractors, frame rates
(8-24 fps), durations (1-10 s) and native sizes (96-480 px per side, aspect 3:4 to 4:3) are random, drawn from a
generator seeded by (seed, class, clip), so a seed gives the same dataset every time.

Shapes are bright (every channel 140-255, any hue) on a dark gradient (every channel below 110). With fully random
colours the sign of the contrast is random too, and no small model trained from scratch (StretchySnake, VideoMAE, a
3-D CNN) got above chance on a few hundred clips in a few thousand steps; with a consistent sign they learn it.

The motion stays inside the central square of each frame, which the processor's evaluation centre crop keeps.
Horizontal flip swaps "moving_left" with "moving_right", the rotation senses and the appearance orders: train on
this dataset with the processor's `do_flip=False` (`--do_flip false` in `examples/train_flex.py`).

## Classes where scale matters (`class_set="scale"`, `--class-set scale`)

The classes above are told apart at any resolution and from a few frames. The "scale" set needs fine spatial detail
or long temporal context, like fine-grained (SSv2, Diving-48) and long (Breakfast, COIN) benchmarks; `"all"` is both
sets (motion classes first, with the same labels and clips as the default). These clips have no distractors.

- Fine detail: `pointing_right`, `pointing_down`, `pointing_left`, `pointing_up`. A small key (a bar with a knob at
  one end, `POINTER_RADIUS` 0.08-0.09 of the central square: half its length), drifting slowly, points its knob in
  the class's direction (within 0.2 rad). The key is 11 px long at 64 px, 2.7 px at 16 px and 1.4 px at 8 px, where
  it is a blob. Measured with a nearest-centroid detector fitted at each scale on the bright pixels' moments
  (elongation, skew along x and y; 120 clips): 100% from 32 px, 95% at 24 px, 93% at 16 px, 62% at 12 px, 32% at
  8 px (chance 25%). Separable from 16 px. Resizing is linear and keeps a shape's low moments, so a shape a small
  model can learn stays visible until it is a pixel or two; textures, which resizing averages away, were the first
  design, but the 64-channel model never told four of them apart in 800 fine-tuning steps.
- Long context: `flashes_1` to `flashes_4`, the number of flashes in a 6-10 s clip at 12-24 fps. Each flash is a
  disc at a random one of three positions (left, centre, right), visible for `FLASH_LENGTH` (1.25/16) of the clip;
  flashes start at least 2.5 flash lengths apart, so a frame shows at most one. Uniform sampling of T frames catches
  each flash with probability min(1, 1.25 T / 16): separable from 16 frames, where every flash is caught, and more
  frames show each flash on more frames. Measured with a detector that counts the runs of frames with a flash
  (120 clips, 32 px): 100% from 16 frames, 85% at 12, 38% at 8, 15% at 4 (chance 25%).

`tests/test_synthetic.py` checks both thresholds with hand-written detectors on frames read through the processor.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .selective_scan import cores_per_process
from .video_io import write_video

SPLITS = {"train": 0.7, "validation": 0.15, "test": 0.15}

# A trajectory maps the clip's progress u in [0, 1] (one value per frame) to the shapes drawn in that frame. A shape
# is (centre_x, centre_y, radius, angle, visible), in units of the central square's side, as arrays over frames.
Shape = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _translation(dx: float, dy: float) -> Callable[[np.ndarray, np.random.Generator], list[Shape]]:
    def trajectory(u: np.ndarray, rng: np.random.Generator) -> list[Shape]:
        along = 0.5 + rng.uniform(-0.1, 0.1) + (dx + dy) * rng.uniform(0.4, 0.6) * (u - 0.5)
        across = np.full_like(u, rng.uniform(0.3, 0.7))
        x, y = (along, across) if dx else (across, along)
        radius = np.full_like(u, rng.uniform(0.07, 0.14))
        return [(x, y, radius, np.full_like(u, rng.uniform(0, 2 * np.pi)), np.ones_like(u, dtype=bool))]

    return trajectory


def _rotation(sense: float) -> Callable[[np.ndarray, np.random.Generator], list[Shape]]:
    def trajectory(u: np.ndarray, rng: np.random.Generator) -> list[Shape]:
        turn = rng.uniform(0.3, 0.65) * 2 * np.pi  # at most ~a quarter turn between 4 evenly sampled frames
        angle = rng.uniform(0, 2 * np.pi) + sense * turn * u
        centre = rng.uniform(0.4, 0.6, size=2)
        radius = np.full_like(u, rng.uniform(0.2, 0.3))
        return [(np.full_like(u, centre[0]), np.full_like(u, centre[1]), radius, angle, np.ones_like(u, dtype=bool))]

    return trajectory


def _scaling(grow: bool) -> Callable[[np.ndarray, np.random.Generator], list[Shape]]:
    def trajectory(u: np.ndarray, rng: np.random.Generator) -> list[Shape]:
        small, large = rng.uniform(0.04, 0.08), rng.uniform(0.22, 0.32)
        progress = u if grow else 1.0 - u
        radius = small * (large / small) ** progress
        centre = rng.uniform(0.35, 0.65, size=2)
        x, y = np.full_like(u, centre[0]), np.full_like(u, centre[1])
        return [(x, y, radius, np.full_like(u, rng.uniform(0, 2 * np.pi)), np.ones_like(u, dtype=bool))]

    return trajectory


def _appearance(left_first: bool) -> Callable[[np.ndarray, np.random.Generator], list[Shape]]:
    def trajectory(u: np.ndarray, rng: np.random.Generator) -> list[Shape]:
        first, second = rng.uniform(0.1, 0.35), rng.uniform(0.55, 0.8)
        y = np.full_like(u, rng.uniform(0.35, 0.65))
        radius = np.full_like(u, rng.uniform(0.08, 0.14))
        angle = np.full_like(u, rng.uniform(0, 2 * np.pi))
        left_at, right_at = (first, second) if left_first else (second, first)
        left = (np.full_like(u, rng.uniform(0.2, 0.3)), y, radius, angle, u >= left_at)
        right = (np.full_like(u, rng.uniform(0.7, 0.8)), y, radius, angle, u >= right_at)
        return [left, right]

    return trajectory


def _pointer(angle: float) -> Callable[[np.ndarray, np.random.Generator], list[Shape]]:
    """A small key (`POINTER_RADIUS`: half its length) drifting slowly, its knob towards `angle` (0: right, pi/2:
    down)."""

    def trajectory(u: np.ndarray, rng: np.random.Generator) -> list[Shape]:
        start, drift = rng.uniform(0.3, 0.7, size=2), rng.uniform(-0.15, 0.15, size=2)
        x, y = start[0] + drift[0] * (u - 0.5), start[1] + drift[1] * (u - 0.5)
        radius = np.full_like(u, rng.uniform(*POINTER_RADIUS))
        return [(x, y, radius, np.full_like(u, angle + rng.uniform(-0.2, 0.2)), np.ones_like(u, dtype=bool))]

    return trajectory


def _flashes(count: int) -> Callable[[np.ndarray, np.random.Generator], list[Shape]]:
    """`count` flashes, each at a random one of three positions (left, centre, right), visible for `FLASH_LENGTH`."""

    def trajectory(u: np.ndarray, rng: np.random.Generator) -> list[Shape]:
        while True:
            starts = np.sort(rng.uniform(0.02, 0.98 - FLASH_LENGTH, size=count))
            if np.all(np.diff(starts) >= 2.5 * FLASH_LENGTH):
                break
        y = np.full_like(u, rng.uniform(0.4, 0.6))
        radius = np.full_like(u, rng.uniform(0.11, 0.14))
        shapes = []
        for start in starts:
            x = np.full_like(u, 0.2 + 0.3 * rng.integers(3) + rng.uniform(-0.03, 0.03))
            shapes.append((x, y, radius, np.zeros_like(u), (u >= start) & (u < start + FLASH_LENGTH)))
        return shapes

    return trajectory


FLASH_LENGTH = 1.25 / 16  # of the clip: longer than the gap between 16 uniformly sampled frames
FLASH_COUNTS = (1, 2, 3, 4)
POINTER_DIRECTIONS = {"right": 0.0, "down": np.pi / 2, "left": np.pi, "up": 3 * np.pi / 2}
POINTER_RADIUS = (0.08, 0.09)

CLASSES: dict[str, Callable[[np.ndarray, np.random.Generator], list[Shape]]] = {
    "moving_left": _translation(-1, 0),
    "moving_right": _translation(1, 0),
    "moving_up": _translation(0, -1),
    "moving_down": _translation(0, 1),
    "rotating_clockwise": _rotation(1.0),
    "rotating_counterclockwise": _rotation(-1.0),
    "approaching": _scaling(grow=True),
    "receding": _scaling(grow=False),
    "left_appears_first": _appearance(left_first=True),
    "right_appears_first": _appearance(left_first=False),
}
SCALE_CLASSES: dict[str, Callable[[np.ndarray, np.random.Generator], list[Shape]]] = {
    **{f"pointing_{name}": _pointer(angle) for name, angle in POINTER_DIRECTIONS.items()},
    **{f"flashes_{count}": _flashes(count) for count in FLASH_COUNTS},
}
CLASS_SETS = {"motion": CLASSES, "scale": SCALE_CLASSES, "all": {**CLASSES, **SCALE_CLASSES}}


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, lowest: int = 140) -> np.ndarray:
    """A random bright colour (every channel `lowest`-255) at least 120 (of 441) away from the background's mean."""
    while True:
        colour = rng.integers(lowest, 256, size=3)
        if np.linalg.norm(colour - background.reshape(-1, 3).mean(0)) > 120:
            return colour.astype(np.uint8)


def _shape_mask(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, radius: float, angle: float, kind: str
) -> np.ndarray:
    """Boolean mask of a disc, or of an asymmetric "key" (a bar with a knob at one end) that shows its rotation."""
    if kind == "disc":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    bar = (np.abs(along) <= radius) & (np.abs(across) <= 0.22 * radius)
    knob = (along - radius) ** 2 + across**2 <= (0.4 * radius) ** 2
    return bar | knob


def render_clip(class_name: str, rng: np.random.Generator) -> tuple[Iterator[np.ndarray], float, int, int, int]:
    """Random clip of `class_name`: a frame generator (uint8 (height, width, 3)), fps, num_frames, width, height."""
    scale_class = class_name in SCALE_CLASSES
    long_clip = class_name.startswith("flashes_")
    side = int(rng.integers(48, 241)) * 2
    aspect = rng.uniform(0.75, 4 / 3)
    width = side
    height = int(np.clip(round(side / aspect / 2) * 2, 96, 480))
    fps = float(rng.integers(12, 25) if long_clip else rng.integers(8, 25))
    num_frames = max(2, round(rng.uniform(*((6.0, 10.0) if long_clip else (1.0, 10.0))) * fps))

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    square = min(width, height)
    xx, yy = (xx - (width - square) / 2) / square, (yy - (height - square) / 2) / square

    corners = rng.integers(0, 110, size=(2, 3)).astype(np.float32)  # dark: shapes are always brighter
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * xx + np.sin(direction) * yy)[..., None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    background = (corners[0] * (1 - ramp) + corners[1] * ramp).astype(np.uint8)
    for _ in range(0 if scale_class else int(rng.integers(0, 4))):  # static distractors
        mask = _shape_mask(xx, yy, *rng.uniform(0, 1, size=2), rng.uniform(0.03, 0.08), 0.0, "disc")
        background[mask] = _contrasting_colour(rng, background)

    u = np.linspace(0.0, 1.0, num_frames)
    shapes = CLASS_SETS["all"][class_name](u, rng)
    colours = [_contrasting_colour(rng, background) for _ in shapes]
    if class_name.startswith("pointing_"):
        kind = "key"
    elif scale_class:
        kind = "disc"
    else:
        kind = "key" if class_name.startswith("rotating") else str(rng.choice(["disc", "key"]))

    def frames() -> Iterator[np.ndarray]:
        for t in range(num_frames):
            frame = background.copy()
            for (cx, cy, radius, angle, visible), colour in zip(shapes, colours, strict=True):
                if visible[t]:
                    frame[_shape_mask(xx, yy, cx[t], cy[t], radius[t], angle[t], kind)] = colour
            yield frame

    return frames(), fps, num_frames, width, height


def _split_counts(videos_per_class: int) -> dict[str, int]:
    """Clips per class in each split: 70/15/15, at least one in each."""
    validation = max(1, round(videos_per_class * SPLITS["validation"]))
    test = max(1, round(videos_per_class * SPLITS["test"]))
    return {"train": videos_per_class - validation - test, "validation": validation, "test": test}


def _write_clip(
    output_dir: Path, seed: int, class_name: str, clip_index: int, path: str
) -> tuple[float, int, int, int]:
    """Render clip `clip_index` of `class_name` and write it to `output_dir / path`; returns its fps, frame count,
    width and height."""
    # seeded by the class's place among all classes, so its clips are the same in every set
    rng = np.random.default_rng([seed, list(CLASS_SETS["all"]).index(class_name), clip_index])
    frames, fps, num_frames, width, height = render_clip(class_name, rng)
    write_video(output_dir / path, frames, fps, bit_rate=1_000_000)
    return fps, num_frames, width, height


def _process_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux, as torch's DataLoader does (no re-import of the caller's script, which then needs no
    `__main__` guard); elsewhere the platform's default start method."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else None)


def generate_dataset(
    output_dir: str | Path,
    videos_per_class: int = 30,
    seed: int = 0,
    class_set: str = "motion",
    processes: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Write the dataset (see the module docstring) to `output_dir` and return it.

    Args:
        output_dir: destination folder (created; existing clips are overwritten).
        videos_per_class: clips per class over all splits (70% train, 15% validation, 15% test, at least one
            each); at least 3.
        seed: the dataset is a deterministic function of the seed.
        class_set: "motion" (the ten motion classes), "scale" (classes that need fine detail or long context) or
            "all" (both). A class's clips do not depend on the set it is generated in.
        processes: clips are rendered and encoded in this many processes at once (default: this process's share of
            the CPUs, `selective_scan.cores_per_process`; 1: in this process). The files do not depend on it.
        show_progress: a progress bar over the clips.
    """
    if videos_per_class < 3:
        raise ValueError(f"videos_per_class must be at least 3 (one clip per split); got {videos_per_class}.")
    if class_set not in CLASS_SETS:
        raise ValueError(f"Unknown class_set {class_set!r}; choose one of {list(CLASS_SETS)}.")
    if processes is not None and processes < 1:
        raise ValueError(f"processes must be at least 1; got {processes}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "labels.txt").write_text("".join(f"{name}\n" for name in CLASS_SETS[class_set]))
    counts = _split_counts(videos_per_class)
    clips = []  # (split, path, label, class name, clip index)
    for label, class_name in enumerate(CLASS_SETS[class_set]):
        clip_index = 0
        for split, count in counts.items():
            (output_dir / split / class_name).mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                clips.append(
                    (split, f"{split}/{class_name}/{class_name}_{clip_index:04d}.mp4", label, class_name, clip_index)
                )
                clip_index += 1
    write = partial(_write_clip, output_dir, seed)
    _, paths, _, class_names, clip_indices = zip(*clips, strict=True)
    processes = min(len(clips), processes or cores_per_process())
    progress = partial(tqdm, total=len(clips), desc="Generating clips", unit="clip", disable=not show_progress)
    if processes == 1:
        properties = list(progress(map(write, class_names, clip_indices, paths)))
    else:
        with ProcessPoolExecutor(processes, mp_context=_process_context()) as pool:
            properties = list(progress(pool.map(write, class_names, clip_indices, paths, chunksize=4)))
    rows = [[split, path, label, *clip] for (split, path, label, _, _), clip in zip(clips, properties, strict=True)]
    with open(output_dir / "metadata.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["split", "path", "label", "fps", "num_frames", "width", "height"])
        writer.writerows(rows)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, help="destination folder")
    parser.add_argument("--videos-per-class", type=int, default=30, help="clips per class over all splits")
    parser.add_argument("--seed", type=int, default=0, help="the dataset is a deterministic function of the seed")
    parser.add_argument(
        "--class-set",
        choices=list(CLASS_SETS),
        default="motion",
        help="motion, scale (fine detail, long context) or all",
    )
    parser.add_argument(
        "--processes", type=int, default=None, help="clips written at once (default: one per CPU of this process)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    generate_dataset(args.output_dir, args.videos_per_class, args.seed, args.class_set, args.processes)
    num_classes = len(CLASS_SETS[args.class_set])
    print(
        f"Wrote {num_classes * args.videos_per_class} clips of {num_classes} classes to {args.output_dir} in "
        f"{time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
