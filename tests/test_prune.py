"""`prune` deletes old finished runs with their tracks and log files, in batches, and nothing
else: recent runs and running ones stay. On every backend."""
import os
from datetime import timedelta

import pytest
from conftest import run_tracks
from sqlalchemy import delete, update

from pipeline_engine import service, store
from pipeline_engine.cli import main
from pipeline_engine.models import Pipeline, Track
from pipeline_engine.runner import run_pipeline


def cli(db_url, capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["--db", db_url, *args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_prune_deletes_old_finished_runs_in_batches_and_keeps_the_rest(db, db_url, capsys, log_dir):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "echo a"},
                                                        {"name": "b", "script": "echo b"}]}, seal=True)
    ids = []
    for _ in range(4):
        code, out, _ = cli(db_url, capsys, "run", "g")
        assert code == 0
        ids.append(int(out.split()[1]))
    running = service.start_run(db, "g").id  # never executed: stays running
    old = store.now() - timedelta(days=10)
    with db.transaction() as s:
        s.execute(update(Pipeline).where(Pipeline.id.in_(ids[:3] + [running])).values(finished_at=old, started_at=old))
    logs = os.path.join(log_dir, db.key)
    assert sorted(os.listdir(logs)) == sorted(f"run-{i}" for i in ids)

    code, out, _ = cli(db_url, capsys, "prune", "--older-than", "7", "--batch", "2")
    assert (code, out) == (0, "pruned 3 runs, 6 tracks\n")
    assert [r.id for r in service.list_runs(db)] == [running, ids[3]]
    with db.transaction(write=False) as s:
        assert {t.pipeline_id for t in s.query(Track)} == {running, ids[3]}
    assert os.listdir(logs) == [f"run-{ids[3]}"]
    assert run_pipeline(db, service.load_run(db, running)) == "succeeded"  # running work untouched

    code, out, _ = cli(db_url, capsys, "prune", "--older-than", "7")
    assert out == "pruned 0 runs, 0 tracks\n"
    code, _, err = cli(db_url, capsys, "prune", "--older-than", "-1")
    assert code == 2 and "--older-than" in err
    # further back than any date (it overflowed, a traceback): nothing that old, nothing pruned
    code, out, err = cli(db_url, capsys, "prune", "--older-than", "999999999")
    assert (code, out) == (0, "pruned 0 runs, 0 tracks\n") and "Traceback" not in err
    code, _, err = cli(db_url, capsys, "prune", "--older-than", "nan")
    assert code == 2 and "--older-than" in err


def _failed_old_run(db, days: int = 10) -> int:
    """A run of a two-vertex graph that failed (b), finished ``days`` ago."""
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "echo a"},
                                                        {"name": "b", "script": "test -e ok"}]}, seal=True)
    run = service.start_run(db, "g")
    assert run_pipeline(db, run) == "failed"
    old = store.now() - timedelta(days=days)
    with db.transaction() as s:
        s.execute(update(Pipeline).where(Pipeline.id == run.id).values(finished_at=old, started_at=old))
    return run.id


def _prune_around(db, between) -> None:
    """prune's two steps, the candidates' select and the delete, with ``between()`` committed by
    another connection in the middle. On the servers both steps are one transaction, as in
    ``service.prune_runs``; SQLite's writer lock admits no other writer inside it, so there the
    steps are two transactions (a delete of ids selected earlier)."""
    before = store.now() - timedelta(days=7)
    if db.dialect == "sqlite":
        with db.transaction() as s:
            ids = store.old_finished_runs(s.connection(), before, 10)
        between()
        with db.transaction() as s:
            store.delete_runs(s.connection(), ids)
        return
    with db.transaction() as s:
        conn = s.connection()
        ids = store.old_finished_runs(conn, before, 10)
        between()
        store.delete_runs(conn, ids)


def test_prune_racing_retry_leaves_the_retried_run_whole(db, tmp_path, monkeypatch):
    # Given an old failed run that prune selects for deletion
    run_id = _failed_old_run(db)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok").touch()  # the cause of the failure is fixed

    # When `retry` starts it again between prune's select and its delete
    _prune_around(db, lambda: service.retry_run(db, run_id))

    # Then the run keeps its tracks, runs its failed vertex again and succeeds for real
    tracks = run_tracks(db, run_id)
    assert {v: t.state for v, t in tracks.items()} == {"a": "succeeded", "b": "pending"}
    assert run_pipeline(db, service.load_run(db, run_id)) == "succeeded"
    tracks = run_tracks(db, run_id)
    assert {v: (t.state, t.attempt) for v, t in tracks.items()} == {"a": ("succeeded", 1), "b": ("succeeded", 2)}


def test_prune_keeps_a_run_that_was_retried_and_finished_again_since_it_was_selected(db, tmp_path, monkeypatch):
    run_id = _failed_old_run(db)
    monkeypatch.chdir(tmp_path)
    before = store.now() - timedelta(days=7)
    with db.transaction() as s:
        ids = store.old_finished_runs(s.connection(), before, 10)
    assert ids == [run_id]
    service.retry_run(db, run_id)
    assert run_pipeline(db, service.load_run(db, run_id)) == "failed"  # finished again, just now
    with db.transaction() as s:
        assert store.delete_runs(s.connection(), ids, before) == ([], 0)
    assert set(run_tracks(db, run_id)) == {"a", "b"}
    assert service.prune_runs(db, 7) == (0, 0)
    assert service.prune_runs(db, 0) == (1, 2)


def test_a_run_with_no_tracks_never_ends_succeeded(db):
    # Given running runs whose tracks are gone (as a prune racing a retry used to leave them)
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "echo a"}]}, seal=True)
    swept, owned = service.start_run(db, "g", detach=True).id, service.start_run(db, "g")
    with db.transaction() as s:
        s.execute(delete(Track).where(Track.pipeline_id.in_([swept, owned.id])))

    # When the sweep finishes what has nothing left to do, and a runner finishes its own run
    service.recover(db)
    assert run_pipeline(db, owned) == "failed"

    # Then neither is succeeded
    assert {r.id: r.state for r in service.list_runs(db)} == {swept: "failed", owned.id: "failed"}
