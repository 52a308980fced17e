"""The README's Python example runs as written, and again: its blocks, in order, as one script,
in a fresh directory, twice. It is about the README, not the backends: SQLite only (the
example's own database URL)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def python_blocks() -> list[str]:
    with open(README, encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```$", f.read(), flags=re.S | re.M)


def test_the_python_example_runs_as_written_twice(tmp_path):
    # Given the README's Python blocks as one script
    blocks = python_blocks()
    assert len(blocks) >= 2, "the Python API section lost its example"
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_ENGINE_")}
    outputs = []
    # When it runs twice in the same directory
    for _ in range(2):
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        # Then both runs succeed
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    # the first imports and seals version 1, the second finds it unchanged; both runs succeed
    assert "backup version 1: sealed" in outputs[0]
    assert "backup version 1: unchanged" in outputs[1]
    assert all("succeeded {'id'" in out for out in outputs)
    assert sorted(os.listdir(tmp_path / "logs")) == ["run-1", "run-2"]
