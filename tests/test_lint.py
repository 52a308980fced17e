"""The linters are part of the tests: ruff (the rules that find bugs, pyproject.toml) over the
package, the scripts and the tests, and mypy over the pure modules (setup.cfg)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name: str) -> list[str]:
    if shutil.which(name, path=os.path.dirname(sys.executable)) is None and shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'", pytrace=False)
    return [sys.executable, "-m", name]


def test_ruff_finds_nothing():
    result = subprocess.run([*_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_the_pure_modules():
    result = subprocess.run([*_tool("mypy"), "--no-incremental", "--cache-dir", os.devnull], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
