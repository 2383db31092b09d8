# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""Video-consistent RandAugment and random erasing, the pixel augmentations of VideoMamba's fine-tuning recipe.

Both act on one clip `(num_frames, 3, height, width)` at a time: every frame of a clip gets the same operations with
the same magnitudes (and the same erased box), different clips get independent draws. Randomness comes from a
`torch.Generator`, so a seeded batch is augmented identically on every run, process and resume.

RandAugment follows timm's notation and semantics (`rand_augment_transform`, which VideoMamba's video version applies
to every frame of a clip): `m` magnitude (0-10), `n` operations drawn with replacement, `mstd` the standard deviation
of a Gaussian noise on the magnitude (drawn per operation and clip, clipped to [0, 10]), `inc1` the operations whose
severity increases with the magnitude. Each drawn operation is applied with probability 0.5; geometric ones fill with
grey (128) as VideoMamba's copy does. Images are floats in [0, 1] (no uint8 rounding between operations).
kornia supplies equalize, sharpness, posterize and the affine warps; it is imported only when RandAugment runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_LEVEL = 10.0
FILL = 128 / 255
"""Grey that geometric operations fill uncovered pixels with (VideoMamba's `_FILL`)."""
OPERATION_PROBABILITY = 0.5
ERASING_MODES = ("pixel", "rand", "const")


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed timm RandAugment string: `magnitude` (0-10), `num_ops`, `magnitude_std`, `increasing` ops."""

    magnitude: float = MAX_LEVEL
    num_ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False

    @property
    def operations(self) -> tuple[str, ...]:
        return INCREASING_OPERATIONS if self.increasing else OPERATIONS


def parse_rand_augment(spec: str) -> RandAugmentSpec:
    """timm's notation, with or without the leading `rand-`: `"m7-n4-mstd0.5-inc1"` -> magnitude 7, 4 operations,
    magnitude noise 0.5, increasing-severity operations. Unknown or malformed parts raise `ValueError`."""
    parts = spec.split("-")
    if parts and parts[0] == "rand":
        parts = parts[1:]
    values: dict[str, float] = {}
    for part in parts:
        match = re.fullmatch(r"(mstd|inc|m|n)(\d+(?:\.\d+)?)", part)
        if match is None:
            raise ValueError(
                f"RandAugment spec {spec!r}: cannot read {part!r} (supported: m<magnitude>, n<ops>, mstd<std>, "
                "inc<0|1>, e.g. 'rand-m7-n4-mstd0.5-inc1')"
            )
        values[match.group(1)] = float(match.group(2))
    parsed = RandAugmentSpec(
        magnitude=values.get("m", MAX_LEVEL),
        num_ops=int(values.get("n", 2)),
        magnitude_std=values.get("mstd", 0.0),
        increasing=bool(values.get("inc", 0)),
    )
    if not 0 <= parsed.magnitude <= MAX_LEVEL or parsed.num_ops < 1 or parsed.magnitude_std < 0:
        raise ValueError(f"RandAugment spec {spec!r}: needs 0 <= m <= 10, n >= 1, mstd >= 0; got {parsed}")
    return parsed


def _gray(clip: torch.Tensor) -> torch.Tensor:
    """Luma as PIL's `convert("L")` weighs it: `(frames, 1, height, width)`."""
    weights = clip.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (clip * weights).sum(1, keepdim=True)


def _blend(degenerate: torch.Tensor, clip: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's `ImageEnhance`: `degenerate + factor * (clip - degenerate)`, clipped to [0, 1]."""
    return (degenerate + factor * (clip - degenerate)).clamp(0, 1)


def _auto_contrast(clip: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each frame to [0, 1] (PIL's `autocontrast`; a constant channel stays as it is)."""
    low, high = clip.amin((2, 3), keepdim=True), clip.amax((2, 3), keepdim=True)
    stretched = (clip - low) / (high - low).clamp_min(1e-12)
    return torch.where(high > low, stretched, clip)


def _equalize(clip: torch.Tensor) -> torch.Tensor:
    from kornia.enhance import equalize

    return equalize(clip)


def _posterize(clip: torch.Tensor, bits: int) -> torch.Tensor:
    from kornia.enhance import posterize

    return clip if bits >= 8 else posterize(clip, bits)


def _sharpness(clip: torch.Tensor, factor: float) -> torch.Tensor:
    from kornia.enhance import sharpness

    return sharpness(clip, factor).clamp(0, 1)


def _warp(clip: torch.Tensor, inverse: list[list[float]], mode: str) -> torch.Tensor:
    """Sample output pixel (x, y) from input `inverse @ (x, y, 1)` (PIL's `Image.transform(AFFINE)` convention),
    uncovered pixels grey."""
    from kornia.geometry.transform import warp_affine

    matrix = torch.tensor(inverse + [[0.0, 0.0, 1.0]], dtype=clip.dtype).inverse()[:2]
    height, width = clip.shape[-2:]
    warped = warp_affine(clip - FILL, matrix.expand(len(clip), 2, 3), (height, width), mode=mode, align_corners=False)
    return (warped + FILL).clamp(0, 1)


def _rotate(clip: torch.Tensor, degrees: float, mode: str) -> torch.Tensor:
    """Counter-clockwise by `degrees` about the centre (PIL's `rotate`)."""
    height, width = clip.shape[-2:]
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    # output (x, y) takes input R(-degrees) about the centre, in image coordinates (y down)
    inverse = [
        [cos, -sin, centre_x - cos * centre_x + sin * centre_y],
        [sin, cos, centre_y - sin * centre_x - cos * centre_y],
    ]
    return _warp(clip, inverse, mode)


# name -> (operation(clip, argument, mode), magnitude level in [0, 10] -> argument (may draw a random sign))
Level = Callable[[float, Callable[[float], float]], float]


def _signed(scale: float) -> Level:
    return lambda level, sign: sign(level / MAX_LEVEL * scale)


def _enhance_increasing(level: float, sign: Callable[[float], float]) -> float:
    return 1.0 + sign(level / MAX_LEVEL * 0.9)


def _enhance(level: float, _sign: Callable[[float], float]) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


_OPS: dict[str, tuple[Callable[[torch.Tensor, float, str], torch.Tensor], Level | None]] = {
    "AutoContrast": (lambda c, _a, _m: _auto_contrast(c), None),
    "Equalize": (lambda c, _a, _m: _equalize(c), None),
    "Invert": (lambda c, _a, _m: 1 - c, None),
    "Rotate": (lambda c, a, m: _rotate(c, a, m), _signed(30.0)),
    "Posterize": (lambda c, a, _m: _posterize(c, int(a)), lambda level, _s: int(level / MAX_LEVEL * 4)),
    "PosterizeIncreasing": (lambda c, a, _m: _posterize(c, int(a)), lambda level, _s: 4 - int(level / MAX_LEVEL * 4)),
    "Solarize": (lambda c, a, _m: torch.where(c >= a / 255, 1 - c, c), lambda level, _s: int(level / MAX_LEVEL * 256)),
    "SolarizeIncreasing": (
        lambda c, a, _m: torch.where(c >= a / 255, 1 - c, c),
        lambda level, _s: 256 - int(level / MAX_LEVEL * 256),
    ),
    "SolarizeAdd": (
        lambda c, a, _m: torch.where(c < 128 / 255, (c + a / 255).clamp(max=1), c),
        lambda level, _s: int(level / MAX_LEVEL * 110),
    ),
    "Color": (lambda c, a, _m: _blend(_gray(c), c, a), _enhance),
    "ColorIncreasing": (lambda c, a, _m: _blend(_gray(c), c, a), _enhance_increasing),
    "Contrast": (lambda c, a, _m: _blend(_gray(c).mean((1, 2, 3), keepdim=True), c, a), _enhance),
    "ContrastIncreasing": (lambda c, a, _m: _blend(_gray(c).mean((1, 2, 3), keepdim=True), c, a), _enhance_increasing),
    "Brightness": (lambda c, a, _m: _blend(torch.zeros_like(c), c, a), _enhance),
    "BrightnessIncreasing": (lambda c, a, _m: _blend(torch.zeros_like(c), c, a), _enhance_increasing),
    "Sharpness": (lambda c, a, _m: _sharpness(c, a), _enhance),
    "SharpnessIncreasing": (lambda c, a, _m: _sharpness(c, a), _enhance_increasing),
    "ShearX": (lambda c, a, m: _warp(c, [[1, a, 0], [0, 1, 0]], m), _signed(0.3)),
    "ShearY": (lambda c, a, m: _warp(c, [[1, 0, 0], [a, 1, 0]], m), _signed(0.3)),
    "TranslateXRel": (lambda c, a, m: _warp(c, [[1, 0, a * c.shape[-1]], [0, 1, 0]], m), _signed(0.45)),
    "TranslateYRel": (lambda c, a, m: _warp(c, [[1, 0, 0], [0, 1, a * c.shape[-2]]], m), _signed(0.45)),
}

_COMMON = ("AutoContrast", "Equalize", "Invert", "Rotate")
_GEOMETRIC = ("ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
OPERATIONS = (
    *_COMMON,
    *("Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness"),
    *_GEOMETRIC,
)
"""timm's `_RAND_TRANSFORMS`."""
INCREASING_OPERATIONS = (
    *_COMMON,
    *("PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing"),
    *("BrightnessIncreasing", "SharpnessIncreasing"),
    *_GEOMETRIC,
)
"""timm's `_RAND_INCREASING_TRANSFORMS` (`inc1`)."""


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def apply_operation(clip: torch.Tensor, name: str, level: float, sign: float = 1.0, mode: str = "bicubic"):
    """One RandAugment operation at magnitude `level` (0-10) on every frame of `clip` `(frames, 3, H, W)` in [0, 1];
    `sign` is the random sign timm gives the signed operations (rotation, shear, translation, enhance factors)."""
    operation, level_to_argument = _OPS[name]
    argument = 0.0 if level_to_argument is None else level_to_argument(level, lambda value: sign * value)
    return operation(clip, argument, mode)


def rand_augment(
    clip: torch.Tensor, spec: RandAugmentSpec, generator: torch.Generator | None = None, mode: str = "bicubic"
) -> torch.Tensor:
    """RandAugment of one clip `(frames, 3, H, W)` in [0, 1]: `spec.num_ops` operations drawn with replacement, each
    applied with probability 0.5 at magnitude `N(spec.magnitude, spec.magnitude_std)` clipped to [0, 10], the same on
    every frame. `mode` is the interpolation of the geometric operations."""
    names = spec.operations
    for index in torch.randint(len(names), (spec.num_ops,), generator=generator).tolist():
        if _uniform(generator) > OPERATION_PROBABILITY:
            continue
        level = spec.magnitude
        if spec.magnitude_std > 0:
            level += spec.magnitude_std * float(torch.randn((), generator=generator))
        level = min(MAX_LEVEL, max(0.0, level))
        sign = -1.0 if _uniform(generator) < 0.5 else 1.0
        clip = apply_operation(clip, names[index], level, sign, mode)
    return clip


def erasing_box(
    height: int, width: int, generator: torch.Generator | None = None, attempts: int = 100
) -> tuple[int, int, int, int] | None:
    """timm's random-erasing box: area a fraction U(0.02, 1/3) of the frame, log aspect ratio U(log 0.3, log 1/0.3);
    the first of `attempts` draws that fits, as `(top, left, box_height, box_width)`, or `None`."""
    for _ in range(attempts):
        area = (0.02 + (1 / 3 - 0.02) * _uniform(generator)) * height * width
        aspect = math.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * _uniform(generator))
        box_height, box_width = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if box_width < width and box_height < height:
            top = int(torch.randint(height - box_height + 1, (), generator=generator))
            left = int(torch.randint(width - box_width + 1, (), generator=generator))
            return top, left, box_height, box_width
    return None


def random_erase(
    clip: torch.Tensor, probability: float, mode: str = "pixel", generator: torch.Generator | None = None
) -> torch.Tensor:
    """With `probability`, replace one box (`erasing_box`, the same on every frame) of a normalized clip
    `(frames, 3, H, W)`: "pixel" with standard-normal noise per pixel, "rand" with one normal value per channel,
    "const" with zeros (the mean colour); noise is drawn afresh for each frame, as in VideoMamba's `cube` erasing."""
    if mode not in ERASING_MODES:
        raise ValueError(f"random erasing mode must be one of {ERASING_MODES}; got {mode!r}")
    if probability <= 0 or _uniform(generator) >= probability:
        return clip
    box = erasing_box(*clip.shape[-2:], generator=generator)
    if box is None:
        return clip
    top, left, box_height, box_width = box
    frames, channels = clip.shape[:2]
    shape = {"pixel": (frames, channels, box_height, box_width), "rand": (frames, channels, 1, 1)}.get(mode)
    fill = clip.new_zeros(()) if shape is None else torch.randn(shape, generator=generator).to(clip.dtype)
    clip = clip.clone()
    clip[:, :, top : top + box_height, left : left + box_width] = fill
    return clip
