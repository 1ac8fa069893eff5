"""The layers in pyproject.toml hold, and a deliberate violation fails `lint-imports`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_hold():
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/errors.py", "import leanxai.explainers.registry", "core is mechanism"),
        ("explainers/cam.py", "import leanxai.experiments.methods", "the library imports no"),
        ("threshold.py", "import leanxai.explainers.cam", "threshold and viz"),
    ],
)
def test_a_deliberate_violation_fails(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "src" / "leanxai", tmp_path / "leanxai")
    target = tmp_path / "leanxai" / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken


def test_no_package_imports_a_private_name_of_another():
    """A leading underscore means "not for other packages": a library part (or the CLI) that
    needs it should get a public name instead."""
    import ast

    offenders = []
    for path in (ROOT / "src" / "leanxai").rglob("*.py"):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        package = parts[1] if len(parts) > 2 else parts[-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            module = node.module.split(".")
            if module[0] != "leanxai" or len(module) < 2 or module[1] == package:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}: {node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_")
            ]
    assert offenders == []
