"""Importing the library loads no zoo, data set, plotting or heavy optional dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = (
    "leanxai.zoo",
    "leanxai.data",
    "leanxai.experiments",
    "leanxai.cli",
    "matplotlib",
    "captum",
    "transformers",
    "shap",
    "sklearn",
)


def loaded_after(statement: str) -> list[str]:
    """Modules of FORBIDDEN (or below them) that ``statement`` loads in a fresh interpreter."""
    script = (
        "import json, sys\n"
        f"{statement}\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if any(m == f or m.startswith(f + '.') for f in forbidden))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import leanxai",
        "import leanxai.compress",
        "from leanxai.compress import save_compressed, load_compressed, float32_size",
        "import leanxai.io",
    ],
)
def test_the_library_loads_no_zoo_data_or_heavy_dependency(statement):
    assert loaded_after(statement) == []


def test_the_zoo_registers_its_architectures_when_imported():
    script = (
        "import leanxai.zoo\n"
        "from leanxai.compress.architectures import registered_architectures\n"
        "print(sorted(registered_architectures()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "'SmallCNN'" in result.stdout and "'VGGStyle'" in result.stdout


@pytest.mark.parametrize(
    "statement", ["import leanxai", "import leanxai.deploy", "import leanxai.deploy.runtime"]
)
def test_torch_free_parts_import_without_torch(statement):
    """The public names load on first use, so the ONNX runtime runs where torch is absent."""
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # importing torch now fails\n"
        f"{statement}\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_public_names_still_resolve():
    script = (
        "import leanxai\n"
        "from leanxai import GradCAM, threshold, explain, METHODS\n"
        "assert leanxai.GradCAM is GradCAM and callable(threshold.top_percent)\n"
        "assert set(METHODS) >= {'gradcam', 'gradcam++'} and 'GradCAM' in dir(leanxai)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
