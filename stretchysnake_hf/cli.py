# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The `stretchysnake` console command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .inference import predict
from .video_processing_stretchysnake import StretchySnakeVideoProcessor


def main(argv: Sequence[str] | None = None) -> int:
    """`stretchysnake predict VIDEO [VIDEO ...] --model DIR [--num-frames N] [--image-size S] [--top-k K] [--json]`.

    Prints the predictions of every video that could be decoded (`--json`: one object per video, in input order:
    `{"video": path, "predictions": [...]}`, or `{"video": path, "error": message}` for a video that failed; text
    mode prints a failure to stderr). Returns the exit status: 0, or 1 if any video failed.
    """
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

    # The processor's "Skipping video" warning would repeat the error line printed below.
    processor_logger = logging.getLogger(StretchySnakeVideoProcessor.__module__)
    level = processor_logger.level
    processor_logger.setLevel(logging.ERROR)
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
            on_error="skip",
        )
    except OSError as err:
        print(f"stretchysnake: error: {err}", file=sys.stderr)
        return 1
    finally:
        processor_logger.setLevel(level)
    failed = False
    for video, result in zip(args.videos, results, strict=True):
        if isinstance(result, dict):  # {"error": message}: the video could not be decoded
            failed = True
            if args.json:
                print(json.dumps({"video": video, "error": result["error"]}))
            else:
                sys.stdout.flush()  # keep the error after the predictions printed before it
                print(f"stretchysnake: error: {result['error']}", file=sys.stderr)
        elif args.json:
            print(json.dumps({"video": video, "predictions": result}))
        else:
            print(video)
            for prediction in result:
                print(f"  {prediction['score']:.4f}  {prediction['label']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
