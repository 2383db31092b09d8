"""Interpolation-aware from_pretrained: checkpoint tensors re-based to the requested scale, nothing lost."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import tiny_config
from transformers import (
    AutoModelForVideoClassification,
    ResNetConfig,
    ResNetForImageClassification,
    VideoMAEConfig,
    VideoMAEForVideoClassification,
)
from transformers.testing_utils import CaptureLogger

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeModel, resizing
from stretchysnake_hf.resizing import pi_resize_patch_kernel, resize_spatial_pos_embed, resize_temporal_pos_embed

EMBEDDINGS = "stretchysnake.embeddings."
SPATIAL, TEMPORAL, KERNEL = (
    EMBEDDINGS + "position_embeddings",
    EMBEDDINGS + "temporal_position_embeddings",
    EMBEDDINGS + "patch_embeddings.projection.weight",
)
NEW_SCALE = {"num_frames": 8, "image_size": 32, "patch_size": 4}  # from 4 frames, 16 px, patch 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved tiny classifier (4 frames of 2x2 tokens) with random position tables."""
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config()).eval()
    with torch.no_grad():
        model.stretchysnake.embeddings.temporal_position_embeddings.normal_()
        model.stretchysnake.embeddings.cls_token.normal_()
    folder = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(folder)
    return folder, model


def video(num_frames: int = 8, size: int = 32) -> torch.Tensor:
    return torch.randn(2, num_frames, 3, size, size, generator=torch.Generator().manual_seed(5))


def test_from_pretrained_rebases_the_scale_tensors_and_logs_them(checkpoint, transformers_info_logs):
    folder, original = checkpoint
    with CaptureLogger(resizing.logger) as captured:
        model, info = StretchySnakeForVideoClassification.from_pretrained(
            folder, output_loading_info=True, **NEW_SCALE
        )
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    assert (model.config.num_frames, model.config.image_size, model.config.patch_size) == (8, 32, 4)

    stored, loaded = original.state_dict(), model.state_dict()
    expected = {
        SPATIAL: resize_spatial_pos_embed(stored[SPATIAL], (8, 8)),
        TEMPORAL: resize_temporal_pos_embed(stored[TEMPORAL], 8),
        KERNEL: pi_resize_patch_kernel(stored[KERNEL], (1, 4, 4)),
    }
    assert {key: tuple(loaded[key].shape) for key in expected} == {
        SPATIAL: (1, 65, 32),
        TEMPORAL: (1, 8, 32),
        KERNEL: (32, 3, 1, 4, 4),
    }
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    assert stored.keys() == loaded.keys()
    for key in stored.keys() - expected.keys():
        assert torch.equal(loaded[key], stored[key]), key
    # meta-device loading leaves no buffer behind to be filled with garbage: every tensor is in the state dict
    assert {name for name, _ in model.named_buffers()} <= loaded.keys()

    assert f"{SPATIAL} from (1, 5, 32) to (1, 65, 32)" in captured.out
    assert f"{TEMPORAL} from (1, 4, 32) to (1, 8, 32)" in captured.out
    assert f"{KERNEL} from (32, 3, 1, 8, 8) to (32, 3, 1, 4, 4)" in captured.out


def test_rebased_model_computes_what_the_original_computes_at_that_scale(checkpoint):
    folder, original = checkpoint
    model = StretchySnakeForVideoClassification.from_pretrained(folder, **NEW_SCALE).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(video()).logits, original(video(), patch_size=4).logits)


def test_auto_class_rebases_the_same_way(checkpoint):
    folder, _ = checkpoint
    direct = StretchySnakeForVideoClassification.from_pretrained(folder, **NEW_SCALE)
    auto = AutoModelForVideoClassification.from_pretrained(folder, **NEW_SCALE)
    assert type(auto) is StretchySnakeForVideoClassification
    for (key, value), other in zip(direct.state_dict().items(), auto.state_dict().values(), strict=True):
        assert torch.equal(value, other), key


def test_base_model_loads_from_a_classifier_checkpoint_at_another_scale(checkpoint):
    folder, original = checkpoint
    model, info = StretchySnakeModel.from_pretrained(folder, num_frames=2, output_loading_info=True)
    assert info["missing_keys"] == set() and info["mismatched_keys"] == set()
    expected = resize_temporal_pos_embed(original.state_dict()[TEMPORAL], 2)
    assert torch.equal(model.embeddings.temporal_position_embeddings, expected)


def test_new_num_labels_reinitializes_only_the_classifier(checkpoint):
    folder, original = checkpoint
    model, info = StretchySnakeForVideoClassification.from_pretrained(
        folder, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True, image_size=24, patch_size=6
    )
    assert {key for key, *_ in info["mismatched_keys"]} == {"classifier.weight", "classifier.bias"}
    assert model.classifier.weight.shape == (5, 32)
    stored, loaded = original.state_dict(), model.state_dict()
    for key in stored.keys() - {"classifier.weight", "classifier.bias", SPATIAL, KERNEL}:
        assert torch.equal(loaded[key], stored[key]), key
    assert torch.equal(loaded[SPATIAL], resize_spatial_pos_embed(stored[SPATIAL], (4, 4)))
    assert torch.equal(loaded[KERNEL], pi_resize_patch_kernel(stored[KERNEL], (1, 6, 6)))


def test_saved_rebased_model_reloads_with_identical_logits(checkpoint, tmp_path):
    folder, _ = checkpoint
    model = StretchySnakeForVideoClassification.from_pretrained(folder, **NEW_SCALE).eval()
    model.save_pretrained(tmp_path)
    reloaded, info = StretchySnakeForVideoClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["mismatched_keys"] == set()
    assert reloaded.config.num_frames == 8
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(video()).logits, model(video()).logits)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    config = VideoMAEConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16, num_frames=4
    )
    VideoMAEForVideoClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'videomae' checkpoint, not a 'stretchysnake' one"):
        StretchySnakeForVideoClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'videomae' checkpoint"):
        StretchySnakeModel.from_pretrained(None, config=str(tmp_path), state_dict={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": 24, "patch_size": 5}, "patch_size 5 does not divide image_size 24"),
        ({"patch_size": 0}, "patch_size must be a positive integer; got 0"),
        ({"num_frames": 3, "tubelet_size": 2}, "tubelet_size 2 does not divide num_frames 3"),
        ({"scan_backend": "bogus"}, "Unknown scan_backend 'bogus'"),
    ],
)
def test_invalid_overrides_raise_the_config_error(checkpoint, overrides, message):
    folder, _ = checkpoint
    with pytest.raises(ValueError, match=message):
        StretchySnakeForVideoClassification.from_pretrained(folder, **overrides)


def test_checkpoint_of_another_architecture_is_refused_with_a_config_given(checkpoint, tmp_path):
    resnet = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1]))
    resnet.save_pretrained(tmp_path / "resnet")
    with pytest.raises(ValueError, match="holds a 'resnet' checkpoint, not a 'stretchysnake' one"):
        StretchySnakeForVideoClassification.from_pretrained(tmp_path / "resnet", config=tiny_config())
    # weights without a config.json of their own still load with the config given
    folder, original = checkpoint
    (tmp_path / "weights").mkdir()
    shutil.copy(folder / "model.safetensors", tmp_path / "weights")
    model = StretchySnakeForVideoClassification.from_pretrained(tmp_path / "weights", config=original.config)
    assert torch.equal(model.classifier.weight, original.classifier.weight)


def test_resize_cache_is_dropped_when_the_mode_switches():
    model = StretchySnakeForVideoClassification(tiny_config()).eval()
    embeddings = model.stretchysnake.embeddings
    with torch.no_grad():
        model(video(4, 24), patch_size=6)
        # writes through .data bump no version: the documented way out is clear() or a mode switch
        embeddings.patch_embeddings.projection.weight.data.mul_(3.0)
        embeddings.position_embeddings.data.add_(1.0)
        model.eval()
        after_switch = model(video(4, 24), patch_size=6).logits
        embeddings.resize_cache.clear()
        embeddings.patch_embeddings.resize_cache.clear()
        fresh = model(video(4, 24), patch_size=6).logits
    torch.testing.assert_close(after_switch, fresh, rtol=0, atol=0)
