"""Main job (until flexible training lands): a small StretchySnake classifying one generated clip at three scales."""

import time

import torch

from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification


def moving_square(num_frames: int, size: int) -> torch.Tensor:
    """A white square crossing a black frame left to right: (1, num_frames, 3, size, size)."""
    video = torch.zeros(1, num_frames, 3, size, size)
    side = size // 4
    for t in range(num_frames):
        left = (size - side) * t // max(num_frames - 1, 1)
        video[0, t, :, size // 2 - side // 2 : size // 2 + side // 2, left : left + side] = 1.0
    return video


def main() -> None:
    torch.manual_seed(0)
    config = StretchySnakeConfig(hidden_size=64, num_hidden_layers=2, image_size=32, patch_size=8, num_labels=4)
    model = StretchySnakeForVideoClassification(config).eval()
    print(f"StretchySnake: {sum(p.numel() for p in model.parameters()):,} parameters, base scale 8 frames at 32 px")
    for frames, size, patch in [(4, 32, 8), (8, 64, 16), (12, 48, 8)]:
        start = time.perf_counter()
        with torch.no_grad():
            probabilities = model(moving_square(frames, size), patch_size=patch).logits.softmax(-1)[0]
        print(
            f"{frames:>2} frames x {size:>2} px, patch {patch:>2}: probabilities {probabilities.numpy().round(3)} "
            f"({time.perf_counter() - start:.2f} s)"
        )


if __name__ == "__main__":
    main()
