"""Every attempt of a track is kept (one ``attempt`` row per ended attempt, written with the
track's move) and read back by start for a run's timeline, the running ones included: retries,
timeouts, lost leases taken back, cancels; pruned and deleted with their runs. On every backend,
real processes."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import run_tracks
from sqlalchemy import event, func, insert, inspect, select, text, update
from sqlalchemy import exc as sa_exc
from test_api import api, cli_json, unique  # noqa: F401 - the module's server (one per backend), its CLI

from pipeline_engine import migrate, service, store
from pipeline_engine.errors import GraphError, NotFoundError
from pipeline_engine.models import Pipeline, Track, TrackAttempt, Worker
from pipeline_engine.runner import run_pipeline


def counting(tmp_path, name: str, succeed_at: int) -> str:
    """A script that fails (exit 1) until its ``succeed_at``-th attempt."""
    count = tmp_path / f"{name}.count"
    return (f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}; "
            f"[ $n -ge {succeed_at} ]")


def attempt_rows(db, run_id: int | None = None) -> list[TrackAttempt]:
    with db.transaction(write=False) as s:
        q = select(TrackAttempt).order_by(TrackAttempt.track_id, TrackAttempt.attempt)
        if run_id is not None:
            q = q.join(Track, Track.id == TrackAttempt.track_id).where(Track.pipeline_id == run_id)
        return list(s.scalars(q))


def flaky_run(db, tmp_path, graph: str = "flaky") -> int:
    """A run of a --> b where a fails twice, then succeeds on its third attempt (two retries)."""
    service.import_graph(db, {"name": graph, "vertices": [
        {"name": "a", "script": counting(tmp_path, graph, 3), "retries": 2},
        {"name": "b", "script": "echo b"}], "edges": [["a", "b"]]}, seal=True)
    run = service.start_run(db, graph)
    assert run_pipeline(db, run) == "succeeded"
    return run.id


def claimed_by(db, run_id: int, vertex: str, worker: str, *, host: str = "elsewhere", lease: float = 1.0) -> int:
    """The run's track of ``vertex`` claimed by a registered ``worker`` (of another host, so that
    no process of this one is looked for); returns the track's id."""
    track_id = run_tracks(db, run_id)[vertex].id
    with db.transaction() as s:
        conn = s.connection()
        store.register_worker(conn, worker, host, 1, 1, lease)
        assert store.claim_tracks(conn, [track_id], worker) == [(track_id, 1)]
    return track_id


def silent_since(db, worker: str, ago: timedelta) -> None:
    """``worker`` and its tracks last renewed their lease ``ago``: aged in SQL, no sleeping."""
    old = store.now() - ago
    with db.transaction() as s:
        s.execute(update(Worker).where(Worker.name == worker).values(heartbeat_at=old))
        s.execute(update(Track).where(Track.worker == worker).values(heartbeat_at=old))


# --- what is recorded -----------------------------------------------------------------------------

def test_a_vertex_that_fails_twice_then_succeeds_leaves_three_attempts_in_order(db, tmp_path):
    # Given a --> b, where a fails twice and succeeds on its third attempt
    run_id = flaky_run(db, tmp_path)

    # When the run's attempts are read
    page = service.run_attempts(db, run_id)

    # Then a has three, failed, failed, succeeded, then b one, each with its times, in order of start
    assert page.total == 4
    assert [(a.vertex, a.attempt, a.outcome, a.exit_code) for a in page.attempts] == [
        ("a", 1, "failed", 1), ("a", 2, "failed", 1), ("a", 3, "succeeded", 0), ("b", 1, "succeeded", 0)]
    for before, after in zip(page.attempts, page.attempts[1:]):
        assert before.finished_at <= after.started_at
    for a in page.attempts:
        assert a.started_at <= a.finished_at and a.worker and a.error is None
    # the track keeps the last one, as before
    track = run_tracks(db, run_id)["a"]
    last = page.attempts[2]
    assert (track.attempt, track.started_at, track.finished_at, track.worker) == (3, last.started_at,
                                                                                  last.finished_at, None)
    assert page.attempts[0].to_dict() == {
        "vertex": "a", "attempt": 1, "worker": last.worker, "started_at": page.attempts[0].started_at.isoformat(),
        "finished_at": page.attempts[0].finished_at.isoformat(), "outcome": "failed", "exit_code": 1, "error": None}


def test_pages_of_attempts_cover_them_all_once_and_bad_pages_are_refused(db, tmp_path):
    run_id = flaky_run(db, tmp_path)
    whole = service.run_attempts(db, run_id).attempts
    paged = [a for offset in range(0, 4, 3) for a in service.run_attempts(db, run_id, limit=3, offset=offset).attempts]
    assert paged == whole and len(whole) == 4
    assert service.run_attempts(db, run_id, limit=0).attempts == [] and service.run_attempts(db, run_id,
                                                                                             limit=0).total == 4
    assert service.run_attempts(db, run_id, offset=10).attempts == []
    with pytest.raises(GraphError, match="limit"):
        service.run_attempts(db, run_id, limit=-1)
    with pytest.raises(GraphError, match="offset"):
        service.run_attempts(db, run_id, offset=True)
    with pytest.raises(NotFoundError, match=f"run {run_id + 1} not found"):
        service.run_attempts(db, run_id + 1)


def test_a_timed_out_attempt_is_recorded_as_timed_out(db):
    # Given a vertex that sleeps past its timeout, with one retry
    service.import_graph(db, {"name": "slow", "vertices": [
        {"name": "a", "script": "sleep 30", "timeout": 0.3, "retries": 1}]}, seal=True)
    run = service.start_run(db, "slow")
    # When it runs
    assert run_pipeline(db, run) == "failed"
    # Then both attempts are timed_out, saying so
    attempts = service.run_attempts(db, run.id).attempts
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "timed_out"), (2, "timed_out")]
    for a in attempts:
        assert a.error.startswith("timed out after 0.3 s")
        assert (a.finished_at - a.started_at).total_seconds() >= 0.3


@pytest.mark.parametrize("retries, state", [(1, "pending"), (0, "failed")])
def test_a_lease_taken_back_by_recovery_leaves_a_lost_attempt(db, retries, state):
    # Given a track claimed by a worker of another host
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true", "retries": retries}]},
                         seal=True)
    run = service.start_run(db, "g", detach=True)
    claimed_by(db, run.id, "a", "gone")
    # while it runs, it is there as running, from its track
    [running] = service.run_attempts(db, run.id).attempts
    assert (running.attempt, running.outcome, running.worker, running.finished_at) == (1, "running", "gone", None)
    assert attempt_rows(db) == []

    # When the worker goes silent past its lease and recovery takes its track back
    silent_since(db, "gone", timedelta(hours=1))
    assert service.recover(db) == 1

    # Then the attempt ended lost, the worker's, with why; the track is pending again, or failed
    [lost] = service.run_attempts(db, run.id).attempts
    track = run_tracks(db, run.id)["a"]
    assert (lost.attempt, lost.outcome, lost.worker, lost.exit_code) == (1, "lost", "gone", None)
    assert lost.error == "its worker died or its lease expired"
    assert lost.started_at == running.started_at < lost.finished_at
    assert track.state == state
    if state == "failed":
        assert track.finished_at == lost.finished_at
    # and a second recovery takes nothing back and writes nothing
    assert service.recover(db) == 0 and len(attempt_rows(db)) == 1


def test_a_run_resumed_after_a_lost_lease_keeps_the_lost_attempt_then_the_next(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true", "retries": 1}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    claimed_by(db, run.id, "a", "gone")
    silent_since(db, "gone", timedelta(hours=1))
    assert service.recover(db) == 1
    assert run_pipeline(db, service.load_run(db, run.id)) == "succeeded"
    assert [(a.attempt, a.outcome, a.worker == "gone") for a in service.run_attempts(db, run.id).attempts] == [
        (1, "lost", True), (2, "succeeded", False)]


def test_a_cancel_ends_the_running_attempts_cancelled_and_a_retry_numbers_on(db):
    # Given a --> b with a running on a worker
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}, {"name": "b",
                                                                                         "script": "true"}],
                              "edges": [["a", "b"]]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    track_id = claimed_by(db, run.id, "a", "busy")
    # When the run is cancelled (and the worker, told at its heartbeat, lets go of the track)
    service.cancel_run(db, run.id)
    with db.transaction() as s:
        store.release_worker(s.connection(), "busy", [track_id])
    # Then a's attempt ended cancelled, then; b never started and has none
    [cancelled] = service.run_attempts(db, run.id).attempts
    track = run_tracks(db, run.id)["a"]
    assert (cancelled.vertex, cancelled.attempt, cancelled.outcome, cancelled.worker, cancelled.error) == (
        "a", 1, "cancelled", "busy", "cancelled")
    assert cancelled.finished_at == track.finished_at and cancelled.started_at == track.started_at
    # And a retry of the run runs a's second attempt, then b's first
    service.retry_run(db, run.id)
    assert run_pipeline(db, service.load_run(db, run.id)) == "succeeded"
    assert [(a.vertex, a.attempt, a.outcome) for a in service.run_attempts(db, run.id).attempts] == [
        ("a", 1, "cancelled"), ("a", 2, "succeeded"), ("b", 1, "succeeded")]


def test_a_run_s_attempts_are_read_in_the_same_few_statements_whatever_its_size(db):
    def statements(run_id: int) -> int:
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - the statement's text
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            service.run_attempts(db, run_id)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len([s for s in seen if "attempt" in s or "pipeline" in s])

    sizes = {}
    for n in (1, 40):
        name = f"g{n}"
        service.import_graph(db, {"name": name, "vertices": [{"name": f"v{i}", "script": "true"}
                                                             for i in range(n)]}, seal=True)
        run = service.start_run(db, name)
        assert run_pipeline(db, run, workers=4) == "succeeded"
        assert service.run_attempts(db, run.id).total == n
        sizes[n] = statements(run.id)
    assert sizes[1] == sizes[40] <= 3


# --- deleted with their runs ----------------------------------------------------------------------------

def test_prune_and_graph_delete_remove_the_attempts_of_the_runs_they_delete(db, tmp_path):
    # Given three runs with attempts: an old one, a recent one, and one of another graph
    old = flaky_run(db, tmp_path, "old")
    recent = flaky_run(db, tmp_path, "recent")
    other = flaky_run(db, tmp_path, "other")
    with db.transaction() as s:
        s.execute(update(Pipeline).where(Pipeline.id == old).values(finished_at=store.now() - timedelta(days=10)))
    assert {len(attempt_rows(db, r)) for r in (old, recent, other)} == {4}

    # When old runs are pruned, then the other graph deleted with its runs
    assert service.prune_runs(db, 7) == (1, 2)
    assert attempt_rows(db, old) == [] and len(attempt_rows(db)) == 8
    service.delete_graph(db, "other", with_runs=True)

    # Then only the recent run's attempts are left
    assert {r.track_id for r in attempt_rows(db)} == {t.id for t in run_tracks(db, recent).values()}
    assert service.run_attempts(db, recent).total == 4


#: how a session turns off foreign keys, their cascades with them
_NO_CASCADES = {"sqlite": "PRAGMA foreign_keys = OFF", "mariadb": "SET SESSION foreign_key_checks = 0",
                "postgresql": "SET session_replication_role = replica"}


def test_deleting_runs_removes_their_attempts_where_no_cascade_would(db, tmp_path, backend):
    # Given a finished run with attempts, and a session whose foreign keys do nothing
    run_id = flaky_run(db, tmp_path)
    tracks = [t.id for t in run_tracks(db, run_id).values()]
    with db.engine.connect() as conn:
        conn.connection.dbapi_connection.cursor().execute(_NO_CASCADES[backend])  # SQLite: outside a transaction
        try:
            # When the run is deleted there, as prune deletes it
            with conn.begin():
                assert store.delete_runs(conn, [run_id]) == ([run_id], 2)
        finally:
            conn.invalidate()  # the session's setting goes with it, never back to the pool
    # Then no attempt of its tracks is left behind
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(TrackAttempt).where(TrackAttempt.track_id.in_(tracks))) == 0
        assert s.scalar(select(func.count()).select_from(Track).where(Track.id.in_(tracks))) == 0


# --- the schema ---------------------------------------------------------------------------------------

def test_the_attempt_table_refuses_an_unknown_outcome_and_goes_with_its_track(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    track_id = run_tracks(db, run.id)["a"].id
    row = {"track_id": track_id, "worker": "w", "started_at": store.now(), "finished_at": store.now()}
    for outcome, attempt in (("running", 1), ("succeeded", 0)):
        # a failed CHECK is an IntegrityError, on MariaDB an OperationalError (4025)
        with pytest.raises((sa_exc.IntegrityError, sa_exc.OperationalError), match="ck_attempt_|CHECK"), \
                db.engine.begin() as conn:
            conn.execute(insert(TrackAttempt).values(**row, attempt=attempt, outcome=outcome))
    with db.engine.begin() as conn:
        conn.execute(insert(TrackAttempt).values(**row, attempt=1, outcome="lost"))
    with pytest.raises(sa_exc.IntegrityError), db.engine.begin() as conn:  # one row per attempt
        conn.execute(insert(TrackAttempt).values(**row, attempt=1, outcome="failed"))
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM track WHERE id = :t"), {"t": track_id})
        assert conn.execute(select(func.count()).select_from(TrackAttempt)).scalar() == 0


def test_migration_0015_adds_the_attempt_table_and_its_downgrade_drops_it(db, tmp_path):
    from alembic import command

    run_id = flaky_run(db, tmp_path)
    tracks = {v: (t.id, t.state, t.attempt) for v, t in run_tracks(db, run_id).items()}
    with db.engine.begin() as conn:
        command.downgrade(migrate.config(connection=conn), "0014")
        assert migrate.current_revision(conn) == "0014"
    assert "attempt" not in inspect(db.engine).get_table_names()
    assert {v: (t.id, t.state, t.attempt) for v, t in run_tracks(db, run_id).items()} == tracks
    assert db.upgrade() == ("0014", "0015")
    assert "attempt" in inspect(db.engine).get_table_names()
    # the runs made before have their tracks, and no attempts that ended
    assert {v: (t.id, t.state, t.attempt) for v, t in run_tracks(db, run_id).items()} == tracks
    assert service.run_attempts(db, run_id).total == 0
    pk = inspect(db.engine).get_pk_constraint("attempt")
    assert pk["constrained_columns"] == ["track_id", "attempt"]


# --- the API and the CLI ---------------------------------------------------------------------------------

def test_the_api_gives_a_run_s_attempts_to_a_viewer_as_the_cli_prints_them(api, tmp_path, cli_json):  # noqa: F811
    run_id = flaky_run(api.db, tmp_path, unique("attempts"))
    r = api.call("GET", f"/runs/{run_id}/attempts", role="viewer")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 4
    assert [(a["vertex"], a["attempt"], a["outcome"]) for a in body["attempts"]] == [
        ("a", 1, "failed"), ("a", 2, "failed"), ("a", 3, "succeeded"), ("b", 1, "succeeded")]
    assert body == service.run_attempts(api.db, run_id).to_dict()
    assert cli_json(api.server, "runs", "attempts", str(run_id), "--json") == body
    page = api.call("GET", f"/runs/{run_id}/attempts?limit=2&offset=1", role="viewer").json()
    assert page == {"attempts": body["attempts"][1:3], "total": 4}
    for query in ("limit=-1", "offset=-1", "limit=100001", "limit=x"):
        assert api.call("GET", f"/runs/{run_id}/attempts?{query}", role="viewer").status_code == 422, query
    r = api.call("GET", "/runs/999999999/attempts", role="viewer")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_runs_attempts_prints_a_table_and_pages(db, cli, tmp_path):
    run_id = flaky_run(db, tmp_path)
    code, out, err = cli("runs", "attempts", str(run_id))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["VERTEX", "ATTEMPT", "OUTCOME", "EXIT", "STARTED", "FINISHED", "WORKER", "ERROR"]
    assert [line.split()[:4] for line in lines[1:]] == [["a", "1", "failed", "1"], ["a", "2", "failed", "1"],
                                                         ["a", "3", "succeeded", "0"], ["b", "1", "succeeded", "0"]]
    code, out, _ = cli("runs", "attempts", str(run_id), "--limit", "1", "--offset", "2")
    assert out.splitlines()[1].split()[:3] == ["a", "3", "succeeded"]
    assert out.splitlines()[-1] == "(attempts 3-3 of 4; --limit and --offset page)"
    code, out, _ = cli("runs", "attempts", str(run_id), "--json")
    assert json.loads(out) == service.run_attempts(db, run_id).to_dict()
    code, _, err = cli("runs", "attempts", str(run_id + 1))
    assert code != 0 and f"run {run_id + 1} not found" in err
