# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Local video datasets: class-per-folder trees (the UCF-101 / HMDB-51 layout) as `datasets.Dataset`s."""

from __future__ import annotations

from pathlib import Path

import datasets

VIDEO_EXTENSIONS = {".mp4", ".avi", ".webm", ".mkv", ".mov"}


def folder_dataset(root: str | Path, class_names: list[str] | None = None) -> datasets.Dataset:
    """A class-per-folder tree as a Dataset of (video path, label index).

    `class_names` fixes the label order (e.g. a trained model's `id2label`); by default the sorted folder names.
    """
    root_path = Path(root)
    class_names = class_names or sorted(p.name for p in root_path.iterdir() if p.is_dir())
    videos, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((root_path / name).rglob("*")):
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                videos.append(str(path))
                labels.append(label)
    if not videos:
        raise ValueError(f"No videos ({sorted(VIDEO_EXTENSIONS)}) under the class folders of {root}.")
    names = datasets.ClassLabel(names=class_names)
    features = datasets.Features({"video": datasets.Value("string"), "label": names})
    return datasets.Dataset.from_dict({"video": videos, "label": labels}, features=features)


__all__ = ["VIDEO_EXTENSIONS", "folder_dataset"]
