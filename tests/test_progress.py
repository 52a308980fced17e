"""The live progress of `run`: a status line redrawn on a terminal (driven through a real
pseudo-terminal), one line per ended attempt elsewhere."""
import io
import os
import re
import sys
import threading

import pexpect

from pipeline_engine import service
from pipeline_engine.progress import Progress
from pipeline_engine.runner import Event

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_status_line_counts_states_and_names_the_running_vertices():
    progress = Progress({"a": "pending", "b": "waiting", "c": "waiting"}, stream=io.StringIO(), live=True)
    progress(Event("started", "a", "running", 1))
    assert re.fullmatch(r"\[00:00\] 0/3 done: 1 running, 2 waiting \| running: a", progress.line())
    progress(Event("ended", "a", "succeeded", 1, 0.1))
    progress(Event("ready", "b", "pending", 0))
    progress(Event("skipped", "c", "upstream_failed", 0))
    assert progress.line() == "[00:00] 2/3 done: 1 succeeded, 1 pending, 1 upstream_failed"


def test_without_a_terminal_each_ended_attempt_is_one_line():
    out = io.StringIO()
    progress = Progress({"a": "pending"}, stream=out, live=False)
    progress(Event("started", "a", "running", 1))
    progress(Event("ended", "a", "pending", 1, 0.25, "exit code 3"))
    progress(Event("ended", "a", "failed", 2, 0.5))
    assert out.getvalue() == ("  a: attempt 1 failed in 0.25 s: exit code 3; retrying\n"
                              "  a: failed in 0.50 s\n")


def test_run_on_a_terminal_shows_live_progress_then_a_summary(db, db_url, tmp_path):
    gate = tmp_path / "gate"
    vertices = [{"name": "quick", "script": "true"},
                {"name": "slow", "script": f"while [ ! -e {gate} ]; do sleep 0.02; done"},
                {"name": "last", "script": "true"}]
    service.import_graph(db, {"name": "g", "vertices": vertices, "edges": [["slow", "last"]]}, seal=True)
    child = pexpect.spawn(sys.executable, ["-m", "pipeline_engine", "--db", db_url, "run", "g"], cwd=ROOT,
                          encoding="utf-8", timeout=20, env={**os.environ, "COLUMNS": "200"})
    child.logfile_read = io.StringIO()
    # the status line, redrawn while `slow` waits for the gate
    child.expect(r"\[00:0\d\] 1/3 done: 1 succeeded, 1 running, 1 waiting \| running: slow")
    gate.touch()
    child.expect(r"run \d+ succeeded: 3 succeeded \(00:0\d elapsed\)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "\x1b[2K" in child.logfile_read.getvalue()  # redrawn in place


def test_a_stream_that_blocks_never_blocks_the_engine_thread_that_reports():
    # Given progress to a stream whose writes block (a pipe nobody reads, a slow CI collector)
    gate = threading.Event()

    class Blocking(io.StringIO):
        def write(self, text):
            gate.wait()
            return super().write(text)

    out = Blocking()
    progress = Progress({"a": "pending", "b": "pending"}, stream=out, live=False).start()
    # When the engine's threads report two ended attempts
    reporter = threading.Thread(target=lambda: [progress(Event("ended", v, "succeeded", 1, 0.1)) for v in "ab"])
    reporter.start()
    reporter.join(timeout=5)
    # Then the reporting thread returned at once, and the lines are all written, in order, once the stream
    # takes them
    returned = not reporter.is_alive()
    gate.set()
    progress.stop()
    assert returned
    assert out.getvalue() == "  a: succeeded in 0.10 s\n  b: succeeded in 0.10 s\n"
