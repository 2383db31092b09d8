# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The Hugging Face model card of StretchySnake checkpoints (the repository's MODEL_CARD.md and train_flex's)."""

from __future__ import annotations

from collections.abc import Sequence

from huggingface_hub import ModelCardData

from .configuration_stretchysnake import StretchySnakeConfig
from .flexible_training import variants_markdown_table

CITATION = """```bibtex
@article{siddiqui2025stretchysnake,
  title   = {StretchySnake: Flexible SSM Training Unlocks Action Recognition Across Spatio-Temporal Scales},
  author  = {Siddiqui, Nyle and Gupta, Rohit and Swetha, Sirnam and Shah, Mubarak},
  journal = {arXiv preprint arXiv:2510.16209},
  year    = {2025}
}

@inproceedings{li2024videomamba,
  title     = {VideoMamba: State Space Model for Efficient Video Understanding},
  author    = {Li, Kunchang and Li, Xinhao and Wang, Yi and He, Yinan and Wang, Yali and Wang, Limin and Qiao, Yu},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024},
  note      = {arXiv:2403.06977}
}
```"""


def render_model_card(
    model_id: str,
    title: str,
    summary: str,
    training: str,
    results: str | None = None,
    heatmap: str | None = None,
    config: StretchySnakeConfig | None = None,
    datasets: Sequence[str] = (),
    license: str | None = "apache-2.0",
) -> str:
    """A model card (README.md) with Hub metadata and the sections every StretchySnake card has.

    Args:
        model_id: folder or Hub id used in the loading example.
        title / summary: the card's heading and first paragraph.
        training: markdown saying how these weights were trained (variant, sets, steps, data).
        results: markdown of the multi-scale results; `heatmap`: path of their picture, relative to the card.
        config: the checkpoint's config, for its size and base scale; `None` for a card about the architecture.
        datasets: Hub dataset ids for the metadata.
        license: the weights' license; `None` leaves it out (fine-tuned weights inherit their source's license).
    """
    tags = ["video-classification", "stretchysnake", "videomamba", "mamba", "state-space-model", "flexible-training"]
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "video-classification",
        "license": license,
        "tags": tags,
        "datasets": list(datasets) or None,
        "metrics": ["accuracy"],
    }
    # ModelCardData quotes what YAML would read as another type ("yes", "#hash", "org/x: y") and drops the Nones.
    metadata_yaml = ModelCardData(**metadata).to_yaml(original_order=list(metadata))

    checkpoint = ""
    if config is not None:
        checkpoint = (
            f"\n\nThis checkpoint: {config.hidden_size} channels, {config.num_hidden_layers} blocks, d_state "
            f"{config.d_state}, {config.num_labels} classes; stored tables at the base scale of "
            f"{config.num_frames} frames, {config.image_size} px, patch {config.patch_size}."
        )
    results_section = results or "No multi-scale evaluation was run for these weights."
    if heatmap:
        results_section += f"\n\n![Top-1 accuracy over frames and resolutions]({heatmap})"
    return f"""---
{metadata_yaml}
---

# {title}

{summary}

## Model description

StretchySnake is VideoMamba (Li et al., ECCV 2024) trained so that one set of weights classifies videos at any frame
count, resolution and patch size. A Conv3d patch embedding (kernel = stride = (1, p, p)) turns each frame into a grid
of tokens; a cls token, a spatial position table (shared by all frames) and a temporal position table are added; the
tokens, in spatial-first order, go through pre-norm residual blocks of bidirectional Mamba (a selective state-space
scan over the sequence and over its reverse, sharing the input and output projections); a linear head reads the
cls token. The cost grows linearly with the number of tokens, `frames x (resolution / patch)^2`.

At any input scale the position tables are interpolated (spatial: 2-D bicubic; temporal: 1-D linear) and the patch
kernel is PI-resized (FlexiViT's pseudo-inverse resize), on the fly and differentiably.{checkpoint}

## Flexible training

Each optimizer step trains at one (frames, resolution, patch size) drawn by a schedule that depends only on
(seed, step), so every process of a distributed run and a resumed run use the same scale. The paper compares five
variants and finds static tokens best; this package defines them as follows (the frame, resolution and patch-size
sets are configurable; the paper's are frames {{8, 16, 32, 64}} and resolutions {{96, 128, 224, 384}}):

{variants_markdown_table()}

{training}

## Intended use

Video classification (action recognition) where clip length, resolution or compute budget varies: one checkpoint
serves short low-resolution clips cheaply and long high-resolution clips accurately, with the patch size choosing
the token count. Also a backbone to fine-tune with `examples/train_flex.py`.

## Limitations

- The paper names only its best variant, static tokens; the exact definitions of the other four (`static_patch`,
  `flexi_patch`, `random`, `temporal_only`) are this package's own, and so are the patch-size sets and the token
  grid, so numbers from these variants are not the paper's.
- Accuracy away from the training scales depends on the data and the training sets; measure it on your data with
  `examples/eval_scales.py` before relying on a scale.
- Horizontal-flip augmentation is wrong for direction-sensitive classes; turn it off for them.
- Trained on the data named above only; expect the biases of that data.

## How to load at any scale

```python
import stretchysnake_hf  # registers the Auto classes (or pass trust_remote_code=True)
from transformers import AutoImageProcessor, AutoModelForVideoClassification

model = AutoModelForVideoClassification.from_pretrained("{model_id}")
processor = AutoImageProcessor.from_pretrained("{model_id}")
inputs = processor(["clip.mp4"], num_frames=16, size=128, patch_size=8)  # any frames; size divisible by patch
label = model.config.id2label[model(**inputs).logits.argmax(-1).item()]

# Or store the tables at another base scale (checkpoint tensors are resized, not re-initialized):
model = AutoModelForVideoClassification.from_pretrained(
    "{model_id}", num_frames=32, image_size=384, patch_size=32
)
```

Evaluate a checkpoint over a grid of scales:
`python examples/eval_scales.py --model {model_id} --data_dir DATA/test --frames 8 16 32 64 --resolutions 96 128 224
384 --output-dir OUT`.

## Multi-scale results

{results_section}

## Citation

StretchySnake (arXiv 2510.16209) and VideoMamba (arXiv 2403.06977):

{CITATION}
"""


__all__ = ["render_model_card"]
