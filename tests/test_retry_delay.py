"""Retries that wait (issue 11, item 12): ``retry_delay`` seconds before the second attempt, each
later wait ``retry_backoff`` times the one before. A waiting track is ``pending`` with a time
before which no claim takes it: it holds no worker thread and no pool slot meanwhile, and a
cancel ends the wait. Real processes, every backend.

Scripts write ``<what> <time>`` lines (bash's $EPOCHREALTIME) inside their own run time, so the
gaps measured are at least the real ones."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import ROOT, finished, run_tracks, stop, wait_for

from pipeline_engine import graphfile, service, store
from pipeline_engine.errors import GraphError, GraphFileError
from pipeline_engine.runner import run_pipeline
from pipeline_engine.spec import retry_wait


def times(path) -> list[tuple[str, float]]:
    return [(what, float(at)) for what, at in (line.split() for line in open(path).read().splitlines())]


def fails_once(tmp_path, log) -> str:
    """A script that fails its first attempt and succeeds the next, marking both."""
    once = tmp_path / "failed-once"
    return (f'echo "flaky-start $EPOCHREALTIME" >> {log}\n'
            f'if [ -e {once} ]; then exit 0; fi\n'
            f'touch {once}; echo "flaky-end $EPOCHREALTIME" >> {log}; exit 1\n')


def test_the_wait_before_attempt_n_plus_1_is_the_delay_times_the_backoff_to_the_n_minus_1():
    assert [retry_wait(1.5, 2, n) for n in (1, 2, 3)] == [1.5, 3.0, 6.0]
    assert retry_wait(0, 2, 5) == 0 and retry_wait(2, 1, 7) == 2
    assert retry_wait(10, 100, 100) == 366 * 86400  # capped, never an overflow


def test_a_retry_waits_without_holding_the_thread_or_the_pool_slot(db, tmp_path):
    # Given one thread and a pool of one, a vertex that fails once and waits 1.5 s to retry, and
    # another vertex of the pool, ranked below it
    log = tmp_path / "times"
    vertices = [{"name": "flaky", "script": fails_once(tmp_path, log), "retries": 1, "retry_delay": 1.5,
                 "pool": "one", "priority": 10},
                {"name": "other", "script": f'echo "other-start $EPOCHREALTIME" >> {log}; sleep 0.2', "pool": "one",
                 "priority": 1}]
    service.import_graph(db, {"name": "wait", "pools": {"one": 1}, "vertices": vertices}, seal=True)
    # When the run runs
    run = service.start_run(db, "wait")
    assert run_pipeline(db, run, workers=1) == "succeeded"
    # Then the second attempt starts 1.5 s or more after the first ended, and the other vertex
    # ran in between, on the one thread and in the one slot
    seen = times(log)
    assert [w for w, _ in seen] == ["flaky-start", "flaky-end", "other-start", "flaky-start"]
    at = [t for _, t in seen]
    assert at[3] - at[1] >= 1.5, seen
    assert at[1] < at[2] < at[3]
    assert at[2] - at[1] < 1.0, seen  # at once, not after the wait
    tracks = run_tracks(db, run.id)
    assert (tracks["flaky"].state, tracks["flaky"].attempt, tracks["flaky"].not_before) == ("succeeded", 2, None)


def test_the_waits_grow_by_the_backoff(db, tmp_path):
    log = tmp_path / "times"
    script = f'echo "start $EPOCHREALTIME" >> {log}; exit 1'
    service.import_graph(db, {"name": "backoff", "vertices": [
        {"name": "a", "script": script, "retries": 2, "retry_delay": 0.4, "retry_backoff": 3}]}, seal=True)
    run = service.start_run(db, "backoff")
    assert run_pipeline(db, run, workers=2) == "failed"
    at = [t for _, t in times(log)]
    assert len(at) == 3
    assert at[1] - at[0] >= 0.4 and at[2] - at[1] >= 1.2, at  # 0.4, then 0.4 x 3
    assert run_tracks(db, run.id)["a"].attempt == 3


def test_no_claim_takes_a_track_before_its_time(db):
    # Given a pending track whose retry waits a minute
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    track = run_tracks(db, run.id)["a"]
    with db.transaction(write=True) as s:
        s.get(type(track), track.id).not_before = store.now() + timedelta(seconds=60)
    # Then no look finds it and no claim takes it; once its time has come, both do
    with db.engine.begin() as conn:
        assert store.pending_tracks(conn, [run.id], 10) == []
        assert store.claim_tracks(conn, [track.id], "w1") == []
    with db.transaction(write=True) as s:
        s.get(type(track), track.id).not_before = store.now() - timedelta(seconds=1)
    with db.engine.begin() as conn:
        assert [r[0] for r in store.pending_tracks(conn, [run.id], 10)] == [track.id]
        assert store.claim_tracks(conn, [track.id], "w1") == [(track.id, 1)]
    assert run_tracks(db, run.id)["a"].not_before is None


def test_runs_show_tells_the_wait_and_a_cancel_ends_it(db, db_url, cli, tmp_path):
    # Given a run whose vertex failed and waits a minute for its retry
    service.import_graph(db, {"name": "slow", "vertices": [
        {"name": "a", "script": "echo boom >&2; exit 3", "retries": 1, "retry_delay": 60}]}, seal=True)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "run", "slow"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run_id = wait_for(lambda: [r.id for r in service.list_runs(db)], 20, "the run")[0]
        wait_for(lambda: run_tracks(db, run_id)["a"].attempt == 1 and run_tracks(db, run_id)["a"].state == "pending",
                 20, "the first attempt to fail")
        # Then runs show says when it retries
        code, out, _ = cli("runs", "show", str(run_id))
        assert code == 0
        row = next(line for line in out.splitlines() if line.startswith("a "))
        assert "pending" in row and "retrying at " in row and "exit code 3" in row
        code, out, _ = cli("runs", "show", str(run_id), "--json")
        assert json.loads(out)["tracks"][0]["retry_at"] is not None
        # When the run is cancelled during the wait
        code, out, _ = cli("cancel", str(run_id))
        assert code == 0
        # Then the run process ends at once, and the track never ran again
        assert proc.wait(timeout=15) == 1
        assert "a: attempt 1 failed" in (said := proc.stderr.read().decode()) and "retrying in 60 s" in said, said
        assert finished(db, run_id) == "cancelled"
        track = run_tracks(db, run_id)["a"]
        assert (track.state, track.attempt) == ("cancelled", 1)
        assert service.show_run(db, run_id).tracks[0].retry_at is None
    finally:
        stop(proc)
        proc.stdout.close()
        proc.stderr.close()


def test_retry_fields_in_files_the_api_and_show(db, cli, unchanged):
    graph = {"name": "g", "vertices": [{"name": "a", "script": "true", "retries": 2, "retry_delay": 1.5,
                                        "retry_backoff": 2}, {"name": "b", "script": "true"}]}
    service.import_graph(db, graph)
    text = service.export_graph(db, "g")
    assert "retry_delay: 1.5\n" in text and "retry_backoff: 2\n" in text and text.count("retry_") == 2
    assert graphfile.loads(text) == service.show_graph(db, "g").spec
    vertex = service.show_graph(db, "g").to_dict()["vertices"][0]
    assert (vertex["retry_delay"], vertex["retry_backoff"]) == (1.5, 2.0)
    code, out, _ = cli("graph", "show", "g")
    assert code == 0 and "a  (retries 2 1.5s apart x2)" in out
    assert service.update_vertex(db, "g", "a", retry_delay=3).retry_backoff == 2  # kept when not given
    assert service.add_vertex(db, "g", "c", "true", retries=1, retry_delay=0.5).retry_delay == 0.5
    with unchanged():
        with pytest.raises(GraphError, match="vertex 'a': retry_delay must be a number of seconds from 0"):
            service.update_vertex(db, "g", "a", retry_delay=-1)
        with pytest.raises(GraphError, match="vertex 'd': retry_backoff must be a factor from 1 to 100, got 0.5"):
            service.add_vertex(db, "g", "d", "true", retry_backoff=0.5)
        with pytest.raises(GraphFileError) as exc:
            service.import_graph(db, {"name": "h", "vertices": [
                {"name": "x", "script": "true", "retry_delay": "soon", "retry_backoff": True}]})
        assert exc.value.problems == ["vertex 'x': retry_delay must be a number of seconds from 0 to 31622400"
                                      " (a year), got 'soon'\nvertex 'x': retry_backoff must be a factor from 1"
                                      " to 100, got True"]
