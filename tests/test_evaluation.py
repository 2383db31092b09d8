"""Multi-scale evaluation: accuracy against hand-computed logits, reports, budget and out-of-memory cells, scripts."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor
from stretchysnake_hf.evaluation import (
    INVALID,
    OK,
    OUT_OF_MEMORY,
    OVER_BUDGET,
    evaluate_scales,
    spatial_settings,
    top_k_accuracy,
)
from stretchysnake_hf.evaluation_report import save_results
from stretchysnake_hf.flexible_training import FlexibleTrainingConfig
from stretchysnake_hf.flops import count_flops
from stretchysnake_hf.model_card import render_model_card
from stretchysnake_hf.video_io import write_video

ROOT = Path(__file__).resolve().parents[1]
FLEX = FlexibleTrainingConfig("static_tokens", frames=(2, 4), resolutions=(16, 32), token_grid=2)
CLASSES = ["left", "middle", "right"]


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model() -> StretchySnakeForVideoClassification:
    torch.manual_seed(0)
    labels = {"id2label": dict(enumerate(CLASSES)), "label2id": {c: i for i, c in enumerate(CLASSES)}}
    config = tiny_config(scan_backend="reference", **labels)  # the plain scan is the fastest at this size
    config.flexible_training = FLEX.to_dict()
    return StretchySnakeForVideoClassification(config).eval()


@pytest.fixture(scope="module")
def clips() -> tuple[list[np.ndarray], list[int]]:
    """Seven uint8 videos (8 frames, 24x32) whose labels are the model-independent `i % 3`."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (8, 24, 32, 3), dtype=np.uint8) for _ in range(7)], [i % 3 for i in range(7)]


def test_accuracy_matches_the_model_logits(model, clips):
    videos, labels = clips
    processor = StretchySnakeVideoProcessor()
    results = evaluate_scales(model, processor, videos, labels, [2, 4, 8], [16, 24], batch_size=3, show_progress=False)
    assert [(r.num_frames, r.image_size, r.patch_size) for r in results] == [
        (t, s, p) for s, p in ((16, 8), (24, 12)) for t in (2, 4, 8)
    ]
    for result in results:
        inputs = processor(videos, num_frames=result.num_frames, size=result.image_size)
        with torch.no_grad():
            logits = model(inputs["pixel_values"], patch_size=result.patch_size).logits.numpy()
        hand_top1 = float(np.mean(logits.argmax(-1) == np.array(labels)))
        assert result.status == OK and result.num_videos == 7
        assert result.top1 == pytest.approx(hand_top1)
        assert result.top5 == 1.0  # three classes: the label is always among the top 3
        assert result.gflops_per_clip == pytest.approx(
            count_flops(model, (1, result.num_frames, 3, result.image_size, result.image_size), result.patch_size)
            / 1e9
        )
        assert result.clips_per_second > 0 and result.peak_memory_mb > 0
        assert result.in_training == ((result.num_frames, result.image_size, result.patch_size) in FLEX.scales)
    assert sum(r.in_training for r in results) == 2  # (2 or 4 frames) x 16 px / p8


def test_views_are_scored_by_their_averaged_softmax(model, clips):
    videos, labels = clips
    processor = StretchySnakeVideoProcessor(num_clips=2, num_crops=3)
    (result,) = evaluate_scales(model, processor, videos, labels, [4], [16], show_progress=False)
    inputs = processor(videos, num_frames=4, size=16)
    with torch.no_grad():
        probs = model(inputs["pixel_values"], patch_size=8).logits.softmax(-1).view(7, 6, -1).mean(1).numpy()
    assert result.top1 == pytest.approx(top_k_accuracy(probs, np.array(labels), 1))
    assert result.num_videos == 7


def test_token_budget_and_out_of_memory_cells_are_reported_not_raised(model, clips, monkeypatch):
    videos, labels = clips
    forward = StretchySnakeForVideoClassification.forward

    def forward_that_runs_out_of_memory(self, pixel_values, *args, **kwargs):
        if pixel_values.device.type == "meta":  # count_flops
            return forward(self, pixel_values, *args, **kwargs)
        if pixel_values.shape[1] == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if pixel_values.shape[1] == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes")
        return forward(self, pixel_values, *args, **kwargs)

    monkeypatch.setattr(StretchySnakeForVideoClassification, "forward", forward_that_runs_out_of_memory)
    # 1 + 8 * 2**2 = 33 tokens per 8-frame clip at 16 px: over a budget of 20 tokens; 2 frames fit 2 clips at once.
    results = evaluate_scales(
        model, StretchySnakeVideoProcessor(), videos, labels, [1, 2, 4, 8], [16], max_tokens=20, show_progress=False
    )
    statuses = {r.num_frames: r.status for r in results}
    assert statuses == {1: OUT_OF_MEMORY, 2: OK, 4: OUT_OF_MEMORY, 8: OVER_BUDGET}
    assert all(r.top1 is None for r in results if r.status != OK)
    assert next(r for r in results if r.num_frames == 8).gflops_per_clip > 0  # counted even when it cannot run

    def forward_with_a_bug(self, pixel_values, *args, **kwargs):
        if pixel_values.device.type == "meta":
            return forward(self, pixel_values, *args, **kwargs)
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(StretchySnakeForVideoClassification, "forward", forward_with_a_bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        evaluate_scales(model, StretchySnakeVideoProcessor(), videos, labels, [2], [16], show_progress=False)


def test_spatial_settings_follow_the_patch_rules(model):
    assert spatial_settings(model.config, [16, 32, 24]) == [(16, 16, 8), (32, 32, 16), (24, 24, 12)]  # trained grid 2
    config = tiny_config(image_size=224, patch_size=16)  # no flexible config: the base grid, 14
    assert spatial_settings(config, [96, 224]) == [(96, 98, 7), (224, 224, 16)]
    assert spatial_settings(config, [96], token_grid=8) == [(96, 96, 12)]
    assert spatial_settings(config, [96, 100], "static_patch", [16, 32]) == [
        (96, 96, 16), (100, 100, 16), (96, 96, 32), (100, 100, 32)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="patch_sizes is for static_patch"):
        spatial_settings(config, [96], "static_tokens", [16])
    with pytest.raises(ValueError, match="Unknown patch_rule"):
        spatial_settings(config, [96], "static_grid")


def test_reports_list_every_cell_and_mark_the_unseen_ones(model, clips, tmp_path):
    videos, labels = clips
    results = evaluate_scales(
        {"a": model, "b": model}, StretchySnakeVideoProcessor(), videos, labels, [2, 4], [16, 20],
        patch_rule="static_patch", show_progress=False,
    )  # fmt: skip
    assert [r.status for r in results if r.image_size == 20] == [INVALID] * 4  # 20 px is not divisible by patch 8
    paths = save_results(results, tmp_path, "tiny")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 8 and [r["model"] for r in rows] == ["a"] * 4 + ["b"] * 4
    assert rows[0]["top1"] == str(results[0].top1) and rows[2]["status"] == INVALID
    markdown = paths["md"].read_text()
    grid = f"| 16 px / p8 | {100 * results[0].top1:.1f} | {100 * results[1].top1:.1f} |"
    assert markdown.count(grid) == 2  # 2 and 4 frames at 16 px / p8 are training scales: no mark
    assert markdown.count("| 20 px / p8 | n/a* | n/a* |") == 2
    image = matplotlib.image.imread(paths["png"])
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # two panels side by side


def write_folder(root: Path, per_class: int = 2) -> None:
    """Class folders of tiny mp4 clips whose brightness ramps differ per class."""
    rng = np.random.default_rng(1)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            frames = rng.integers(0, 60, (8, 32, 32, 3), dtype=np.uint8) + 90 * label
            write_video(root / name / f"{name}_{i}.mp4", frames, fps=8)


def test_eval_scales_script_single_and_two_processes(model, tmp_path):
    model.save_pretrained(tmp_path / "model")
    StretchySnakeVideoProcessor().save_pretrained(tmp_path / "model")
    write_folder(tmp_path / "test")
    script = ROOT / "examples" / "eval_scales.py"
    common = ["--model", str(tmp_path / "model"), "--data_dir", str(tmp_path / "test"), "--frames", "2", "4"]
    common += ["--resolutions", "16", "32", "--batch_size", "2"]

    results = load_script(script).main([*common, "--output-dir", str(tmp_path / "one")])
    assert len(results) == 4 and all(r.num_videos == 6 for r in results)
    assert {p.name for p in (tmp_path / "one").iterdir()} == {"scales.csv", "scales.md", "scales.png"}

    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", str(script), *common]
    command += ["--output-dir", str(tmp_path / "two")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-4000:]
    one = list(csv.DictReader((tmp_path / "one" / "scales.csv").open()))
    two = list(csv.DictReader((tmp_path / "two" / "scales.csv").open()))
    for single, split in zip(one, two, strict=True):
        assert split["num_videos"] == "6"  # three videos per process, gathered
        assert float(split["top1"]) == pytest.approx(float(single["top1"]))


def test_flex_vs_fixed_smoke(tmp_path):
    benchmark = load_script(ROOT / "benchmarks" / "flex_vs_fixed.py")
    table = benchmark.main(
        [
            "--output-dir", str(tmp_path), "--videos-per-class", "3", "--variants", "fixed", "static_tokens",
            "--hidden-size", "16", "--num-layers", "1", "--max-steps", "2", "--batch-size", "2", "--num-workers", "0",
            "--fixed-scale", "4", "32", "16", "--train-frames", "2", "4", "--train-resolutions", "16", "32",
            "--eval-frames", "4", "8", "--eval-resolutions", "32", "48", "--model-card", str(tmp_path / "CARD.md"),
        ]
    )  # fmt: skip
    lines = table.splitlines()
    assert lines[2].startswith("| fixed | ") and lines[3].startswith("| static_tokens | ")
    assert len(lines) == 4
    assert (tmp_path / "flex_vs_fixed.png").is_file() and (tmp_path / "scales.csv").is_file()
    rows = list(csv.DictReader((tmp_path / "scales.csv").open()))
    assert len(rows) == 8 and {r["model"] for r in rows} == {"fixed", "static_tokens"}
    assert sum(r["in_training"] == "True" for r in rows if r["model"] == "fixed") == 1  # only (4, 32, p16)
    card = (tmp_path / "CARD.md").read_text()
    assert table in card and "![Top-1 accuracy over frames and resolutions](flex_vs_fixed.png)" in card


def test_model_card_metadata_and_sections():
    card = render_model_card("user/stretchysnake", "StretchySnake", "Summary.", "Trained so.", "| a |", "x.png")
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "video-classification"
    assert metadata["license"] == "apache-2.0" and metadata["metrics"] == ["accuracy"]
    assert "license" not in yaml.safe_load(render_model_card("m", "t", "s", "t", license=None).split("---")[1])
    assert "![Top-1 accuracy over frames and resolutions](x.png)" in card
    assert "arXiv:2510.16209" in card and "2403.06977" in card
    headings = [line for line in card.splitlines() if line.startswith("## ")]
    root_card = (ROOT / "MODEL_CARD.md").read_text()
    assert [line for line in root_card.splitlines() if line.startswith("## ")] == headings
