"""One-line inference: `predict`, the `stretchysnake predict` command and transformers' video-classification pipeline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from transformers import VideoMAEConfig, VideoMAEForVideoClassification, pipeline

import stretchysnake_hf
from stretchysnake_hf import (
    StretchySnakeConfig,
    StretchySnakeForVideoClassification,
    StretchySnakeModel,
    StretchySnakeVideoProcessor,
    selective_scan,
)
from stretchysnake_hf.cli import main
from stretchysnake_hf.inference import load_processor
from stretchysnake_hf.video_io import VideoDecodeError, write_video

LABELS = {0: "archery", 1: "bowling", 2: "juggling"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = StretchySnakeConfig(
        hidden_size=32,
        num_hidden_layers=2,
        image_size=16,
        patch_size=8,
        num_frames=4,
        num_labels=3,
        drop_path_rate=0.0,
        id2label=LABELS,
        label2id={label: i for i, label in LABELS.items()},
    )
    StretchySnakeForVideoClassification(config).save_pretrained(folder)
    StretchySnakeVideoProcessor(num_frames=4, size=16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    write_video(path, np.random.default_rng(0).integers(0, 256, (24, 48, 64, 3), dtype=np.uint8), fps=12)
    return path


@pytest.fixture(scope="module")
def other_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "other.mp4"
    write_video(path, np.random.default_rng(1).integers(0, 256, (30, 40, 40, 3), dtype=np.uint8), fps=10)
    return path


@pytest.fixture(scope="module")
def broken_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "broken.mp4"
    path.write_text("not a video")
    return path


@pytest.fixture(scope="module")
def skip_model_dir(model_dir, tmp_path_factory):
    """The model folder with the processor saved with `on_error="skip"`, as the README advises for training."""
    folder = tmp_path_factory.mktemp("skip_model")
    StretchySnakeForVideoClassification.from_pretrained(model_dir).save_pretrained(folder)
    StretchySnakeVideoProcessor(num_frames=4, size=16, on_error="skip").save_pretrained(folder)
    return folder


def _manual_scores(model_dir, video, **processor_kwargs) -> torch.Tensor:
    model = StretchySnakeForVideoClassification.from_pretrained(model_dir).eval()
    inputs = StretchySnakeVideoProcessor.from_pretrained(model_dir)(video, **processor_kwargs)
    with torch.no_grad():
        logits = model(inputs["pixel_values"], patch_size=inputs.get("patch_size")).logits
    return logits.softmax(-1).mean(0)


def assert_same_predictions(results: list[dict], expected: list[dict]) -> None:
    assert [r["label"] for r in results] == [e["label"] for e in expected]
    assert [r["score"] for r in results] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_predict_returns_top_k_labels_with_softmax_scores(model_dir, video):
    results = stretchysnake_hf.predict(str(video), model=model_dir, top_k=2)
    scores = _manual_scores(model_dir, video)
    best = scores.argsort(descending=True)[:2].tolist()
    assert [r["label"] for r in results] == [LABELS[i] for i in best]
    assert [r["score"] for r in results] == pytest.approx(scores[best].tolist(), abs=1e-6)


def test_predict_at_another_scale_averages_views(model_dir, video):
    results = stretchysnake_hf.predict(
        video, model=model_dir, num_frames=8, image_size=24, patch_size=12, top_k=5, num_clips=2, num_crops=3
    )
    scores = _manual_scores(model_dir, video, num_frames=8, size=24, patch_size=12, num_clips=2, num_crops=3)
    assert len(results) == 3  # top_k is capped at the number of labels
    best = scores.argsort(descending=True).tolist()
    assert_same_predictions(results, [{"score": float(scores[i]), "label": LABELS[i]} for i in best])


def test_predict_a_list_gives_one_result_per_video(model_dir, video):
    model = StretchySnakeForVideoClassification.from_pretrained(model_dir)
    results = stretchysnake_hf.predict([video, video.read_bytes()], model=model, top_k=1)
    assert len(results) == 2
    assert_same_predictions(results[0], results[1])
    from_a_generator = stretchysnake_hf.predict((path for path in [video, video]), model=model, top_k=1)
    assert len(from_a_generator) == 2
    assert_same_predictions(from_a_generator[1], results[0])
    with pytest.raises(ValueError, match="on_error"):
        stretchysnake_hf.predict(video, model=model, on_error="ignore")


@pytest.mark.parametrize("share_cpu", [True, False])
def test_predict_runs_on_the_cores_a_cpu_quota_allows_and_gives_the_threads_back(
    model_dir, video, monkeypatch, share_cpu
):
    monkeypatch.setattr(selective_scan, "cpu_quota", lambda: 1.0)  # as `docker --cpus 1` sets
    model = StretchySnakeForVideoClassification.from_pretrained(model_dir)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = _manual_scores(model_dir, video).max().item()
        (best,) = stretchysnake_hf.predict(video, model=model, top_k=1, share_cpu=share_cpu)
        assert torch.get_num_threads() == 2  # given back
    finally:
        torch.set_num_threads(threads)
    assert seen == [1 if share_cpu else 2]
    assert best["score"] == pytest.approx(expected, abs=1e-6)


def test_cli_prints_predictions(model_dir, video, capsys):
    assert main(["predict", str(video), "--model", str(model_dir), "--top-k", "3", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = stretchysnake_hf.predict(video, model=model_dir, top_k=3)
    assert line["video"] == str(video)
    assert_same_predictions(line["predictions"], expected)
    assert main(["predict", str(video), "--model", str(model_dir), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(expected[0]["label"])


def test_cli_reports_a_bad_video_without_a_traceback(model_dir, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nowhere.mp4"), "--model", str(model_dir)]) == 1
    assert "nowhere.mp4: video file not found" in capsys.readouterr().err


def test_video_classification_pipeline_with_the_processor_as_video_processor(model_dir, video):
    processor = StretchySnakeVideoProcessor.from_pretrained(model_dir)
    classifier = pipeline("video-classification", model=str(model_dir), video_processor=processor)
    results = classifier(str(video), top_k=3)
    assert_same_predictions(results, stretchysnake_hf.predict(video, model=model_dir, top_k=3))


def test_video_classification_pipeline_from_the_folder_alone(model_dir, video):
    # AutoVideoProcessor finds the registered processor, so the pipeline hands it the file, as with video_processor=.
    classifier = pipeline("video-classification", model=str(model_dir))
    assert type(classifier.video_processor) is StretchySnakeVideoProcessor
    results = classifier(str(video), top_k=3)
    assert_same_predictions(results, stretchysnake_hf.predict(video, model=model_dir, top_k=3))


# Run in a subprocess with stdin closed, so transformers' "run custom code? [y/N]" prompt would show in the output
# (and, at a terminal, wait 15 s). Either imports the package first, or hides it and passes trust_remote_code=True.
PIPELINE_SCRIPT = """
import importlib.abc
import json
import sys


class HideStretchySnake(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "stretchysnake_hf":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


folder, video, how = sys.argv[1:]
if how == "import":
    import stretchysnake_hf  # noqa: F401
else:
    sys.meta_path.insert(0, HideStretchySnake())
from transformers import pipeline

classifier = pipeline("video-classification", model=folder, **({} if how == "import" else {"trust_remote_code": True}))
print("PROCESSOR", type(classifier.video_processor).__module__, type(classifier.video_processor).__name__)
if how == "import":  # (remote code compiles its own copy of the numba kernels: ~10 s; test_remote_code runs it)
    print("RESULTS", json.dumps(classifier(video, top_k=3)))
"""


@pytest.mark.parametrize("how", ["import", "trust_remote_code"])
def test_video_classification_pipeline_never_prompts(model_dir, video, tmp_path, how):
    expected = stretchysnake_hf.predict(video, model=model_dir, top_k=3)  # first, so the numba kernels are cached
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PIPELINE_SCRIPT, str(model_dir), str(video), how],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # stdin is closed, so a prompt would not wait: its text in the output is what fails the test
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "custom code" not in output and "[y/N]" not in output
    lines = dict(
        line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("PROCESSOR", "RESULTS"))
    )
    module = "stretchysnake_hf." if how == "import" else "transformers_modules."
    assert lines["PROCESSOR"].startswith(module) and lines["PROCESSOR"].endswith(" StretchySnakeVideoProcessor")
    if how == "import":
        assert_same_predictions(json.loads(lines["RESULTS"]), expected)


def test_processor_gives_the_reason_of_each_skipped_video(video, broken_video, tmp_path):
    processor = StretchySnakeVideoProcessor(num_frames=4, size=16, on_error="skip")
    out = processor([broken_video, video, tmp_path / "gone.mp4"])
    assert out["pixel_values"].shape == (1, 4, 3, 16, 16)
    assert out["skipped_indices"] == [0, 2]
    assert len(out["skipped_errors"]) == 2
    assert out["skipped_errors"][0].startswith(f"{broken_video}: cannot be opened as a video")
    assert out["skipped_errors"][1] == f"{tmp_path / 'gone.mp4'}: video file not found"


def test_predict_with_a_skipping_processor_keeps_every_video_in_its_place(
    skip_model_dir, video, other_video, broken_video
):
    views = {"num_clips": 2, "num_crops": 3}
    results = stretchysnake_hf.predict([video, broken_video, other_video], model=skip_model_dir, top_k=3, **views)
    assert len(results) == 3
    assert set(results[1]) == {"error"} and results[1]["error"].startswith(f"{broken_video}: ")
    # The views of the videos after the dropped one are still averaged per video.
    for result, path in ((results[0], video), (results[2], other_video)):
        scores = _manual_scores(skip_model_dir, path, **views)
        best = scores.argsort(descending=True).tolist()
        assert_same_predictions(result, [{"score": float(scores[i]), "label": LABELS[i]} for i in best])


def test_predict_on_error_overrides_the_processor(model_dir, skip_model_dir, video, broken_video):
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        stretchysnake_hf.predict([video, broken_video], model=skip_model_dir, on_error="raise")
    results = stretchysnake_hf.predict([broken_video, video], model=model_dir, top_k=2, on_error="skip")
    assert set(results[0]) == {"error"}
    assert_same_predictions(results[1], stretchysnake_hf.predict(video, model=model_dir, top_k=2))
    assert stretchysnake_hf.predict(broken_video, model=model_dir, on_error="skip") == {"error": results[0]["error"]}


def test_predict_runs_no_forward_when_every_video_failed(model_dir, broken_video, tmp_path):
    model = StretchySnakeForVideoClassification.from_pretrained(model_dir)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args))
    results = stretchysnake_hf.predict([broken_video, tmp_path / "gone.mp4"], model=model, on_error="skip")
    assert [set(result) for result in results] == [{"error"}, {"error"}]
    assert results[1]["error"] == f"{tmp_path / 'gone.mp4'}: video file not found"
    assert calls == []


def test_cli_reports_a_failed_video_and_prints_the_others(skip_model_dir, video, other_video, broken_video, capsys):
    paths = [str(video), str(broken_video), str(other_video)]
    assert main(["predict", *paths, "--model", str(skip_model_dir), "--top-k", "1"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0::2] == [str(video), str(other_video)]
    assert out.splitlines()[3].endswith(stretchysnake_hf.predict(other_video, model=skip_model_dir)[0]["label"])
    message = stretchysnake_hf.predict(broken_video, model=skip_model_dir)["error"]
    assert [line for line in err.splitlines() if str(broken_video) in line] == [f"stretchysnake: error: {message}"]

    assert main(["predict", *paths, "--model", str(skip_model_dir), "--top-k", "2", "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["video"] for line in lines] == paths
    assert set(lines[1]) == {"video", "error"} and lines[1]["error"].startswith(f"{broken_video}: ")
    for line, path in ((lines[0], video), (lines[2], other_video)):
        assert_same_predictions(line["predictions"], stretchysnake_hf.predict(path, model=skip_model_dir, top_k=2))


def _assert_one_line_error(capsys, message: str, prog: str = "stretchysnake predict") -> None:
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{prog}: error: {message}\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--num-frames", "0"], "argument --num-frames: expected a positive integer, got '0'"),
        (["--image-size", "x"], "argument --image-size: expected a positive integer, got 'x'"),
        (["--patch-size", "-8"], "argument --patch-size: expected a positive integer, got '-8'"),
        (["--top-k", "0"], "argument --top-k: expected a positive integer, got '0'"),
        (["--num-clips", "0"], "argument --num-clips: expected a positive integer, got '0'"),
        (["--num-crops", "1.5"], "argument --num-crops: expected a positive integer, got '1.5'"),
        (["--image-size", "30"], "--image-size 30 is not a multiple of the model's patch size 8"),
        (["--patch-size", "5"], "the image size 16 is not a multiple of --patch-size 5"),
        (["--image-size", "24", "--patch-size", "16"], "--image-size 24 is not a multiple of --patch-size 16"),
    ],
)
def test_cli_rejects_a_bad_argument_in_one_line(model_dir, video, capsys, arguments, message):
    assert main(["predict", str(video), "--model", str(model_dir), *arguments]) == 2
    _assert_one_line_error(capsys, message)


def test_cli_checks_the_frame_count_against_the_tubelet_size(tmp_path, video, capsys):
    StretchySnakeConfig(num_frames=4, tubelet_size=2).save_pretrained(tmp_path)  # the config is read before weights
    assert main(["predict", str(video), "--model", str(tmp_path), "--num-frames", "5"]) == 2
    _assert_one_line_error(capsys, "--num-frames 5 is not a multiple of the model's tubelet size 2")
    assert main(["predict", str(video), "--model", str(tmp_path), "--num-frames", "6"]) == 2  # valid, but no weights
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"stretchysnake predict: error: --model {tmp_path}: cannot load the model: ")


@pytest.mark.parametrize("model", ["./no-such-model", "runs/no/such-model", "~/no-such-model", "/no/such/model"])
def test_cli_names_a_model_path_that_does_not_exist(video, capsys, model):
    assert main(["predict", str(video), "--model", model]) == 2
    _assert_one_line_error(capsys, f"--model {model}: no such folder")


def test_cli_names_a_model_folder_without_a_config_or_a_file(tmp_path, video, capsys):
    assert main(["predict", str(video), "--model", str(tmp_path)]) == 2
    _assert_one_line_error(capsys, f"--model {tmp_path}: no config.json in this folder")
    assert main(["predict", str(video), "--model", str(video)]) == 2
    _assert_one_line_error(capsys, f"--model {video}: not a folder")


def test_cli_names_a_hub_id_that_cannot_be_loaded(video, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["predict", str(video), "--model", "nobody/no-such-model"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(
        "stretchysnake predict: error: --model nobody/no-such-model: no such folder, and loading it from the Hub failed: "
    )


def test_cli_reports_argparse_errors_in_one_line(video, capsys):
    assert main(["predict", str(video)]) == 2
    _assert_one_line_error(capsys, "the following arguments are required: --model")
    assert main(["predict", str(video), "--model", "DIR", "--colour"]) == 2
    _assert_one_line_error(capsys, "unrecognized arguments: --colour", prog="stretchysnake")
    assert main(["guess", str(video)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("stretchysnake: error: argument command: invalid choice: 'guess'")


def test_processor_of_a_hub_repo_is_loaded_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = StretchySnakeConfig(hidden_size=32, num_hidden_layers=2, image_size=16, patch_size=8, num_frames=4)
    for name in ("with-processor", "without-processor"):  # cached snapshots, as a download leaves them
        repo = tmp_path / f"models--someorg--{name}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        config.save_pretrained(repo / "snapshots" / ("0" * 40))
    StretchySnakeVideoProcessor(num_frames=8, size=32, patch_size=4).save_pretrained(
        tmp_path / "models--someorg--with-processor" / "snapshots" / ("0" * 40)
    )
    saved = load_processor("someorg/with-processor", config)
    assert (saved.num_frames, saved.size, saved.patch_size) == (8, 32, 4)
    default = load_processor("someorg/without-processor", config)
    assert (default.num_frames, default.size, default.patch_size) == (4, 16, None)


def test_predict_and_the_cli_refuse_a_backbone_without_a_classifier(tmp_path, video, capsys):
    config = StretchySnakeConfig(hidden_size=32, num_hidden_layers=2, image_size=16, patch_size=8, num_frames=4)
    StretchySnakeModel(config).save_pretrained(tmp_path)
    message = f"{tmp_path} has no trained classifier (classifier.bias, classifier.weight not in its weights)"
    with pytest.raises(ValueError, match=re.escape(message)):
        stretchysnake_hf.predict(video, model=tmp_path)
    assert main(["predict", str(video), "--model", str(tmp_path)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"stretchysnake predict: error: --model {tmp_path}: cannot load the model: {message}")


def test_cli_names_a_checkpoint_of_another_architecture_in_one_line(tmp_path, video, capsys):
    config = VideoMAEConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16, num_frames=4
    )
    VideoMAEForVideoClassification(config).save_pretrained(tmp_path)
    capsys.readouterr()  # the saving progress bar
    assert main(["predict", str(video), "--model", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(
        f"stretchysnake predict: error: --model {tmp_path}: cannot load its config: {tmp_path} holds a 'videomae' "
        "checkpoint, not a 'stretchysnake' one"
    )
