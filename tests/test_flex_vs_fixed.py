"""benchmarks/flex_vs_fixed.py: the report's reductions against hand-computed values, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from stretchysnake_hf.evaluation import OK, OUT_OF_MEMORY, ScaleResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def protocol():
    path = ROOT / "benchmarks" / "flex_vs_fixed.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(frames, size, top1, in_training, status=OK, clips_per_second=100.0, model="m"):
    return ScaleResult(
        model, frames, size, size, 16, 1 + frames * (size // 16) ** 2, in_training, status, 5, top1, top1,
        clips_per_second, 0.01 * frames * size, 50.0,
    )  # fmt: skip


def test_arm_metrics_by_hand(protocol):
    cells = [
        cell(4, 32, 0.6, True),
        cell(8, 32, 0.4, False),
        cell(4, 64, 0.3, False),
        cell(8, 64, None, False, OUT_OF_MEMORY),
    ]
    metrics = protocol.arm_metrics(cells, (4, 32, 16))
    assert metrics == pytest.approx({"at_fixed": 0.6, "trained": 0.6, "unseen": 0.35, "worst": 0.3})
    assert protocol.arm_metrics(cells[1:], (4, 32, 16))["trained"] is None


def test_seed_means_by_hand(protocol):
    seed0 = [cell(4, 32, 0.2, True, clips_per_second=100.0), cell(8, 32, 0.5, False)]
    seed1 = [cell(4, 32, 0.4, True, clips_per_second=50.0), cell(8, 32, None, False, OUT_OF_MEMORY)]
    first, second = protocol.seed_means(seed0 + seed1, "arm")
    assert first.model == "arm" and first.top1 == pytest.approx(0.3) and first.in_training
    assert first.latency_ms == pytest.approx(15.0)  # 10 ms and 20 ms
    assert second.status == OUT_OF_MEMORY and second.top1 is None  # failed for one seed: no mean


def test_summary_table_and_verdicts_by_hand(protocol):
    def metrics(unseen, trained):
        return {"at_fixed": unseen, "trained": trained, "unseen": unseen, "worst": unseen}

    per_seed = {
        "fixed": [metrics(0.30, 0.5), metrics(0.32, 0.5), metrics(0.34, 0.5)],
        "static_tokens": [metrics(0.40, None), metrics(0.41, 0.5), metrics(0.45, 0.5)],
    }
    table, intervals = protocol.summary_table(per_seed)
    lines = table.splitlines()
    # fixed: mean 32, sd 2, half-width 4.3027 * 2 / sqrt(3) = 4.97 points
    assert lines[2] == "| fixed | 32.0 ± 5.0 | 50.0 ± 0.0 | 32.0 ± 5.0 | 32.0 ± 5.0 |"
    # static_tokens: mean 42, sd 2.65, half-width 6.57; paired differences 10, 9, 11: +10 ± 4.3027 / sqrt(3)
    unseen = "42.0 ± 6.6 (+10.0 ± 2.5)"
    assert lines[3] == f"| static_tokens | {unseen} | n/a | {unseen} | {unseen} |"
    assert intervals["static_tokens"]["unseen_vs_fixed"].half_width == pytest.approx(0.024841, abs=1e-6)
    said = protocol.verdicts(intervals)
    assert "static_tokens beats fixed on the mean over unseen cells (+10.0 ± 2.5 points)." in said
    # sd 2 points: 4 seeds give 3.182 * 2 / 2 = 3.18, 5 seeds 2.776 * 2 / sqrt(5) = 2.48
    assert (
        "fixed: the unseen-cell mean's half-width is 5.0 points, above the 3-point target; at this seed-to-seed "
        "spread about 5 seeds would reach it." in said
    )
    assert not any("trained cells" in line for line in said)  # n/a for static_tokens: no comparison


def test_one_seed_says_it_gives_no_interval(protocol):
    per_seed = {"fixed": [{"at_fixed": 0.3, "trained": 0.3, "unseen": 0.3, "worst": 0.2}]}
    _, intervals = protocol.summary_table(per_seed)
    assert protocol.verdicts(intervals) == [
        "fixed: one seed gives no interval: the 3-point target needs at least 2 seeds."
    ]


def test_tiny_protocol_end_to_end(protocol, tmp_path, monkeypatch):
    arguments = [
        "--output-dir", str(tmp_path), "--seeds", "2", "--videos-per-class", "3", "--pretrain-videos-per-class", "3",
        "--variants", "fixed", "static_tokens", "--hidden-size", "16", "--num-layers", "1", "--pretrain-steps", "2",
        "--max-steps", "2", "--batch-size", "2", "--num-workers", "0", "--fixed-scale", "4", "32", "16",
        "--train-frames", "2", "4", "6", "--train-resolutions", "16", "32", "48", "--eval-frames", "2", "4", "8",
        "--eval-resolutions", "16", "32", "64", "--train-args", "--weight_decay 0.1",
        "--model-card", str(tmp_path / "CARD.md"),
    ]  # fmt: skip
    report = protocol.main(arguments)
    assert not any(key.startswith("classifier.") for key in load_file(tmp_path / "pretrained" / "model.safetensors"))
    for variant in ("fixed", "static_tokens"):
        for seed in (0, 1):
            run = json.loads((tmp_path / "models" / variant / f"seed{seed}" / "run.json").read_text())
            assert run["argv"][-2:] == ["--weight_decay", "0.1"] and run["frames_seen"] > 0
    for rule in ("static_tokens", "static_patch"):
        rows = list(csv.DictReader((tmp_path / f"scales_{rule}.csv").read_text().splitlines()))
        assert len(rows) == 4 * 9 and {r["model"] for r in rows} == {f"{v}/seed{s}" for v in ("fixed", "static_tokens") for s in (0, 1)}  # fmt: skip
        assert (tmp_path / f"heatmaps_{rule}.png").is_file()
        assert f"### {rule} rule" in report
    assert (tmp_path / "pareto.png").is_file() and (tmp_path / "summary.md").read_text() == report
    assert "| static_tokens | " in report and "cheapest within 2 points" in report
    card = (tmp_path / "CARD.md").read_text()
    assert "--seeds 2" in card and "#### static_tokens rule" in card
    assert "![Top-1 accuracy over frames and resolutions](docs/flex_vs_fixed.png)" in card
    assert (tmp_path / "docs" / "flex_vs_fixed.png").read_bytes() == (
        tmp_path / "heatmaps_static_tokens.png"
    ).read_bytes()

    # a rerun reuses every trained model with the same flags and refuses a folder trained with other ones
    def no_training(argv):
        raise AssertionError("trained again")

    monkeypatch.setattr(protocol.train_flex, "main", no_training)
    monkeypatch.setattr(protocol, "evaluate_scales", lambda *args, **kwargs: pytest.fail("evaluated again"))
    index = arguments.index("--model-card")
    reused = protocol.main([*arguments[:index], "--reuse-evaluation"])
    assert reused.replace("Evaluation: reused from an earlier run.\n", "") == report[: report.rindex("Evaluation:")]
    with pytest.raises(ValueError, match=r"holds the models \['fixed/seed0', 'fixed/seed1', 'static_tokens/seed0'"):
        protocol.main([*arguments[:index], "--reuse-evaluation", "--seeds", "1"])
    run_dir = tmp_path / "models" / "fixed" / "seed0"
    argv = json.loads((run_dir / "run.json").read_text())["argv"]
    assert protocol.train(argv, run_dir, 0)["argv"] == argv
    with pytest.raises(ValueError, match="was trained with other settings"):
        protocol.train([*argv, "--weight_decay", "0.2"], run_dir, 0)
