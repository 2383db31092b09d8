"""Saved folders are Hub-ready: a Python process that cannot import stretchysnake_hf loads them with remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import tiny_config

from stretchysnake_hf import StretchySnakeForVideoClassification, StretchySnakeVideoProcessor

# Start of the subprocesses' scripts: hide the packages named (comma-separated) by the last argument, as if they
# were not installed (whichever way they are: editable finder, site-packages, sys.path), and prove they are hidden.
HIDE_PACKAGES = textwrap.dedent(
    """
    import importlib.abc
    import sys

    HIDDEN = set(sys.argv[-1].split(","))


    class Hide(importlib.abc.MetaPathFinder):
        # Wraps a finder and finds nothing of the hidden packages, as if they were not installed.

        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                return None
            return self.finder.find_spec(name, path, target)

        def find_distributions(self, *args, **kwargs):
            found = getattr(self.finder, "find_distributions", lambda *args, **kwargs: [])(*args, **kwargs)
            return [dist for dist in found if dist.metadata["Name"].lower().replace("-", "_") not in HIDDEN]

        def __getattr__(self, name):
            return getattr(self.finder, name)


    sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
    for name in HIDDEN:
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"{name} is importable: the test would prove nothing")
    """
)

# Load the folder through the Auto classes with remote code; run forward and backward at two scales.
REMOTE_SCRIPT = HIDE_PACKAGES + textwrap.dedent(
    """
    folder, video_file, out_file = sys.argv[1:4]
    import numpy as np
    import torch
    from transformers import AutoImageProcessor, AutoModelForVideoClassification

    video = np.load(video_file)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
    rebased = AutoModelForVideoClassification.from_pretrained(
        folder, trust_remote_code=True, num_frames=8, image_size=32, patch_size=4
    ).eval()
    loaded_at_load = sorted(name for name in ("numba", "llvmlite") if name in sys.modules)
    results = {"loaded_at_load": loaded_at_load}
    for name, scale in (("base", {}), ("other", {"num_frames": 8, "size": 32, "patch_size": 4})):
        with torch.no_grad():
            results[f"{name}_logits"] = model(**processor(video, **scale)).logits
        model.zero_grad()
        model(**processor(video, **scale), labels=torch.tensor([1])).loss.backward()
        results[f"{name}_grad"] = model.stretchysnake.embeddings.patch_embeddings.projection.weight.grad.clone()
    with torch.no_grad():
        results["rebased_logits"] = rebased(**processor(video, num_frames=8, size=32)).logits
    results["classes"] = [type(processor).__module__, type(model).__module__]
    results["loaded_modules"] = sorted(name for name in sys.modules if name.partition(".")[0] in HIDDEN)
    torch.save(results, out_file)
    """
)


OPTIONAL = "numba,llvmlite,av,datasets,matplotlib"


def run_remote(tmp_path, folder, video, hidden: str) -> dict:
    np.save(tmp_path / "video.npy", video)
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "video.npy"), str(tmp_path / "out.pt"), hidden],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = StretchySnakeForVideoClassification(tiny_config()).eval()
    processor = StretchySnakeVideoProcessor(num_frames=4, size=16)
    folder = tmp_path_factory.mktemp("folder")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    video = np.random.default_rng(0).integers(0, 256, size=(12, 24, 20, 3), dtype=np.uint8)
    return model, processor, folder, video


def test_saved_folder_holds_the_code_and_its_auto_map(saved):
    _, _, folder, _ = saved
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
        "scan_numba.py",
        "geometry.py",
        "mixer_inference_cpu.py",
        "mixer_training_cpu.py",
        "rms_norm_cpu.py",
        "numba_math.py",
    } <= {path.name for path in folder.iterdir()}


def test_folder_loads_and_trains_with_only_torch_and_transformers(saved, tmp_path):
    model, processor, folder, video = saved
    remote = run_remote(tmp_path, folder, video, "stretchysnake_hf," + OPTIONAL)
    assert remote["loaded_modules"] == []
    assert all(module.startswith("transformers_modules.") for module in remote["classes"]), remote["classes"]

    rebased = StretchySnakeForVideoClassification.from_pretrained(folder, num_frames=8, image_size=32, patch_size=4)
    for name, scale in (("base", {}), ("other", {"num_frames": 8, "size": 32, "patch_size": 4})):
        with torch.no_grad():  # here numba's fused path, there the "chunked" scan
            logits = model(**processor(video, **scale)).logits
        torch.testing.assert_close(remote[f"{name}_logits"], logits, rtol=1e-5, atol=1e-5)
        model.zero_grad()
        model(**processor(video, **scale), labels=torch.tensor([1])).loss.backward()
        grad = model.stretchysnake.embeddings.patch_embeddings.projection.weight.grad
        torch.testing.assert_close(remote[f"{name}_grad"], grad, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        rebased_logits = rebased.eval()(**processor(video, num_frames=8, size=32)).logits
    torch.testing.assert_close(remote["rebased_logits"], rebased_logits, rtol=1e-5, atol=1e-5)


def test_loading_a_folder_does_not_import_numba(saved, tmp_path):
    """numba is imported where a numba kernel runs: with it installed, loading alone leaves it unimported."""
    _, _, folder, video = saved
    remote = run_remote(tmp_path, folder, video, "stretchysnake_hf")
    assert remote["loaded_at_load"] == []


PACKAGE_WITHOUT_OPTIONAL = HIDE_PACKAGES + textwrap.dedent(
    """
    import torch
    from stretchysnake_hf import StretchySnakeConfig, StretchySnakeForVideoClassification
    from stretchysnake_hf.video_io import load_video


    def raises(call, message):
        try:
            call()
        except ImportError as error:
            assert message in str(error), error
        else:
            raise SystemExit(f"no ImportError naming {message!r}")


    raises(lambda: load_video("clip.mp4"), "pip install av")
    geometry = dict(hidden_size=32, num_hidden_layers=1, image_size=16, patch_size=8, num_frames=2)
    video = torch.randn(1, 2, 3, 16, 16)
    with torch.no_grad():
        StretchySnakeForVideoClassification(StretchySnakeConfig(**geometry))(video)  # "auto": "chunked", warned
        numba_model = StretchySnakeForVideoClassification(StretchySnakeConfig(**geometry, scan_backend="numba"))
        raises(lambda: numba_model(video), "pip install numba")
    """
)


def test_package_imports_and_runs_without_numba_or_pyav(tmp_path):
    script = tmp_path / "package.py"
    script.write_text(PACKAGE_WITHOUT_OPTIONAL)
    result = subprocess.run(
        [sys.executable, str(script), OPTIONAL], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "falling back to the slower pure-torch 'chunked' scan" in result.stderr
    assert "pip install numba" in result.stderr
