"""The generated action dataset: class semantics, layout, ranges, real mp4 files, determinism."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest

from stretchysnake_hf.synthetic import CLASSES, generate_dataset, main


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
    root = generate_dataset(tmp_path / "a", videos_per_class=3, seed=3)
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

    main(["--output-dir", str(tmp_path / "b"), "--videos-per-class", "3", "--seed", "3"])
    assert read_metadata(tmp_path / "b") == rows
    for row in rows:
        assert (root / row["path"]).read_bytes() == (tmp_path / "b" / row["path"]).read_bytes()


def test_too_few_videos_per_class_raises(tmp_path):
    with pytest.raises(ValueError, match="at least 3"):
        generate_dataset(tmp_path, videos_per_class=2)
