"""The generated action dataset: class semantics, layout, ranges, real mp4 files, determinism; the classes where scale
matters, checked by hand-written detectors on frames read through the processor."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
import torch

from stretchysnake_hf import StretchySnakeVideoProcessor
from stretchysnake_hf.synthetic import (
    CLASS_SETS,
    CLASSES,
    FLASH_COUNTS,
    POINTER_DIRECTIONS,
    SCALE_CLASSES,
    generate_dataset,
    main,
)


def trajectory(name: str, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    return CLASSES[name](np.linspace(0.0, 1.0, 9), np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(5))
def test_each_class_is_defined_by_its_motion(seed):
    def first(name):
        return trajectory(name, seed)[0]

    assert np.all(np.diff(first("moving_right")[0]) > 0) and np.all(np.diff(first("moving_left")[0]) < 0)
    assert np.all(np.diff(first("moving_down")[1]) > 0) and np.all(np.diff(first("moving_up")[1]) < 0)
    assert np.all(np.diff(first("rotating_clockwise")[3]) > 0)
    assert np.all(np.diff(first("rotating_counterclockwise")[3]) < 0)
    assert np.all(np.diff(first("approaching")[2]) > 0) and np.all(np.diff(first("receding")[2]) < 0)
    for name, left_first in (("left_appears_first", True), ("right_appears_first", False)):
        left, right = trajectory(name, seed)
        assert left[0][0] < right[0][0]
        assert (left[4].argmax() < right[4].argmax()) == left_first and left[4][-1] and right[4][-1]
        assert not left[4][0] and not right[4][0]


def read_metadata(root):
    with open(root / "metadata.csv") as file:
        return list(csv.DictReader(file))


def test_dataset_layout_ranges_and_determinism(tmp_path):
    root = generate_dataset(tmp_path / "a", videos_per_class=3, seed=3, processes=2)
    names = (root / "labels.txt").read_text().split()
    assert names == list(CLASSES) and len(names) >= 8
    rows = read_metadata(root)
    assert len(rows) == 3 * len(names)
    for split, per_class in (("train", 1), ("validation", 1), ("test", 1)):
        for label, name in enumerate(names):
            files = sorted((root / split / name).glob("*.mp4"))
            assert len(files) == per_class
            assert all(int(r["label"]) == label for r in rows if r["path"].startswith(f"{split}/{name}/"))
    for row in rows:
        fps, num_frames = float(row["fps"]), int(row["num_frames"])
        assert 8 <= fps <= 24 and 1.0 - 1 / fps <= num_frames / fps <= 10.0 + 1 / fps
        assert 96 <= int(row["width"]) <= 480 and 96 <= int(row["height"]) <= 480
    assert len({(r["width"], r["height"]) for r in rows}) > 20 and len({r["fps"] for r in rows}) > 5

    row = rows[0]
    with av.open(str(root / row["path"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == int(row["num_frames"])
    assert frames[0].shape == (int(row["height"]), int(row["width"]), 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 100  # something moved

    # the same dataset written in this process alone: the same rows and the same bytes
    main(["--output-dir", str(tmp_path / "b"), "--videos-per-class", "3", "--seed", "3", "--processes", "1"])
    assert read_metadata(tmp_path / "b") == rows
    for row in rows:
        assert (root / row["path"]).read_bytes() == (tmp_path / "b" / row["path"]).read_bytes()


def test_too_few_videos_per_class_raises(tmp_path):
    with pytest.raises(ValueError, match="at least 3"):
        generate_dataset(tmp_path, videos_per_class=2)


def test_fewer_than_one_process_raises(tmp_path):
    with pytest.raises(ValueError, match="processes must be at least 1; got 0"):
        generate_dataset(tmp_path, videos_per_class=3, processes=0)


@pytest.fixture(scope="module")
def scale_dataset(tmp_path_factory):
    """Six clips of each class where scale matters, with their names and labels."""
    root = generate_dataset(tmp_path_factory.mktemp("scale"), videos_per_class=6, seed=1, class_set="scale")
    names = (root / "labels.txt").read_text().split()
    return root, names, read_metadata(root)


def luma(pixel_values: torch.Tensor) -> np.ndarray:
    """The processor's normalized `(frames, 3, S, S)` back to luma in [0, 1], `(frames, S, S)`."""
    processor = StretchySnakeVideoProcessor()
    rgb = pixel_values * torch.tensor(processor.image_std).view(3, 1, 1) + torch.tensor(processor.image_mean).view(
        3, 1, 1
    )
    return (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).numpy()


def pointer_moments(frame: np.ndarray) -> list[float]:
    """Shape moments of the bright pointer: the background's plane (a least-squares fit; the pointer is small) is
    subtracted and the pixels above 30% of the brightest remainder weigh in. Returns the elongation along x rather
    than y ((mu20 - mu02) / (mu20 + mu02)) and the skew along x and along y (the knob's side)."""
    size = frame.shape[-1]
    yy, xx = (grid.ravel() / size for grid in np.mgrid[0:size, 0:size])
    design = np.stack([np.ones_like(xx), xx, yy], 1)
    residual = frame.ravel() - design @ np.linalg.lstsq(design, frame.ravel(), rcond=None)[0]
    weight = np.where(residual > 0.3 * residual.max(), residual, 0.0)
    weight /= weight.sum()
    dx, dy = xx - weight @ xx, yy - weight @ yy
    mu20, mu02 = weight @ dx**2, weight @ dy**2
    spread = np.sqrt(mu20 + mu02) + 1e-9
    return [(mu20 - mu02) / spread**2, weight @ dx**3 / spread**3, weight @ dy**3 / spread**3]


def nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier on standardized features: a detector fitted at each
    scale, so it fails only where the information is gone, not because thresholds were set at another scale."""
    correct = 0
    for i in range(len(features)):
        rest = np.arange(len(features)) != i
        centroids = np.stack([features[rest & (labels == c)].mean(0) for c in np.unique(labels)])
        spread = features[rest].std(0) + 1e-9
        correct += np.unique(labels)[(((features[i] - centroids) / spread) ** 2).sum(1).argmin()] == labels[i]
    return correct / len(features)


def test_pointer_directions_are_separable_from_16_px_and_lost_at_8(scale_dataset):
    root, names, rows = scale_dataset
    pointers = [row for row in rows if names[int(row["label"])].startswith("pointing_")]
    labels = np.array([int(row["label"]) for row in pointers])
    assert len(set(labels)) == 4
    accuracy = {}
    for size in (8, 16, 32, 128):
        pixels = StretchySnakeVideoProcessor()([str(root / r["path"]) for r in pointers], num_frames=1, size=size)
        features = np.array([pointer_moments(luma(video)[0]) for video in pixels["pixel_values"]])
        accuracy[size] = nearest_centroid_accuracy(features, labels)
    assert accuracy[32] == accuracy[128] == 1.0 and accuracy[16] >= 0.8, accuracy
    assert accuracy[8] <= 0.5, accuracy  # chance: 0.25


def flash_count(frames: np.ndarray) -> int:
    """Flashes seen: runs of frames with bright pixels (flashes are bright, every channel >= 140; the background is
    dark, < 110), split by a frame without any or by a jump of their mean column to another position."""
    count, previous = 0, None
    for frame in frames:
        bright = frame > 0.5
        if not bright.any():
            previous = None
            continue
        column = np.nonzero(bright)[1].mean() / frame.shape[-1]
        if previous is None or abs(column - previous) > 0.15:
            count += 1
        previous = column
    return count


def test_flash_counts_need_16_frames(scale_dataset):
    root, names, rows = scale_dataset
    flashes = [row for row in rows if names[int(row["label"])].startswith("flashes_")]
    truth = [int(names[int(r["label"])].removeprefix("flashes_")) for r in flashes]
    assert sorted(set(truth)) == list(FLASH_COUNTS)
    for row in flashes:
        fps, num_frames = float(row["fps"]), int(row["num_frames"])
        assert 12 <= fps <= 24 and 6.0 - 1 / fps <= num_frames / fps <= 10.0 + 1 / fps
    accuracy = {}
    for num_frames in (4, 8, 16, 32):
        pixels = StretchySnakeVideoProcessor()(
            [str(root / r["path"]) for r in flashes], num_frames=num_frames, size=32
        )
        counts = [flash_count(luma(video)) for video in pixels["pixel_values"]]
        accuracy[num_frames] = np.mean([count == t for count, t in zip(counts, truth, strict=True)])
    assert accuracy[16] == accuracy[32] == 1.0, accuracy
    assert accuracy[8] <= 0.6 and accuracy[4] <= 0.4, accuracy  # chance: 1/4


def test_class_sets(scale_dataset, tmp_path):
    _, names, _ = scale_dataset
    assert names == list(SCALE_CLASSES) == list(CLASS_SETS["all"])[len(CLASSES) :]
    assert [n for n in names if n.startswith("pointing_")] == [f"pointing_{d}" for d in POINTER_DIRECTIONS]
    with pytest.raises(ValueError, match="Unknown class_set 'tiny'"):
        generate_dataset(tmp_path, videos_per_class=3, class_set="tiny")
