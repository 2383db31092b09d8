# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The standard action-recognition benchmarks as distributed (official splits and label order) as `datasets.Dataset`s.

`load_video_dataset(format, root, split, fold, **options)` reads UCF-101, HMDB-51, Kinetics-400/600/700,
Something-Something V2, Diving-48, Breakfast, COIN, the `path label` list files of mmaction2 / VideoMAE / VideoMamba,
and class-per-folder trees. The formats and their quirks are those of `reference/benchmark-formats.md`.
"""

from __future__ import annotations

import ast
import csv
import inspect
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import datasets
from transformers.utils import logging

from .data import VIDEO_EXTENSIONS, folder_dataset, is_hidden, video_files

logger = logging.get_logger(__name__)

BREAKFAST_ACTIVITIES = (
    "cereals", "coffee", "friedegg", "juice", "milk", "pancake", "salat", "sandwich", "scrambledegg", "tea",
)  # fmt: skip
"""Breakfast's 10 activities in alphabetical order: the labels of the standard splits s1-s4."""

BREAKFAST_VIS4MER_ORDER = (
    "cereals", "coffee", "tea", "pancake", "friedegg", "scrambledegg", "sandwich", "juice", "milk", "salat",
)  # fmt: skip
"""The class ids of ViS4mer's Breakfast split (the one VideoMamba reports): not alphabetical."""

BREAKFAST_TEST_PERSONS = {1: range(3, 16), 2: range(16, 29), 3: range(29, 42), 4: range(42, 55)}
"""The persons (P03-P54) each standard Breakfast split s1-s4 tests on; the others are training."""

COIN_NUM_TASKS = 180
"""COIN's task-level classes (`recipe_type` 0-179)."""

EVALUATION_SPLITS = {
    "ucf101": "test",
    "hmdb51": "test",
    "kinetics": "val",
    "ssv2": "validation",
    "diving48": "test",
    "breakfast": "test",
    "coin": "test",
    "list": "val",
    "folder": "validation",
}
"""Each format's official evaluation split: the one papers report on."""

_SPLIT_NAMES = {"val": ("val", "validation"), "validation": ("validation", "val")}

_SPLIT_FOLDERS = {"train", "training", "val", "valid", "validation", "test", "testing", "eval"}
"""Folder names (in any case) that mark a split of a class-per-folder tree, never a class."""


class _Listing(NamedTuple):
    """What a format reader found: the class names in order, then per video its path, label (-1: none) and segment."""

    class_names: list[str]
    videos: list[Path]
    labels: list[int]
    segments: list[tuple[float, float]] | None
    source: str  # the annotation file (or folder) the videos were listed in, for messages


# ------------------------------------------------------------------------------------------------ file helpers


def _video_dir(root: Path, candidates: Sequence[str], video_dir: str | os.PathLike | None) -> Path:
    """`root / video_dir` if given, else the first of `root / candidate` that exists (`""` is `root` itself)."""
    if video_dir is not None:
        return root / video_dir
    return next((root / name for name in candidates if (root / name).is_dir()), root)


def _find_file(
    format: str,
    root: Path,
    names: Sequence[str],
    folders: Sequence[str],
    annotation_dir: str | os.PathLike | None,
) -> Path:
    """The first existing `folder / name` under `root` (`annotation_dir` instead of `folders` when given).

    Raises `FileNotFoundError` naming the file the format expects and every place looked in.
    """
    folders = [annotation_dir] if annotation_dir is not None else folders
    places = [root / folder / name for folder in folders for name in names]
    found = next((place for place in places if place.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"{format}: annotation file {names[0]!r} not found under {root}; looked for: "
            + ", ".join(str(place) for place in places)
        )
    return found


def _read_lines(path: Path) -> Iterable[tuple[int, str]]:
    """`(line number, line)` of a text file, line endings (LF or CRLF) and a UTF-8 byte-order mark removed, blank
    lines skipped."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.strip():
            yield number, line


def _malformed(path: Path, number: int, line: str, expected: str) -> ValueError:
    return ValueError(f"{path}, line {number}: malformed line {line!r} (expected {expected})")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err


def _index_videos(folder: Path) -> dict[str, list[Path]]:
    """Every video file under `folder` (any depth) by its name without extension: layouts that differ by class
    folders (with spaces or underscores) or by container are all found by name."""
    index: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in video_files(folder)[0]:
            index.setdefault(path.stem, []).append(path)
    return index


def _pick(candidates: Iterable[Path], expected: Path) -> Path:
    """The first non-empty file among `candidates`; else the first empty one; else `expected` (which is missing)."""
    candidates = list(candidates)
    return next((path for path in candidates if path.stat().st_size > 0), candidates[0] if candidates else expected)


def _names_by_index(path: Path, index_of: dict[str, Any]) -> list[str]:
    """The names of the `{name: index}` object read from `path`, in index order.

    Raises `ValueError` naming `path` and the gap or the duplicate unless the indices (integers, or strings of them as
    in SSv2's labels.json) are exactly 0 to N-1: any other renumbering would silently shift labels.
    """
    names_at: dict[int, list[str]] = {}
    for name, index in index_of.items():
        try:
            names_at.setdefault(int(index), []).append(name)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: class {name!r} has the index {index!r}, not an integer") from err
    missing = sorted(set(range(len(index_of))) - set(names_at))
    shared = {index: names for index, names in sorted(names_at.items()) if len(names) > 1}
    if missing or shared:
        problems = ([f"no class has the index {missing}"] if missing else []) + [
            f"the classes {names} share the index {index}" for index, names in shared.items()
        ]
        raise ValueError(
            f"{path}: the class indices must be 0 to {len(index_of) - 1}, each once; " + "; ".join(problems)
        )
    return [names_at[index][0] for index in range(len(index_of))]


def read_class_names(class_names: str | os.PathLike | Sequence[str]) -> list[str]:
    """Class names in label order, given as a sequence or a class-order file.

    The file is a JSON list of names, a JSON object `{name: index}` (indices 0 to N-1, each once; they may be strings,
    as in SSv2's labels.json), or text with one name per line (line 1 is label 0).
    """
    if not isinstance(class_names, str | os.PathLike):
        return list(class_names)
    path = Path(class_names)
    if path.suffix.lower() == ".json":
        loaded = _read_json(path)
        if isinstance(loaded, dict):
            return _names_by_index(path, loaded)
        return [str(name) for name in loaded]
    return [line.strip() for _, line in _read_lines(path)]


def _entry(path: Path, position: int, entry: Any, *keys: str) -> list[Any]:
    """The fields `keys` of entry `position` of the JSON annotation `path`; a `ValueError` naming them if absent."""
    try:
        return [entry[key] for key in keys]
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path}, entry {position}: expected the fields {list(keys)}, got {entry!r}") from err


def _check_fold(format: str, fold: int, folds: Collection[int] = (1,)) -> None:
    if fold not in folds:
        kind = f"folds {sorted(folds)}" if len(folds) > 1 else "no folds (use fold=1)"
        raise ValueError(f"{format} has {kind}; got fold={fold}")


def _check_split(format: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise ValueError(f"{format} has the splits {list(splits)}; got split={split!r}")


# ----------------------------------------------------------------------------------------------------- formats


def _ucf101(
    root: Path, split: str, fold: int, video_dir: str | None = None, annotation_dir: str | None = None
) -> _Listing:
    """`UCF-101/<Class>/v_<Class>_gGG_cCC.avi` and `ucfTrainTestlist/` (classInd.txt, trainlist0N, testlist0N)."""
    _check_split("ucf101", split, ("train", "test"))
    _check_fold("ucf101", fold, (1, 2, 3))
    folders = ("ucfTrainTestlist", "")
    class_file = _find_file("ucf101", root, ["classInd.txt"], folders, annotation_dir)
    class_names = []
    for number, line in _read_lines(class_file):
        fields = line.split()
        if len(fields) != 2 or fields[0] != str(len(class_names) + 1):
            raise _malformed(class_file, number, line, f"'{len(class_names) + 1} ClassName'")
        class_names.append(fields[1])
    list_file = _find_file("ucf101", root, [f"{split}list{fold:02d}.txt"], folders, annotation_dir)
    videos_root = _video_dir(root, ("UCF-101", "videos", ""), video_dir)
    label_of = {name: index for index, name in enumerate(class_names)}
    videos, labels = [], []
    for number, line in _read_lines(list_file):
        # trainlist: "Class/v_Class_g08_c01.avi 1" (1-based label); testlist: the path only. The class is the folder
        # part, never the file name: HandstandPushups/v_HandStandPushups_g08_c01.avi.
        fields = line.split()
        folder = fields[0].split("/")[0]
        if len(fields) != (2 if split == "train" else 1) or folder not in label_of or "/" not in fields[0]:
            raise _malformed(
                list_file, number, line, "'Class/v_Class_gGG_cCC.avi" + (" label'" if split == "train" else "'")
            )
        if split == "train" and fields[1] != str(label_of[folder] + 1):
            raise _malformed(list_file, number, line, f"label {label_of[folder] + 1} of {folder} in {class_file.name}")
        videos.append(videos_root / fields[0])
        labels.append(label_of[folder])
    return _Listing(class_names, videos, labels, None, str(list_file))


def _hmdb51(
    root: Path, split: str, fold: int, video_dir: str | None = None, annotation_dir: str | None = None
) -> _Listing:
    """`<class>/<name>.avi` and `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` (tag 1 train, 2 test)."""
    _check_split("hmdb51", split, ("train", "test"))
    _check_fold("hmdb51", fold, (1, 2, 3))
    folders = [annotation_dir] if annotation_dir is not None else ["testTrainMulti_7030_splits", ""]
    suffix = f"_test_split{fold}.txt"
    split_files = {}
    for folder in folders:
        split_files = {
            path.name[: -len(suffix)]: path for path in (root / folder).glob(f"*{suffix}") if not is_hidden(path.name)
        }
        if split_files:
            break
    if not split_files:
        raise FileNotFoundError(
            f"hmdb51: no split files '<class>{suffix}' found under {root}; looked in: "
            + ", ".join(str(root / folder) for folder in folders)
        )
    # The label order is the sorted class (folder) names; sorting the split-file names instead would put
    # climb_stairs_test_split1.txt before climb_test_split1.txt.
    class_names = sorted(split_files)
    videos_root = _video_dir(root, ("hmdb51_org", "videos", ""), video_dir)
    wanted = "1" if split == "train" else "2"
    videos, labels = [], []
    for label, name in enumerate(class_names):
        for number, line in _read_lines(split_files[name]):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise _malformed(split_files[name], number, line, "'<name>.avi <0|1|2>'")
            if fields[1] == wanted:
                videos.append(videos_root / name / fields[0])
                labels.append(label)
    return _Listing(class_names, videos, labels, None, str(next(iter(split_files.values())).parent))


def _read_kinetics_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """`(line number, row)` of a Kinetics annotation CSV (header `label,youtube_id,time_start,time_end,split[,is_cc]`,
    or without `label` for the K400 test set; labels with spaces may be quoted)."""
    lines = list(_read_lines(path))
    if not lines:
        raise ValueError(f"{path}: empty annotation file")
    header = next(csv.reader([lines[0][1]]))
    if not {"youtube_id", "time_start", "time_end"} <= set(header):
        raise _malformed(path, lines[0][0], lines[0][1], "a header with youtube_id, time_start and time_end")
    rows = []
    for number, line in lines[1:]:
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise _malformed(path, number, line, ",".join(header))
        row = dict(zip(header, fields, strict=True))
        try:
            row["time_start"], row["time_end"] = (f"{int(float(row[key])):06d}" for key in ("time_start", "time_end"))
        except ValueError as err:
            raise _malformed(path, number, line, "integer seconds in time_start and time_end") from err
        rows.append((number, row))
    return rows


def _kinetics(
    root: Path,
    split: str,
    fold: int,
    class_names: str | os.PathLike | Sequence[str] | None = None,
    video_dir: str | None = None,
    annotation_dir: str | None = None,
) -> _Listing:
    """CVDF layout `{train,val,test}/*.mp4` + `annotations/{train,val,test}.csv`; also class folders (spaces or
    underscores) and files named `<youtube_id>.mp4`. `class_names`: a class-order file or list; default the sorted
    labels of the training CSV (mmaction2's order)."""
    split = "val" if split == "validation" else split
    _check_split("kinetics", split, ("train", "val", "test"))
    _check_fold("kinetics", fold)
    folders = ("annotations", "")
    names = {"train": ["train.csv"], "val": ["val.csv", "validate.csv"], "test": ["test.csv"]}
    csv_file = _find_file("kinetics", root, names[split], folders, annotation_dir)
    rows = _read_kinetics_csv(csv_file)
    if class_names is None:
        train_file = (
            csv_file if split == "train" else _find_file("kinetics", root, names["train"], folders, annotation_dir)
        )
        train_rows = rows if split == "train" else _read_kinetics_csv(train_file)
        class_names = sorted({row["label"] for _, row in train_rows if row.get("label")})
    class_names = read_class_names(class_names)
    label_of = {name: index for index, name in enumerate(class_names)}
    split_folders = {"train": ("train", "videos_train"), "val": ("val", "validation", "validate", "videos_val")}
    videos_root = _video_dir(root, split_folders.get(split, (split,)), video_dir)
    index = _index_videos(videos_root)
    # CVDF ships re-encoded copies of the train/val videos that were corrupt: they take precedence.
    replacements = _index_videos(root / "replacement" / "replacement_for_corrupted_k400")
    videos, labels = [], []
    for number, row in rows:
        label = row.get("label", "")
        if label and label not in label_of:
            raise ValueError(f"{csv_file}, line {number}: label {label!r} is not among the {len(class_names)} classes")
        clip = f"{row['youtube_id']}_{row['time_start']}_{row['time_end']}"
        found = replacements.get(clip, []) + index.get(clip, []) + index.get(row["youtube_id"], [])
        videos.append(_pick(found, videos_root / f"{clip}.mp4"))
        labels.append(label_of[label] if label else -1)
    return _Listing(class_names, videos, labels, None, str(csv_file))


def _ssv2(
    root: Path, split: str, fold: int, video_dir: str | None = None, annotation_dir: str | None = None
) -> _Listing:
    """`20bn-something-something-v2/<id>.webm` and `labels/{labels,train,validation,test}.json` (or the older names
    `something-something-v2-{...}.json`); test labels from `test-answers.csv` when present."""
    _check_split("ssv2", split, ("train", "validation", "test"))
    _check_fold("ssv2", fold)
    folders = ("labels", "", "annotations")

    def find(name: str) -> Path:
        return _find_file(
            "ssv2", root, [f"{name}.json", f"something-something-v2-{name}.json"], folders, annotation_dir
        )

    labels_file = find("labels")
    class_names = _names_by_index(labels_file, _read_json(labels_file))
    label_of = {name: index for index, name in enumerate(class_names)}
    split_file = find(split)
    answers: dict[str, str] = {}
    if split == "test":
        try:
            answers_file = _find_file("ssv2", root, ["test-answers.csv"], folders, annotation_dir)
        except FileNotFoundError:
            logger.info("ssv2 test: no test-answers.csv; the videos are unlabelled (label -1)")
        else:
            for number, line in _read_lines(answers_file):
                video_id, separator, name = line.partition(";")
                if not separator or name.strip() not in label_of:
                    raise _malformed(answers_file, number, line, "'<id>;<class name>'")
                answers[video_id.strip()] = name.strip()
    videos_root = _video_dir(root, ("20bn-something-something-v2", "videos", ""), video_dir)
    index = _index_videos(videos_root)
    videos, labels = [], []
    for position, entry in enumerate(_read_json(split_file)):
        video_id = str(_entry(split_file, position, entry, "id")[0])
        if split != "test":
            # The label is the template without its brackets: "Holding [something] next to [something]".
            name = _entry(split_file, position, entry, "template")[0].replace("[", "").replace("]", "")
            if name not in label_of:
                raise ValueError(f"{split_file}, entry {position} (id {video_id}): unknown template {name!r}")
        else:
            name = answers.get(video_id)
        videos.append(_pick(index.get(video_id, []), videos_root / f"{video_id}.webm"))
        labels.append(-1 if name is None else label_of[name])
    return _Listing(class_names, videos, labels, None, str(split_file))


def _diving48(
    root: Path, split: str, fold: int, video_dir: str | None = None, annotation_dir: str | None = None
) -> _Listing:
    """`rgb/<vid_name>.mp4`, `Diving48_V2_{train,test}.json` and `Diving48_vocab.json` (48 classes; class 30 has no
    video but keeps its index)."""
    _check_split("diving48", split, ("train", "test"))
    _check_fold("diving48", fold)
    folders = ("", "annotations")
    vocab_file = _find_file("diving48", root, ["Diving48_vocab.json"], folders, annotation_dir)
    class_names = ["+".join(parts) for parts in _read_json(vocab_file)]
    split_file = _find_file("diving48", root, [f"Diving48_V2_{split}.json"], folders, annotation_dir)
    videos_root = _video_dir(root, ("rgb", "videos", ""), video_dir)
    index = _index_videos(videos_root)
    videos, labels = [], []
    for position, entry in enumerate(_read_json(split_file)):
        name, label = _entry(split_file, position, entry, "vid_name", "label")
        if not 0 <= int(label) < len(class_names):
            raise ValueError(f"{split_file}, entry {position}: label {label} outside the {len(class_names)} classes")
        videos.append(_pick(index.get(name, []), videos_root / f"{name}.mp4"))
        labels.append(int(label))
    return _Listing(class_names, videos, labels, None, str(split_file))


def _breakfast(
    root: Path,
    split: str,
    fold: int,
    split_scheme: str = "standard",
    video_dir: str | None = None,
    annotation_dir: str | None = None,
) -> _Listing:
    """`BreakfastII_15fps_qvga_sync/<P>/<cam>/<P>_<activity>.avi`; stereo recordings count once, by their `_ch0`
    file. `split_scheme="standard"`: splits s1-s4 as folds 1-4 (alphabetical labels); `"vis4mer"`: ViS4mer's
    `train.csv`/`test.csv` with its class ids (VideoMamba's numbers)."""
    _check_split("breakfast", split, ("train", "test"))
    videos_root = _video_dir(root, ("BreakfastII_15fps_qvga_sync", "videos", ""), video_dir)
    videos, labels = [], []
    if split_scheme == "vis4mer":
        _check_fold("breakfast (vis4mer)", fold)
        csv_file = _find_file("breakfast", root, [f"{split}.csv"], ("", "annotations"), annotation_dir)
        lines = list(_read_lines(csv_file))
        if not lines or lines[0][1].strip() != "file_name,duration,action,class_id":
            raise _malformed(
                csv_file, 1, lines[0][1] if lines else "", "the header file_name,duration,action,class_id"
            )
        for number, line in lines[1:]:
            fields = line.split(",")
            if len(fields) != 4 or fields[2] not in BREAKFAST_VIS4MER_ORDER:
                raise _malformed(csv_file, number, line, "'P03-cam01-P03_cereals,56,cereals,0'")
            if fields[3] != str(BREAKFAST_VIS4MER_ORDER.index(fields[2])):
                raise _malformed(csv_file, number, line, f"class_id {BREAKFAST_VIS4MER_ORDER.index(fields[2])}")
            videos.append(videos_root / (fields[0].replace("-", "/") + ".avi"))  # "-" stands for "/"
            labels.append(int(fields[3]))
        return _Listing(list(BREAKFAST_VIS4MER_ORDER), videos, labels, None, str(csv_file))
    if split_scheme != "standard":
        raise ValueError(f"breakfast: split_scheme must be 'standard' or 'vis4mer', got {split_scheme!r}")
    _check_fold("breakfast", fold, BREAKFAST_TEST_PERSONS)
    pattern = "P[0-9][0-9]/*/P[0-9][0-9]_*.avi"
    paths = sorted(videos_root.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"breakfast: no videos {pattern} under {videos_root}")
    for path in paths:
        activity = path.stem.split("_", 1)[1]
        if activity.endswith("_ch1"):
            continue
        activity = activity.removesuffix("_ch0")
        if activity not in BREAKFAST_ACTIVITIES:
            raise ValueError(f"{path}: activity {activity!r} is not one of Breakfast's {BREAKFAST_ACTIVITIES}")
        if (int(path.parent.parent.name[1:]) in BREAKFAST_TEST_PERSONS[fold]) == (split == "test"):
            videos.append(path)
            labels.append(BREAKFAST_ACTIVITIES.index(activity))
    return _Listing(list(BREAKFAST_ACTIVITIES), videos, labels, None, str(videos_root))


def _coin(
    root: Path, split: str, fold: int, video_dir: str | None = None, annotation_dir: str | None = None
) -> _Listing:
    """`videos/<recipe_type>/<youtube_id>.mp4` and `COIN.json`: task-level classes (`recipe_type`, 0-179, named by
    `class`), subsets "training" / "testing", each video's task segment as `start`/`end`."""
    subsets = {"train": "training", "test": "testing"}
    split = {subset: name for name, subset in subsets.items()}.get(split, split)
    _check_split("coin", split, ("train", "test"))
    _check_fold("coin", fold)
    json_file = _find_file("coin", root, ["COIN.json"], ("", "annotations"), annotation_dir)
    database = _read_json(json_file)["database"]
    videos_root = _video_dir(root, ("videos", ""), video_dir)
    index = _index_videos(videos_root)
    task_names: dict[int, str] = {}
    videos, labels, segments = [], [], []
    for video_id, entry in database.items():
        try:  # numbers come as JSON numbers or as strings
            task, start, end = int(entry["recipe_type"]), float(entry["start"]), float(entry["end"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{json_file}, video {video_id}: no numeric recipe_type, start and end ({err})") from err
        task_names.setdefault(task, str(entry.get("class", task)))
        if entry.get("subset") not in subsets.values():
            raise ValueError(
                f"{json_file}, video {video_id}: subset {entry.get('subset')!r} is neither 'training' nor 'testing'"
            )
        if entry["subset"] == subsets[split]:
            videos.append(_pick(index.get(video_id, []), videos_root / str(task) / f"{video_id}.mp4"))
            labels.append(task)
            segments.append((start, end))
    num_tasks = max(COIN_NUM_TASKS, max(task_names, default=-1) + 1)
    class_names = [task_names.get(task, str(task)) for task in range(num_tasks)]
    return _Listing(class_names, videos, labels, segments, str(json_file))


_FRAME_FOLDER_LINE = re.compile(r"^\S+\s+\d+\s+-?\d+$")


def _list(
    root: Path,
    split: str,
    fold: int,
    list_file: str | os.PathLike | None = None,
    prefix: str | os.PathLike | None = None,
    delimiter: str | None = None,
    class_names: str | os.PathLike | Sequence[str] | None = None,
) -> _Listing:
    """`<split>.csv` / `<split>.txt` in `root` (or `list_file`, relative to `root` or absolute, where `{split}` stands
    for the split's name: `lists/{split}.txt`; without it every split reads the same file): `path label` per line,
    space or comma separated (`delimiter` forces one), relative to `prefix` (default `root`) or absolute; a line
    without a label is unlabelled (-1). `class_names`: the names of labels 0, 1, ... (default "0", "1", ...)."""
    _check_fold("list", fold)
    split_names = _SPLIT_NAMES.get(split, (split,))
    if list_file is not None:
        names = list(dict.fromkeys(str(list_file).replace("{split}", name) for name in split_names))
    else:
        names = [f"{name}{ext}" for name in split_names for ext in (".csv", ".txt")]
    path = _find_file("list", root, names, ("",), None)
    base = root if prefix is None else root / prefix
    separator = r"\s*,\s*|\s+" if delimiter is None else rf"\s*{re.escape(delimiter)}\s*"
    labelled_line = re.compile(rf"^(?P<path>.*?)(?:{separator})(?P<label>-?\d+)$")
    videos, labels = [], []
    for number, line in _read_lines(path):
        line = line.strip()
        if _FRAME_FOLDER_LINE.match(line):
            raise _malformed(path, number, line, "a video and its label: frame-folder lists are not supported")
        if (match := labelled_line.match(line)) is not None:
            video, label = match["path"], int(match["label"])
        elif Path(line).suffix.lower() in VIDEO_EXTENSIONS:  # a video with no label (paths may hold spaces)
            video, label = line, -1
        else:
            raise _malformed(path, number, line, "'path label' or 'path,label' with an integer label, or a video path")
        videos.append(base / video)
        labels.append(label)
    top = max(labels, default=-1)
    names = read_class_names(class_names) if class_names is not None else [str(i) for i in range(top + 1)]
    if top >= len(names):
        raise ValueError(f"{path}: label {max(labels)} is outside the {len(names)} class names")
    return _Listing(names, videos, labels, None, str(path))


def _folder(
    root: Path, split: str, fold: int, class_names: str | os.PathLike | Sequence[str] | None = None
) -> _Listing:
    """A class-per-folder tree: `root/<split>/<class>/...` (as `stretchysnake_hf.synthetic` writes), or `root` itself
    for the train split when no folder of `root` is named like a split (`_SPLIT_FOLDERS`). Label order:
    `class_names`, default the sorted folder names."""
    _check_fold("folder", fold)
    trees = [root / name for name in _SPLIT_NAMES.get(split, (split,))]
    tree = next((path for path in trees if path.is_dir()), None)
    if tree is None:
        split_like = sorted(
            path.name for path in root.iterdir() if path.is_dir() and path.name.lower() in _SPLIT_FOLDERS
        )
        message = f"folder: no split folder for {split!r}; looked for: {', '.join(map(str, trees))}"
        if split != "train":
            raise FileNotFoundError(message + (f" ({root} has the split folders {split_like})" if split_like else ""))
        if split_like:
            # Taking root as the tree would make its split folders classes, mixing the test videos into training.
            raise ValueError(
                f"{message}; {root} has the split folders {split_like}, so it is not a tree of classes: ask for the "
                "split by its folder's name, or rename that folder"
            )
        tree = root
    dataset = folder_dataset(tree, read_class_names(class_names) if class_names is not None else None)
    videos = [Path(video) for video in dataset["video"]]
    return _Listing(dataset.features["label"].names, videos, dataset["label"], None, str(tree))


FORMATS: dict[str, Callable[..., _Listing]] = {
    "ucf101": _ucf101,
    "hmdb51": _hmdb51,
    "kinetics": _kinetics,
    "ssv2": _ssv2,
    "diving48": _diving48,
    "breakfast": _breakfast,
    "coin": _coin,
    "list": _list,
    "folder": _folder,
}


# --------------------------------------------------------------------------------------------------------- API


def _file_problem(path: Path) -> str | None:
    try:
        return "empty" if path.stat().st_size == 0 else None
    except OSError:
        return "missing"


def load_video_dataset(
    format: str,
    root: str | os.PathLike,
    split: str = "train",
    fold: int = 1,
    *,
    strict: bool = False,
    **options: Any,
) -> datasets.Dataset:
    """One split of a benchmark, read from its files as distributed, as a `datasets.Dataset`.

    Columns: `video` (absolute path), `label` (a `ClassLabel` whose names are in the benchmark's official order; -1
    for an unlabelled video) and, for COIN, `start` / `end` (the task's segment in seconds, which the processor
    samples within when given the row).

    Args:
        format: "ucf101", "hmdb51", "kinetics", "ssv2", "diving48", "breakfast", "coin", "list" or "folder".
        root: the folder the benchmark was downloaded and unpacked into (see the README's "Benchmarks" section).
        split: "train", or the format's evaluation split (`EVALUATION_SPLITS`): "test" (UCF-101, HMDB-51, Diving-48,
            Breakfast, COIN; COIN also takes "training"/"testing"), "val" (Kinetics; also "validation"; "test"
            is unlabelled), "validation" or "test" (SSv2). For "list" and "folder" the name of a list file or
            split folder ("val" and "validation" find each other).
        fold: the official fold: 1-3 for UCF-101 and HMDB-51, 1-4 (s1-s4) for Breakfast; 1 for the others.
        strict: raise `FileNotFoundError` if a listed video is missing or empty, instead of dropping it with a
            warning (one warning per call, naming the count and every such file).
        options: per format. All but "list" and "folder" take `video_dir` and `annotation_dir` (folders relative
            to `root`, or absolute) where the files are not in the standard places. "kinetics" and "list" take
            `class_names` (a class-order file, see `read_class_names`, or a list); "folder" too. "breakfast" takes
            `split_scheme` ("standard" or "vis4mer"). "list" takes `list_file`, `prefix` (the folder paths are
            relative to; default `root`) and `delimiter` (default: space or comma, found per line); `{split}` in
            `list_file` stands for the split's name (`list_file="lists/{split}.txt"`), else every split reads it.

    Raises:
        FileNotFoundError: a missing annotation file (the message names the file the format expects and where it
            looked), no listed video on disk, or with `strict=True` any missing or empty one.
        ValueError: an unknown format, split, fold or option, a malformed line (file, line number and line), or a
            split that lists no video (the file or folder and the split).
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown dataset format {format!r}; choose one of {sorted(FORMATS)}")
    reader = FORMATS[format]
    accepted = list(inspect.signature(reader).parameters)[3:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{format} takes the options {accepted}; got unknown {unknown}")
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{format}: dataset folder {root} not found")
    listing = reader(root, split, fold, **options)
    if not listing.videos:
        raise ValueError(f"{format} {split} (fold {fold}): {listing.source} lists no video for this split")
    problems = [(path, problem) for path in listing.videos if (problem := _file_problem(path))]
    if problems and len(problems) == len(listing.videos):
        raise FileNotFoundError(
            f"{format} {split}: none of the {len(problems)} videos listed in {listing.source} is on disk (or all are "
            f"empty), e.g. {problems[0][0]}; are the videos elsewhere (option video_dir)?"
        )
    if problems:
        message = (
            f"{format} {split}: {len(problems)} of {len(listing.videos)} videos listed in {listing.source} are "
            "missing or empty: " + ", ".join(f"{path} ({problem})" for path, problem in problems)
        )
        if strict:
            raise FileNotFoundError(message)
        logger.warning("%s; they are left out", message)
    bad = {path for path, _ in problems}
    keep = [i for i, path in enumerate(listing.videos) if path not in bad]
    columns: dict[str, list] = {
        "video": [str(listing.videos[i]) for i in keep],
        "label": [listing.labels[i] for i in keep],
    }
    features = {"video": datasets.Value("string"), "label": datasets.ClassLabel(names=listing.class_names)}
    if listing.segments is not None:
        columns["start"] = [listing.segments[i][0] for i in keep]
        columns["end"] = [listing.segments[i][1] for i in keep]
        features.update(start=datasets.Value("float64"), end=datasets.Value("float64"))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def load_evaluation_split(
    format: str,
    root: str | os.PathLike,
    class_names: Sequence[str],
    /,
    split: str | None = None,
    fold: int = 1,
    **options: Any,
) -> datasets.Dataset:
    """The split a model is evaluated on: `split`, by default the format's official evaluation split
    (`EVALUATION_SPLITS`), its labelled videos only, labels renumbered by name into `class_names` (a checkpoint's
    `id2label` order, or the training split's names). `options` as for `load_video_dataset`."""
    dataset = load_video_dataset(format, root, split or EVALUATION_SPLITS[format], fold, **options)
    return drop_unlabelled(align_labels(dataset, class_names))


def align_labels(dataset: datasets.Dataset, class_names: Sequence[str]) -> datasets.Dataset:
    """`dataset` with its labels renumbered by name into `class_names` (e.g. a model's `id2label` order).

    Raises `ValueError` naming the classes of `dataset`'s videos that `class_names` lacks.
    """
    names = dataset.features["label"].names
    if names == list(class_names):
        return dataset
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({names[label] for label in dataset["label"] if label >= 0 and names[label] not in index})
    if unknown:
        raise ValueError(f"Classes {unknown} of the dataset are not among the {len(class_names)} expected classes")
    mapping = [index.get(name, -1) for name in names]
    features = dataset.features.copy()
    features["label"] = datasets.ClassLabel(names=list(class_names))
    return dataset.map(
        lambda batch: {"label": [mapping[label] if label >= 0 else -1 for label in batch["label"]]},
        batched=True,
        features=features,
    )


def drop_unlabelled(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` without its unlabelled videos (label -1, e.g. the Kinetics test set), with a warning if any."""
    labelled = [i for i, label in enumerate(dataset["label"]) if label >= 0]
    if len(labelled) < len(dataset):
        logger.warning("%d of %d videos have no label and are left out", len(dataset) - len(labelled), len(dataset))
        return dataset.select(labelled)
    return dataset


def processor_videos(dataset: datasets.Dataset) -> list[Any]:
    """What the processor reads for each row: the path, or `{"video", "start", "end"}` where rows have segments."""
    if "start" in dataset.column_names:
        return list(dataset.select_columns(["video", "start", "end"]))
    return list(dataset["video"])


def parse_dataset_options(items: Sequence[str] | None) -> dict[str, Any]:
    """`["split_scheme=vis4mer", "strict=true", "delimiter=,"]` -> options of `load_video_dataset`.

    Values are read as Python literals where they are (`5`, `['a', 'b']`), `true`/`false` as booleans, else as text.
    """
    options = {}
    for item in items or ():
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"A dataset option is KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key.strip()] = {"true": True, "false": False}.get(value.lower(), value)
    return options


__all__ = [
    "EVALUATION_SPLITS",
    "FORMATS",
    "align_labels",
    "drop_unlabelled",
    "load_evaluation_split",
    "load_video_dataset",
    "parse_dataset_options",
    "processor_videos",
    "read_class_names",
]
