"""`pipeline-engine logs` (issue 11): `--follow` prints a running vertex's log as it grows and
ends with the vertex, and a vertex that printed nothing, has not started or ended with an engine
error says so on stderr, stdout keeping only the log itself. Real processes, every backend."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import ROOT, finished, run_tracks, wait_for

from pipeline_engine import service
from pipeline_engine.runner import run_pipeline


def _pe(db_url: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _read_some(stream, until: bytes, timeout: float) -> bytes:
    """What ``stream`` (a pipe) gives until it holds ``until``, waiting at most ``timeout``."""
    import selectors

    seen = b""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while until not in seen and (left := deadline - time.monotonic()) > 0:
        if sel.select(timeout=left):
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen


def test_follow_prints_the_log_as_it_grows_and_ends_with_the_vertex(db, db_url, tmp_path):
    # `logs` printed what the file held at that moment, and had no --follow
    gate = tmp_path / "go"
    service.import_graph(db, {"name": "slow", "vertices": [
        {"name": "first", "script": "true"},
        {"name": "talk", "script": f"echo one; echo two >&2; while [ ! -e {gate} ]; do sleep 0.05; done;"
                                   " echo three; printf 'the last bytes'"}],
        "edges": [["first", "talk"]]}, seal=True)
    run = _pe(db_url, "run", "slow")
    follow = None
    try:
        run_id = _read_some(run.stdout, b"\n", 20).split()[1].decode()  # "run 1 of graph 'slow' started: ..."
        # Given a follower started as the run starts (before the vertex, or while it runs)
        follow = _pe(db_url, "logs", run_id, "talk", "--follow")
        # When the vertex prints, the follower shows it while the vertex still runs
        seen = _read_some(follow.stdout, b"two\n", 20)
        assert seen == b"--- attempt 1 ---\none\ntwo\n", seen
        time.sleep(0.5)
        assert follow.poll() is None and run.poll() is None  # both wait for the gate
        # (without --follow: what is there now, and a word that there is more to come)
        now = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "logs", run_id, "talk"],
                             cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert (now.returncode, now.stdout) == (0, "--- attempt 1 ---\none\ntwo\n")
        assert now.stderr == f"vertex 'talk' of run {run_id} is running (attempt 1): `pipeline-engine logs {run_id}" \
                             " talk --follow` prints the rest as it comes\n"
        # Then, once the vertex ends, the follower prints the rest, its last bytes too, and exits
        gate.touch()
        out, err = follow.communicate(timeout=20)
        assert follow.returncode == 0, err
        assert seen + out == b"--- attempt 1 ---\none\ntwo\nthree\nthe last bytes"
        assert b"Traceback" not in err
        assert run.wait(timeout=20) == 0
        assert run_tracks(db, int(run_id))["talk"].state == "succeeded"
        # a finished vertex: --follow prints its log and returns at once
        done = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "logs", run_id, "talk", "-f"],
                              cwd=ROOT, capture_output=True, timeout=20)
        assert (done.returncode, done.stdout) == (0, b"--- attempt 1 ---\none\ntwo\nthree\nthe last bytes")
    finally:
        gate.touch()  # a failed test leaves no script waiting for the gate forever
        for proc in (follow, run):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_follow_says_a_vertex_has_not_started_and_goes_on_through_its_retries(db, db_url, tmp_path):
    gate = tmp_path / "go"
    service.import_graph(db, {"name": "again", "vertices": [
        {"name": "flaky", "retries": 1,
         "script": f"while [ ! -e {gate} ]; do sleep 0.05; done; echo try; [ -e {tmp_path}/second ] || "
                   f"{{ touch {tmp_path}/second; exit 1; }}"}]}, seal=True)
    start = service.start_run(db, "again", detach=True)  # no worker yet: the track waits
    follow = _pe(db_url, "logs", str(start.id), "flaky", "--follow")
    worker = None
    try:
        said = _read_some(follow.stderr, b"\n", 20)
        assert said == f"vertex 'flaky' of run {start.id} has not started yet (pending): its log follows when it" \
                       " starts\n".encode()
        worker = _pe(db_url, "worker", "--poll", "0.05")
        gate.touch()
        out, err = follow.communicate(timeout=30)
        assert follow.returncode == 0, err
        assert out == b"--- attempt 1 ---\ntry\n--- attempt 2 ---\ntry\n"
        assert wait_for(lambda: finished(db, start.id), 20, "the run to end") == "succeeded"
    finally:
        for proc in (follow, worker):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)


def test_follow_and_tail_together_are_refused(cli):
    code, out, err = cli("logs", "1", "v", "--follow", "--tail")
    assert code == 2 and out == "" and "leave out --tail" in err and len(err.splitlines()) == 1


def test_follow_of_an_unknown_run_or_vertex_exits_as_logs_does(db, cli):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "v", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    for follow in ([], ["--follow"]):
        code, _, err = cli("logs", "999", "v", *follow)
        assert code == 2 and "run 999 not found" in err
        code, _, err = cli("logs", str(run.id), "nope", *follow)
        assert code == 2 and "no vertex 'nope'" in err


def test_logs_says_on_stderr_what_the_vertex_did_when_its_log_holds_nothing(db, cli, log_dir):
    # `logs` of a vertex that printed nothing, timed out or never started printed nothing at all
    service.import_graph(db, {"name": "quiet", "vertices": [
        {"name": "silent", "script": "true"},
        {"name": "slow", "script": "sleep 5", "timeout": 0.2},
        {"name": "loud", "script": "echo out; echo err >&2; exit 3"},
        {"name": "after", "script": "echo never"}],
        "edges": [["slow", "after"]]}, seal=True)
    code, out, _ = cli("run", "quiet")
    assert code == 1
    run_id = out.split()[1]
    code, out, err = cli("logs", run_id, "silent")
    assert (code, out, err) == (0, "--- attempt 1 ---\n",
                                f"vertex 'silent' of run {run_id} (attempt 1, succeeded) printed nothing\n")
    code, out, err = cli("logs", run_id, "silent", "--tail")
    assert (code, out, err) == (0, "", f"vertex 'silent' of run {run_id} (attempt 1, succeeded) printed nothing\n")
    code, out, err = cli("logs", run_id, "slow")
    assert (code, out) == (0, "--- attempt 1 ---\n")
    assert err == f"vertex 'slow' of run {run_id} (attempt 1, failed) printed nothing: timed out after 0.2 s;" \
                  " process group killed\n"
    code, out, err = cli("logs", run_id, "loud")  # an exit code is no engine error: the log says it all
    assert (code, out, err) == (0, "--- attempt 1 ---\nout\nerr\n", "")
    code, out, err = cli("logs", run_id, "after")
    assert (code, out, err) == (0, "", f"vertex 'after' of run {run_id} never started (upstream_failed)\n")
    waiting = service.start_run(db, "quiet", detach=True)
    code, out, err = cli("logs", str(waiting.id), "after")
    assert (code, out, err) == (0, "", f"vertex 'after' of run {waiting.id} has not started yet (waiting)\n")


def test_logs_shows_the_engine_error_of_an_attempt_that_could_not_write_its_log(db, cli, tmp_path):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "v", "script": "echo hi"}]}, seal=True)
    run = service.start_run(db, "g")
    logs = str(tmp_path / "elsewhere")
    os.makedirs(os.path.join(logs, f"run-{run.id}", "v.log"))  # a directory where the file should be
    assert run_pipeline(db, run, log_dir=logs) == "failed"
    assert run_tracks(db, run.id)["v"].error.startswith("cannot write the log file")
    code, out, err = cli("logs", str(run.id), "v")
    assert (code, out) == (0, "")
    assert err.startswith(f"vertex 'v' of run {run.id} (attempt 1, failed) printed nothing: cannot write the log"
                          f" file {logs}/run-{run.id}/v.log") and len(err.splitlines()) == 1
