"""Durable runs, proven with real processes on every backend: workers sharing a database claim
each track once; a worker killed with SIGKILL at random moments, or paused past its lease, loses
its tracks to another worker without two attempts of a track ever running at once; cancel leaves
no process alive; retry reruns only what did not succeed; a graceful stop hands work back.

Side effects are files the scripts write: each attempt appends ``<marker> <time>`` lines while it
runs (the marker names the database, track and attempt), and ``<marker> done <time>`` at its end.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import (ROOT, database_server_stopped, finished, pause, pipeline_state, run_tracks, stop,
                      wait_for, worker)

from pipeline_engine import executor, service

TRIALS = int(os.environ.get("PE_CRASH_TRIALS", "20"))


def ticking(path, ticks: int, pause: float = 0.02) -> str:
    """A script that marks its progress in ``path`` while it runs, then that it is done."""
    return (f'for i in {{1..{ticks}}}; do echo "$PIPELINE_ENGINE_TRACK $EPOCHREALTIME" >> {path}; sleep {pause};'
            f' done; echo "$PIPELINE_ENGINE_TRACK done $EPOCHREALTIME" >> {path}')


def attempts_in(path) -> dict[str, dict]:
    """Per attempt marker in a side-effect file: first and last time seen, and whether done."""
    seen: dict[str, dict] = {}
    if not os.path.exists(path):
        return seen
    for line in open(path).read().splitlines():
        parts = line.split()
        marker, stamp = parts[0], float(parts[-1])
        a = seen.setdefault(marker, {"first": stamp, "last": stamp, "done": False})
        a["first"], a["last"] = min(a["first"], stamp), max(a["last"], stamp)
        a["done"] = a["done"] or parts[1] == "done"
    return seen


def assert_no_overlap(path) -> None:
    spans = sorted(attempts_in(path).values(), key=lambda a: a["first"])
    for before, after in zip(spans, spans[1:]):
        assert before["last"] < after["first"], f"two attempts overlapped in {path}: {spans}"


def processes_of(db_key: str) -> list[int]:
    """Processes on this machine that belong to a track of the database ``db_key``."""
    prefix = f"{executor.MARKER}={db_key}:".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if any(item.startswith(prefix) for item in env) and executor.process_running(int(entry)):
                found.append(int(entry))
    return found


def layered(n: int, seed: int, script) -> dict:
    """A random layered DAG of ``n`` vertices (layers of 5, 1-2 predecessors each)."""
    rng = random.Random(seed)
    names = [f"v{i:02d}" for i in range(n)]
    edges = []
    for i in range(5, n):
        layer_start = (i // 5 - 1) * 5
        for tail in rng.sample(names[layer_start:layer_start + 5], rng.randint(1, 2)):
            edges.append([tail, names[i]])
    return {"vertices": [{"name": v, "script": script(v), "retries": 2} for v in names], "edges": edges}


def test_a_worker_killed_at_random_moments_loses_nothing_and_never_runs_a_track_twice_at_once(db, db_url, tmp_path):
    """SIGKILL a worker at a seeded random moment of each run; a new worker finishes it."""
    rng = random.Random(4242)
    log = open(tmp_path / "workers.log", "w")
    interrupted = 0  # attempts the kills cut short: the trials must really hit running tracks
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        out.mkdir()
        graph = layered(50, trial, lambda v: ticking(out / v, 4))
        service.import_graph(db, {"name": f"crash{trial}", **graph}, seal=True)
        run = service.start_run(db, f"crash{trial}", detach=True)
        first = worker(db_url, log, "--concurrency", "4", "--poll", "0.05")
        time.sleep(rng.uniform(0.3, 1.6))
        first.kill()
        first.wait()
        second = worker(db_url, log, "--concurrency", "4", "--poll", "0.05")
        try:
            assert wait_for(lambda: finished(db, run.id), 60, f"trial {trial} to finish") == "succeeded"
        finally:
            stop(second)
        tracks = run_tracks(db, run.id)
        for vertex, track in tracks.items():
            assert track.state == "succeeded", (trial, vertex, track.state, track.error)
            interrupted += track.attempt - 1
            done = attempts_in(out / vertex)
            marker = executor.marker(db.key, track.id, track.attempt)
            assert done[marker]["done"], (trial, vertex, done)  # the side effect of the recorded attempt
            assert_no_overlap(out / vertex)
        assert processes_of(db.key) == []
    assert interrupted > 0 or TRIALS < 5


def test_four_workers_share_one_database_and_run_each_track_exactly_once(db, db_url, tmp_path):
    n = 2000
    vertices = [{"name": "root", "script": "true"}, {"name": "sink", "script": "true"}]
    vertices += [{"name": f"w{i}", "script": f'echo "$PIPELINE_ENGINE_TRACK $PPID" >> {tmp_path}/w{i}'}
                 for i in range(n)]
    edges = [["root", f"w{i}"] for i in range(n)] + [[f"w{i}", "sink"] for i in range(n)]
    service.import_graph(db, {"name": "wide", "vertices": vertices, "edges": edges}, seal=True)
    log = open(tmp_path / "workers.log", "w")
    workers = [worker(db_url, log, "--concurrency", "2", "--poll", "0.02") for _ in range(4)]
    try:
        time.sleep(0.5)  # let them all start polling: they race for every track
        run = service.start_run(db, "wide", detach=True)
        assert wait_for(lambda: finished(db, run.id), 180, "the wide run") == "succeeded"
    finally:
        stop(*workers)
    tracks = run_tracks(db, run.id)
    assert {(t.state, t.attempt) for t in tracks.values()} == {("succeeded", 1)}
    runners = set()
    for i in range(n):
        lines = open(tmp_path / f"w{i}").read().splitlines()
        assert len(lines) == 1, (i, lines)  # executed exactly once
        runners.add(lines[0].split()[1])
    assert len(runners) == 4  # every worker took part


def test_a_paused_worker_loses_its_track_and_records_nothing_when_it_wakes(db, db_url, tmp_path):
    side = tmp_path / "slow"
    service.import_graph(db, {"name": "slow", "vertices": [
        {"name": "slow", "script": ticking(side, 100, 0.05), "retries": 1}]}, seal=True)
    run = service.start_run(db, "slow", detach=True)
    log_a, log_b = open(tmp_path / "a.log", "w"), open(tmp_path / "b.log", "w")
    a = worker(db_url, log_a, "--concurrency", "1", "--lease", "1.5", "--poll", "0.05")
    b = None
    try:
        wait_for(lambda: os.path.exists(side), 20, "the first attempt to start")
        pause(a, db)
        b = worker(db_url, log_b, "--concurrency", "1", "--lease", "1.5", "--poll", "0.05")
        assert wait_for(lambda: finished(db, run.id), 30, "the run to finish on the other worker") == "succeeded"
        a.send_signal(signal.SIGCONT)
        wait_for(lambda: "taken back by another worker" in open(tmp_path / "a.log").read(), 10,
                 "the woken worker to notice")
    finally:
        a.send_signal(signal.SIGCONT)
        stop(a, *([b] if b else []))
    track = run_tracks(db, run.id)["slow"]
    assert (track.state, track.attempt, track.exit_code) == ("succeeded", 2, 0)
    seen = attempts_in(side)
    first = seen[executor.marker(db.key, track.id, 1)]
    assert not first["done"] and seen[executor.marker(db.key, track.id, 2)]["done"]
    assert_no_overlap(side)
    assert a.returncode == 0 and processes_of(db.key) == []


def test_cancel_during_a_run_leaves_no_process_of_it_alive(db, db_url, tmp_path):
    vertices = [{"name": f"s{i}", "script": "sleep 60"} for i in range(3)]
    vertices.append({"name": "stubborn", "script": "trap '' TERM; sleep 60 & wait; sleep 60"})
    vertices.append({"name": "after", "script": "true"})
    edges = [[v["name"], "after"] for v in vertices[:4]]
    service.import_graph(db, {"name": "long", "vertices": vertices, "edges": edges}, seal=True)
    run = service.start_run(db, "long", detach=True)
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--concurrency", "4", "--poll", "0.05")
    try:
        wait_for(lambda: len(processes_of(db.key)) >= 5, 20, "the four vertices to run")
        # operators see the worker, the tracks it holds, and which track it runs
        (live,) = wait_for(lambda: [w for w in service.list_workers(db) if w.tracks == 4], 10, "the worker's heartbeat")
        assert live.pid == w.pid and live.concurrency == 4
        shown = service.show_run(db, run.id).to_dict()["tracks"]
        assert {t["vertex"]: t["worker"] for t in shown if t["state"] == "running"} == {
            v: live.name for v in ["s0", "s1", "s2", "stubborn"]}
        started = time.monotonic()
        counts = service.cancel_run(db, run.id, wait=20)
        assert time.monotonic() - started < 10  # TERM, then KILL after the grace for the stubborn one
        assert counts == {"cancelled": 5}
        assert processes_of(db.key) == []
        assert pipeline_state(db, run.id) == "cancelled"
        assert all(t.worker is None for t in run_tracks(db, run.id).values())
    finally:
        stop(w)


def test_retry_reruns_only_what_did_not_succeed(db, db_url, tmp_path):
    def counted(v, extra=""):
        return f"echo {v} >> {tmp_path}/ran; {extra}"
    vertices = [{"name": "a", "script": counted("a")},
                {"name": "b", "script": counted("b", f"test -e {tmp_path}/fixed")},
                {"name": "c", "script": counted("c")}, {"name": "d", "script": counted("d")}]
    service.import_graph(db, {"name": "flaky", "vertices": vertices, "edges": [["a", "b"], ["b", "c"]]}, seal=True)
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    first = subprocess.run([*cli, "run", "flaky"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 1
    run_id = int(first.stdout.split()[1])
    assert {v: t.state for v, t in run_tracks(db, run_id).items()} == {
        "a": "succeeded", "b": "failed", "c": "upstream_failed", "d": "succeeded"}
    (tmp_path / "fixed").touch()
    again = subprocess.run([*cli, "retry", str(run_id)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "2 vertices again (b, c)" in again.stdout
    assert sorted((tmp_path / "ran").read_text().split()) == ["a", "b", "b", "c", "d"]
    tracks = run_tracks(db, run_id)
    assert {v: (t.state, t.attempt) for v, t in tracks.items()} == {
        "a": ("succeeded", 1), "b": ("succeeded", 2), "c": ("succeeded", 1), "d": ("succeeded", 1)}
    assert pipeline_state(db, run_id) == "succeeded"
    refused = subprocess.run([*cli, "retry", str(run_id)], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "only a failed or cancelled run can be retried" in refused.stderr


def test_sigterm_lets_running_tracks_finish_and_a_short_grace_hands_them_back(db, db_url, tmp_path):
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": ticking(tmp_path / "v", 60)}]},
                         seal=True)
    run = service.start_run(db, "one", detach=True)
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--concurrency", "1", "--poll", "0.05")
    wait_for(lambda: os.path.exists(tmp_path / "v"), 20, "the track to start")
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=20) == 0
    track = run_tracks(db, run.id)["v"]
    assert (track.state, track.worker) == ("succeeded", None)  # it was let finish
    assert service.list_workers(db) == []

    run = service.start_run(db, "one", detach=True)
    (tmp_path / "v").unlink()
    w = worker(db_url, open(tmp_path / "w2.log", "w"), "--concurrency", "1", "--poll", "0.05", "--grace", "0.1")
    wait_for(lambda: os.path.exists(tmp_path / "v"), 20, "the track to start")
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=20) == 0
    track = run_tracks(db, run.id)["v"]
    assert (track.state, track.attempt, track.worker) == ("pending", 0, None)  # handed back, not counted
    assert processes_of(db.key) == []
    w = worker(db_url, open(tmp_path / "w3.log", "w"), "--concurrency", "1", "--poll", "0.05")
    try:
        assert wait_for(lambda: finished(db, run.id), 20, "another worker to finish it") == "succeeded"
    finally:
        stop(w)


def test_a_killed_run_is_resumed_by_another_process_which_asks_for_its_secrets_again(db, db_url, tmp_path):
    # "one" outlives the killed run (its bash runs on, in a session of its own), so the resumed
    # attempt overlaps it unless resume kills that leftover before the track runs again
    vertices = [{"name": "one", "script": ticking(tmp_path / "one", 120, 0.05), "retries": 1},
                {"name": "two", "script": f'echo "{{token}}" > {tmp_path}/two', "inputs": {"token": "secret"}}]
    service.import_graph(db, {"name": "sec", "vertices": vertices, "edges": [["one", "two"]]}, seal=True)
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    first = subprocess.Popen([*cli, "run", "sec", "-p", "token=hunter2"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    wait_for(lambda: os.path.exists(tmp_path / "one"), 20, "the run to start")
    first.kill()
    run_id = int(first.stdout.readline().split()[1])
    first.wait()
    missing = subprocess.run([*cli, "resume", str(run_id), "--no-input"], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "input 'token' (secret) is required" in missing.stderr
    resumed = subprocess.run([*cli, "resume", str(run_id), "-p", "token=hunter2"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "two").read_text() == "hunter2\n"
    tracks = run_tracks(db, run_id)
    assert (tracks["one"].state, tracks["one"].attempt) == ("succeeded", 2)
    assert_no_overlap(tmp_path / "one")
    assert "hunter2" not in tracks["two"].script


@pytest.mark.serial  # it stops the server every other test's database is on
@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_database_restart_mid_run_loses_nothing_and_records_each_result_once(backend, db, db_url, tmp_path):
    vertices = [{"name": f"v{i:02d}", "script": ticking(tmp_path / f"v{i:02d}", 8, 0.05)} for i in range(24)]
    service.import_graph(db, {"name": "restart", "vertices": vertices}, seal=True)
    run = service.start_run(db, "restart", detach=True)
    log = open(tmp_path / "w.log", "w")
    w = worker(db_url, log, "--concurrency", "4", "--poll", "0.05")
    try:
        wait_for(lambda: sum(t.state == "succeeded" for t in run_tracks(db, run.id).values()) >= 4, 30,
                 "the first tracks to finish")
        with database_server_stopped(backend):
            time.sleep(1.5)  # tracks end while the database is away
        assert wait_for(lambda: finished(db, run.id), 90, "the run to finish after the restart") == "succeeded"
    finally:
        stop(w)
    assert "database error" in open(tmp_path / "w.log").read()  # the worker did see the fault
    tracks = run_tracks(db, run.id)
    assert {(t.state, t.attempt) for t in tracks.values()} == {("succeeded", 1)}  # each recorded once
    for vertex, track in tracks.items():
        seen = attempts_in(tmp_path / vertex)
        assert list(seen) == [executor.marker(db.key, track.id, 1)] and seen[executor.marker(db.key, track.id, 1)]["done"]


def test_ctrl_c_on_run_hands_the_track_back_then_a_second_one_stops_at_once(db, db_url, tmp_path):
    service.import_graph(db, {"name": "one", "vertices": [{"name": "v", "script": "sleep 60"}]}, seal=True)
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    proc = subprocess.Popen([*cli, "run", "one"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: processes_of(db.key), 20, "the vertex to start")
    proc.send_signal(signal.SIGINT)  # graceful: the vertex may finish within the grace (30 s) ...
    time.sleep(0.5)
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)  # ... a second Ctrl-C terminates it at once
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and time.monotonic() - started < 10
    run_id = int(out.split()[1])
    assert f"pipeline-engine resume {run_id}" in err
    track = run_tracks(db, run_id)["v"]
    assert (track.state, track.attempt, track.worker) == ("pending", 0, None)
    assert processes_of(db.key) == [] and pipeline_state(db, run_id) == "running"
    cancelled = subprocess.run([*cli, "cancel", str(run_id)], cwd=ROOT, capture_output=True, text=True)
    assert cancelled.returncode == 0 and "cancelled: 1 cancelled" in cancelled.stdout


def test_recover_takes_back_the_tracks_of_a_dead_worker(db, db_url, tmp_path):
    vertices = [{"name": "long", "script": "sleep 60", "retries": 1}, {"name": "once", "script": "sleep 60"}]
    service.import_graph(db, {"name": "two", "vertices": vertices}, seal=True)
    run = service.start_run(db, "two", detach=True)
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--concurrency", "2", "--poll", "0.05")
    wait_for(lambda: len(processes_of(db.key)) >= 2, 20, "both vertices to start")
    w.kill()
    w.wait()
    assert len(processes_of(db.key)) >= 2  # a SIGKILLed worker cannot end its processes ...
    result = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "recover"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "2 track(s) taken back" in result.stdout
    assert processes_of(db.key) == []  # ... recover, on its host, did
    tracks = run_tracks(db, run.id)
    assert (tracks["long"].state, tracks["long"].attempt) == ("pending", 1)  # retries remain
    assert (tracks["once"].state, tracks["once"].attempt) == ("failed", 1)  # none left
    assert service.cancel_run(db, run.id) == {"cancelled": 1, "failed": 1}


def test_a_paused_worker_of_another_host_kills_its_own_copy_when_it_wakes(db, db_url, tmp_path):
    """The taker cannot reach processes on another machine (here: a worker registered under
    another host name): the paused worker, once awake, finds its lease taken and kills its copy."""
    side = tmp_path / "slow"
    service.import_graph(db, {"name": "slow", "vertices": [
        {"name": "slow", "script": ticking(side, 200, 0.05), "retries": 1}]}, seal=True)
    run = service.start_run(db, "slow", detach=True)
    log_a = open(tmp_path / "a.log", "w")
    a = worker(db_url, log_a, "--concurrency", "1", "--lease", "1.5", "--poll", "0.05", host="elsewhere")
    b = None
    try:
        wait_for(lambda: os.path.exists(side), 20, "the first attempt to start")
        pause(a, db)
        b = worker(db_url, open(tmp_path / "b.log", "w"), "--concurrency", "1", "--lease", "1.5", "--poll", "0.05",
                   "--grace", "0")
        wait_for(lambda: run_tracks(db, run.id)["slow"].attempt == 2, 20, "the other worker to take the track over")
        track_id = run_tracks(db, run.id)["slow"].id
        first = executor.marker(db.key, track_id, 1)
        assert len([p for p in processes_of(db.key) if _has_marker(p, first)]) > 0  # still running over there
        a.send_signal(signal.SIGCONT)
        wait_for(lambda: not [p for p in processes_of(db.key) if _has_marker(p, first)], 10,
                 "the woken worker to kill its copy")
        assert "taken back by another worker" in open(tmp_path / "a.log").read()
        track = run_tracks(db, run.id)["slow"]
        # the woken worker recorded nothing: the track is still the other worker's attempt 2
        assert (track.state, track.attempt, track.exit_code) == ("running", 2, None)
        assert track.worker.startswith(socket.gethostname())
    finally:
        a.send_signal(signal.SIGCONT)
        stop(a, *([b] if b else []))
    assert not attempts_in(side)[first]["done"]


def _has_marker(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{executor.MARKER}={marker}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def test_detached_runs_and_retries_are_left_to_the_workers(db, db_url, tmp_path):
    vertices = [{"name": "a", "script": f"test -e {tmp_path}/fixed"},
                {"name": "b", "script": f"echo {{n}} {{label}} > {tmp_path}/b",  # rendered by the worker
                 "inputs": {"n": {"type": "int", "default": 3}, "label": "str"}}]
    service.import_graph(db, {"name": "det", "vertices": vertices, "edges": [["a", "b"]]}, seal=True)
    service.import_graph(db, {"name": "sec", "vertices": [
        {"name": "s", "script": "echo {token}", "inputs": {"token": "secret"}}]}, seal=True)
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    created = subprocess.run([*cli, "run", "det", "--detach", "-p", "label=it's; $(x)"], cwd=ROOT,
                             capture_output=True, text=True)
    assert created.returncode == 0 and "created for the workers" in created.stdout
    run_id = int(created.stdout.split()[1])
    assert {t.state for t in run_tracks(db, run_id).values()} == {"pending", "waiting"}
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--concurrency", "2", "--poll", "0.05")
    try:
        assert wait_for(lambda: finished(db, run_id), 20, "the workers to run it") == "failed"
        (tmp_path / "fixed").touch()
        again = subprocess.run([*cli, "retry", str(run_id), "--detach"], cwd=ROOT, capture_output=True, text=True)
        assert again.returncode == 0 and "2 vertices again (a, b)" in again.stdout
        assert wait_for(lambda: finished(db, run_id), 20, "the workers to run it again") == "succeeded"
        assert (tmp_path / "b").read_text() == "3 it's; $(x)\n"
    finally:
        stop(w)
    refused = subprocess.run([*cli, "run", "sec", "-p", "token=x", "--detach"], cwd=ROOT, capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "has secret inputs (token)" in refused.stderr
    assert service.list_runs(db, graph="sec") == []


def test_many_small_runs_shared_by_workers_all_finish(db, db_url, tmp_path):
    """Workers recording the last tracks of one run at the same moment may each see the other's
    as unfinished; the sweep finishes such a run. Every run must end, none stays running."""
    vertices = [{"name": f"s{i}", "script": "sleep 0.02"} for i in range(4)]
    service.import_graph(db, {"name": "small", "vertices": vertices}, seal=True)
    ids = [service.start_run(db, "small", detach=True).id for _ in range(40)]
    log = open(tmp_path / "w.log", "w")
    workers = [worker(db_url, log, "--concurrency", "2", "--poll", "0.02", "--lease", "4") for _ in range(3)]
    try:
        wait_for(lambda: all(finished(db, i) for i in ids), 90, "every run to finish")
    finally:
        stop(*workers)
    assert {pipeline_state(db, i) for i in ids} == {"succeeded"}


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_the_server_ends_a_frozen_workers_transaction_so_its_track_can_be_taken_back(backend, db):
    """A worker frozen (SIGSTOP, a suspended VM) in the middle of a transaction keeps its row
    locks: here it froze after renewing its track's heartbeat, before the commit. Its connection
    tells the server to end a transaction idle that long, so the take-back waits seconds, not
    until the worker wakes (or, on MariaDB, fails after its 50 s lock wait)."""
    from sqlalchemy import exc as sa_exc, text

    from pipeline_engine import store

    service.import_graph(db, {"name": "frozen", "vertices": [{"name": "a", "script": "true", "retries": 1}]},
                         seal=True)
    run = service.start_run(db, "frozen", detach=True)
    track_id = run_tracks(db, run.id)["a"].id
    frozen, other = db.open_connection(), db.open_connection()
    try:
        db.limit_idle_transactions(frozen, 2.0)
        # without the limit the take-back would wait for the lock: fail after 20 s, not hang
        other.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 20" if backend == "mariadb"
                              else "SET lock_timeout = '20s'")
        other.commit()
        with frozen.begin():
            assert store.claim_tracks(frozen, [track_id], "A") == [(track_id, 1)]
        frozen.begin()
        assert store.heartbeat(frozen, "A", [track_id]) == {}  # holds the track's row now; no commit
        started = time.monotonic()
        with other.begin():
            assert store.take_back(other, track_id, "A", 1, "pending", "its worker's lease ran out")
        waited = time.monotonic() - started
        assert 1.5 < waited < 15, waited
        with pytest.raises(sa_exc.DBAPIError):  # the frozen worker, waking, finds its session ended
            frozen.execute(text("SELECT 1"))
    finally:
        frozen.invalidate()
        frozen.close()
        other.close()
    assert run_tracks(db, run.id)["a"].state == "pending"
