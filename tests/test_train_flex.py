"""examples/train_flex.py: exact resume, two-process accelerate launch, data loading, offline metrics."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForVideoClassification

import stretchysnake_hf  # noqa: F401  (registers the Auto classes)
from stretchysnake_hf.flexible_training import FlexibleTrainingConfig, ScaleSampler
from stretchysnake_hf.synthetic import generate_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_flex.py"
spec = importlib.util.spec_from_file_location("train_flex", SCRIPT)
train_flex = sys.modules["train_flex"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_flex)

FLEX = {"variant": "static_tokens", "frames": (2, 4), "resolutions": (16, 32), "token_grid": 4, "seed": 42}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("actions"), videos_per_class=3, seed=0)


def arguments(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--preset", "tiny",
        "--config_overrides", "hidden_size=32,num_hidden_layers=2,image_size=32,patch_size=8,num_frames=4,drop_path_rate=0.2",
        "--train_dir", str(data_dir / "train"),
        "--do_flip", "false",
        "--variant", FLEX["variant"],
        "--frames", *map(str, FLEX["frames"]),
        "--resolutions", *map(str, FLEX["resolutions"]),
        "--token_grid", str(FLEX["token_grid"]),
        "--seed", str(FLEX["seed"]),
        "--per_device_train_batch_size", "2",
        "--learning_rate", "1e-3",
        "--logging_steps", "1",
        "--remove_unused_columns", "false",
        "--use_cpu",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--output_dir", str(output_dir),
        "--scale_log_file", str(output_dir / "scales.jsonl"),
        *extra,
    ]  # fmt: skip


def read_scales(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_schedule(records: list[dict]) -> None:
    sampler = ScaleSampler(FlexibleTrainingConfig(**FLEX))
    for record in records:
        assert (record["num_frames"], record["image_size"], record["patch_size"]) == sampler.scale_for_step(
            record["step"]
        )


RECIPE = ["--recipe", "videomamba", "--ema_decay", "0.9", "--repeated_augmentation", "2"]


@pytest.mark.parametrize("recipe", [[], RECIPE], ids=["plain", "videomamba_recipe_with_ema"])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(data_dir, tmp_path, recipe):
    """10 clips, batch 2, accumulation 2: 3 steps per epoch; resume at step 4, in the middle of the second epoch.
    With the recipe: layer decay, mixup/cutmix, smoothing, RandAugment, erasing, 2 copies per video and the EMA."""
    common = ["--max_steps", "6", "--gradient_accumulation_steps", "2", "--dataloader_num_workers", "2", *recipe]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train_flex.main(arguments(data_dir, full, *common, "--save_steps", "2"))
    resumed.mkdir()
    (full / "checkpoint-4").rename(resumed / "checkpoint-4")
    train_flex.main(arguments(data_dir, resumed, *common, "--resume_from_checkpoint", str(resumed / "checkpoint-4")))

    for checkpoint in (full / "checkpoint-2", resumed / "checkpoint-4", full / "checkpoint-6"):  # each has the card
        assert (checkpoint / "README.md").read_text().startswith("---\nlibrary_name: transformers\n"), checkpoint
    expected, actual = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys()
    initial = load_file(full / "checkpoint-2" / "model.safetensors")
    assert any((expected[k] - initial[k]).abs().max() > 1e-4 for k in expected)  # training moved the weights
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6)
    if recipe:
        expected_ema, actual_ema = (
            load_file(full / "ema" / "model.safetensors"),
            load_file(resumed / "ema" / "model.safetensors"),
        )
        assert any((expected_ema[k] - expected[k]).abs().max() > 1e-4 for k in expected)  # an average, not a copy
        for key in expected_ema:
            torch.testing.assert_close(actual_ema[key], expected_ema[key], rtol=0, atol=1e-6)
        assert "moving average (decay 0.9)" in (resumed / "ema" / "README.md").read_text()
        assert (resumed / "ema" / "preprocessor_config.json").is_file()

    full_scales, resumed_scales = read_scales(full / "scales.jsonl.rank0"), read_scales(resumed / "scales.jsonl.rank0")
    assert [r["step"] for r in full_scales] == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]  # the epoch's 5th batch is one step
    assert {r["batch_size"] for r in full_scales} == {2 * (2 if recipe else 1)}
    assert resumed_scales == [r for r in full_scales if r["step"] >= 4]
    check_schedule(full_scales)


def test_the_seed_fixes_the_initial_weights(data_dir, tmp_path):
    """Two runs with one seed train the same weights; another seed starts elsewhere (the model used to be initialized
    before the Trainer seeded anything, so every run of the demo started from different weights)."""
    runs = {}
    for name, seed in (("first", "42"), ("again", "42"), ("other", "7")):
        argv = arguments(data_dir, tmp_path / name, "--max_steps", "1", "--learning_rate", "0")
        argv[argv.index("--seed") + 1] = seed
        train_flex.main(argv)
        runs[name] = load_file(tmp_path / name / "model.safetensors")
    for key in runs["first"]:
        torch.testing.assert_close(runs["again"][key], runs["first"][key], rtol=0, atol=0)
    assert any(not torch.equal(runs["other"][key], runs["first"][key]) for key in runs["first"])


def test_training_on_a_cpu_only_machine_pins_no_memory(data_dir, tmp_path):
    # Without --use_cpu (which turns pinning off itself) the Trainer still runs on the CPU where there is no GPU.
    argv = arguments(data_dir, tmp_path / "run", "--max_steps", "1", "--validation_dir", str(data_dir / "validation"))
    argv.remove("--use_cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_flex.main([*argv, "--eval_strategy", "steps", "--eval_steps", "1"])
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    assert any("eval_loss" in entry for entry in history)  # the evaluation loader ran too
    assert [str(warning.message) for warning in caught if "pin_memory" in str(warning.message)] == []


def test_accelerate_launch_two_processes_share_the_schedule(data_dir, tmp_path):
    """Two processes train on one schedule and evaluate a validation set holding a file that is not a video
    (`--skip_bad_videos`): the metrics score the other videos, each prediction with its own label."""
    output, validation = tmp_path / "ddp", tmp_path / "validation"
    shutil.copytree(data_dir / "validation", validation)
    decodable = sorted(validation.rglob("*.mp4"))
    (decodable[0].parent / "broken.mp4").write_bytes(b"not a video" * 100)
    # `--cpu --num_processes 2` starts a single process unless MPI is set up; `--multi_gpu` uses torchrun + gloo.
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT)]
    command += arguments(
        data_dir, output, "--max_steps", "3", "--validation_dir", str(validation), "--skip_bad_videos", "true", *RECIPE
    )
    command += ["--per_device_eval_batch_size", "2", "--scale_grid_frames", "4", "8", "--scale_grid_resolutions", "32"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    # compute_metrics runs on both processes, for the model and for its EMA: the video counted once, not padded twice
    assert completed.stderr.count(f"1 of {len(decodable) + 1} evaluation videos could not be decoded") == 4

    ranks = [read_scales(output / f"scales.jsonl.rank{r}") for r in (0, 1)]
    assert [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]] == [0, 1, 2]
    for first, second in zip(*ranks, strict=True):
        assert {**first, "rank": 1} == second
    check_schedule(ranks[0])
    assert {r["batch_size"] for r in ranks[0]} == {4}  # 2 videos x 2 copies per process
    results = json.loads((output / "all_results.json").read_text())
    assert "eval_ema_top1_accuracy" in results and "eval_top1_accuracy" in results
    assert AutoModelForVideoClassification.from_pretrained(output / "ema") is not None
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["log_history"][0]["epoch"] == 0.5  # 2 of 4 batches per process
    assert 1 <= state["log_history"][0]["cpu_threads"] <= torch.get_num_threads()  # CpuShare ran

    card = (output / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: video-classification\n")
    assert "static_tokens" in card and "top1_accuracy" in card
    assert "Fine-tuning recipe `videomamba`: weight decay 0.05" in card and "layer_decay 0.8" in card
    assert "no gradient clipping" in card and "layer_decay_rule videomamba" in card
    assert "![Top-1 accuracy over frames and resolutions](scales.png)" in card and (output / "scales.png").is_file()
    model = AutoModelForVideoClassification.from_pretrained(output).eval()
    assert FlexibleTrainingConfig.from_dict(model.config.flexible_training) == FlexibleTrainingConfig(**FLEX)
    processor = AutoImageProcessor.from_pretrained(output)
    assert processor.do_flip is False
    clips = sorted((data_dir / "test").rglob("*.mp4"))[:2]
    inputs = processor([str(c) for c in clips], num_frames=8, size=48, patch_size=12)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert model.config.id2label[0] == "approaching"  # class folders sorted by name

    inputs = processor([str(video) for video in decodable], num_frames=4, size=32, patch_size=8)
    with torch.no_grad():
        predicted = model(**inputs).logits.argmax(-1)
    labels = torch.tensor([model.config.label2id[video.parent.name] for video in decodable])
    assert results["eval_top1_accuracy"] == pytest.approx((predicted == labels).double().mean().item())


def test_dataset_name_loads_a_local_dataset_with_class_names(data_dir, tmp_path):
    rows = [{"clip": str(p), "action": p.parent.name} for p in sorted((data_dir / "train").rglob("*.mp4"))]
    folder = tmp_path / "local_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = train_flex.DataArguments(dataset_name=str(folder), video_column="clip", label_column="action")
    train, validation, names = train_flex.load_data(args)
    assert validation is None and len(train) == 10 and names == sorted({r["action"] for r in rows})
    assert train[0] == {"video": rows[0]["clip"], "label": names.index(rows[0]["action"])}


def test_top_k_accuracy_offline():
    logits = np.array([[0.1, 0.5, 0.2, 0.0, -1, -2], [3.0, 0.0, 1.0, 2.0, -1, 0.5]])
    labels = np.array([2, 1])
    assert train_flex.top_k_accuracy(logits, labels, 1) == 0.0
    assert train_flex.top_k_accuracy(logits, labels, 2) == 0.5
    metrics = train_flex.compute_metrics(train_flex.EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics == {"top1_accuracy": 0.0, "top5_accuracy": 1.0}


def test_config_overrides_are_read_as_literals():
    assert train_flex.parse_overrides("hidden_size=64, drop_path_rate=0.1,scan_backend=numba") == {
        "hidden_size": 64,
        "drop_path_rate": 0.1,
        "scan_backend": "numba",
    }


def test_script_needs_a_model_and_data():
    with pytest.raises(ValueError, match="--train_dir"):
        train_flex.load_data(train_flex.DataArguments())
    with pytest.raises(ValueError, match="--preset"):
        train_flex.load_model(train_flex.ModelArguments(), ["a", "b"])


def test_recipe_flags_given_explicitly_win():
    argv = train_flex.with_recipe(["--layer_decay", "0.65", "--recipe", "videomamba", "--mixup_alpha=0.2"])
    parser = train_flex.HfArgumentParser(train_flex.RecipeArguments)
    recipe, rest = parser.parse_known_args(argv)
    assert (recipe.layer_decay, recipe.mixup_alpha, recipe.cutmix_alpha) == (0.65, 0.2, 1.0)
    assert recipe.rand_augment == "rand-m7-n4-mstd0.5-inc1" and recipe.repeated_augmentation == 2
    assert rest[rest.index("--weight_decay") + 1] == "0.05" and rest[rest.index("--max_grad_norm") + 1] == "0"
    assert recipe.layer_decay_rule == "videomamba"
    with pytest.raises(SystemExit):
        parser.parse_known_args(["--layer_decay_rule", "beit"])
    with pytest.raises(ValueError, match="Unknown --recipe 'deit'"):
        train_flex.with_recipe(["--recipe=deit"])


def test_label_smoothing_is_not_applied_twice(data_dir, tmp_path):
    argv = arguments(data_dir, tmp_path, "--max_steps", "1", "--mixup_alpha", "0.8", "--label_smoothing_factor", "0.1")
    with pytest.raises(ValueError, match="give the smoothing as --label_smoothing"):
        train_flex.main(argv)


def test_resuming_with_an_ema_needs_the_checkpoints_ema(data_dir, tmp_path):
    train_flex.main(arguments(data_dir, tmp_path, "--max_steps", "2", "--save_steps", "2"))
    resume = ["--max_steps", "3", "--ema_decay", "0.99", "--resume_from_checkpoint", str(tmp_path / "checkpoint-2")]
    with pytest.raises(FileNotFoundError, match="was the run started without --ema_decay"):
        train_flex.main(arguments(data_dir, tmp_path, *resume))


def test_flag_combinations_that_would_be_ignored_or_wrong_are_refused(data_dir, tmp_path):
    with pytest.raises(ValueError, match="--scale_grid_frames needs --scale_grid_resolutions"):
        train_flex.main(arguments(data_dir, tmp_path, "--scale_grid_frames", "2", "4"))
    with pytest.raises(ValueError, match="--train_interpolation must be bilinear or bicubic; got 'nearest'"):
        train_flex.main(arguments(data_dir, tmp_path, "--train_interpolation", "nearest"))
    with pytest.raises(ValueError, match=r"prob must be in \[0, 1\]; got 5.0"):
        train_flex.main(arguments(data_dir, tmp_path, "--mixup_prob", "5"))
    one_list = ["--dataset_format", "list", "--data_root", str(tmp_path), "--dataset_options", "list_file=all.txt"]
    with pytest.raises(ValueError, match=r"list_file=all.txt would give training and validation the same videos"):
        train_flex.load_data(
            train_flex.HfArgumentParser(train_flex.DataArguments).parse_args_into_dataclasses(one_list)[0]
        )


def test_token_budget_counts_the_models_tubelets(data_dir, tmp_path):
    """4 frames at 32 px, patch 8: 33 tokens per clip with tubelets of 2 frames (65 with 1), so a budget of 40 holds
    one clip of the model's."""
    overrides = "hidden_size=32,num_hidden_layers=2,image_size=32,patch_size=8,num_frames=4,tubelet_size=2"
    budget = ["--config_overrides", overrides, "--max_tokens_per_step", "40", "--max_steps", "1"]
    train_flex.main(arguments(data_dir, tmp_path, *budget))
    saved = json.loads((tmp_path / "config.json").read_text())["flexible_training"]
    assert saved["tubelet_size"] == 2 and saved["max_tokens_per_step"] == 40


def test_the_eval_sample_limit_draws_at_random(data_dir):
    args = train_flex.DataArguments(
        train_dir=str(data_dir / "train"), validation_dir=str(data_dir / "validation"), max_eval_samples=4
    )
    _, validation, _ = train_flex.load_data(args)
    full = train_flex.folder_dataset(data_dir / "validation")
    assert len(validation) == 4 and validation["video"] != full["video"][:4]  # the folder lists class by class
