# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The `stretchysnake` console command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .inference import predict
from .video_io import VideoDecodeError


def main(argv: Sequence[str] | None = None) -> int:
    """`stretchysnake predict VIDEO [VIDEO ...] --model DIR [--num-frames N] [--image-size S] [--top-k K] [--json]`."""
    parser = argparse.ArgumentParser(prog="stretchysnake", description="StretchySnake video classification.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("predict", help="print the top-k labels of video files")
    run.add_argument("videos", nargs="+", help="video files")
    run.add_argument("--model", required=True, help="model folder or Hub id")
    run.add_argument("--num-frames", type=int, help="frames per clip (default: the processor's or model's)")
    run.add_argument("--image-size", type=int, help="input side in pixels (default: the processor's or model's)")
    run.add_argument("--patch-size", type=int, help="patch size (default: the model's)")
    run.add_argument("--top-k", type=int, default=5)
    run.add_argument("--num-clips", type=int, default=1, help="temporal views averaged")
    run.add_argument("--num-crops", type=int, default=1, help="spatial views averaged")
    run.add_argument("--device", help="torch device, e.g. cuda")
    run.add_argument("--json", action="store_true", help="print one JSON object per video")
    args = parser.parse_args(argv)

    try:
        results = predict(
            list(args.videos),
            model=args.model,
            num_frames=args.num_frames,
            image_size=args.image_size,
            patch_size=args.patch_size,
            top_k=args.top_k,
            num_clips=args.num_clips,
            num_crops=args.num_crops,
            device=args.device,
        )
    except (OSError, VideoDecodeError) as err:
        print(f"stretchysnake: error: {err}", file=sys.stderr)
        return 1
    for video, predictions in zip(args.videos, results, strict=True):
        if args.json:
            print(json.dumps({"video": video, "predictions": predictions}))
        else:
            print(video)
            for prediction in predictions:
                print(f"  {prediction['score']:.4f}  {prediction['label']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
