"""Hostile output, processes and settings: any bytes a script prints are recorded on every
backend; a row the database refuses never takes a batch or a worker down; a process that
detaches from its group is found by its marker and ended; secrets stay masked whatever their
bytes; vertex processes do not inherit the engine's settings; files are private."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, finished, pipeline_state, run_tracks, snapshot, stop, wait_for, worker

from pipeline_engine import executor, service, store
from pipeline_engine.db import Database
from pipeline_engine.errors import GraphError, PipelineEngineError
from pipeline_engine.runner import Engine, run_pipeline


def define(db, name, vertices, edges=()):
    service.import_graph(db, {"name": name, "vertices": vertices, "edges": [list(e) for e in edges]}, seal=True)


def alive(pid: int) -> bool:
    return executor.process_running(pid)


def gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def pids_in(*files) -> list[int]:
    return [int(f.read_text()) for f in files if f.exists() and f.read_text().strip()]


def kill_pids(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def no_sleeper_left(tmp_path):
    """Whatever a test's assertions say, the detached sleepers it started (their pids in
    ``tmp_path/pid*``) do not outlive it."""
    yield
    kill_pids(pids_in(*tmp_path.glob("pid*")))


def in_thread(fn, timeout: float, pidfiles):
    """``fn()`` in a thread, which must end within ``timeout`` seconds. When it does not, the
    processes named in ``pidfiles`` are killed (so that it ends) and the test fails."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        kill_pids(pids_in(*pidfiles))
        thread.join(10)
        pytest.fail(f"still running after {timeout} s: a detached process held it")
    return box["value"], time.monotonic() - started


# --- item 8: any output is recorded ------------------------------------------------------------

HOSTILE = {
    "nul": "printf 'a\\0b\\n'; printf 'e\\0rr' >&2",
    "badutf8": "printf 'x\\xff\\xfey\\xc3\\n'",
    "random": "head -c 10000000 /dev/urandom",
    "longline": "head -c 2097152 /dev/zero | tr '\\0' a",
    "nulfails": "printf 'no\\0pe\\n' >&2; exit 4",
}


def test_output_of_any_bytes_is_recorded_and_the_run_ends(db, tmp_path):
    # Given vertices printing NUL, invalid UTF-8, 10 MB of random bytes and a 2 MB line,
    # one of them failing, with a vertex below each
    vertices = [{"name": n, "script": s} for n, s in HOSTILE.items()]
    vertices += [{"name": f"after_{n}", "script": "echo fine"} for n in HOSTILE]
    define(db, "hostile", vertices, [(n, f"after_{n}") for n in HOSTILE])
    run = service.start_run(db, "hostile")
    # When it runs
    state = run_pipeline(db, run, workers=4, log_dir=str(tmp_path / "logs"))
    # Then every end is recorded, the run ends with the right states
    assert state == "failed" and pipeline_state(db, run.id) == "failed"
    t = run_tracks(db, run.id)
    assert {n: x.state for n, x in t.items()} == {
        **{n: "succeeded" for n in HOSTILE if n != "nulfails"}, "nulfails": "failed",
        **{f"after_{n}": "succeeded" for n in HOSTILE if n != "nulfails"}, "after_nulfails": "upstream_failed"}
    assert (t["nul"].stdout, t["nul"].stderr) == ("a\ufffdb\n", "e\ufffdrr")
    assert t["badutf8"].stdout.startswith("x\ufffd\ufffdy")
    assert (t["nulfails"].exit_code, t["nulfails"].stderr) == (4, "no\ufffdpe\n")
    assert "truncated" in t["random"].stdout and "\0" not in t["random"].stdout
    assert t["longline"].stdout.endswith("a" * 1000)
    # and the log files keep the raw bytes
    assert open(t["nul"].log_path, "rb").read() == b"--- attempt 1 ---\na\0b\ne\0rr"
    assert os.path.getsize(t["random"].log_path) == 10_000_000 + len("--- attempt 1 ---\n")


def test_ends_of_one_batch_are_all_recorded_when_one_has_nul_output(db, tmp_path):
    # Given four tracks that end at the same moment (each waits for the others to start), one
    # printing NUL and another failing with NUL on stderr
    gate = tmp_path / "gate"
    wait = f"touch {gate}.$PIPELINE_ENGINE_TRACK; until [ $(ls {tmp_path} | grep -c gate) -ge 4 ]; do sleep 0.01; done"
    scripts = {"a": f"{wait}; printf 'x\\0y'", "b": f"{wait}; echo b", "c": f"{wait}; printf '\\0' >&2; exit 1",
               "d": f"{wait}; echo d"}
    define(db, "batch", [{"name": n, "script": s} for n, s in scripts.items()])
    run = service.start_run(db, "batch")
    assert run_pipeline(db, run, workers=4) == "failed"
    t = run_tracks(db, run.id)
    assert {n: (x.state, x.stdout, x.stderr) for n, x in t.items()} == {
        "a": ("succeeded", "x\ufffdy", ""), "b": ("succeeded", "b\n", ""), "c": ("failed", "", "\ufffd"),
        "d": ("succeeded", "d\n", "")}


def _claimed(db, graph: str, n: int):
    define(db, graph, [{"name": f"v{i}", "script": "true"} for i in range(n)])
    run = service.start_run(db, graph)
    ids = sorted(t.id for t in run_tracks(db, run.id).values())
    with db.connection() as conn:
        with conn.begin():
            store.claim_tracks(conn, ids, "w")
    return run, ids


def _end(track_id: int, **changes) -> dict:
    stamp = store.now()
    return {"track_id": track_id, "attempt": 1, "target": "succeeded", "started_at": stamp, "finished_at": stamp,
            "exit_code": 0, "error": None, "stdout": "", "stderr": "", "log_path": None, "duration": 0.5,
            **changes}


def test_text_the_database_cannot_hold_is_recorded_in_a_safe_form(db):
    # NUL, lone surrogates (bytes that were not UTF-8, as Python keeps them) in every text column
    run, ids = _claimed(db, "texts", 3)
    ends = [_end(ids[0], stdout="a\0b", stderr="c\udcffd"), _end(ids[1], target="failed", exit_code=3,
                                                                error="boom \0 \udc80"),
            _end(ids[2], stdout="plain")]
    with db.connection() as conn:
        with conn.begin():
            assert store.record_attempts(conn, ends) == set(ids)
    t = {x.id: x for x in run_tracks(db, run.id).values()}
    assert (t[ids[0]].stdout, t[ids[0]].stderr, t[ids[0]].state) == ("a\ufffdb", "c\ufffdd", "succeeded")
    assert (t[ids[1]].error, t[ids[1]].exit_code, t[ids[1]].state) == ("boom \ufffd \ufffd", 3, "failed")
    assert t[ids[2]].stdout == "plain"


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_row_the_database_refuses_is_recorded_in_a_safe_form_with_the_reason(backend, db):
    # Given a batch of ends where one has a log path longer than its column (the servers refuse it)
    run, ids = _claimed(db, "refused", 3)
    ends = [_end(ids[0], stdout="ok"), _end(ids[1], target="failed", exit_code=9, error="it broke",
                                            stdout="out", log_path="/" + "x" * 2000),
            _end(ids[2], stdout="ok too")]
    with db.connection() as conn:
        with pytest.raises(store.RowRefused):
            with conn.begin():
                store.record_attempts(conn, ends)
        # the runner then writes the batch again with care: the refused row in a safe form
        with conn.begin():
            assert store.record_attempts(conn, ends, careful=True) == set(ids)
    t = {x.id: x for x in run_tracks(db, run.id).values()}
    assert [t[i].state for i in ids] == ["succeeded", "failed", "succeeded"]
    assert (t[ids[0]].stdout, t[ids[2]].stdout) == ("ok", "ok too")
    bad = t[ids[1]]
    assert (bad.exit_code, bad.log_path, bad.stdout) == (9, None, "")
    assert bad.error.startswith("it broke; the database refused this attempt's output:")


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_the_runner_records_a_refused_end_safely_and_the_rest_of_its_batch(backend, db, tmp_path):
    # Given a runner whose log paths the servers refuse (set past the check made at start)
    gate = tmp_path / "gate"
    wait = f"touch {gate}.$PIPELINE_ENGINE_TRACK; until [ $(ls {tmp_path} | grep -c gate) -ge 3 ]; do sleep 0.01; done"
    define(db, "refusing", [{"name": n, "script": f"{wait}; echo {n}"} for n in "abc"] +
           [{"name": "after", "script": "echo after"}], [("a", "after")])
    run = service.start_run(db, "refusing")
    engine = Engine(db, workers=3)
    engine.log_dir = str(tmp_path.joinpath(*(c * 250 for c in "wxyz")))  # past the check, to see the refusal
    engine.adopt(run)
    # When the three end together, then the one below runs
    assert engine.run(run.id) == "succeeded"
    # Then every end is recorded, with the reason and without the path nor the output
    t = run_tracks(db, run.id)
    assert {n: (x.state, x.exit_code, x.log_path, x.stdout) for n, x in t.items()} == {
        n: ("succeeded", 0, None, "") for n in ["a", "b", "c", "after"]}
    assert all(x.error.startswith("the database refused this attempt's output: ") and "too long" in x.error
               for x in t.values())


def test_a_worker_survives_a_track_printing_nul_with_retries(db, db_url, tmp_path):
    define(db, "retrying", [{"name": "bad", "script": "printf 'x\\0y\\n'; exit 1", "retries": 2},
                            {"name": "good", "script": "printf '\\0'; echo ok"}])
    run = service.start_run(db, "retrying", detach=True)
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--concurrency", "2", "--poll", "0.05")
    try:
        assert wait_for(lambda: finished(db, run.id), 30, "the run to finish") == "failed"
        assert w.poll() is None, open(tmp_path / "w.log").read()
        t = run_tracks(db, run.id)
        assert (t["bad"].state, t["bad"].attempt, t["bad"].stdout) == ("failed", 3, "x\ufffdy\n")
        assert (t["good"].state, t["good"].stdout) == ("succeeded", "\ufffdok\n")
    finally:
        stop(w)
    assert w.returncode == 0


def test_a_description_or_script_with_nul_or_undecodable_text_is_refused_at_save(db, unchanged):
    with unchanged():
        for bad in ({"name": "g", "description": "a\0b", "vertices": [{"name": "v", "script": "true"}]},
                    {"name": "g", "vertices": [{"name": "v", "script": "true", "description": "a\0b"}]},
                    {"name": "g", "vertices": [{"name": "v", "script": "echo \udcff"}]},
                    {"name": "g", "description": "\udc80", "vertices": [{"name": "v", "script": "true"}]}):
            with pytest.raises(GraphError) as exc:
                service.import_graph(db, bad)
            assert "NUL" in str(exc.value) or "not valid UTF-8" in str(exc.value)
        with pytest.raises(GraphError, match="graph 'g': description contains a NUL"):
            service.create_graph(db, "g", "x\0")
        with pytest.raises(GraphError, match="pool 'p': description contains a NUL"):
            service.set_pool(db, "p", 1, description="x\0")
    service.create_graph(db, "g", "")
    with unchanged():
        with pytest.raises(GraphError, match="vertex 'v': description contains a NUL"):
            service.add_vertex(db, "g", "v", "true", description="\0")


# --- item 9: processes that detach ---------------------------------------------------------------

def _sleeper(pidfile, how: str) -> str:
    inner = f"bash -c 'echo $$ > {pidfile}; exec sleep 1000'"
    return {"setsid": f"setsid {inner} &", "subshell": f"(setsid {inner} &)", "nohup": f"nohup {inner} &"}[how]


@pytest.mark.parametrize("how", ["setsid", "subshell", "nohup"])
def test_a_detached_child_holding_the_pipes_ends_with_its_script(tmp_path, how):
    pidfile = tmp_path / "pid"
    script = f"{_sleeper(pidfile, how)}\nuntil [ -s {pidfile} ]; do sleep 0.01; done; echo done"
    outcome, took = in_thread(lambda: executor.run_script(script, {executor.MARKER: f"test:{os.getpid()}:{how}"}),
                              15, [pidfile])
    assert outcome.ok and outcome.stdout == "done\n" and took < 5
    assert gone(pids_in(pidfile)[0])


def test_a_daemon_that_closed_its_output_is_ended_too(db, tmp_path):
    # a detached child that does not hold the pipes: the attempt ends at once, the child with it
    # (looked for at its end when called alone; in a run, within a heartbeat)
    pidfile, pidfile2 = tmp_path / "pid", tmp_path / "pid2"
    daemon = "setsid bash -c 'echo $$ > {}; exec sleep 1000' >/dev/null 2>&1 < /dev/null &\nuntil [ -s {} ]; do sleep 0.01; done"
    try:
        outcome, took = in_thread(lambda: executor.run_script(daemon.format(pidfile, pidfile),
                                                              {executor.MARKER: f"test:{os.getpid()}:d"}),
                                  15, [pidfile])
        assert outcome.ok and took < 5 and gone(pids_in(pidfile)[0], within=0.5)
        define(db, "daemon", [{"name": "d", "script": daemon.format(pidfile2, pidfile2)}])
        run = service.start_run(db, "daemon")
        assert run_pipeline(db, run) == "succeeded"
        assert gone(pids_in(pidfile2)[0], within=0.5)
    finally:
        kill_pids(pids_in(pidfile, pidfile2))


def test_the_timeout_fires_and_ends_a_detached_child(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"{_sleeper(pidfile, 'setsid')}\nsleep 1000"
    outcome, took = in_thread(lambda: executor.run_script(script, {executor.MARKER: f"test:{os.getpid()}:t"},
                                                          timeout=0.5, kill_grace=0.3), 15, [pidfile])
    assert outcome.timed_out and "timed out after 0.5 s" in outcome.error and took < 5
    assert gone(pids_in(pidfile)[0])


def test_a_run_with_a_detached_child_finishes_and_leaves_nothing(db, tmp_path):
    pidfile, pidfile2 = tmp_path / "pid", tmp_path / "pid2"
    define(db, "detach", [
        {"name": "quick", "script": f"{_sleeper(pidfile, 'subshell')}\nuntil [ -s {pidfile} ]; do sleep 0.01; done"},
        {"name": "slow", "script": f"{_sleeper(pidfile2, 'setsid')}\nsleep 1000", "timeout": 0.5},
        {"name": "next", "script": "echo next"}], [("quick", "next")])
    run = service.start_run(db, "detach")
    state, took = in_thread(lambda: run_pipeline(db, run, workers=2), 20, [pidfile, pidfile2])
    assert state == "failed" and took < 8
    t = run_tracks(db, run.id)
    assert {n: x.state for n, x in t.items()} == {"quick": "succeeded", "slow": "failed", "next": "succeeded"}
    assert "timed out" in t["slow"].error
    assert gone(pids_in(pidfile)[0]) and gone(pids_in(pidfile2)[0])


def test_sigterm_stops_a_run_whose_track_has_a_detached_child(db, db_url, tmp_path):
    pidfile = tmp_path / "pid"
    define(db, "stuck", [{"name": "v", "script": f"{_sleeper(pidfile, 'setsid')}\nsleep 1000"}])
    proc = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "run", "stuck", "--grace", "0.5"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the detached child to start")
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            kill_pids(pids_in(pidfile))
            proc.kill()
            proc.communicate()
            pytest.fail("run did not stop within its grace: the detached child held its track")
        assert proc.returncode == 130, err
        run_id = int(out.split()[1])
        assert run_tracks(db, run_id)["v"].state == "pending"  # handed back, resumable
        assert gone(pids_in(pidfile)[0])
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_pids(pids_in(pidfile))


# --- item 7: secrets, environment, file modes ---------------------------------------------------------

def test_a_secret_that_is_not_utf8_never_appears_in_clear(db, tmp_path, capfd):
    define(db, "sec", [{"name": "s", "script": "echo token={pw}; echo {pw} >&2; exit 1", "inputs": {"pw": "secret"}}])
    value = "hunter2\udcffxyz"  # how Python gives `-p pw=$'hunter2\xffxyz'`
    # a run refuses text that is not UTF-8, naming the input and never the value
    with pytest.raises(PipelineEngineError) as exc:
        service.start_run(db, "sec", {"pw": value})
    assert "not valid UTF-8" in str(exc.value) and "hunter2" not in str(exc.value)
    # and should such bytes reach a process anyway, they are masked by their bytes, wherever
    # they show (the executor is the last line: an exception's text never carries them)
    log = tmp_path / "s.log"
    outcome = executor.run_script("echo token=$PE_pw; echo $PE_pw >&2; exit 1", {"PE_pw": value},
                                  secrets=[value], log_path=str(log))
    assert outcome.exit_code == 1, outcome.error
    for text in (outcome.error or "", outcome.stdout, outcome.stderr):
        assert "hunter2" not in text and "xyz" not in text
    assert (outcome.stdout, outcome.stderr) == ("token=********\n", "********\n")
    raw = log.read_bytes()
    assert b"hunter2" not in raw and raw.endswith(b"token=********\n********\n")
    out, err = capfd.readouterr()
    assert "hunter2" not in out + err


def test_vertex_processes_do_not_inherit_the_engine_settings(db, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_ENGINE_DB", "postgresql://app:dbpassword@db.example/jobs")
    monkeypatch.setenv("PIPELINE_ENGINE_HOST", "box")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    define(db, "env", [{"name": "e", "script": "env; echo x={x}", "inputs": {"x": {"type": "str", "default": "v"}}}])
    run = service.start_run(db, "env")
    assert run_pipeline(db, run, output_cap=1 << 20) == "succeeded"
    track = run_tracks(db, run.id)["e"]
    names = {line.split("=", 1)[0] for line in track.stdout.splitlines() if "=" in line}
    assert "dbpassword" not in track.stdout
    assert {"SOMETHING_ELSE", "PE_x", executor.MARKER} <= names
    # the engine's own: the marker and what the attempt is (its settings, the database URL among them, never)
    assert {n for n in names if n.startswith("PIPELINE_ENGINE_")} == {
        executor.MARKER, "PIPELINE_ENGINE_RUN_ID", "PIPELINE_ENGINE_GRAPH", "PIPELINE_ENGINE_VERTEX",
        "PIPELINE_ENGINE_ATTEMPT", "PIPELINE_ENGINE_FIRE_AT"}
    assert "PIPELINE_ENGINE_HOST=box" not in track.stdout
    # also with no values at all (the inherited environment alone)
    outcome = executor.run_script("env")
    assert "PIPELINE_ENGINE_" not in outcome.stdout and "SOMETHING_ELSE=kept" in outcome.stdout


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_log_files_and_their_directories_are_private(db, tmp_path, umask022):
    define(db, "logged", [{"name": "v", "script": "echo hi"}])
    run = service.start_run(db, "logged")
    logs = tmp_path / "new" / "logs" / "db"
    assert run_pipeline(db, run, log_dir=str(logs)) == "succeeded"
    path = run_tracks(db, run.id)["v"].log_path
    assert _mode(path) == 0o600
    for directory in (os.path.dirname(path), logs, logs.parent, logs.parent.parent):
        assert _mode(directory) == 0o700, directory


def test_a_new_sqlite_database_is_private(tmp_path, umask022):
    path = tmp_path / "fresh" / "pe.db"
    database = Database(f"sqlite:///{path}", auto_migrate=True)
    try:
        service.create_graph(database, "g")
        with database.engine.connect() as conn:  # a second connection: the WAL files are there
            conn.exec_driver_sql("SELECT 1")
            files = [p for p in (path, tmp_path / "fresh" / "pe.db-wal", tmp_path / "fresh" / "pe.db-shm")]
            assert all(p.exists() for p in files)
            assert {str(p): _mode(p) for p in files} == {str(p): 0o600 for p in files}
        assert _mode(path.parent) == 0o700
    finally:
        database.dispose()


# --- item 12: a log path longer than its column ---------------------------------------------------

def test_a_logs_directory_whose_paths_cannot_fit_is_refused_before_anything_is_written(db, db_url, tmp_path):
    define(db, "g", [{"name": "v", "script": "true"}])
    before = snapshot(db)
    deep = tmp_path.joinpath(*(c * 200 for c in "defgh"))  # paths under it are over 1024 characters
    env = {**os.environ, "PIPELINE_ENGINE_LOGS": str(deep)}
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    for args in (["run", "g"], ["worker"]):
        done = subprocess.run([*cli, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "PIPELINE_ENGINE_LOGS" in done.stderr and "1024" in done.stderr
    assert snapshot(db) == before
    with pytest.raises(PipelineEngineError, match="1024"):
        run_pipeline(db, service.start_run(db, "g"), log_dir=str(deep))


def test_the_longest_logs_directory_accepted_records_its_paths(db, tmp_path):
    name = "v" * 200  # the longest vertex name
    define(db, "g", [{"name": name, "script": "echo hi"}])
    from pipeline_engine.runner import longest_log_dir

    logs = str(tmp_path)
    while len(logs) < longest_log_dir():  # components within the file system's 255 bytes
        logs = os.path.join(logs, "x" * min(200, longest_log_dir() - len(logs) - 1))
    assert len(logs) == longest_log_dir()
    run = service.start_run(db, "g")
    assert run_pipeline(db, run, log_dir=logs) == "succeeded"
    path = run_tracks(db, run.id)[name].log_path
    assert path.startswith(logs) and open(path).read().endswith("hi\n")
