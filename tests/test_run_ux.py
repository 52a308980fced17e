"""What `run`, `worker` and `runs` say so that a run never looks stuck or mute: a stop is
acknowledged at once (issue 11, defect 9), `runs show` gives each vertex's error and the run's
parameters (defect 10), and a run left to workers says when none is alive (defect 11). Real
processes, every backend."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pexpect
from conftest import ROOT, finished, pause, run_tracks, stop, wait_for, worker

from pipeline_engine import service

NO_WORKER = "no worker is alive: start one with pipeline-engine worker"


def _two_sleepers(db, tmp_path, name="two"):
    """A sealed graph of two vertices that each mark their start, then sleep."""
    vertices = [{"name": v, "script": f"touch {tmp_path}/{v}; sleep 60"} for v in ("a", "b")]
    service.import_graph(db, {"name": name, "vertices": vertices}, seal=True)


def _read_until(stream, needle: str, timeout: float) -> str:
    """What ``stream`` (a pipe) says until a line holds ``needle``, waiting at most ``timeout``."""
    import selectors

    seen = ""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while needle not in seen and (left := deadline - time.monotonic()) > 0:
        if sel.select(timeout=left):
            chunk = os.read(stream.fileno(), 4096).decode()
            if not chunk:
                break
            seen += chunk
    return seen


# --- defect 9: the first Ctrl-C is acknowledged at once ----------------------------------------

def test_the_first_ctrl_c_of_run_says_at_once_what_happens_next(db, db_url, tmp_path):
    _two_sleepers(db, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "run", "two", "--grace", "25"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(tmp_path / "a") and os.path.exists(tmp_path / "b"), 20,
                 "both vertices to start")
        proc.send_signal(signal.SIGINT)
        said = _read_until(proc.stderr, "Ctrl-C again", 5)  # well within the grace of 25 s
        assert "stopping: waiting up to 25 s for 2 running vertices; Ctrl-C again to stop now" in said
        assert proc.poll() is None  # still waiting for the vertices
        proc.send_signal(signal.SIGINT)
        said += _read_until(proc.stderr, "resume", 15)
        assert "stopping now: terminating 2 running vertices" in said
        assert proc.wait(timeout=15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_on_a_terminal_the_status_line_shows_the_stop_below_the_message(db, db_url, tmp_path):
    _two_sleepers(db, tmp_path)
    child = pexpect.spawn(sys.executable, ["-m", "pipeline_engine", "--db", db_url, "run", "two"], cwd=ROOT,
                          encoding="utf-8", timeout=20, env={**os.environ, "COLUMNS": "200"})
    child.logfile_read = io.StringIO()
    try:
        child.expect(r"0/2 done: 2 running")
        child.sendintr()
        child.expect(r"stopping: waiting up to 30 s for 2 running vertices; Ctrl-C again to stop now\r?\n", timeout=5)
        child.expect(r"\] stopping: 0/2 done: 2 running", timeout=5)  # redrawn below, in its stopping state
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130


def test_a_worker_says_at_once_what_a_stop_does(db, db_url, tmp_path):
    _two_sleepers(db, tmp_path)
    run = service.start_run(db, "two", detach=True)
    log = tmp_path / "w.log"
    w = worker(db_url, open(log, "w"), "--concurrency", "2", "--poll", "0.05", "--grace", "20")
    try:
        wait_for(lambda: os.path.exists(tmp_path / "a") and os.path.exists(tmp_path / "b"), 20,
                 "both vertices to start")
        w.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping:" in log.read_text(), 5, "the worker to say it stops")
        assert "stopping: waiting up to 20 s for 2 running vertices; Ctrl-C again to stop now" in log.read_text()
        w.send_signal(signal.SIGINT)
        assert w.wait(timeout=15) == 0
        assert "stopping now: terminating 2 running vertices" in log.read_text()
        assert {t.state for t in run_tracks(db, run.id).values()} == {"pending"}
    finally:
        stop(w)


# --- defect 10: runs show gives the errors and the parameters ---------------------------------

def test_runs_show_gives_each_error_and_the_parameters_with_secrets_masked(db, cli):
    long_message = "x" * 100
    vertices = [{"name": "ok", "script": "echo {day} {rows}", "inputs": {"day": "str", "rows": "int"}},
                {"name": "slow", "script": "sleep 5", "timeout": 0.2},
                {"name": "uses_pw", "script": f"echo {{pw}} >/dev/null; echo {long_message} >&2; exit 3",
                 "inputs": {"pw": "secret"}}]
    service.import_graph(db, {"name": "g", "vertices": vertices}, seal=True)
    code, out, err = cli("run", "g", "-p", "day=2026-12-01", "-p", "rows=100", "-p", "pw=hunter2", "--no-input")
    assert code == 1, err
    run_id = int(out.split()[1])
    tracks = run_tracks(db, run_id)
    assert tracks["slow"].error  # a timeout is an error

    code, out, err = cli("runs", "show", str(run_id))
    assert code == 0, err
    lines = out.splitlines()
    assert "parameters: day=2026-12-01 rows=100 pw=********" in lines
    assert lines.index("parameters: day=2026-12-01 rows=100 pw=********") < 3  # in the header
    header = next(line for line in lines if line.startswith("VERTEX"))
    assert header.split()[-1] == "ERROR"
    slow = next(line for line in lines if line.startswith("slow "))
    error = " ".join(tracks["slow"].error.split())
    assert (error if len(error) <= 60 else error[:59] + "…") in slow
    assert all(len(line) < 250 for line in lines)
    assert "hunter2" not in out

    code, out, err = cli("runs", "show", str(run_id), "--json")
    data = json.loads(out)
    assert data["parameters"] == {"day": "2026-12-01", "rows": "100", "pw": "********"}
    assert {t["vertex"]: t["error"] for t in data["tracks"]}["slow"] == tracks["slow"].error  # kept whole
    assert "hunter2" not in out


def test_runs_show_cuts_a_long_error_with_an_ellipsis():
    from pipeline_engine.cli import _cut

    assert _cut("short") == "short"
    assert _cut("a\nb  c") == "a b c"
    assert _cut("y" * 61) == "y" * 59 + "…" and len(_cut("y" * 500)) == 60


def test_runs_show_without_parameters_says_none(db, cli):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "v", "script": "true"}]}, seal=True)
    code, out, _ = cli("run", "g")
    run_id = int(out.split()[1])
    code, out, _ = cli("runs", "show", str(run_id))
    assert "parameters: none" in out.splitlines()
    assert json.loads(cli("runs", "show", str(run_id), "--json")[1])["parameters"] == {}


# --- defect 11: a run left to the workers says when none is alive ------------------------------

def test_a_detached_run_says_when_no_worker_is_alive_until_one_is(db, db_url, cli, tmp_path):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "v", "script": "true"}]}, seal=True)
    code, out, err = cli("run", "g", "--detach")
    assert code == 0
    run_id = int(out.split()[1])
    assert f"run {run_id} queued; no worker is alive to take it: start one with pipeline-engine worker" in err

    code, out, _ = cli("runs", "show", str(run_id))
    assert NO_WORKER in out.splitlines()
    assert json.loads(cli("runs", "show", str(run_id), "--json")[1])["worker_alive"] is False
    code, out, _ = cli("runs", "list")
    assert f"run {run_id}: {NO_WORKER}" in out.splitlines()

    # a worker paused (SIGSTOP) past its lease is not alive either; a live one is
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--poll", "0.05", "--lease", "1")
    try:
        assert wait_for(lambda: finished(db, run_id), 20, "the worker to run it") == "succeeded"
        code, out, err = cli("run", "g", "--detach")
        second = int(out.split()[1])
        assert "no worker is alive" not in err
        assert wait_for(lambda: finished(db, second), 20, "the worker to run it") == "succeeded"
        assert json.loads(cli("runs", "show", str(run_id), "--json")[1])["worker_alive"] is True
        pause(w, db)
        time.sleep(1.5)  # past its lease of 1 s
        code, out, err = cli("run", "g", "--detach")
        third = int(out.split()[1])
        assert "no worker is alive to take it" in err
        assert f"run {third}: {NO_WORKER}" in cli("runs", "list")[1].splitlines()
    finally:
        w.send_signal(signal.SIGCONT)
        stop(w)


def test_a_run_process_is_no_worker_for_detached_runs_and_finished_runs_say_nothing(db, db_url, cli, tmp_path):
    vertices = [{"name": "v", "script": f"touch {tmp_path}/started; sleep 60"}]
    service.import_graph(db, {"name": "own", "vertices": vertices}, seal=True)
    service.import_graph(db, {"name": "g", "vertices": [{"name": "v", "script": "true"}]}, seal=True)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "run", "own"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(tmp_path / "started"), 20, "the run to start")
        code, out, err = cli("run", "g", "--detach")
        detached = int(out.split()[1])
        assert "no worker is alive to take it" in err  # `run own` takes its own run only
        code, out, _ = cli("runs", "list")
        notes = [line for line in out.splitlines() if NO_WORKER in line]
        assert notes == [f"run {detached}: {NO_WORKER}"]  # not the owned run
        own = next(r.id for r in service.list_runs(db, graph="own"))
        assert NO_WORKER not in cli("runs", "show", str(own))[1]
    finally:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
