# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""StretchySnake for Hugging Face transformers: a VideoMamba video SSM that runs at any length and resolution."""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

from .configuration_stretchysnake import StretchySnakeConfig
from .modeling_stretchysnake import (
    StretchySnakeForVideoClassification,
    StretchySnakeModel,
    StretchySnakePreTrainedModel,
)

AutoConfig.register(StretchySnakeConfig.model_type, StretchySnakeConfig, exist_ok=True)
AutoModel.register(StretchySnakeConfig, StretchySnakeModel, exist_ok=True)
AutoModelForVideoClassification.register(StretchySnakeConfig, StretchySnakeForVideoClassification, exist_ok=True)

__all__ = [
    "StretchySnakeConfig",
    "StretchySnakeForVideoClassification",
    "StretchySnakeModel",
    "StretchySnakePreTrainedModel",
]
