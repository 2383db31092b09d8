# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""StretchySnake model configuration."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .selective_scan import SCAN_BACKENDS

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 192, "num_hidden_layers": 24},
    "small": {"hidden_size": 384, "num_hidden_layers": 24},
    "middle": {"hidden_size": 576, "num_hidden_layers": 32},
}


@strict
class StretchySnakeConfig(PreTrainedConfig):
    r"""
    Configuration of a StretchySnake model: a VideoMamba backbone (bidirectional Mamba over spatial-first video
    tokens) that runs at any frame count, resolution and patch size. The geometry fields give the *base scale*,
    the shapes the position tables and the patch kernel are stored at; other scales are interpolated on the fly.

    Presets (`StretchySnakeConfig.from_preset`): "tiny" (192 x 24 layers, 7M parameters with a Kinetics-400 head),
    "small" (384 x 24, 26M) and "middle" (576 x 32, 74M), all with d_state 16, d_conv 4 and expand 2.

    Args:
        image_size (`int`, *optional*, defaults to 224):
            Base frame side in pixels; `image_size // patch_size` is the side of the stored spatial position grid.
        patch_size (`int`, *optional*, defaults to 16):
            Base spatial patch size, the side of the stored patch kernel.
        num_frames (`int`, *optional*, defaults to 8):
            Base frame count; `num_frames // tubelet_size` rows are stored in the temporal position table.
        tubelet_size (`int`, *optional*, defaults to 1):
            Temporal extent of a patch.
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the input frames.
        hidden_size (`int`, *optional*, defaults to 192):
            Width of the token stream.
        num_hidden_layers (`int`, *optional*, defaults to 24):
            Number of bidirectional Mamba blocks.
        d_state (`int`, *optional*, defaults to 16):
            State size N of the selective scan.
        d_conv (`int`, *optional*, defaults to 4):
            Kernel size of the causal depthwise convolution in the mixer.
        expand (`int`, *optional*, defaults to 2):
            The mixer's inner width is `expand * hidden_size`.
        dt_rank (`int` or `"auto"`, *optional*, defaults to `"auto"`):
            Rank of the time-step projection; "auto" stands for `ceil(hidden_size / 16)`.
        dt_min (`float`, *optional*, defaults to 0.001):
            Smallest initial time step.
        dt_max (`float`, *optional*, defaults to 0.1):
            Largest initial time step.
        dt_init_floor (`float`, *optional*, defaults to 1e-4):
            Floor of the initial time step.
        drop_path_rate (`float`, *optional*, defaults to 0.1):
            Stochastic depth rate of the last block; block i gets `drop_path_rate * i / (num_hidden_layers - 1)`.
        rms_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the RMSNorms.
        residual_in_fp32 (`bool`, *optional*, defaults to `True`):
            Keep the residual stream in float32 whatever the compute dtype.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal used for linear layers and the spatial position table.
        scan_backend (`str`, *optional*, defaults to `"auto"`):
            Selective-scan backend: "auto" (the fastest correct one for the device), "reference" (plain loop),
            or a named fast backend: "numba", "chunked", "cuda".

    Example:

    ```python
    >>> from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification

    >>> config = StretchySnakeConfig.from_preset("tiny", num_labels=400)
    >>> model = StretchySnakeForVideoClassification(config)
    ```"""

    model_type: ClassVar[str] = "stretchysnake"

    # geometry (base scale)
    image_size: int = 224
    patch_size: int = 16
    num_frames: int = 8
    tubelet_size: int = 1
    num_channels: int = 3
    # backbone
    hidden_size: int = 192
    num_hidden_layers: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    drop_path_rate: float = 0.1
    rms_norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    initializer_range: float = 0.02
    scan_backend: str = "auto"

    def __post_init__(self, **kwargs: Any) -> None:
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.hidden_size / 16)
        super().__post_init__(**kwargs)
        self.check_values()

    @property
    def intermediate_size(self) -> int:
        return self.expand * self.hidden_size

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> StretchySnakeConfig:
        """A config for the "tiny", "small" or "middle" VideoMamba size, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> StretchySnakeConfig | tuple[StretchySnakeConfig, dict[str, Any]]:
        """`PreTrainedConfig.from_pretrained` (a tuple with `return_unused_kwargs=True`), refusing the config of
        another model type (see `check_model_type`)."""
        cls.check_model_type(pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def check_model_type(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> None:
        """Raise a `ValueError` if the `config.json` of a model folder or Hub repo is another model type's.

        transformers would only warn and read the foreign fields into this config: a randomly initialised model, or an
        error about a field that happens to share a name. `kwargs` may hold `from_pretrained`'s Hub arguments
        (revision, token, cache_dir...); the others are ignored. A missing `config.json` raises `OSError`.
        """
        model_type = cls.get_config_dict(pretrained_model_name_or_path, **kwargs)[0].get("model_type")
        if model_type not in (None, cls.model_type):
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {model_type!r} checkpoint, not a {cls.model_type!r} one; "
                f"load it with its own class (e.g. AutoModelForVideoClassification), or convert an original "
                f"VideoMamba checkpoint with `python -m stretchysnake_hf.convert_videomamba`."
            )

    def check_values(self) -> None:
        """Raise a `ValueError` naming the field and its value if a field is out of range or the base scale is not
        whole. Runs on construction; `from_pretrained`'s overrides are set afterwards, so the model checks again."""
        positive = (
            "image_size",
            "patch_size",
            "num_frames",
            "tubelet_size",
            "num_channels",
            "hidden_size",
            "num_hidden_layers",
            "d_state",
            "d_conv",
            "expand",
            "dt_rank",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} does not divide image_size {self.image_size}; "
                f"the base grid must be whole."
            )
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"tubelet_size {self.tubelet_size} does not divide num_frames {self.num_frames}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1); got {self.drop_path_rate!r}.")
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ValueError(f"Need 0 < dt_min <= dt_max; got dt_min={self.dt_min!r}, dt_max={self.dt_max!r}.")
        if self.rms_norm_eps <= 0:
            raise ValueError(f"rms_norm_eps must be positive; got {self.rms_norm_eps!r}.")
        if self.scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"Unknown scan_backend {self.scan_backend!r}; choose one of {SCAN_BACKENDS}.")
        repeated = sorted(name for name, count in Counter(self.id2label.values()).items() if count > 1)
        if repeated:
            raise ValueError(
                f"id2label names more than one class {', '.join(map(repr, repeated))}: label2id would send each such "
                "name to one of its classes only. Give every class its own name."
            )


__all__ = ["StretchySnakeConfig"]
