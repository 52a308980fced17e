"""The README's Python example runs as written, and again: its blocks, in order, as one script,
in a fresh directory, twice. It is about the README, not the backends: SQLite only (the
example's own database URL)."""
from __future__ import annotations

import os
import re
import signal
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


def test_the_api_walkthrough_runs_as_written_and_prints_what_it_says(tmp_path):
    import shutil
    import socket

    import pytest

    if shutil.which("jq") is None or shutil.which("curl") is None:
        from conftest import IN_CI

        if IN_CI:  # CI fails, never skips, when a tool a test needs is missing
            pytest.fail("curl or jq is not installed: the README's API walkthrough uses them", pytrace=False)
        pytest.skip("curl or jq is not installed: the README's API walkthrough uses them")
    with open(README, encoding="utf-8") as f:
        blocks = re.findall(r"^```sh\n(.*?)^```$", f.read(), flags=re.S | re.M)
    assert len(blocks) == 1, "the HTTP API section lost its walkthrough"
    with socket.socket() as sock:  # a free port (the README's default is 8080)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_ENGINE_")}
    env.update(PORT=str(port), PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    script = subprocess.Popen(["bash", "-e", "-c", blocks[0]], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = script.communicate(timeout=120)
    finally:  # a script that failed half way leaves its server behind: end it
        try:
            os.killpg(script.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    done = subprocess.CompletedProcess(script.args, script.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    # it prints what its `#>` lines say ("..." there stands for any text)
    said = [line[3:] for line in blocks[0].splitlines() if line.startswith("#> ")]
    printed = done.stdout.splitlines()
    assert len(printed) == len(said), done.stdout
    for line, expected in zip(printed, said):
        assert re.fullmatch(".*".join(map(re.escape, expected.split("..."))), line), (line, expected)
