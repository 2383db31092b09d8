# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Local video datasets: class-per-folder trees (the UCF-101 / HMDB-51 layout) as `datasets.Dataset`s."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
from transformers.utils import logging

logger = logging.get_logger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".m2ts", ".ogv"}
)
"""The file extensions (compared in lower case) of the containers PyAV (FFmpeg) decodes that videos come in."""


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden or system clutter, never data: `.ipynb_checkpoints`, the AppleDouble
    files `._clip.mp4` and the `__MACOSX` folders macOS archives carry."""
    return name.startswith(".") or name == "__MACOSX"


def video_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """The video files under `folder` (any depth, sorted) and the other files, hidden entries (`is_hidden`) left out."""
    videos, others = [], []
    for directory, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not is_hidden(name)]
        for name in files:
            if not is_hidden(name):
                path = Path(directory, name)
                (videos if path.suffix.lower() in VIDEO_EXTENSIONS else others).append(path)
    return sorted(videos), sorted(others)


def folder_dataset(root: str | Path, class_names: list[str] | None = None) -> datasets.Dataset:
    """A class-per-folder tree `root/<class>/.../<video>` as a Dataset of (video path, label index).

    `class_names` fixes the label order (e.g. a trained model's `id2label`); by default the sorted folder names. A
    class without a folder (a validation tree may lack some) is logged; hidden folders and files (`is_hidden`) are
    left out, and so are files that are not videos (`VIDEO_EXTENSIONS`), with one warning naming a few.

    Raises:
        ValueError: `root` has no class folder, a class folder is not in `class_names`, or one holds no video.
    """
    root = Path(root)
    folders = {path.name for path in root.iterdir() if path.is_dir() and not is_hidden(path.name)}
    if not folders:
        raise ValueError(f"{root}: no class folders (expected {root}/<class>/<video>)")
    if class_names is None:
        class_names = sorted(folders)
    unknown = sorted(folders - set(class_names))
    missing = [name for name in class_names if name not in folders]
    if unknown:
        raise ValueError(
            f"{root}: the class folders {unknown} are not among the {len(class_names)} class names"
            + (f" (those without a folder: {missing})" if missing else "")
        )
    if missing:
        logger.warning("%s: no folder for the classes %s, so no videos of them", root, missing)
    videos, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        if name not in folders:
            continue
        found, others = video_files(root / name)
        if not found:
            raise ValueError(
                f"{root / name}: class folder {name!r} holds no video ({', '.join(sorted(VIDEO_EXTENSIONS))})"
            )
        videos += map(str, found)
        labels += [label] * len(found)
        skipped += others
    if skipped:
        logger.warning(
            "%s: %d files under the class folders are not videos (%s) and are left out, e.g. %s",
            root,
            len(skipped),
            ", ".join(sorted(VIDEO_EXTENSIONS)),
            ", ".join(map(str, skipped[:3])),
        )
    names = datasets.ClassLabel(names=class_names)
    features = datasets.Features({"video": datasets.Value("string"), "label": names})
    return datasets.Dataset.from_dict({"video": videos, "label": labels}, features=features)


__all__ = ["VIDEO_EXTENSIONS", "folder_dataset", "is_hidden", "video_files"]
