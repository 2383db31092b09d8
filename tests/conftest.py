"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch
from transformers.utils import logging

from stretchysnake_hf import StretchySnakeConfig

# GPU comparisons against float32 references need true float32 matmuls and convolutions, not TF32.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "image_size": 16,
    "patch_size": 8,
    "num_frames": 4,
    "num_labels": 3,
    "drop_path_rate": 0.0,
}


def tiny_config(**overrides) -> StretchySnakeConfig:
    """A StretchySnake small enough for the plain reference scan: 4 frames of 2x2 tokens, width 32, depth 2."""
    return StretchySnakeConfig(**{**TINY, **overrides})


@pytest.fixture
def make_tiny_config():
    return tiny_config


@pytest.fixture
def transformers_info_logs():
    """Raise transformers' verbosity and this package's loggers (`stretchysnake_hf.*`) to info for one test (read the
    messages with `CaptureLogger`)."""
    verbosity = logging.get_verbosity()
    package_logger = logging.get_logger("stretchysnake_hf")
    package_level = package_logger.level
    logging.set_verbosity_info()
    package_logger.setLevel(logging.INFO)
    yield
    logging.set_verbosity(verbosity)
    package_logger.setLevel(package_level)
