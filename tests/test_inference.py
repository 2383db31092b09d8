"""One-line inference: `predict`, the `stretchysnake predict` command and transformers' video-classification pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

import stretchysnake_hf
from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification, StretchySnakeVideoProcessor
from stretchysnake_hf.cli import main
from stretchysnake_hf.video_io import load_video, write_video

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
    # Loaded through AutoImageProcessor: the pipeline decodes the first num_frames frames itself, then calls us.
    classifier = pipeline("video-classification", model=str(model_dir))
    assert type(classifier.image_processor) is StretchySnakeVideoProcessor
    results = classifier(str(video), top_k=2)
    first_frames, _ = load_video(video, lambda info: range(4))
    scores = _manual_scores(model_dir, list(first_frames))
    best = scores.argsort(descending=True)[:2].tolist()
    assert_same_predictions(results, [{"score": float(scores[i]), "label": LABELS[i]} for i in best])
