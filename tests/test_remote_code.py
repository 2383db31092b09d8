"""Saved folders are Hub-ready: a Python process that cannot import stretchysnake_hf loads them with remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor

# Run in the subprocess: hide the package whichever way it is installed (editable finder, site-packages, sys.path),
# prove it is hidden, then load the folder through the Auto classes with remote code.
REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class HideStretchySnake(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "stretchysnake_hf":
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None


    sys.meta_path.insert(0, HideStretchySnake())
    try:
        import stretchysnake_hf  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("stretchysnake_hf is importable: the test would prove nothing")

    import numpy as np
    import torch
    from transformers import AutoImageProcessor, AutoModelForVideoClassification

    folder, video_file, out_file = sys.argv[1:]
    video = np.load(video_file)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
    rebased = AutoModelForVideoClassification.from_pretrained(
        folder, trust_remote_code=True, num_frames=8, image_size=32, patch_size=4
    ).eval()
    with torch.no_grad():
        logits = model(**processor(video)).logits
        rebased_logits = rebased(**processor(video, num_frames=8, size=32)).logits
    torch.save(
        {
            "logits": logits,
            "rebased_logits": rebased_logits,
            "classes": [type(processor).__module__, type(model).__module__],
            "loaded_modules": sorted(name for name in sys.modules if name.startswith("stretchysnake_hf")),
        },
        out_file,
    )
    """
)


def test_saved_folder_loads_with_trust_remote_code_without_the_package(tmp_path):
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config()).eval()
    processor = StretchySnakeVideoProcessor(num_frames=4, size=16)
    folder = tmp_path / "folder"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForVideoClassification"] == (
        "modeling_stretchysnake.StretchySnakeForVideoClassification"
    )
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"]["AutoImageProcessor"] == (
        "video_processing_stretchysnake.StretchySnakeVideoProcessor"
    )
    assert {
        "modeling_stretchysnake.py",
        "configuration_stretchysnake.py",
        "resizing.py",
        "selective_scan.py",
        "mixer_inference_cpu.py",
        "numba_math.py",
    } <= {path.name for path in folder.iterdir()}

    video = np.random.default_rng(0).integers(0, 256, size=(12, 24, 20, 3), dtype=np.uint8)
    np.save(tmp_path / "video.npy", video)
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "video.npy"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt", weights_only=True)
    assert remote["loaded_modules"] == []
    assert all(module.startswith("transformers_modules.") for module in remote["classes"]), remote["classes"]

    rebased = StretchySnakeForVideoClassification.from_pretrained(folder, num_frames=8, image_size=32, patch_size=4)
    with torch.no_grad():
        logits = model(**processor(video)).logits
        rebased_logits = rebased.eval()(**processor(video, num_frames=8, size=32)).logits
    torch.testing.assert_close(remote["logits"], logits, rtol=0, atol=0)
    torch.testing.assert_close(remote["rebased_logits"], rebased_logits, rtol=0, atol=0)
