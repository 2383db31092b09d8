# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Layer-wise learning-rate decay with VideoMamba's weight-decay exemptions, and an exponential moving average of
the weights.

Layer ids, by one of two rules (`LAYER_DECAY_RULES`); a parameter of layer l trains at `layer_decay ** (depth + 1 - l)`
times the learning rate:
- "depth" (BEiT's, and VideoMamba's as its authors meant it): the embeddings (patch kernel, cls token, position
  tables) are layer 0, block i is layer i + 1, the final norm and the classifier are layer `depth + 1`.
- "videomamba" (VideoMamba's `get_num_layer_for_vit` as its published video models were fine-tuned, and as its code
  stands: the rule for its blocks was added, found not to help VideoMamba-M, and commented out again): the patch
  kernel, the cls token and the spatial position table are layer 0 and everything else, the temporal position table
  included (its name is not in the rule's list), is layer `depth + 1`, so only those three are decayed.

No weight decay, as VideoMamba's `get_parameter_groups` decides: 1-D parameters (norm weights, `D`, `D_b`), biases,
and the cls token and position tables (its `no_weight_decay()` list). `A_log`/`A_b_log` are 2-D and are decayed:
VideoMamba's optimizer factory ignores the `_no_weight_decay` mark mamba-ssm puts on them, so its published runs
decayed them too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

_WRAPPER_PREFIXES = re.compile(r"(^|\.)(?:module|_orig_mod|_fsdp_wrapped_module|_checkpoint_wrapped_module)\.")
NO_WEIGHT_DECAY = ("cls_token", "position_embeddings", "temporal_position_embeddings")
"""Names (last component) of the tables VideoMamba exempts from weight decay besides 1-D parameters and biases."""
LAYER_DECAY_RULES = ("depth", "videomamba")
_VIDEOMAMBA_DECAYED = ("embeddings.patch_embeddings.", "embeddings.cls_token", "embeddings.position_embeddings")


def check_layer_decay_rule(rule: str) -> None:
    """Raises `ValueError` naming `rule` unless it is one of `LAYER_DECAY_RULES`."""
    if rule not in LAYER_DECAY_RULES:
        raise ValueError(f"Unknown layer-decay rule {rule!r}; choose one of {LAYER_DECAY_RULES}")


def layer_id(name: str, depth: int, rule: str = "depth") -> int:
    """The layer-decay id of a `StretchySnakeForVideoClassification` (or `StretchySnakeModel`) parameter name under
    `rule` (one of `LAYER_DECAY_RULES`, see the module docstring)."""
    check_layer_decay_rule(rule)
    name = _WRAPPER_PREFIXES.sub(r"\1", name).removeprefix("stretchysnake.")
    block = re.match(r"layers\.(\d+)\.", name)
    if not (block or name.startswith(("embeddings.", "norm_f.", "classifier."))):
        raise ValueError(
            f"No layer-decay rule for parameter {name!r} (expected embeddings.*, layers.<i>.*, norm_f, classifier)"
        )
    if rule == "videomamba":
        return 0 if name.startswith(_VIDEOMAMBA_DECAYED) else depth + 1
    if name.startswith("embeddings."):
        return 0
    return int(block.group(1)) + 1 if block else depth + 1


def has_weight_decay(name: str, parameter: torch.Tensor) -> bool:
    """VideoMamba's rule: no decay for 1-D parameters, biases and the cls/position tables."""
    return parameter.ndim > 1 and not name.endswith(".bias") and name.rsplit(".", 1)[-1] not in NO_WEIGHT_DECAY


def layer_decay_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    layer_decay: float,
    depth: int | None = None,
    rule: str = "depth",
) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per (layer id, decayed or not), each with its `lr`
    (`learning_rate * layer_decay ** (depth + 1 - id)`, ids by `rule`), `weight_decay`, and for inspection `layer_id`
    and `names`. Frozen parameters are left out. `depth` defaults to `model.config.num_hidden_layers`. The groups run
    from the top layer down, so the first one (whose learning rate the Trainer logs) trains at `learning_rate`
    itself."""
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1]; got {layer_decay}")
    depth = model.config.num_hidden_layers if depth is None else depth
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer, decayed = layer_id(name, depth, rule), has_weight_decay(name, parameter)
        group = groups.setdefault(
            (layer, decayed),
            {
                "params": [],
                "names": [],
                "layer_id": layer,
                "lr": learning_rate * layer_decay ** (depth + 1 - layer),
                "weight_decay": weight_decay if decayed else 0.0,
            },
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups, reverse=True)]


class ModelEma:
    """An exponential moving average of a model's floating-point parameters and buffers:
    `ema = decay * ema + (1 - decay) * value` after each `update(model)` (timm's `ModelEma`, which VideoMamba uses);
    integer buffers are copied. `module` is a frozen copy of the model in eval mode, on the model's device."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1); got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach().to(average.device)
            if average.is_floating_point():
                average.mul_(self.decay).add_(value.to(average.dtype), alpha=1.0 - self.decay)
            else:
                average.copy_(value)

    @contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[None]:
        """Inside the block, `model` holds the averaged weights; its own come back afterwards."""
        own = {name: value.detach().clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.module.state_dict())
        try:
            yield
        finally:
            model.load_state_dict(own)
