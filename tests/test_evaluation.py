"""Multi-scale evaluation: accuracy against hand-computed logits, reports, budget and out-of-memory cells, scripts."""

from __future__ import annotations

import copy
import csv
import dataclasses
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
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.testing_utils import CaptureLogger

from stretchysnake_hf import (
    StretchySnakeForVideoClassification,
    StretchySnakeVideoProcessor,
    evaluation,
    selective_scan,
)
from stretchysnake_hf.evaluation import (
    INVALID,
    OK,
    OUT_OF_MEMORY,
    OVER_BUDGET,
    ScaleResult,
    evaluate_scales,
    pareto_front,
    pick_scale,
    spatial_settings,
    top_k_accuracy,
)
from stretchysnake_hf.evaluation_report import plot_pareto, read_csv, save_results
from stretchysnake_hf.flexible_training import FlexibleTrainingConfig
from stretchysnake_hf.flops import count_flops
from stretchysnake_hf.model_card import render_model_card
from stretchysnake_hf.selective_scan import SCAN_BACKENDS
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


def test_undecodable_videos_are_left_out_with_their_labels(model, clips):
    videos = clips[0]
    processor = StretchySnakeVideoProcessor(on_error="skip")
    inputs = processor(videos[:3], num_frames=2, size=16)
    with torch.no_grad():
        predictions = model(inputs["pixel_values"], patch_size=8).logits.argmax(-1).numpy()
    # the broken video's label is the first good video's prediction, which would score it right if they shifted
    broken, wrong = b"not a video", (predictions + 1) % 3
    with CaptureLogger(evaluation.logger) as captured:
        (result,) = evaluate_scales(
            model, processor, [broken, *videos[:3]], [predictions[0], *wrong], [2], [16], batch_size=1,
            show_progress=False,
        )  # fmt: skip
    assert result.num_videos == 3 and result.top1 == 0.0
    assert "2 frames, 16 px, p8: 1 of 4 videos could not be decoded" in captured.out and "<11 bytes>" in captured.out
    with CaptureLogger(evaluation.logger) as captured:
        grid = evaluate_scales(
            model, processor, [broken, *videos[:3]], [0, 1, 2, 0], [2, 4], [16, 32], show_progress=False
        )
    assert all(r.num_videos == 3 for r in grid)
    assert captured.out.count("could not be decoded") == 1  # once for the grid, not once per cell
    assert "every cell (4): 1 of 4 videos could not be decoded" in captured.out
    (result,) = evaluate_scales(
        model, processor, [videos[0], broken], [predictions[0], wrong[0]], [2], [16], show_progress=False
    )
    assert result.num_videos == 1 and result.top1 == 1.0
    with pytest.raises(ValueError, match="2 frames, 16 px, p8: no video could be decoded"):
        evaluate_scales(model, processor, [broken], [0], [2], [16], show_progress=False)


@pytest.mark.parametrize("share_cpu", [True, False])
def test_the_grid_runs_on_the_cores_a_cpu_quota_allows_and_gives_the_threads_back(
    model, clips, monkeypatch, share_cpu
):
    videos, labels = clips
    monkeypatch.setattr(selective_scan, "cpu_quota", lambda: 1.0)  # as `docker --cpus 1` sets
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        evaluate_scales(
            model, StretchySnakeVideoProcessor(), videos, labels, [2, 4], [16], batch_size=3, show_progress=False,
            share_cpu=share_cpu,
        )  # fmt: skip
        assert torch.get_num_threads() == 2  # given back
    finally:
        hook.remove()
        torch.set_num_threads(threads)
    assert len(seen) == 2 * (3 + 1)  # 2 cells x (3 batches + a warm-up)
    assert set(seen) == ({1} if share_cpu else {2})


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"videos": [], "labels": []}, "the dataset is empty"),
        ({"labels": [0, 3]}, "label of video 1, 3, is not a class index of model 'model' \\(0 to 2\\)"),
        ({"labels": [-1, 0]}, "label of video 0, -1,"),
        ({"resolutions": [0]}, "resolutions: expected positive integers, got 0"),
        ({"resolutions": [16, -16]}, "resolutions: expected positive integers, got -16"),
        ({"frames": [0]}, "frames: expected positive integers, got 0"),
        ({"token_grid": 0}, "token_grid: expected positive integers, got 0"),
        ({"patch_rule": "static_patch", "patch_sizes": [0]}, "patch_sizes: expected positive integers, got 0"),
        ({"batch_size": 0}, "batch_size: expected positive integers, got 0"),
    ],
)
def test_bad_inputs_are_refused_up_front(model, clips, setting, message):
    arguments = {"videos": clips[0][:2], "labels": [0, 1], "frames": [2], "resolutions": [16], **setting}
    with pytest.raises(ValueError, match=message):
        evaluate_scales(model, StretchySnakeVideoProcessor(), show_progress=False, **arguments)


def test_non_finite_scores_count_as_misses():
    labels = np.array([0, 0, 1, 2])
    logits = np.full((4, 3), np.nan)  # a diverged model: sorting NaNs would "predict" class 0, then 1
    with CaptureLogger(evaluation.logger) as captured:
        assert top_k_accuracy(logits, labels, 1) == 0.0 and top_k_accuracy(logits, labels, 2) == 0.0
    assert "top-1 accuracy: 4 of 4 rows of scores are not finite" in captured.out
    logits[:2] = [[1.0, 0.0, 0.0], [np.inf, 0.0, 0.0]]
    assert top_k_accuracy(logits, labels, 1) == 0.25


def test_flops_do_not_depend_on_the_scan_backend(model):
    reference = count_flops(model, (1, 4, 3, 16, 16), patch_size=8)
    for backend in SCAN_BACKENDS:
        other = copy.deepcopy(model)
        other.config.scan_backend = backend
        assert count_flops(other, (1, 4, 3, 16, 16), patch_size=8) == reference, backend
    assert model.config.scan_backend == "reference"


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def test_counting_flops_runs_no_scan_step(model):
    """The scans run no step on meta tensors, so counting 8 or 32 frames dispatches the same ops (the reference scan's
    steps made a count at 32 x 224 take minutes)."""
    counts = {}
    for frames in (8, 32):
        with OpCounter() as counter:
            count_flops(model, (1, frames, 3, 16, 16), patch_size=8)
        counts[frames] = counter.ops
    assert counts[8] == counts[32]


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
    rows = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    assert len(rows) == 8 and [r["model"] for r in rows] == ["a"] * 4 + ["b"] * 4
    assert rows[0]["top1"] == str(results[0].top1) and rows[2]["status"] == INVALID
    assert read_csv(paths["csv"]) == results  # every field, None and bools included, with its type
    (tmp_path / "other.csv").write_text("model,top1\na,0.5\n")
    with pytest.raises(ValueError, match=r"other.csv: expected the columns \['model', 'num_frames'"):
        read_csv(tmp_path / "other.csv")
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


def test_eval_scales_script_single_and_two_processes(model, tmp_path, capsys):
    model.save_pretrained(tmp_path / "model")
    StretchySnakeVideoProcessor().save_pretrained(tmp_path / "model")
    write_folder(tmp_path / "test")
    script = ROOT / "examples" / "eval_scales.py"
    common = ["--model", str(tmp_path / "model"), "--data_dir", str(tmp_path / "test"), "--frames", "2", "4"]
    common += ["--resolutions", "16", "32", "--batch_size", "2"]

    results = load_script(script).main([*common, "--output-dir", str(tmp_path / "one"), "--max_gflops", "1e9"])
    assert len(results) == 4 and all(r.num_videos == 6 for r in results)
    assert {p.name for p in (tmp_path / "one").iterdir()} == {"scales.csv", "scales.md", "scales.png", "pareto.png"}
    pick = pick_scale(results)
    expected = (
        f"Pick: {pick.num_frames} frames, {pick.image_size} px, patch {pick.patch_size}: top-1 {100 * pick.top1:.1f}%"
    )
    assert expected in capsys.readouterr().out
    load_script(script).main([*common, "--output-dir", str(tmp_path / "none"), "--max_gflops", "1e-9"])
    assert (
        "No pick: No cell meets max_gflops=1e-09 among 4 evaluated cells: the cheapest needs"
        in capsys.readouterr().out
    )

    logged = tmp_path / "eval_scales_logged.py"  # the script with info logs shown, for each process's share
    logged.write_text(
        "import logging, os, runpy, sys, torch\nlogging.basicConfig(level=logging.INFO)\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "sys.stdout.flush()\n"  # one write each, so the two processes' lines do not interleave
        "os.write(1, f'process group left: {torch.distributed.is_initialized()}\\n'.encode())\n"
    )
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", str(logged), *common]
    command += ["--output-dir", str(tmp_path / "two")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-4000:]
    for rank in range(2):  # each process evaluated its own share, not every video
        assert f"Process {rank} of 2 evaluates 3 of the 6 videos." in completed.stderr, completed.stderr[-4000:]
    assert completed.stdout.count("Wrote ") == 1  # only the main process writes
    assert completed.stdout.count("process group left: False") == 2  # destroyed before interpreter exit
    one = list(csv.DictReader((tmp_path / "one" / "scales.csv").read_text().splitlines()))
    two = list(csv.DictReader((tmp_path / "two" / "scales.csv").read_text().splitlines()))
    for single, split in zip(one, two, strict=True):
        assert split["num_videos"] == "6"  # three videos per process, gathered
        assert float(split["top1"]) == pytest.approx(float(single["top1"]))


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


def test_model_card_dataset_names_round_trip():
    names = ["yes", "#hash", "org/x: y", "user/ucf101"]
    card = render_model_card("m", "t", "s", "t", datasets=names)
    assert yaml.safe_load(card.split("\n---\n")[0].removeprefix("---\n"))["datasets"] == names


def cost_cells() -> list[ScaleResult]:
    """Hand-made cells of model "a": (frames, size, GFLOPs, top-1, clips per second), latency = 1000 / clips/s."""
    table = [
        (2, 16, 0.05, 0.20, 2000),  # G: 0.5 ms
        (4, 32, 0.1, 0.50, 1000),  # A: 1 ms
        (8, 32, 0.2, 0.70, 500),  # B: 2 ms
        (8, 64, 0.4, 0.65, 2500),  # C: beaten by B on GFLOPs, the fastest (0.4 ms)
        (16, 64, 0.8, 0.80, 100),  # D: 10 ms
        (16, 128, 1.6, 0.80, 40),  # E: as accurate as D, costlier
    ]
    cells = [
        ScaleResult("a", t, s, s, s // 4, 1 + t * 16, None, OK, 10, top1, None, cps, gflops, None)
        for t, s, gflops, top1, cps in table
    ]
    cells.append(ScaleResult("a", 32, 128, 128, 32, 513, None, OUT_OF_MEMORY, gflops_per_clip=3.2))
    return cells


def test_pareto_front_by_gflops_and_by_latency():
    cells = cost_cells()

    def scales(front):
        return [(r.num_frames, r.image_size) for r in front]

    assert scales(pareto_front(cells)) == [(2, 16), (4, 32), (8, 32), (16, 64)]
    # by latency C (0.4 ms, 65%) beats G and A; B (2 ms, 70%) and D (10 ms, 80%) remain
    assert scales(pareto_front(cells, cost="latency")) == [(8, 64), (8, 32), (16, 64)]
    assert cells[4].latency_ms == pytest.approx(10.0) and cells[-1].latency_ms is None
    twin = ScaleResult("b", 16, 64, 64, 16, 257, None, OK, 10, 0.80, None, 100, 0.8, None)
    assert scales(pareto_front([*cells, twin]))[-2:] == [(16, 64), (16, 64)]  # equal cells do not beat each other
    with pytest.raises(ValueError, match="Unknown cost 'memory'"):
        pareto_front(cells, cost="memory")


def test_pick_scale_under_constraints():
    cells = cost_cells()

    def pick(**constraints):
        result = pick_scale(cells, **constraints)
        return result.num_frames, result.image_size

    assert pick() == (16, 64)  # 80% twice: D has fewer GFLOPs than E
    assert pick(max_gflops=0.5) == (8, 32)  # B, 70%
    assert pick(max_gflops=0.5, max_latency_ms=1.0) == (8, 64)  # G, A, C qualify: C, 65%
    assert pick(min_top1=0.6) == (8, 32)  # alone, the floor asks for the cheapest cell reaching it: B
    assert pick(min_top1=0.75) == (16, 64)
    assert pick(max_gflops=1.0, min_top1=0.6) == (16, 64)  # with a cap: the most accurate within it
    with pytest.raises(ValueError) as error:
        pick_scale(cells, max_gflops=0.3, min_top1=0.75)
    assert str(error.value) == (
        "No cell meets max_gflops=0.3, min_top1=0.75 among 6 evaluated cells: the cheapest needs 0.05 GFLOPs "
        "(a: 2 frames, 16 px, p4); the most accurate reaches top-1 0.8 (a: 16 frames, 64 px, p16)."
    )
    with pytest.raises(ValueError, match=r"max_latency_ms=0.1 .* the fastest takes 0.4 ms \(a: 8 frames, 64 px"):
        pick_scale(cells, max_latency_ms=0.1)
    untimed = [dataclasses.replace(cell, clips_per_second=None) for cell in cells]
    with pytest.raises(ValueError, match="no cell was timed"):
        pick_scale(untimed, max_latency_ms=100)
    with pytest.raises(ValueError, match="No evaluated cell"):
        pick_scale(cells[-1:])


def test_pareto_plot(tmp_path):
    other = [dataclasses.replace(cell, model="b", top1=cell.top1 and cell.top1 / 2) for cell in cost_cells()]
    plot_pareto(cost_cells() + other, tmp_path / "pareto.png")
    assert matplotlib.image.imread(tmp_path / "pareto.png").ndim == 3


def test_undecodable_warning_names_the_cells_when_they_differ():
    """Cells that left out different videos each get their set named; a set shared by every cell is named once."""
    with CaptureLogger(evaluation.logger) as captured:
        evaluation._warn_undecodable(
            {("a.mp4: bad",): ["2 frames, 16 px"], ("b.mp4: bad",): ["4 frames, 16 px"]}, 5, 2
        )
    assert "2 frames, 16 px: 1 of 5 videos could not be decoded and are left out: a.mp4: bad" in captured.out
    assert "4 frames, 16 px: 1 of 5 videos could not be decoded and are left out: b.mp4: bad" in captured.out
    with CaptureLogger(evaluation.logger) as captured:
        evaluation._warn_undecodable({("a.mp4: bad",): ["2 frames, 16 px", "4 frames, 16 px"]}, 5, 2)
    assert captured.out.count("could not be decoded") == 1 and captured.out.startswith("every cell (2): 1 of 5")
