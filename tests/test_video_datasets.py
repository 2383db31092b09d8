"""The benchmarks in their own formats: fixture trees written as distributed (quirks included), splits, label orders,
segments in the processor and collator, and the scripts on a UCF-101 tree."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from indexed_video import indexed_frames, read_indices

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor
from stretchysnake_hf.data import VIDEO_EXTENSIONS, folder_dataset
from stretchysnake_hf.flexible_training import VIEWS_KEY, FlexibleTrainingConfig, FlexibleVideoCollator, ScaleSampler
from stretchysnake_hf.video_datasets import (
    align_labels,
    drop_unlabelled,
    load_evaluation_split,
    load_video_dataset,
    parse_dataset_options,
    processor_videos,
    read_class_names,
)
from stretchysnake_hf.video_io import VideoDecodeError, write_video
from stretchysnake_hf.video_processing_stretchysnake import sample_frame_indices, segment_frames

ROOT = Path(__file__).resolve().parents[1]

# ucfTrainTestlist/classInd.txt, in its order (1-based in the file).
CLASS_IND = """ApplyEyeMakeup ApplyLipstick Archery BabyCrawling BalanceBeam BandMarching BaseballPitch Basketball
BasketballDunk BenchPress Biking Billiards BlowDryHair BlowingCandles BodyWeightSquats Bowling BoxingPunchingBag
BoxingSpeedBag BreastStroke BrushingTeeth CleanAndJerk CliffDiving CricketBowling CricketShot CuttingInKitchen Diving
Drumming Fencing FieldHockeyPenalty FloorGymnastics FrisbeeCatch FrontCrawl GolfSwing Haircut Hammering HammerThrow
HandstandPushups HandstandWalking HeadMassage HighJump HorseRace HorseRiding HulaHoop IceDancing JavelinThrow
JugglingBalls JumpingJack JumpRope Kayaking Knitting LongJump Lunges MilitaryParade Mixing MoppingFloor Nunchucks
ParallelBars PizzaTossing PlayingCello PlayingDaf PlayingDhol PlayingFlute PlayingGuitar PlayingPiano PlayingSitar
PlayingTabla PlayingViolin PoleVault PommelHorse PullUps Punch PushUps Rafting RockClimbingIndoor RopeClimbing Rowing
SalsaSpin ShavingBeard Shotput SkateBoarding Skiing Skijet SkyDiving SoccerJuggling SoccerPenalty StillRings
SumoWrestling Surfing Swing TableTennisShot TaiChi TennisSwing ThrowDiscus TrampolineJumping Typing UnevenBars
VolleyballSpiking WalkingWithDog WallPushups WritingOnBoard YoYo"""
UCF101_CLASSES = CLASS_IND.split()
UCF101_USED = ["ApplyEyeMakeup", "Hammering", "HammerThrow", "HandstandPushups", "JumpingJack", "JumpRope", "YoYo"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """One tiny real clip per container (8 frames of 24x32, 8 fps), copied to every path a fixture lists."""
    folder = tmp_path_factory.mktemp("clips")
    frames = np.random.default_rng(0).integers(0, 256, (8, 24, 32, 3), dtype=np.uint8)
    codecs = {".avi": "mpeg4", ".mp4": "mpeg4", ".webm": "libvpx-vp9"}
    for suffix, codec in codecs.items():
        write_video(folder / f"clip{suffix}", frames, fps=8, codec=codec)
    return {suffix: folder / f"clip{suffix}" for suffix in codecs}


def place(clips: dict[str, Path], *paths: Path, empty: bool = False) -> None:
    """A copy of the clip of each path's container at that path (a zero-byte file with `empty`)."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        if empty:
            path.touch()
        else:
            shutil.copyfile(clips[path.suffix], path)


def write_lines(path: Path, lines: list[str], ending: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + ending for line in lines).encode())


def names_of(dataset) -> dict[str, str]:
    """Video file name -> class name."""
    classes = dataset.features["label"].names
    return {Path(row["video"]).name: classes[row["label"]] for row in dataset}


def split_sizes(format: str, root: Path, folds: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """fold -> (training videos, test videos)."""
    return {
        fold: tuple(len(load_video_dataset(format, root, split, fold)) for split in ("train", "test"))
        for fold in folds
    }


# ------------------------------------------------------------------------------------------------------ UCF-101


def write_ucf101(root: Path, clips: dict[str, Path]) -> None:
    """7 classes x groups g01, g08, g15, g22 (clip c01), plus YoYo g09 c02; CRLF lists for folds 1-3."""
    videos = [(name, group, 1) for name in UCF101_USED for group in (1, 8, 15, 22)] + [("YoYo", 9, 2)]
    paths = []
    for name, group, clip in videos:
        stem = "HandStandPushups" if name == "HandstandPushups" else name  # the file names' spelling
        paths.append(f"{name}/v_{stem}_g{group:02d}_c{clip:02d}.avi")
        place(clips, root / "UCF-101" / paths[-1])
    lists = root / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", [f"{i + 1} {name}" for i, name in enumerate(UCF101_CLASSES)], "\r\n")
    for fold, first in ((1, 1), (2, 8), (3, 15)):
        test = [path for path, (_, group, _) in zip(paths, videos, strict=True) if first <= group < first + 7]
        train = [f"{path} {UCF101_CLASSES.index(path.split('/')[0]) + 1}" for path in paths if path not in test]
        write_lines(lists / f"trainlist{fold:02d}.txt", train, "\r\n")
        write_lines(lists / f"testlist{fold:02d}.txt", test, "\r\n")


@pytest.fixture(scope="module")
def ucf101_root(tmp_path_factory, clips) -> Path:
    root = tmp_path_factory.mktemp("ucf101")
    write_ucf101(root, clips)
    return root


def test_ucf101_folds_labels_and_official_order(ucf101_root):
    assert (ucf101_root / "ucfTrainTestlist" / "testlist01.txt").read_bytes().endswith(b"_c01.avi\r\n")
    assert split_sizes("ucf101", ucf101_root, (1, 2, 3)) == {1: (22, 7), 2: (21, 8), 3: (22, 7)}

    test = load_video_dataset("ucf101", ucf101_root, "test", fold=2)
    names = test.features["label"].names
    assert names == UCF101_CLASSES and len(names) == 101
    # classInd order, not sorted(): Hammering 35 / HammerThrow 36, JumpingJack 47 / JumpRope 48 (1-based)
    assert (names.index("Hammering"), names.index("HammerThrow"), names.index("JumpingJack")) == (34, 35, 46)
    assert [i for i, (a, b) in enumerate(zip(names, sorted(names), strict=True)) if a != b] == [34, 35, 46, 47]
    labels = names_of(test)
    assert labels["v_HandStandPushups_g08_c01.avi"] == "HandstandPushups"  # folder spelling, from the test list
    assert labels["v_YoYo_g09_c02.avi"] == "YoYo" and labels["v_Hammering_g08_c01.avi"] == "Hammering"
    train = load_video_dataset("ucf101", ucf101_root, "train", fold=2)
    assert names_of(train)["v_HandStandPushups_g01_c01.avi"] == "HandstandPushups"
    assert all(Path(video).is_absolute() and Path(video).is_file() for video in train["video"])
    assert set(train.column_names) == {"video", "label"}


def test_ucf101_errors_name_the_file(ucf101_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"classInd\.txt.*ucfTrainTestlist"):
        load_video_dataset("ucf101", tmp_path)
    shutil.copytree(ucf101_root / "ucfTrainTestlist", tmp_path / "ucfTrainTestlist")
    (tmp_path / "UCF-101").symlink_to(ucf101_root / "UCF-101")
    testlist = tmp_path / "ucfTrainTestlist" / "trainlist03.txt"
    testlist.write_bytes(testlist.read_bytes() + b"YoYo/v_YoYo_g25_c01.avi\r\n")
    with pytest.raises(ValueError, match=r"trainlist03\.txt, line 23: malformed line 'YoYo/v_YoYo_g25_c01\.avi'"):
        load_video_dataset("ucf101", tmp_path, fold=3)
    with pytest.raises(ValueError, match=r"folds \[1, 2, 3\]"):
        load_video_dataset("ucf101", tmp_path, fold=4)
    with pytest.raises(ValueError, match="splits"):
        load_video_dataset("ucf101", tmp_path, split="validation")
    with pytest.raises(ValueError, match="unknown"):
        load_video_dataset("ucf101", tmp_path, delimiter=",")
    with pytest.raises(ValueError, match="Unknown dataset format"):
        load_video_dataset("ucf-101", tmp_path)


# ------------------------------------------------------------------------------------------------------ HMDB-51

HMDB51_VIDEOS = {
    "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0"],
    "climb": ["Climbing_a_tree_!_climb_f_cm_np1_ba_med_2", "Rock_climbing_(Bouldering)_climb_f_cm_np1_ba_bad_0"],
    "climb_stairs": ["Stairs!_climb_stairs_f_nm_np1_ba_med_0", "Going_up_#1_climb_stairs_l_cm_np1_fr_med_1"],
    "kick": ["Kick_Boxing_kick_f_cm_np1_le_med_0", "Karate_(kata)_kick_u_nm_np1_fr_goo_3"],
    "kick_ball": ["Amazing_Soccer_#2_kick_ball_f_cm_np1_fr_bad_3", "FreeKick_@_Training_kick_ball_f_cm_np1_ba_med_1"],
    "punch": ["kick__bruce_lee_(enter_the_dragon)_punch_u_cm_np1_fr_med_1", "Boxing!_punch_f_cm_np1_ri_med_0"],
    "shake_hands": [
        "Jay_Leno_@_David_Letterman_shake_hands_f_cm_np2_le_med_0",
        "Meeting_shake_hands_u_cm_np2_fr_goo_2",
    ],
}
HMDB51_TAGS = {1: ("1", "2", "0"), 2: ("2", "1", "1"), 3: ("1", "1", "2")}  # per split, a class's three videos


@pytest.fixture(scope="module")
def hmdb51_root(tmp_path_factory, clips) -> Path:
    root = tmp_path_factory.mktemp("hmdb51")
    for name, videos in HMDB51_VIDEOS.items():
        videos = [*videos, f"{name}_extra_(3)_{name}_f_cm_np1_fr_med_0"]
        place(clips, *(root / name / f"{video}.avi" for video in videos))
        for split, tags in HMDB51_TAGS.items():
            lines = [f"{video}.avi {tag} " for video, tag in zip(videos, tags, strict=True)]  # trailing space
            ending = "\r\n" if name == "kick" else "\n"
            write_lines(root / "testTrainMulti_7030_splits" / f"{name}_test_split{split}.txt", lines, ending)
    return root


def test_hmdb51_splits_tags_and_sorted_folder_order(hmdb51_root):
    # tag 1 train, 2 test, 0 unused
    assert split_sizes("hmdb51", hmdb51_root, (1, 2, 3)) == {1: (7, 7), 2: (14, 7), 3: (14, 7)}

    train = load_video_dataset("hmdb51", hmdb51_root, "train", fold=1)
    names = train.features["label"].names
    assert names == ["brush_hair", "climb", "climb_stairs", "kick", "kick_ball", "punch", "shake_hands"]
    split_files = sorted(path.name for path in (hmdb51_root / "testTrainMulti_7030_splits").glob("*_split1.txt"))
    assert [name.removesuffix("_test_split1.txt") for name in split_files] != names  # climb_stairs_test < climb_test
    labels = names_of(train)
    assert labels["kick__bruce_lee_(enter_the_dragon)_punch_u_cm_np1_fr_med_1.avi"] == "punch"  # from the split file
    assert labels["Climbing_a_tree_!_climb_f_cm_np1_ba_med_2.avi"] == "climb"
    test = names_of(load_video_dataset("hmdb51", hmdb51_root, "test", fold=3))
    assert test["climb_stairs_extra_(3)_climb_stairs_f_cm_np1_fr_med_0.avi"] == "climb_stairs"
    assert labels["Jay_Leno_@_David_Letterman_shake_hands_f_cm_np2_le_med_0.avi"] == "shake_hands"
    labels = names_of(load_video_dataset("hmdb51", hmdb51_root, "test", fold=1))
    assert labels["FreeKick_@_Training_kick_ball_f_cm_np1_ba_med_1.avi"] == "kick_ball"


def test_hmdb51_skips_the_appledouble_files_of_a_macos_archive(hmdb51_root, tmp_path):
    root = tmp_path / "hmdb51"
    shutil.copytree(hmdb51_root, root)
    (root / "testTrainMulti_7030_splits" / "._kick_test_split1.txt").write_bytes(
        b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X"
    )
    loaded = load_video_dataset("hmdb51", root, "train", fold=1)
    expected = load_video_dataset("hmdb51", hmdb51_root, "train", fold=1)
    assert loaded.features["label"].names == expected.features["label"].names
    assert names_of(loaded) == names_of(expected)


def test_hmdb51_errors(hmdb51_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"_test_split1\.txt.*testTrainMulti_7030_splits"):
        load_video_dataset("hmdb51", tmp_path)
    write_lines(tmp_path / "testTrainMulti_7030_splits" / "kick_test_split2.txt", ["a.avi 1", "b.avi 3"])
    with pytest.raises(ValueError, match=r"kick_test_split2\.txt, line 2: malformed line 'b\.avi 3'"):
        load_video_dataset("hmdb51", tmp_path, fold=2)


# ----------------------------------------------------------------------------------------------------- Kinetics

K400_TRAIN = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,0wR5jVB-WPk,417,427,train,0
"air drumming",--nQbRBEz2s,104,114,train,0
"skiing (not slalom or crosscountry)",E2kUsRIj4tM,317,327,train,0
"massaging person's head",a_b-cdEFgh1,5,15,train,0
abseiling,missingVid1,0,10,train,0
"air drumming",zeroBytes01,20,30,train,1
"""
K400_VAL = """label,youtube_id,time_start,time_end,split,is_cc
"skiing (not slalom or crosscountry)",-x_y_z01234,0,10,val,0
abseiling,Q1w2E3r4T5y,30,40,val,0
"""
K400_TEST = """youtube_id,time_start,time_end,split
u7Y6t5R4e3W,12,22,test
"""
K400_PRESENT = [
    "0wR5jVB-WPk",
    "--nQbRBEz2s",
    "E2kUsRIj4tM",
    "a_b-cdEFgh1",
    "-x_y_z01234",
    "Q1w2E3r4T5y",
    "u7Y6t5R4e3W",
]


def write_kinetics(root: Path, clips: dict[str, Path], layout: str) -> None:
    """CSVs as the CVDF mirror has them, videos in one of the layouts in use; one missing and one zero-byte video."""
    for split, text in (("train", K400_TRAIN), ("val", K400_VAL), ("test", K400_TEST)):
        write_lines(root / "annotations" / f"{split}.csv", text.splitlines())
        for row in csv.DictReader(text.splitlines()):
            if row["youtube_id"] not in K400_PRESENT + ["zeroBytes01"]:
                continue
            name = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}.mp4"
            label = row.get("label", "")
            folder = {"flat": "", "spaces": label, "underscores": label.replace(" ", "_"), "no_suffix": label}[layout]
            name = f"{row['youtube_id']}.mp4" if layout == "no_suffix" else name
            place(clips, root / split / folder / name, empty=row["youtube_id"] == "zeroBytes01")
    if layout == "flat":  # a corrupt (empty) train file with a replacement
        place(clips, root / "train" / "E2kUsRIj4tM_000317_000327.mp4", empty=True)
        place(clips, root / "replacement" / "replacement_for_corrupted_k400" / "E2kUsRIj4tM_000317_000327.mp4")


@pytest.mark.parametrize("layout", ["flat", "spaces", "underscores", "no_suffix"])
def test_kinetics_layouts_missing_and_empty_videos(tmp_path, clips, layout, caplog):
    write_kinetics(tmp_path, clips, layout)
    with caplog.at_level(logging.WARNING, logger="stretchysnake_hf.video_datasets"):
        train = load_video_dataset("kinetics", tmp_path, "train")
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "2 of 6 videos listed in" in warnings[0]
    assert "missingVid1_000000_000010.mp4 (missing)" in warnings[0] and "zeroBytes01" in warnings[0]
    assert "(empty)" in warnings[0]
    names = ["abseiling", "air drumming", "massaging person's head", "skiing (not slalom or crosscountry)"]
    assert train.features["label"].names == names  # sorted training labels (mmaction2's order)
    labels = {Path(row["video"]).name.split(".")[0][:11]: names[row["label"]] for row in train}
    assert labels == {
        "0wR5jVB-WPk": "abseiling",
        "--nQbRBEz2s": "air drumming",
        "E2kUsRIj4tM": "skiing (not slalom or crosscountry)",
        "a_b-cdEFgh1": "massaging person's head",
    }
    if layout == "flat":
        assert "replacement_for_corrupted_k400" in next(v for v in train["video"] if "E2kUsRIj4tM" in v)
    val = load_video_dataset("kinetics", tmp_path, "validation")
    assert val.features["label"].names == names and len(val) == 2
    assert names_of(val)[Path(val[0]["video"]).name] == "skiing (not slalom or crosscountry)"
    test = load_video_dataset("kinetics", tmp_path, "test")
    assert test["label"] == [-1] and len(drop_unlabelled(test)) == 0
    with pytest.raises(FileNotFoundError, match=r"2 of 6 videos.*missingVid1"):
        load_video_dataset("kinetics", tmp_path, "train", strict=True)


def test_kinetics_class_order_file_k600_csv_and_errors(tmp_path, clips):
    write_kinetics(tmp_path, clips, "flat")
    order = ["skiing (not slalom or crosscountry)", "massaging person's head", "air drumming", "abseiling"]
    write_lines(tmp_path / "classes.txt", order)
    train = load_video_dataset("kinetics", tmp_path, class_names=str(tmp_path / "classes.txt"))
    assert train.features["label"].names == order
    assert names_of(train)["0wR5jVB-WPk_000417_000427.mp4"] == "abseiling"

    k600 = tmp_path / "k600"  # no quoting, mixed case, no is_cc column
    rows = ["passing American football (in game),7F5BwlMrreM,4315,4325,train", "acting in play,AbCdEfGhIjK,0,10,train"]
    rows.append("passing american football (not in game),ZyXwVuTsRqP,7,17,train")
    write_lines(k600 / "annotations" / "train.csv", ["label,youtube_id,time_start,time_end,split", *rows])
    place(clips, *(k600 / "train" / f"{row.split(',')[1]}_{int(row.split(',')[2]):06d}_{int(row.split(',')[3]):06d}.mp4" for row in rows))  # fmt: skip
    names = load_video_dataset("kinetics", k600).features["label"].names
    assert names == [
        "acting in play",
        "passing American football (in game)",
        "passing american football (not in game)",
    ]

    with pytest.raises(FileNotFoundError, match=r"'val\.csv'.*annotations/val\.csv"):
        load_video_dataset("kinetics", k600, "val")
    write_lines(k600 / "annotations" / "val.csv", ["label,youtube_id,time_start,time_end,split", "abseiling,x,1"])
    with pytest.raises(ValueError, match=r"val\.csv, line 2: malformed line 'abseiling,x,1'"):
        load_video_dataset("kinetics", k600, "val")
    with pytest.raises(ValueError, match="no folds"):
        load_video_dataset("kinetics", k600, fold=2)


def test_evaluation_split_takes_the_class_names_option(tmp_path, clips):
    # train_flex.py and eval_scales.py pass --dataset_options through; class_names=FILE is one of them
    write_kinetics(tmp_path, clips, "flat")
    order = ["skiing (not slalom or crosscountry)", "massaging person's head", "air drumming", "abseiling"]
    write_lines(tmp_path / "classes.txt", order)
    options = {"class_names": str(tmp_path / "classes.txt")}
    names = load_video_dataset("kinetics", tmp_path, "train", **options).features["label"].names
    validation = load_evaluation_split("kinetics", tmp_path, names, None, 1, **options)
    assert validation.features["label"].names == order
    assert names_of(validation) == {
        "-x_y_z01234_000000_000010.mp4": "skiing (not slalom or crosscountry)",
        "Q1w2E3r4T5y_000030_000040.mp4": "abseiling",
    }


def test_class_order_json_indices_must_be_0_to_n_minus_1(tmp_path):
    orders = {
        "strings.json": {"air drumming": "1", "riding a bike": "0", "abseiling": "2"},
        "gap.json": {"riding a bike": 0, "abseiling": 2, "air drumming": 3},
        "duplicate.json": {"riding a bike": 0, "abseiling": 1, "air drumming": 1},
    }
    for name, order in orders.items():
        (tmp_path / name).write_text(json.dumps(order))
    assert read_class_names(tmp_path / "strings.json") == ["riding a bike", "air drumming", "abseiling"]
    with pytest.raises(ValueError, match=r"gap\.json: the class indices must be 0 to 2.*no class has the index \[1\]"):
        read_class_names(tmp_path / "gap.json")
    with pytest.raises(ValueError, match=r"duplicate\.json.*\['abseiling', 'air drumming'\] share the index 1"):
        read_class_names(tmp_path / "duplicate.json")


# --------------------------------------------------------------------------------------------------------- SSv2

SSV2_LABELS = {  # in the file's order; the indices (strings) give the label order
    "Holding something next to something": "1",
    "Approaching something with your camera": "0",
    "Something falling like a rock": "3",
    "Pushing something from left to right": "2",
    "Throwing something": "4",
}
SSV2_TRAIN = [
    {
        "id": "78687",
        "label": "holding potato next to vicks vaporub bottle",
        "template": "Holding [something] next to [something]",
        "placeholders": ["potato", "vicks vaporub bottle"],
    },
    {
        "id": "42326",
        "label": "a pen falling like a rock",
        "template": "[Something] falling like a rock",
        "placeholders": ["a pen"],
    },
    {
        "id": "3",
        "label": "pushing cup from left to right",
        "template": "Pushing [something] from left to right",
        "placeholders": ["cup"],
    },
]
SSV2_VALIDATION = [
    {
        "id": "74225",
        "label": "approaching a door with your camera",
        "template": "Approaching [something] with your camera",
        "placeholders": ["a door"],
    }
]


@pytest.mark.parametrize("naming", ["labels/", "something-something-v2-"])
def test_ssv2_both_namings_bracketed_templates_and_test_answers(tmp_path, clips, naming):
    files = {"labels": SSV2_LABELS, "train": SSV2_TRAIN, "validation": SSV2_VALIDATION, "test": [{"id": "1420"}]}
    for name, content in files.items():
        path = tmp_path / f"{naming}{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(content))
    videos = tmp_path / "20bn-something-something-v2"
    place(clips, *(videos / f"{video_id}.webm" for video_id in ("78687", "42326", "3", "74225", "1420")))
    train = load_video_dataset("ssv2", tmp_path, "train")
    names = train.features["label"].names
    assert names == sorted(SSV2_LABELS, key=lambda name: int(SSV2_LABELS[name]))
    assert names_of(train) == {
        "78687.webm": "Holding something next to something",
        "42326.webm": "Something falling like a rock",
        "3.webm": "Pushing something from left to right",
    }
    assert names_of(load_video_dataset("ssv2", tmp_path, "validation")) == {
        "74225.webm": "Approaching something with your camera"
    }
    assert load_video_dataset("ssv2", tmp_path, "test")["label"] == [-1]  # no answers file
    write_lines(tmp_path / (naming if naming.endswith("/") else "") / "test-answers.csv", ["1420;Throwing something"])
    assert names_of(load_video_dataset("ssv2", tmp_path, "test")) == {"1420.webm": "Throwing something"}


# ----------------------------------------------------------------------------------------------------- Diving-48

DIVING48_VOCAB = [
    list(parts)
    for parts in itertools.product(
        ["Back", "Forward", "Inward", "Reverse"],
        ["15som", "25som", "35som", "45som"],
        ["05Twis", "NoTwis", "15Twis"],
        ["FREE"],
    )
][:48]


def test_diving48_keeps_48_classes_with_an_empty_one(tmp_path, clips):
    (tmp_path / "Diving48_vocab.json").write_text(json.dumps(DIVING48_VOCAB))
    train = [
        {"vid_name": f"-mmq0PT-u8k_{i:05d}", "label": i, "start_frame": 0, "end_frame": 48}
        for i in range(48)
        if i != 30
    ]
    test = [{"vid_name": "_8Vy3dlHg2w_00000", "label": 47, "start_frame": 0, "end_frame": 62}]
    (tmp_path / "Diving48_V2_train.json").write_text(json.dumps(train))
    (tmp_path / "Diving48_V2_test.json").write_text(json.dumps(test))
    place(clips, *(tmp_path / "rgb" / f"{entry['vid_name']}.mp4" for entry in train + test))
    dataset = load_video_dataset("diving48", tmp_path, "train")
    names = dataset.features["label"].names
    assert len(names) == 48 and names[0] == "Back+15som+05Twis+FREE" and 30 not in dataset["label"]
    assert len(dataset) == 47 and names_of(dataset)["-mmq0PT-u8k_00031.mp4"] == "+".join(DIVING48_VOCAB[31])
    assert names_of(load_video_dataset("diving48", tmp_path, "test")) == {"_8Vy3dlHg2w_00000.mp4": names[47]}
    assert "start" not in dataset.column_names  # the clips are already cut


# ---------------------------------------------------------------------------------------------------- Breakfast

BREAKFAST = {  # person: (camera, activity) pairs recorded
    "P03": [("cam01", "cereals"), ("stereo", "cereals"), ("webcam01", "friedegg")],
    "P15": [("cam02", "tea")],
    "P16": [("cam01", "salat")],
    "P29": [("webcam02", "scrambledegg")],
    "P42": [("cam01", "juice")],
    "P47": [("stereo", "pancake"), ("cam01", "milk")],
    "P54": [("cam01", "sandwich"), ("cam02", "coffee")],
}
VIS4MER_CLASS_IDS = ("cereals", "coffee", "tea", "pancake", "friedegg", "scrambledegg", "sandwich", "juice", "milk", "salat")  # fmt: skip


@pytest.fixture(scope="module")
def breakfast_root(tmp_path_factory, clips) -> Path:
    root = tmp_path_factory.mktemp("breakfast")
    videos = root / "BreakfastII_15fps_qvga_sync"
    rows = {"train": [], "test": []}
    for person, recordings in BREAKFAST.items():
        for camera, activity in recordings:
            stem = f"{person}_{activity}"
            names = [f"{stem}_ch0", f"{stem}_ch1"] if camera == "stereo" else [stem]
            place(clips, *(videos / person / camera / f"{name}.avi" for name in names))
            (videos / person / camera / f"{names[0]}.avi.labels").write_text("1-30 SIL\n")
            split = "test" if int(person[1:]) >= 47 else "train"
            class_id = VIS4MER_CLASS_IDS.index(activity)
            rows[split].append(f"{person}-{camera}-{names[0]},56,{activity},{class_id}")
    for split, lines in rows.items():
        write_lines(root / f"{split}.csv", ["file_name,duration,action,class_id", *lines])
    return root


def test_breakfast_standard_splits_and_stereo_channel_zero(breakfast_root):
    assert split_sizes("breakfast", breakfast_root, (1, 2, 3, 4)) == {1: (7, 4), 2: (10, 1), 3: (10, 1), 4: (6, 5)}
    test = load_video_dataset("breakfast", breakfast_root, "test", fold=1)
    names = test.features["label"].names
    assert names == sorted(names) and len(names) == 10
    assert names_of(test) == {
        "P03_cereals.avi": "cereals",
        "P03_cereals_ch0.avi": "cereals",
        "P03_friedegg.avi": "friedegg",
        "P15_tea.avi": "tea",
    }


def test_breakfast_vis4mer_split_and_class_ids(breakfast_root):
    train = load_video_dataset("breakfast", breakfast_root, "train", split_scheme="vis4mer")
    test = load_video_dataset("breakfast", breakfast_root, "test", split_scheme="vis4mer")
    assert (len(train), len(test)) == (7, 4)
    names = test.features["label"].names
    assert tuple(names) == VIS4MER_CLASS_IDS
    assert names_of(test) == {
        "P47_pancake_ch0.avi": "pancake",
        "P47_milk.avi": "milk",
        "P54_sandwich.avi": "sandwich",
        "P54_coffee.avi": "coffee",
    }
    assert test[0]["label"] == 3  # pancake: id 3 in ViS4mer's order, 5 alphabetically
    with pytest.raises(ValueError, match="split_scheme"):
        load_video_dataset("breakfast", breakfast_root, split_scheme="s1")


# --------------------------------------------------------------------------------------------------------- COIN

COIN = {
    "database": {
        "-0og5C3wyV8": {
            "duration": 131.03,
            "class": "ReplaceCDDriveWithSSD",
            "start": 56.64,
            "end": 85.71,
            "recipe_type": 131,
            "subset": "training",
            "video_url": "https://www.youtube.com/embed/-0og5C3wyV8",
            "annotation": [{"id": "212", "segment": [60.0, 69.0], "label": "take out the laptop CD drive"}],
        },
        "abc_DEF-123": {
            "duration": "40.0",
            "class": "MakeSandwich",
            "start": "3.5",
            "end": "20",
            "recipe_type": "12",
            "subset": "testing",
            "video_url": "",
            "annotation": [],
        },
        "notOnDisk00": {
            "duration": 10.0,
            "class": "MakeSandwich",
            "start": 1.0,
            "end": 5.0,
            "recipe_type": 12,
            "subset": "training",
            "video_url": "",
            "annotation": [],
        },
        "zzzzzzzzzzz": {
            "duration": 10.0,
            "class": "PlantTree",
            "start": 0.0,
            "end": 9.0,
            "recipe_type": 179,
            "subset": "training",
            "video_url": "",
            "annotation": [],
        },
    }
}


def test_coin_task_classes_subsets_and_segments(tmp_path, clips, caplog):
    (tmp_path / "COIN.json").write_text(json.dumps(COIN))
    place(clips, tmp_path / "videos" / "131" / "-0og5C3wyV8.mp4", tmp_path / "videos" / "12" / "abc_DEF-123.mp4")
    place(clips, tmp_path / "videos" / "179" / "zzzzzzzzzzz.mp4")
    with caplog.at_level(logging.WARNING, logger="stretchysnake_hf.video_datasets"):
        train = load_video_dataset("coin", tmp_path, "train")
    assert "1 of 3 videos" in caplog.text and "notOnDisk00" in caplog.text
    names = train.features["label"].names
    assert len(names) == 180 and names[131] == "ReplaceCDDriveWithSSD" and names[12] == "MakeSandwich"
    assert names[0] == "0"  # a task no video names keeps its index
    assert [(row["label"], row["start"], row["end"]) for row in train] == [(131, 56.64, 85.71), (179, 0.0, 9.0)]
    test = load_video_dataset("coin", tmp_path, "testing")
    assert [(row["label"], row["start"], row["end"]) for row in test] == [(12, 3.5, 20.0)]  # from strings
    with pytest.raises(ValueError, match="splits"):
        load_video_dataset("coin", tmp_path, "validation")


def test_coin_refuses_a_subset_other_than_training_and_testing(tmp_path, clips):
    database = {
        "aaa": {"class": "A", "start": 1, "end": 2, "recipe_type": 0, "subset": "training"},
        "bbb": {"class": "A", "start": 1, "end": 2, "recipe_type": 0, "subset": "validation"},  # some docs' word
    }
    (tmp_path / "COIN.json").write_text(json.dumps({"database": database}))
    place(clips, tmp_path / "videos" / "0" / "aaa.mp4", tmp_path / "videos" / "0" / "bbb.mp4")
    with pytest.raises(ValueError, match=r"COIN\.json, video bbb: subset 'validation' is neither"):
        load_video_dataset("coin", tmp_path, "train")


# ---------------------------------------------------------------------------------------------- list and folder


def test_list_files_of_mmaction2_videomae_and_videomamba(tmp_path, clips):
    data = tmp_path / "data"
    place(clips, data / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi", data / "clips" / "b.mp4")
    place(clips, data / "air drumming" / "e.mp4", data / "clips" / "d.mp4", tmp_path / "elsewhere" / "c.mp4")
    lines = [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0",  # mmaction2: relative, space
        "clips/b.mp4,3",  # VideoMamba's Kinetics/Breakfast/COIN lists: comma
        f"{tmp_path / 'elsewhere' / 'c.mp4'} 1",  # VideoMAE: absolute
        "air drumming/e.mp4 2",  # a path with a space
        "clips/d.mp4",  # unlabelled
    ]
    write_lines(data / "train.csv", lines, "\r\n")
    dataset = load_video_dataset("list", data)
    assert dataset.features["label"].names == ["0", "1", "2", "3"] and dataset["label"] == [0, 3, 1, 2, -1]
    assert dataset["video"][2] == str(tmp_path / "elsewhere" / "c.mp4")
    assert dataset["video"][3] == str(data / "air drumming" / "e.mp4")

    write_lines(tmp_path / "lists" / "val.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"])
    val = load_video_dataset(
        "list", tmp_path, "validation", list_file="lists/val.txt", prefix="data", class_names=["a", "b"]
    )
    assert val.features["label"].names == ["a", "b"] and val["label"] == [1]
    write_lines(data / "test.csv", ["clips/b.mp4 0", "clips/d.mp4 x"])
    with pytest.raises(ValueError, match=r"test\.csv, line 2: malformed line 'clips/d\.mp4 x'"):
        load_video_dataset("list", data, "test")
    write_lines(data / "frames.txt", ["clips/b 120 3"])
    with pytest.raises(ValueError, match="frame-folder lists are not supported"):
        load_video_dataset("list", data, list_file="frames.txt")
    with pytest.raises(ValueError, match=r"label 3 is outside the 2 class names"):
        load_video_dataset("list", data, class_names=["a", "b"])


def test_folder_trees_and_label_alignment(tmp_path, clips, caplog):
    place(clips, tmp_path / "train" / "b" / "1.mp4", tmp_path / "train" / "a" / "2.mp4", tmp_path / "validation" / "b" / "3.avi")  # fmt: skip
    place(clips, tmp_path / "train" / "a" / "broken.mp4", empty=True)
    with caplog.at_level(logging.WARNING, logger="stretchysnake_hf.video_datasets"):
        train = load_video_dataset("folder", tmp_path)
    assert "broken.mp4 (empty)" in caplog.text
    assert train.features["label"].names == ["a", "b"] and names_of(train) == {"2.mp4": "a", "1.mp4": "b"}
    validation = load_video_dataset("folder", tmp_path, "val")
    assert validation.features["label"].names == ["b"]
    aligned = align_labels(validation, ["x", "a", "b"])
    assert aligned.features["label"].names == ["x", "a", "b"] and aligned["label"] == [2]
    with pytest.raises(ValueError, match=r"Classes \['b'\]"):
        align_labels(validation, ["a"])
    with pytest.raises(FileNotFoundError, match="test"):
        load_video_dataset("folder", tmp_path, "test")
    assert parse_dataset_options(["split_scheme=vis4mer", "strict=true", "delimiter=,", "class_names=['a', 'b']"]) == {
        "split_scheme": "vis4mer",
        "strict": True,
        "delimiter": ",",
        "class_names": ["a", "b"],
    }


def test_list_file_with_a_split_placeholder_reads_one_file_per_split(tmp_path, clips):
    place(clips, tmp_path / "a.mp4", tmp_path / "b.mp4")
    write_lines(tmp_path / "lists" / "train.txt", ["a.mp4 0"])
    write_lines(tmp_path / "lists" / "val.txt", ["b.mp4 1"])
    train = load_video_dataset("list", tmp_path, "train", list_file="lists/{split}.txt")
    validation = load_video_dataset("list", tmp_path, "validation", list_file="lists/{split}.txt")  # finds val.txt
    assert names_of(train) == {"a.mp4": "0"} and names_of(validation) == {"b.mp4": "1"}
    with pytest.raises(FileNotFoundError, match=r"lists/test\.txt"):
        load_video_dataset("list", tmp_path, "test", list_file="lists/{split}.txt")


def test_empty_splits_raise_naming_the_file_and_the_split(tmp_path, clips):
    write_lines(tmp_path / "val.txt", [""])
    with pytest.raises(ValueError, match=r"list val \(fold 1\): .*val\.txt lists no video"):
        load_video_dataset("list", tmp_path, "val")
    write_kinetics(tmp_path, clips, "flat")
    write_lines(tmp_path / "annotations" / "val.csv", ["label,youtube_id,time_start,time_end,split,is_cc"])
    with pytest.raises(ValueError, match=r"kinetics val .*annotations/val\.csv lists no video"):
        load_video_dataset("kinetics", tmp_path, "val")


def test_folder_dataset_refuses_class_folders_outside_class_names(tmp_path, clips, caplog):
    place(clips, tmp_path / "jump" / "a.mp4", tmp_path / "run" / "b.mp4", tmp_path / "Swimming" / "c.mp4")
    with pytest.raises(ValueError, match=rf"{tmp_path}: the class folders \['Swimming'\] are not among"):
        folder_dataset(tmp_path, ["jump", "run"])
    (tmp_path / "jump").rename(tmp_path / "jumping")
    with pytest.raises(ValueError, match=r"\['jumping'\] are not among .* without a folder: \['jump'\]"):
        folder_dataset(tmp_path, ["jump", "run", "Swimming"])
    with caplog.at_level(logging.WARNING, logger="stretchysnake_hf.data"):
        dataset = folder_dataset(tmp_path, ["jump", "run", "Swimming", "jumping"])  # label = position
    assert "no folder for the classes ['jump']" in caplog.text
    assert names_of(dataset) == {"a.mp4": "jumping", "b.mp4": "run", "c.mp4": "Swimming"}
    assert sorted(dataset["label"]) == [1, 2, 3]


def test_folder_dataset_leaves_out_hidden_and_system_entries(tmp_path, clips):
    place(clips, tmp_path / "jump" / "a.mp4", tmp_path / "run" / "b.mp4")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    place(clips, tmp_path / "__MACOSX" / "jump" / "._a.mp4", tmp_path / "jump" / "._a.mp4")  # AppleDouble files
    place(clips, tmp_path / "run" / ".hidden" / "c.mp4", tmp_path / "run" / "__MACOSX" / "d.mp4")
    dataset = folder_dataset(tmp_path)
    assert dataset.features["label"].names == ["jump", "run"] and names_of(dataset) == {
        "a.mp4": "jump",
        "b.mp4": "run",
    }


def test_folder_dataset_reads_every_container_and_names_what_it_skips(tmp_path, caplog):
    assert {".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".m2ts", ".ogv"} <= VIDEO_EXTENSIONS
    for path in ["jump/a.m4v", "jump/b.MPG", "jump/notes.txt", "run/c.flv", "run/d.wmv", "run/e.3gp", "run/f.jpg"]:
        write_lines(tmp_path / path, ["x"])
    with caplog.at_level(logging.WARNING, logger="stretchysnake_hf.data"):
        dataset = folder_dataset(tmp_path)
    assert len(dataset) == 5 and names_of(dataset)["b.MPG"] == "jump"
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "2 files under the class folders are not videos" in warning and "notes.txt" in warning
    write_lines(tmp_path / "swim" / "readme.txt", ["x"])
    with pytest.raises(ValueError, match=r"swim: class folder 'swim' holds no video"):
        folder_dataset(tmp_path)


def test_folder_train_split_falls_back_to_root_only_without_split_folders(tmp_path, clips):
    place(clips, tmp_path / "flat" / "jump" / "a.mp4", tmp_path / "flat" / "run" / "b.mp4")
    assert load_video_dataset("folder", tmp_path / "flat").features["label"].names == ["jump", "run"]
    place(clips, *(tmp_path / "tree" / split / "jump" / f"{split}.mp4" for split in ("training", "Test")))
    with pytest.raises(ValueError, match=r"no split folder for 'train'.*the split folders \['Test', 'training'\]"):
        load_video_dataset("folder", tmp_path / "tree")
    assert len(load_video_dataset("folder", tmp_path / "tree", "training")) == 1


# ------------------------------------------------------------------------------------ segments in the processor


@pytest.fixture(scope="module")
def indexed_clip(tmp_path_factory) -> Path:
    """40 frames at 10 fps whose pixels carry their index."""
    path = tmp_path_factory.mktemp("indexed") / "indexed.mp4"
    write_video(path, indexed_frames(40), fps=10, codec="mpeg4", bit_rate=2_000_000)
    return path


def frame_indices(pixel_values: torch.Tensor) -> list[int]:
    """The indices drawn into one normalized clip (num_frames, 3, size, size)."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)  # fmt: skip
    return read_indices(((pixel_values * std + mean) * 255).permute(0, 2, 3, 1))


def test_segment_frames_are_the_frames_shown_during_the_segment():
    assert segment_frames(90, 30.0, 1.0, 2.0) == range(30, 60)  # whole frame times: no frame before or after
    assert segment_frames(40, 10.0, 1.04, 1.06) == range(10, 11)  # inside one frame: that frame
    assert segment_frames(40, 10.0, None, 0.25) == range(0, 3) and segment_frames(40, 10.0, 3.5, None) == range(35, 40)
    assert segment_frames(40, 10.0, 3.5, 9.0) == range(35, 40)  # cut to the video
    assert not segment_frames(40, 10.0, 4.5, 9.0)  # wholly after it


def test_processor_samples_only_inside_the_segment(indexed_clip):
    processor = StretchySnakeVideoProcessor(size=48)
    segment = {"video": str(indexed_clip), "start": 1.0, "end": 2.5, "label": 3}  # frames 10..24
    out = processor(segment, num_frames=5)
    assert frame_indices(out["pixel_values"][0]) == [10 + i for i in sample_frame_indices(15, 5)]
    dense = processor([segment, str(indexed_clip)], num_frames=4, sampling="dense", frame_stride=2)
    assert frame_indices(dense["pixel_values"][0]) == [10 + i for i in sample_frame_indices(15, 4, "dense", 2)]
    assert frame_indices(dense["pixel_values"][1]) == sample_frame_indices(40, 4, "dense", 2)
    views = processor(segment, num_frames=3, num_clips=2, num_crops=3)["pixel_values"]
    assert [frame_indices(view) for view in views[::3]] == [
        [10 + i for i in sample_frame_indices(15, 3, clip_index=k, num_clips=2)] for k in (0, 1)
    ]
    for seed in range(8):
        trained = processor(segment, num_frames=6, training=True, seed=seed, do_random_resized_crop=False)
        assert all(10 <= index <= 24 for index in frame_indices(trained["pixel_values"][0]))
    every = processor({"video": str(indexed_clip), "start": 3.55, "end": None}, do_sample_frames=False)
    assert frame_indices(every["pixel_values"][0]) == [35, 36, 37, 38, 39]
    whole = processor({"video": str(indexed_clip), "start": None, "end": None}, num_frames=4)
    assert frame_indices(whole["pixel_values"][0]) == sample_frame_indices(40, 4)


def test_processor_segment_errors(indexed_clip):
    processor = StretchySnakeVideoProcessor(size=48)
    outside = {"video": str(indexed_clip), "start": 5.0, "end": 9.0}
    with pytest.raises(VideoDecodeError, match=r"indexed\.mp4: the segment 5\.0 to 9\.0 s lies outside the video"):
        processor(outside)
    skipped = processor([outside, str(indexed_clip)], num_frames=2, on_error="skip")
    assert skipped["skipped_indices"] == [0] and len(skipped["pixel_values"]) == 1
    with pytest.raises(ValueError, match="invalid segment"):
        processor({"video": str(indexed_clip), "start": 2.0, "end": 1.0})
    with pytest.raises(ValueError, match="needs a video file"):
        processor({"video": indexed_frames(4), "start": 0.0, "end": 1.0})
    with pytest.raises(ValueError, match="'video' key"):
        processor({"path": str(indexed_clip)})


def test_collator_passes_segments_and_views(indexed_clip):
    sampler = ScaleSampler(FlexibleTrainingConfig("fixed", frames=(4,), resolutions=(48,), base_patch_size=16))
    collator = FlexibleVideoCollator(
        StretchySnakeVideoProcessor(), sampler, eval_scale=(3, 48, 16), eval_num_clips=2, eval_num_crops=3
    )
    examples = [{"video": str(indexed_clip), "label": 1, "start": 1.0, "end": 2.5}, {"video": str(indexed_clip), "label": 0, "start": None, "end": None}]  # fmt: skip
    batch = collator(examples)
    assert batch["pixel_values"].shape == (12, 3, 3, 48, 48) and batch["labels"].tolist() == [1, 0]
    assert batch[VIEWS_KEY] == 6
    assert frame_indices(batch["pixel_values"][0]) == [10 + i for i in sample_frame_indices(15, 3, clip_index=0, num_clips=2)]  # fmt: skip
    assert frame_indices(batch["pixel_values"][6]) == sample_frame_indices(40, 3, clip_index=0, num_clips=2)


def test_coin_rows_go_to_the_processor_with_their_segment(tmp_path, indexed_clip):
    database = {"vid": {"class": "Task", "start": 1.0, "end": 2.5, "recipe_type": 7, "subset": "testing"}}
    (tmp_path / "COIN.json").write_text(json.dumps({"database": database}))
    (tmp_path / "videos" / "7").mkdir(parents=True)
    shutil.copyfile(indexed_clip, tmp_path / "videos" / "7" / "vid.mp4")
    dataset = load_video_dataset("coin", tmp_path, "test")
    (video,) = processor_videos(dataset)
    assert video == {"video": str(tmp_path / "videos" / "7" / "vid.mp4"), "start": 1.0, "end": 2.5}
    out = StretchySnakeVideoProcessor(size=48)(dataset[0], num_frames=5)
    assert frame_indices(out["pixel_values"][0]) == [10 + i for i in sample_frame_indices(15, 5)]


# ---------------------------------------------------------------------------------------------------- the scripts


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_flex_on_ucf101_fold_2_with_multi_view_evaluation(ucf101_root, tmp_path):
    output = tmp_path / "out"
    metrics = load_script("train_flex").main(
        [
            "--preset", "tiny", "--config_overrides", "hidden_size=32,num_hidden_layers=2,image_size=32,patch_size=8,num_frames=4,scan_backend=reference",
            "--dataset_format", "ucf101", "--data_root", str(ucf101_root), "--fold", "2",
            "--variant", "static_tokens", "--frames", "2", "4", "--resolutions", "16", "32", "--token_grid", "4",
            "--eval_num_frames", "4", "--eval_image_size", "32", "--eval_patch_size", "8",
            "--eval_num_clips", "2", "--eval_num_crops", "3", "--per_device_eval_batch_size", "8",
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
            "--remove_unused_columns", "false", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
            "--output_dir", str(output),
        ]
    )  # fmt: skip
    model = StretchySnakeForVideoClassification.from_pretrained(output).eval()
    assert [model.config.id2label[i] for i in range(101)] == UCF101_CLASSES  # classInd order
    card = (output / "README.md").read_text()
    assert "ucf101 fold 2" in card and "2 clips x 3 crops per video" in card

    # The evaluation ran on fold 2's 8 test videos, each scored by its softmax averaged over 2 x 3 views.
    test = load_video_dataset("ucf101", ucf101_root, "test", fold=2)
    assert len(test) == 8
    processor = StretchySnakeVideoProcessor.from_pretrained(output)
    assert (processor.num_clips, processor.num_crops) == (1, 1)  # the saved processor keeps one view
    inputs = processor(test["video"], num_frames=4, size=32, patch_size=8, num_clips=2, num_crops=3)
    with torch.no_grad():
        probs = model(**inputs).logits.softmax(-1).view(8, 6, -1).mean(1)
    labels = torch.tensor(test["label"])
    assert metrics["eval_loss"] == pytest.approx(-probs[torch.arange(8), labels].log().mean().item(), rel=1e-4)
    assert metrics["eval_top1_accuracy"] == pytest.approx((probs.argmax(-1) == labels).float().mean().item())


def test_eval_scales_on_a_benchmark_with_views_and_labels_matched_by_name(ucf101_root, tmp_path):
    names = sorted(UCF101_CLASSES)  # a checkpoint whose labels are in another order (sorted folder names)
    config = tiny_config(scan_backend="reference", num_labels=101, id2label=dict(enumerate(names)))
    model = StretchySnakeForVideoClassification(config).eval()
    with torch.no_grad():
        model.classifier.bias[names.index("Hammering")] = 100.0  # it answers Hammering, whatever the video
    model.save_pretrained(tmp_path / "model")
    arguments = ["--model", str(tmp_path / "model"), "--dataset_format", "ucf101", "--data_root", str(ucf101_root)]
    arguments += ["--fold", "2", "--eval_num_clips", "2", "--eval_num_crops", "3", "--frames", "2", "4"]
    arguments += ["--resolutions", "16", "--batch_size", "4", "--output-dir", str(tmp_path / "scales")]
    results = load_script("eval_scales").main(arguments)
    assert [(r.num_videos, r.top1) for r in results] == [(8, 1 / 8), (8, 1 / 8)]  # one Hammering video of 8
    assert "ucf101 test (fold 2)" in (tmp_path / "scales" / "scales.md").read_text()
