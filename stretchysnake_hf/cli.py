# Copyright 2026 The stretchysnake_hf Authors. Licensed under the Apache License, Version 2.0.
"""The `stretchysnake` console command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers.utils import CONFIG_NAME

from .configuration_stretchysnake import StretchySnakeConfig
from .inference import load_processor, load_trained_classifier, predict
from .modeling_stretchysnake import StretchySnakeForVideoClassification
from .video_processing_stretchysnake import StretchySnakeVideoProcessor


class CommandLineError(Exception):
    """A bad command line; `main` prints it, one line on stderr, and returns 2."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line, `prog: error: message`, raised as `CommandLineError`."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{self.prog}: error: {message}")


def positive_int(text: str) -> int:
    """argparse type: the integer written in `text`, which must be 1 or more."""
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _first_line(err: Exception) -> str:
    """The first line of an exception's message (transformers' loading errors run over several)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _load_checked(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[StretchySnakeForVideoClassification, StretchySnakeVideoProcessor]:
    """Check `--model` and the geometry arguments against the model's config, then load the model and processor.

    The config (and the processor settings) are read first, so a bad argument is reported before the weights load.

    Returns:
        The model and the processor to run, as `predict` would load them from `args.model`.

    Raises:
        CommandLineError (through `parser.error`): `--model` is neither a model folder nor a loadable Hub repo id, its
            config or weights do not load (another model type's, or a backbone without a classifier), the image size
            is not a multiple of the patch size, or the frame count not one of the tubelet size.
    """
    model = Path(args.model)
    if model.is_dir():
        if not (model / CONFIG_NAME).is_file():
            parser.error(f"--model {args.model}: no {CONFIG_NAME} in this folder")
    elif model.exists():
        parser.error(f"--model {args.model}: not a folder")
    else:
        try:
            validate_repo_id(args.model)
        except HFValidationError:
            parser.error(f"--model {args.model}: no such folder")
    try:
        config = StretchySnakeConfig.from_pretrained(args.model)
        processor = load_processor(args.model, config)
    except (OSError, ValueError) as err:
        where = "cannot load its config" if model.is_dir() else "no such folder, and loading it from the Hub failed"
        parser.error(f"--model {args.model}: {where}: {_first_line(err)}")

    image_size = args.image_size or processor.size
    patch_size = args.patch_size or processor.patch_size or config.patch_size
    if image_size % patch_size:
        size_name = "--image-size" if args.image_size else "the image size"
        owner = "processor" if processor.patch_size else "model"
        patch_name = "--patch-size" if args.patch_size else f"the {owner}'s patch size"
        parser.error(f"{size_name} {image_size} is not a multiple of {patch_name} {patch_size}")
    num_frames = args.num_frames or processor.num_frames
    if num_frames % config.tubelet_size:
        frames_name = "--num-frames" if args.num_frames else "the number of frames"
        parser.error(f"{frames_name} {num_frames} is not a multiple of the model's tubelet size {config.tubelet_size}")

    try:
        return load_trained_classifier(args.model, config=config), processor
    except (OSError, ValueError) as err:
        parser.error(f"--model {args.model}: cannot load the model: {_first_line(err)}")


def main(argv: Sequence[str] | None = None) -> int:
    """`stretchysnake predict VIDEO [VIDEO ...] --model DIR [--num-frames N] [--image-size S] [--top-k K] [--json]`.

    Prints the predictions of every video that could be decoded (`--json`: one object per video, in input order:
    `{"video": path, "predictions": [...]}`, or `{"video": path, "error": message}` for a video that failed; text
    mode prints a failure to stderr). A bad argument prints one line, `stretchysnake predict: error: ...`.

    Returns:
        The exit status: 0; 1 if any video failed; 2 for a bad command line (nothing is predicted).
    """
    parser = OneLineArgumentParser(prog="stretchysnake", description="StretchySnake video classification.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("predict", help="print the top-k labels of video files")
    run.add_argument("videos", nargs="+", help="video files")
    run.add_argument("--model", required=True, help="model folder or Hub id")
    run.add_argument("--num-frames", type=positive_int, help="frames per clip (default: the processor's or model's)")
    run.add_argument(
        "--image-size", type=positive_int, help="input side in pixels (default: the processor's or model's)"
    )
    run.add_argument("--patch-size", type=positive_int, help="patch size (default: the model's)")
    run.add_argument("--top-k", type=positive_int, default=5)
    run.add_argument("--num-clips", type=positive_int, default=1, help="temporal views averaged")
    run.add_argument("--num-crops", type=positive_int, default=1, help="spatial views averaged")
    run.add_argument("--device", help="torch device, e.g. cuda")
    run.add_argument("--json", action="store_true", help="print one JSON object per video")
    try:
        args = parser.parse_args(argv)
        model, processor = _load_checked(args, run)
    except CommandLineError as err:
        print(err, file=sys.stderr)
        return 2

    # The processor's "Skipping video" warning would repeat the error line printed below.
    processor_logger = logging.getLogger(StretchySnakeVideoProcessor.__module__)
    level = processor_logger.level
    processor_logger.setLevel(logging.ERROR)
    try:
        results = predict(
            list(args.videos),
            model=model,
            num_frames=args.num_frames,
            image_size=args.image_size,
            patch_size=args.patch_size,
            top_k=args.top_k,
            num_clips=args.num_clips,
            num_crops=args.num_crops,
            processor=processor,
            device=args.device,
            on_error="skip",
        )
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
