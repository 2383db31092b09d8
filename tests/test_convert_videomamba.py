"""The VideoMamba converter, on random state dicts in the original layout (key names and shapes from the notes)."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForVideoClassification
from videomamba_reference import videomamba_logits

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeModel, StretchySnakeVideoProcessor
from stretchysnake_hf.convert_videomamba import convert_videomamba_checkpoint, load_checkpoint, main
from stretchysnake_hf.resizing import resize_spatial_pos_embed, resize_temporal_pos_embed

# An explicit map, written independently of the converter: original key -> this package's parameter.
EMBEDDING_KEYS = {
    "cls_token": ("stretchysnake", "embeddings", "cls_token"),
    "pos_embed": ("stretchysnake", "embeddings", "position_embeddings"),
    "temporal_pos_embedding": ("stretchysnake", "embeddings", "temporal_position_embeddings"),
    "patch_embed.proj.weight": ("stretchysnake", "embeddings", "patch_embeddings", "projection", "weight"),
    "patch_embed.proj.bias": ("stretchysnake", "embeddings", "patch_embeddings", "projection", "bias"),
    "norm_f.weight": ("stretchysnake", "norm_f", "weight"),
    "head.weight": ("classifier", "weight"),
    "head.bias": ("classifier", "bias"),
}
MIXER_KEYS = ("A_log", "D", "A_b_log", "D_b", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight")
MIXER_KEYS += ("dt_proj.weight", "dt_proj.bias", "conv1d_b.weight", "conv1d_b.bias", "x_proj_b.weight")
MIXER_KEYS += ("dt_proj_b.weight", "dt_proj_b.bias", "out_proj.weight")


def parameter_for(model: torch.nn.Module, original_key: str) -> torch.Tensor:
    """The parameter an original key belongs to, found by walking attributes (no state-dict names involved)."""
    if original_key in EMBEDDING_KEYS:
        path = EMBEDDING_KEYS[original_key]
    else:
        _, index, *rest = original_key.split(".")
        path = ("stretchysnake", "layers", int(index), *rest)
    module = model
    for step in path:
        module = module[step] if isinstance(step, int) else getattr(module, step)
    return module


def videomamba_state_dict(
    hidden: int, depth: int, patch: int, grid: int, frames: int | None, classes: int | None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random tensors under VideoMamba's keys; `frames=None` is a 2-D image checkpoint (Conv2d kernel, no temporal)."""
    generator = torch.Generator().manual_seed(seed)
    inner, rank, state = 2 * hidden, -(-hidden // 16), 16

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    sd = {"cls_token": rand(1, 1, hidden), "pos_embed": rand(1, grid * grid + 1, hidden)}
    if frames is None:
        sd["patch_embed.proj.weight"] = rand(hidden, 3, patch, patch)
    else:
        sd["temporal_pos_embedding"] = rand(1, frames, hidden)
        sd["patch_embed.proj.weight"] = rand(hidden, 3, 1, patch, patch)
    sd["patch_embed.proj.bias"] = rand(hidden)
    if classes is not None:
        sd["head.weight"], sd["head.bias"] = rand(classes, hidden), rand(classes)
    shapes = {
        "A_log": (inner, state),
        "D": (inner,),
        "in_proj.weight": (2 * inner, hidden),
        "conv1d.weight": (inner, 1, 4),
        "conv1d.bias": (inner,),
        "x_proj.weight": (rank + 2 * state, inner),
        "dt_proj.weight": (inner, rank),
        "dt_proj.bias": (inner,),
        "out_proj.weight": (hidden, inner),
    }
    for i in range(depth):
        for key in MIXER_KEYS:  # the backward twins ("_b") have the forward shapes
            sd[f"layers.{i}.mixer.{key}"] = rand(*shapes[key.replace("_b", "")])
        sd[f"layers.{i}.norm.weight"] = 1 + rand(hidden)
    sd["norm_f.weight"] = 1 + rand(hidden)
    return sd


def original_video(frames: int, size: int) -> torch.Tensor:
    """A video in VideoMamba's layout (batch, channels, frames, height, width)."""
    return torch.randn(2, 3, frames, size, size, generator=torch.Generator().manual_seed(7))


def assert_every_tensor_landed(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    for key, value in sd.items():
        assert torch.equal(parameter_for(model, key), value), key
    assert len(sd) == len(model.state_dict())


def test_videomamba_tiny_table_lands_one_to_one():
    # The full VideoMamba-Ti K400 layout of the notes (section 2.1): 416 tensors, 7,033,744 parameters.
    sd = videomamba_state_dict(hidden=192, depth=24, patch=16, grid=14, frames=8, classes=400)
    assert len(sd) == 416 and sum(value.numel() for value in sd.values()) == 7_033_744
    assert sd["layers.3.mixer.x_proj_b.weight"].shape == (44, 384)
    assert sd["layers.3.mixer.dt_proj.weight"].shape == (384, 12)
    model = convert_videomamba_checkpoint(sd, preset="tiny")
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.image_size, config.patch_size) == (192, 24, 224, 16)
    assert (config.num_frames, config.tubelet_size, config.num_labels, config.dt_rank) == (8, 1, 400, 12)
    assert_every_tensor_landed(model, sd)


def test_converted_logits_match_videomamba_and_an_explicit_key_map():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=5)
    checkpoint = {"model": {f"backbone.{key}": value for key, value in sd.items()}}
    model = convert_videomamba_checkpoint(checkpoint)
    assert_every_tensor_landed(model, sd)

    by_hand = StretchySnakeForVideoClassification(model.config).eval()
    with torch.no_grad():
        for key, value in sd.items():
            parameter_for(by_hand, key).copy_(value)
    video = original_video(4, 16)
    with torch.no_grad():
        logits = model(video.transpose(1, 2)).logits
        torch.testing.assert_close(logits, by_hand(video.transpose(1, 2)).logits, rtol=0, atol=0)
        torch.testing.assert_close(logits, videomamba_logits(sd, video, depth=2), rtol=1e-4, atol=1e-5)


def test_image_checkpoint_is_inflated_with_a_zero_temporal_table():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=None, classes=3, seed=1)
    model = convert_videomamba_checkpoint({"model": sd}, num_frames=4)
    embeddings = model.stretchysnake.embeddings
    assert torch.equal(embeddings.patch_embeddings.projection.weight, sd["patch_embed.proj.weight"][:, :, None])
    assert torch.equal(embeddings.temporal_position_embeddings, torch.zeros(1, 4, 32))
    inflated = {**sd, "patch_embed.proj.weight": sd["patch_embed.proj.weight"][:, :, None]}
    inflated["temporal_pos_embedding"] = torch.zeros(1, 4, 32)
    video = original_video(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(video.transpose(1, 2)).logits, videomamba_logits(inflated, video, 2), rtol=1e-4, atol=1e-5
        )


def test_masked_pretraining_checkpoint_becomes_a_backbone():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=None, seed=2)
    sd["norm.weight"] = sd.pop("norm_f.weight")
    decoder = {"clip_decoder.0.head.weight": torch.randn(16, 32), "clip_decoder.0.norm.bias": torch.randn(16)}
    model = convert_videomamba_checkpoint({"module": {f"encoder.{k}": v for k, v in {**sd, **decoder}.items()}})
    assert type(model) is StretchySnakeModel
    assert torch.equal(model.norm_f.weight, sd["norm.weight"])
    assert torch.equal(model.layers[1].mixer.dt_proj_b.bias, sd["layers.1.mixer.dt_proj_b.bias"])


def test_labels_and_half_a_head_are_refused():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=None)
    with pytest.raises(ValueError, match=r"3 labels given, but the checkpoint has no classification head"):
        convert_videomamba_checkpoint(sd, labels=["archery", "bowling", "juggling"])
    sd["head.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"classification head has no head\.weight"):
        convert_videomamba_checkpoint(sd)


def test_a_label_listed_twice_is_refused():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=3)
    with pytest.raises(ValueError, match=r"id2label names more than one class 'bowling'"):
        convert_videomamba_checkpoint(sd, labels=["bowling", "archery", "bowling"])


def test_unknown_missing_and_misshapen_keys_are_listed():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=3)
    del sd["layers.1.mixer.D_b"]
    sd["layers.0.mixer.extra.weight"] = torch.zeros(1)
    sd["dist_token"] = torch.zeros(1, 1, 32)
    sd["layers.0.mixer.D"] = torch.zeros(7)
    with pytest.raises(ValueError) as error:
        convert_videomamba_checkpoint(sd)
    message = str(error.value)
    assert "['dist_token', 'layers.0.mixer.extra.weight']" in message
    assert "Missing keys: ['layers.1.mixer.D_b']" in message
    assert "layers.0.mixer.D (7,) (expected (64,))" in message


def test_preset_must_match_the_shapes():
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=3)
    with pytest.raises(ValueError, match="32 wide and 2 layers deep: not the 'small' preset"):
        convert_videomamba_checkpoint(sd, preset="small")


def test_loading_refuses_pickled_code_but_accepts_training_args(tmp_path):
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=3)
    torch.save({"model": sd, "epoch": 3, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "train.pth")
    assert load_checkpoint(tmp_path / "train.pth")["args"].lr == 1e-3
    torch.save({"model": sd, "callback": pytest.approx(1.0)}, tmp_path / "code.pth")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(tmp_path / "code.pth")


def test_cli_writes_a_loadable_folder_rebased_and_labelled(tmp_path):
    sd = videomamba_state_dict(hidden=32, depth=2, patch=8, grid=2, frames=4, classes=3)
    torch.save(sd, tmp_path / "videomamba_t_f4.pth")
    (tmp_path / "labels.txt").write_text("archery\nbowling\ncycling\n")
    out = tmp_path / "converted"
    argv = ["--checkpoint", str(tmp_path / "videomamba_t_f4.pth"), "--output-dir", str(out)]
    main([*argv, "--num-frames", "8", "--image-size", "32", "--labels", str(tmp_path / "labels.txt")])

    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "archery", "1": "bowling", "2": "cycling"}
    assert (config["num_frames"], config["image_size"], config["patch_size"]) == (8, 32, 8)
    assert "videomamba_t_f4.pth" in (out / "README.md").read_text()

    model = AutoModelForVideoClassification.from_pretrained(out)
    embeddings = model.stretchysnake.embeddings
    assert torch.equal(
        embeddings.temporal_position_embeddings, resize_temporal_pos_embed(sd["temporal_pos_embedding"], 8)
    )
    assert torch.equal(embeddings.position_embeddings, resize_spatial_pos_embed(sd["pos_embed"], (4, 4)))
    assert torch.equal(embeddings.patch_embeddings.projection.weight, sd["patch_embed.proj.weight"])
    processor = AutoImageProcessor.from_pretrained(out)
    assert isinstance(processor, StretchySnakeVideoProcessor)
    assert (processor.num_frames, processor.size) == (8, 32)

    with pytest.raises(ValueError, match="Kinetics-400 class names are not shipped"):
        main([*argv, "--labels", "kinetics400"])
