# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Convert an original VideoMamba checkpoint (`.pth`) into a StretchySnake folder that `from_pretrained` loads.

Usage:

    python -m stretchysnake_hf.convert_videomamba --checkpoint videomamba_t16_k400_f8_res224.pth --output-dir out \
        [--preset auto|tiny|small|middle] [--num-frames 16] [--image-size 112] [--labels labels.txt]
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .configuration_stretchysnake import PRESETS, StretchySnakeConfig
from .model_card import render_model_card
from .modeling_stretchysnake import StretchySnakeForVideoClassification, StretchySnakeModel
from .resizing import rebase_tensor
from .video_processing_stretchysnake import StretchySnakeVideoProcessor

logger = logging.get_logger(__name__)

# VideoMamba's non-layer keys and their names here; `layers.{i}.*` keep their names under `stretchysnake.`.
ORIGINAL_TO_PACKAGE = {
    "cls_token": "stretchysnake.embeddings.cls_token",
    "pos_embed": "stretchysnake.embeddings.position_embeddings",
    "temporal_pos_embedding": "stretchysnake.embeddings.temporal_position_embeddings",
    "patch_embed.proj.weight": "stretchysnake.embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "stretchysnake.embeddings.patch_embeddings.projection.bias",
    "norm_f.weight": "stretchysnake.norm_f.weight",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
LAYER_KEY = re.compile(r"layers\.\d+\.")
WRAPPER_KEYS = ("model", "module")
PREFIXES = ("backbone.", "encoder.")
PROGRESS_BYTES = 64 * 2**20


def unwrap_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The state dict inside a raw, `{"model": ...}` or `{"module": ...}` checkpoint, `backbone.`/`encoder.` stripped.

    Masked-pretraining checkpoints are made classifier-shaped: their final `norm` becomes `norm_f`, and the
    `clip_decoder.*` distillation heads are dropped with a logged note.
    """
    for wrapper in WRAPPER_KEYS:
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
            break
    state_dict = {}
    for key, value in checkpoint.items():
        for prefix in PREFIXES:
            key = key.removeprefix(prefix)
        state_dict[key] = value
    dropped = sorted(key for key in state_dict if key.startswith("clip_decoder."))
    if dropped:
        logger.warning(f"Dropping {len(dropped)} masked-pretraining distillation tensors: {', '.join(dropped)}.")
        state_dict = {key: value for key, value in state_dict.items() if key not in dropped}
    if "norm.weight" in state_dict and "norm_f.weight" not in state_dict:
        logger.warning("Masked-pretraining checkpoint: its final `norm` becomes `norm_f`; it has no classifier head.")
        state_dict["norm_f.weight"] = state_dict.pop("norm.weight")
    return state_dict


def load_checkpoint(path: str | os.PathLike) -> Mapping[str, object]:
    """`torch.load` with `weights_only=True`: tensors and containers only, no pickled code runs.

    `argparse.Namespace` is allowed too, since VideoMamba's training checkpoints store their `args` in one.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def infer_configs(
    state_dict: Mapping[str, torch.Tensor],
    preset: str = "auto",
    num_frames: int | None = None,
    image_size: int | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[StretchySnakeConfig, StretchySnakeConfig]:
    """The checkpoint's own config, read off tensor shapes, and the config to convert to.

    The second has `num_frames`/`image_size` when given (the position tables are re-based to them) and the labels,
    which need a checkpoint with a classification head. A 2-D image checkpoint has no temporal table; its frame count is `num_frames` (default 8).
    """
    absent = [
        key
        for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "layers.0.mixer.A_log")
        if key not in state_dict
    ]
    if absent:
        raise ValueError(f"Not a VideoMamba checkpoint: it has no {', '.join(absent)}.")
    if preset != "auto" and preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose 'auto' or one of {sorted(PRESETS)}.")
    hidden_size = state_dict["cls_token"].shape[-1]
    depth = len({match.group() for key in state_dict if (match := LAYER_KEY.match(key))})
    size = {"hidden_size": hidden_size, "num_hidden_layers": depth}
    matching = [name for name, preset_size in PRESETS.items() if preset_size == size]
    if preset != "auto" and preset not in matching:
        raise ValueError(f"The checkpoint is {hidden_size} wide and {depth} layers deep: not the {preset!r} preset.")
    logger.info(
        f"VideoMamba checkpoint {hidden_size} wide, {depth} deep: preset {matching[0] if matching else 'none'}."
    )

    kernel, num_positions = state_dict["patch_embed.proj.weight"], state_dict["pos_embed"].shape[1] - 1
    grid = math.isqrt(num_positions)
    if grid * grid != num_positions:
        raise ValueError(f"pos_embed holds {num_positions} grid positions: not a square grid.")
    tubelet_size = kernel.shape[2] if kernel.dim() == 5 else 1
    temporal = state_dict.get("temporal_pos_embedding")
    A_log = state_dict["layers.0.mixer.A_log"]
    common = {
        **size,
        "patch_size": kernel.shape[-1],
        "tubelet_size": tubelet_size,
        "d_state": A_log.shape[1],
        "d_conv": state_dict["layers.0.mixer.conv1d.weight"].shape[-1],
        "expand": A_log.shape[0] // hidden_size,
        "dt_rank": state_dict["layers.0.mixer.dt_proj.weight"].shape[1],
    }
    absent_from_head = [key for key in ("head.weight", "head.bias") if key not in state_dict]
    if len(absent_from_head) == 1:
        raise ValueError(f"The checkpoint's classification head has no {absent_from_head[0]}; it needs both tensors.")
    if not absent_from_head:
        common["num_labels"] = state_dict["head.weight"].shape[0]
    elif labels is not None:
        raise ValueError(
            f"{len(labels)} labels given, but the checkpoint has no classification head (head.weight): it converts "
            "to a backbone, saved without a head. The labels belong to a model fine-tuned from it."
        )
    if labels is not None:
        if len(labels) != common["num_labels"]:
            raise ValueError(f"{len(labels)} labels given for a head with {common['num_labels']} classes.")
        common["id2label"] = dict(enumerate(labels))
        common["label2id"] = {label: index for index, label in enumerate(labels)}
    source_frames = temporal.shape[1] * tubelet_size if temporal is not None else num_frames or 8
    source = StretchySnakeConfig(**common, num_frames=source_frames, image_size=grid * kernel.shape[-1])
    target = StretchySnakeConfig(
        **common, num_frames=num_frames or source.num_frames, image_size=image_size or source.image_size
    )
    return source, target


def complete_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: StretchySnakeConfig
) -> dict[str, torch.Tensor]:
    """A 2-D image checkpoint made a video one: its kernel inflated to a 1-frame tubelet, a zero temporal table.

    This is VideoMamba's own inflation (with a tubelet of 1, its centred and averaged variants agree).
    """
    state_dict = dict(state_dict)
    kernel = state_dict["patch_embed.proj.weight"]
    if kernel.dim() == 4:
        logger.info(f"Inflating the 2-D patch kernel {tuple(kernel.shape)} to a 1-frame Conv3d kernel.")
        state_dict["patch_embed.proj.weight"] = kernel.unsqueeze(2)
    if "temporal_pos_embedding" not in state_dict:
        logger.info(
            f"No temporal position table (an image checkpoint): starting from zeros for {config.num_frames} frames."
        )
        state_dict["temporal_pos_embedding"] = kernel.new_zeros(
            1, config.num_frames // config.tubelet_size, config.hidden_size
        )
    return state_dict


def rename_to_package(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """VideoMamba keys renamed to this package's, shapes checked; refuses unknown and missing keys, listing them.

    `expected` maps this package's keys to their shapes at the checkpoint's scale. The classifier may be absent.
    """
    originals = {package: original for original, package in ORIGINAL_TO_PACKAGE.items()}
    renamed, unknown, wrong_shapes = {}, [], []
    for key, value in state_dict.items():
        name = ORIGINAL_TO_PACKAGE.get(key) or (f"stretchysnake.{key}" if LAYER_KEY.match(key) else None)
        if name not in expected:
            unknown.append(key)
            continue
        if value.shape != expected[name]:
            wrong_shapes.append(f"{key} {tuple(value.shape)} (expected {tuple(expected[name])})")
        renamed[name] = value
    missing = [originals.get(key, key.removeprefix("stretchysnake.")) for key in expected if key not in renamed]
    missing = [key for key in missing if not key.startswith("head.")]
    if unknown or missing or wrong_shapes:
        raise ValueError(
            "The checkpoint does not match VideoMamba's layout. "
            f"Unknown keys: {sorted(unknown) or 'none'}. Missing keys: {missing or 'none'}. "
            f"Wrong shapes: {wrong_shapes or 'none'}."
        )
    return renamed


def convert_videomamba_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, object],
    output_dir: str | os.PathLike | None = None,
    preset: str = "auto",
    num_frames: int | None = None,
    image_size: int | None = None,
    labels: Sequence[str] | None = None,
) -> StretchySnakeModel | StretchySnakeForVideoClassification:
    """Convert a VideoMamba checkpoint (a `.pth` path, or the object `torch.load` returned), optionally saving it.

    At the checkpoint's scale the model computes what VideoMamba computes. `num_frames`/`image_size` re-base the
    position tables (and nothing else) to another base scale with `rebase_tensor`, as VideoMamba's fine-tuning
    scripts do at load time. A checkpoint without a head becomes a `StretchySnakeModel` (and takes no `labels`). With `output_dir`, writes
    safetensors weights, `config.json`, the processor config and a model card (see `save_converted`).
    """
    source_name = Path(checkpoint).name if isinstance(checkpoint, (str, os.PathLike)) else "a VideoMamba checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load_checkpoint(checkpoint)
    state_dict = unwrap_state_dict(checkpoint)
    source, target = infer_configs(state_dict, preset, num_frames, image_size, labels)
    with torch.device("meta"):
        expected = {
            key: value.shape for key, value in StretchySnakeForVideoClassification(source).state_dict().items()
        }
    renamed = rename_to_package(complete_state_dict(state_dict, source), expected)

    has_head = "classifier.weight" in renamed
    model = (StretchySnakeForVideoClassification if has_head else StretchySnakeModel)(target).eval()
    prefix = "" if has_head else "stretchysnake."
    target_shapes = {prefix + key: value.shape for key, value in model.state_dict().items()}
    total_bytes = sum(value.numel() * value.element_size() for value in renamed.values())
    rebased = {
        key.removeprefix(prefix): rebase_tensor(key, value, target_shapes[key])
        for key, value in tqdm(renamed.items(), desc="Converting", disable=total_bytes < PROGRESS_BYTES)
    }
    model.load_state_dict(rebased, strict=True)
    if output_dir is not None:
        save_converted(model, output_dir, source_name)
    return model


def save_converted(
    model: StretchySnakeModel | StretchySnakeForVideoClassification, output_dir: str | os.PathLike, source_name: str
) -> None:
    """Write the model (safetensors + config), a processor config at the model's scale and a model card."""
    config = model.config
    model.save_pretrained(output_dir)
    StretchySnakeVideoProcessor(num_frames=config.num_frames, size=config.image_size).save_pretrained(output_dir)
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    head = f"a {config.num_labels}-class head" if isinstance(model, StretchySnakeForVideoClassification) else "no head"
    card = render_model_card(
        model_id=str(output_dir),
        title=f"StretchySnake conversion of `{source_name}`",
        summary=(
            f"VideoMamba weights ({config.hidden_size} wide, {config.num_hidden_layers} layers, {num_parameters:,} "
            f"parameters, {head}) converted to the `stretchysnake_hf` layout with "
            "`python -m stretchysnake_hf.convert_videomamba`. Inputs are normalized with ImageNet's mean and standard "
            "deviation."
        ),
        training=(
            "These weights are the original VideoMamba release's, trained at one fixed scale, not with flexible "
            "training; fine-tune them with `examples/train_flex.py` to make them hold up across scales. Check the "
            "original checkpoint's license and the license of the data it was trained on before use."
        ),
        config=config,
        license=None,
    )
    Path(output_dir, "README.md").write_text(card, encoding="utf-8")


def read_labels(spec: str) -> list[str]:
    """Class names from a text file, one per line in the head's order. "kinetics400" is refused with a way out."""
    if spec == "kinetics400":
        raise ValueError(
            "The Kinetics-400 class names are not shipped with stretchysnake_hf (no licensed offline copy was "
            "available to bundle). Pass --labels FILE: the 400 class names, one per line, in the order of the "
            "checkpoint's head (VideoMamba uses the alphabetical order of the Kinetics-400 classes)."
        )
    names = [line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines()]
    return [name for name in names if name]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Convert an original VideoMamba checkpoint to a StretchySnake folder."
    )
    parser.add_argument("--checkpoint", required=True, help="VideoMamba .pth file (raw, 'model' or 'module' wrapped).")
    parser.add_argument("--output-dir", required=True, help="Folder to write (weights, config, processor, card).")
    parser.add_argument("--preset", default="auto", choices=["auto", *PRESETS], help="Check the model size.")
    parser.add_argument("--num-frames", type=int, help="Base frame count to re-base to (default: the checkpoint's).")
    parser.add_argument("--image-size", type=int, help="Base frame side to re-base to (default: the checkpoint's).")
    parser.add_argument("--labels", help="Class names of the head, one per line in a text file, or 'kinetics400'.")
    args = parser.parse_args(argv)
    logging.set_verbosity_info()
    labels = read_labels(args.labels) if args.labels else None
    model = convert_videomamba_checkpoint(
        args.checkpoint, args.output_dir, args.preset, args.num_frames, args.image_size, labels
    )
    logger.info(
        f"Wrote {type(model).__name__} ({model.config.num_frames} frames, {model.config.image_size} px) to {args.output_dir}."
    )


if __name__ == "__main__":
    main()
