# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""StretchySnake for Hugging Face transformers: a VideoMamba video SSM that runs at any length and resolution."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForVideoClassification
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from .configuration_stretchysnake import StretchySnakeConfig
from .inference import predict
from .modeling_stretchysnake import (
    StretchySnakeForVideoClassification,
    StretchySnakeModel,
    StretchySnakePreTrainedModel,
)
from .video_processing_stretchysnake import StretchySnakeVideoProcessor

AutoConfig.register(StretchySnakeConfig.model_type, StretchySnakeConfig, exist_ok=True)
AutoModel.register(StretchySnakeConfig, StretchySnakeModel, exist_ok=True)
AutoModelForVideoClassification.register(StretchySnakeConfig, StretchySnakeForVideoClassification, exist_ok=True)
# Both backends map to the one processor, so AutoImageProcessor finds it with or without torchvision installed.
AutoImageProcessor.register(
    StretchySnakeConfig,
    image_processor_classes={"pil": StretchySnakeVideoProcessor, "torchvision": StretchySnakeVideoProcessor},
    exist_ok=True,
)
# pipeline("video-classification", model=DIR) also asks AutoVideoProcessor (this module's class: the top-level
# `transformers.AutoVideoProcessor` is a placeholder without torchvision). It reads the folder's AutoImageProcessor
# auto_map as remote code, so unless it knows the class here it stops at the 15 s "run custom code? [y/N]" prompt.
AutoVideoProcessor.register(
    StretchySnakeConfig,
    video_processor_classes={"pil": StretchySnakeVideoProcessor, "torchvision": StretchySnakeVideoProcessor},
    exist_ok=True,
)
# save_pretrained/push_to_hub then write `auto_map` and copy the code files: folders load with trust_remote_code=True.
StretchySnakeConfig.register_for_auto_class()
StretchySnakeModel.register_for_auto_class("AutoModel")
StretchySnakeForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
StretchySnakeVideoProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "StretchySnakeConfig",
    "StretchySnakeForVideoClassification",
    "StretchySnakeModel",
    "StretchySnakePreTrainedModel",
    "StretchySnakeVideoProcessor",
    "predict",
]
