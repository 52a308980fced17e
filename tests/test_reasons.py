"""Why a track is not running yet: the pure decision (``reasons``), then, on every backend, the
reason ``show_run`` gives each track of a page as the database has it, and the API's JSON."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import Server, run_tracks, stop, wait_for, worker
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from pipeline_engine import reasons, schedules, service, store
from pipeline_engine.models import Worker
from pipeline_engine.reasons import Kind, PoolFigures, RunFacts, why
from pipeline_engine.runner import run_pipeline
from pipeline_engine.states import TrackState

UTC = timezone.utc
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RUNNING = RunFacts(state="running")
#: the keys of each kind's JSON form
SHAPES = {"predecessors": {"kind", "vertices", "more"}, "upstream_failed": {"kind", "vertex"},
          "queued": {"kind", "behind"}, "retry_delay": {"kind", "at"},
          "pool_full": {"kind", "pool", "size", "running", "held_by"}, "owner": {"kind", "worker", "alive"},
          "unclaimed": {"kind", "workers", "alive"}}
#: the keys a track of `runs show --json` had before reasons: all kept
TRACK_KEYS = {"vertex", "state", "attempt", "exit_code", "started_at", "finished_at", "error", "worker", "pool",
              "retry_at"}


def said(state, run=RUNNING, **facts):
    reason = why(state, run, now=NOW, **facts)
    return None if reason is None else reason.to_dict()


# --- the decision, pure ---------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["running", "succeeded", "failed", "cancelled"])
def test_a_running_or_finished_track_has_no_reason(state):
    assert said(state, unmet=["a"], failed="a", pool=PoolFigures("p", 0, 0)) is None
    assert said(state, RunFacts(state="queued", behind=(1,))) is None


def test_an_upstream_failed_track_names_the_failed_ancestor_or_none():
    assert said("upstream_failed", failed="load") == {"kind": "upstream_failed", "vertex": "load"}
    assert said("upstream_failed") == {"kind": "upstream_failed", "vertex": None}
    assert said("upstream_failed", RunFacts(state="failed"), failed="x") == {"kind": "upstream_failed", "vertex": "x"}


def test_a_queued_runs_tracks_wait_behind_its_running_runs_whatever_else_holds():
    run = RunFacts(state="queued", behind=tuple(range(1, 31)), owner="w", workers=("a",))
    for state in ("waiting", "pending"):
        assert said(state, run, unmet=["a"], retry_at=NOW + timedelta(hours=1),
                    pool=PoolFigures("p", 0, 0)) == {"kind": "queued", "behind": list(range(1, 21))}
    assert said("pending", RunFacts(state="queued")) == {"kind": "queued", "behind": []}


def test_a_waiting_track_names_at_most_20_predecessors_and_counts_the_rest():
    assert said("waiting", unmet=["a", "b"]) == {"kind": "predecessors", "vertices": ["a", "b"], "more": 0}
    names = [f"v{i}" for i in range(25)]
    assert said("waiting", unmet=names) == {"kind": "predecessors", "vertices": names[:20], "more": 5}
    # the store reads 20 names and the count of them all
    assert said("waiting", unmet=names[:20], unmet_count=1000) == {"kind": "predecessors", "vertices": names[:20],
                                                                   "more": 980}
    assert said("waiting") == {"kind": "predecessors", "vertices": [], "more": 0}


def test_a_pending_track_waits_for_its_retry_only_while_its_time_is_to_come():
    later = NOW + timedelta(minutes=5)
    full = PoolFigures("p", 1, 1, (7,))
    assert said("pending", retry_at=later, pool=full) == {"kind": "retry_delay", "at": later.isoformat()}
    assert said("pending", retry_at=NOW)["kind"] == "unclaimed"
    assert said("pending", retry_at=NOW - timedelta(seconds=1), pool=full)["kind"] == "pool_full"


def test_a_pending_track_of_a_full_pool_names_it_and_the_runs_holding_its_slots():
    assert said("pending", pool=PoolFigures("db", 2, 2, (3, 9))) == {
        "kind": "pool_full", "pool": "db", "size": 2, "running": 2, "held_by": [3, 9]}
    assert said("pending", pool=PoolFigures("db", 2, 3, tuple(range(40))))["held_by"] == list(range(20))
    assert said("pending", pool=PoolFigures("held", 0, 0)) == {
        "kind": "pool_full", "pool": "held", "size": 0, "running": 0, "held_by": []}
    assert said("pending", pool=PoolFigures("db", 2, 1, (3,))) == {"kind": "unclaimed", "workers": [], "alive": 0}


def test_a_pending_track_of_an_owned_run_names_its_owner_and_whether_it_lives():
    assert said("pending", RunFacts(state="running", owner="w1", owner_alive=True, workers=("w2",))) == {
        "kind": "owner", "worker": "w1", "alive": True}
    assert said("pending", RunFacts(state="running", owner="w1")) == {"kind": "owner", "worker": "w1",
                                                                      "alive": False}
    # a run with secrets that nobody owns: no process can run it
    assert said("pending", RunFacts(state="running", secret=True, owner_alive=True, workers=("w2",))) == {
        "kind": "owner", "worker": None, "alive": False}
    # a full pool holds the owner too
    assert said("pending", RunFacts(state="running", owner="w1", owner_alive=True),
                pool=PoolFigures("p", 1, 1, (2,)))["kind"] == "pool_full"


def test_an_unclaimed_track_names_at_most_20_live_workers_and_counts_them_all():
    assert said("pending") == {"kind": "unclaimed", "workers": [], "alive": 0}
    workers = tuple(f"w{i:02}" for i in range(23))
    assert said("pending", RunFacts(state="running", workers=workers)) == {
        "kind": "unclaimed", "workers": list(workers[:20]), "alive": 23}


_names = st.lists(st.text(min_size=1, max_size=5), max_size=30)


@given(state=st.sampled_from([str(s) for s in TrackState]),
       run_state=st.sampled_from(["queued", "running", "failed"]), unmet=_names,
       extra=st.integers(0, 100), behind=st.lists(st.integers(1, 10**6), max_size=30),
       owner=st.one_of(st.none(), st.text(max_size=5)), alive=st.booleans(), secret=st.booleans(),
       workers=_names, delay=st.one_of(st.none(), st.integers(-100, 100)),
       pool=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 5), st.lists(st.integers(1, 99),
                                                                                           max_size=30))))
def test_every_reason_has_its_kinds_keys_short_lists_and_a_json_form(state, run_state, unmet, extra, behind, owner,
                                                                     alive, secret, workers, delay, pool):
    run = RunFacts(state=run_state, behind=tuple(behind), owner=owner, owner_alive=alive, secret=secret,
                   workers=tuple(workers))
    figures = None if pool is None else PoolFigures("p", pool[0], pool[1], tuple(pool[2]))
    retry_at = None if delay is None else NOW + timedelta(seconds=delay)
    reason = why(state, run, now=NOW, retry_at=retry_at, unmet=unmet, unmet_count=len(unmet) + extra,
                 failed="f", pool=figures)
    assert (reason is None) == (state not in reasons.EXPLAINED)
    if reason is None:
        return
    out = json.loads(json.dumps(reason.to_dict()))
    assert set(out) == SHAPES[out["kind"]] and Kind(out["kind"]) == reason.kind
    assert all(len(v) <= reasons.LIST_LIMIT for v in out.values() if isinstance(v, list))
    if out["kind"] == "predecessors":
        assert out["vertices"] == unmet[:20] and out["more"] == len(unmet) + extra - len(out["vertices"])
    if out["kind"] == "unclaimed":
        assert out["alive"] == len(workers)


# --- on every backend: what show_run says ----------------------------------------------------------

def _reasons(db, run_id: int, **page) -> dict[str, dict | None]:
    """Vertex -> reason of a run's tracks, as `runs show --json` and the API read them."""
    return {t.vertex: t.to_dict()["reason"] for t in service.show_run(db, run_id, output=False, **page).tracks}


def _register(db, name: str, lease: float = 30.0) -> None:
    """A worker registers as a worker process does at its start (on another host: it is alive
    by its heartbeat alone)."""
    with db.transaction() as s:
        store.register_worker(s.connection(), name, "elsewhere", 1, 4, lease)


def test_a_waiting_track_names_its_predecessors_that_have_not_succeeded(db, db_url, tmp_path):
    held = [{"name": n, "script": "true", "pool": "held"} for n in ["b", *(f"p{i}" for i in range(25))]]
    vertices = [{"name": "a", "script": "true"}, *held, *({"name": n, "script": "true"} for n in "cdw"),
                {"name": "r", "script": "exit 3", "retries": 1, "retry_delay": 3600}]
    edges = [["a", "d"], ["b", "d"], ["c", "d"], ["a", "w"], *([f"p{i}", "w"] for i in range(25))]
    service.import_graph(db, {"name": "g", "pools": {"held": 0}, "vertices": vertices, "edges": edges}, seal=True)
    run = service.start_run(db, "g", detach=True)
    # Given a worker that ran what it could: a and c succeeded, r failed once and waits an hour for
    # its retry, the tracks of the pool of size 0 are held
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--poll", "0.05")
    try:
        def ran() -> bool:
            t = run_tracks(db, run.id)
            return t["a"].state == t["c"].state == "succeeded" and (t["r"].state, t["r"].attempt) == ("pending", 1)

        wait_for(ran, 30, "a, c and r's first attempt")
        # When the run is read
        got = _reasons(db, run.id)
    finally:
        stop(w)
    # Then the waiting tracks name their predecessors that have not succeeded, and only those
    assert got["d"] == {"kind": "predecessors", "vertices": ["b"], "more": 0}
    assert got["w"] == {"kind": "predecessors", "vertices": [f"p{i}" for i in range(20)], "more": 5}
    assert got["a"] is None and got["c"] is None
    assert got["b"] == {"kind": "pool_full", "pool": "held", "size": 0, "running": 0, "held_by": []}
    retry_at = run_tracks(db, run.id)["r"].not_before
    assert got["r"] == {"kind": "retry_delay", "at": retry_at.isoformat()}
    # a page reads the reasons of its own tracks
    assert _reasons(db, run.id, limit=2, offset=27) == {"c": None, "d": got["d"]}


def test_the_reasons_of_a_page_of_more_than_1000_tracks_are_all_read(db):
    vertices = [{"name": "root", "script": "true", "pool": "held"}]
    vertices += [{"name": f"v{i}", "script": "true"} for i in range(1500)]
    service.import_graph(db, {"name": "wide", "pools": {"held": 0}, "vertices": vertices,
                              "edges": [["root", f"v{i}"] for i in range(1500)]}, seal=True)
    run = service.start_run(db, "wide", detach=True)
    got = _reasons(db, run.id, limit=2000)
    assert got.pop("root")["kind"] == "pool_full"
    assert len(got) == 1500 and all(r == {"kind": "predecessors", "vertices": ["root"], "more": 0}
                                    for r in got.values())


def test_a_pooled_pending_track_behind_a_full_pool_names_the_pool_and_the_run_holding_its_slot(db):
    service.import_graph(db, {"name": "hog", "pools": {"db": 1}, "vertices": [
        {"name": "x", "script": "sleep 60", "pool": "db"}]}, seal=True)
    service.import_graph(db, {"name": "g", "vertices": [{"name": "y", "script": "true", "pool": "db"},
                                                        {"name": "z", "script": "true"}]}, seal=True)
    hog = service.start_run(db, "hog", detach=True).id
    # Given a worker that claimed the hog's track, which holds the pool's one slot
    with db.transaction() as s:
        assert len(store.claim_tracks(s.connection(), [run_tracks(db, hog)["x"].id], "w-hog")) == 1
    run = service.start_run(db, "g", detach=True).id
    # Then the pooled track of the other run names the pool, its figures and the run holding it
    assert _reasons(db, run) == {"y": {"kind": "pool_full", "pool": "db", "size": 1, "running": 1, "held_by": [hog]},
                                 "z": {"kind": "unclaimed", "workers": [], "alive": 0}}
    assert _reasons(db, hog) == {"x": None}  # running: no reason
    # and once the pool grows, nothing but a worker is missing
    service.set_pool(db, "db", 2)
    assert _reasons(db, run)["y"] == {"kind": "unclaimed", "workers": [], "alive": 0}


def test_a_pending_track_says_unclaimed_and_names_the_live_workers_that_could_take_it(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "v", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True).id
    assert _reasons(db, run) == {"v": {"kind": "unclaimed", "workers": [], "alive": 0}}
    _register(db, "w1")
    _register(db, "w0")
    assert _reasons(db, run) == {"v": {"kind": "unclaimed", "workers": ["w0", "w1"], "alive": 2}}
    assert service.show_run(db, run).worker_alive is True
    # a worker that stopped, and one silent past its lease, are not alive
    with db.transaction() as s:
        store.stop_worker(s.connection(), "w0")
        s.execute(update(Worker).where(Worker.name == "w1").values(heartbeat_at=store.now() - timedelta(seconds=31)))
    assert _reasons(db, run) == {"v": {"kind": "unclaimed", "workers": [], "alive": 0}}
    # a `run` process runs its own run alone: it is named by that run's tracks, not by the others'
    _register(db, "runner")
    owned = service.start_run(db, "g", owner="runner").id
    assert _reasons(db, owned) == {"v": {"kind": "owner", "worker": "runner", "alive": True}}
    assert _reasons(db, run) == {"v": {"kind": "unclaimed", "workers": [], "alive": 0}}
    with db.transaction() as s:
        store.stop_worker(s.connection(), "runner")
    assert _reasons(db, owned) == {"v": {"kind": "owner", "worker": "runner", "alive": False}}


def test_an_upstream_failed_track_names_the_failed_vertex_that_caused_it(db):
    vertices = [{"name": "a", "script": "exit 1"}, {"name": "f", "script": "exit 1"}, {"name": "s", "script": "true"},
                {"name": "b", "script": "true"}, {"name": "c", "script": "true"}, {"name": "d", "script": "true"},
                {"name": "e", "script": "true"}, {"name": "h", "script": "true"}]
    edges = [["a", "b"], ["b", "c"], ["f", "c"], ["c", "d"], ["b", "e"], ["s", "e"], ["e", "h"]]
    service.import_graph(db, {"name": "g", "vertices": vertices, "edges": edges}, seal=True)
    run = service.start_run(db, "g")
    assert run_pipeline(db, run, workers=2) == "failed"
    assert _reasons(db, run.id) == {
        "a": None, "f": None, "s": None,
        "b": {"kind": "upstream_failed", "vertex": "a"},  # its failed predecessor
        "c": {"kind": "upstream_failed", "vertex": "f"},  # the nearest: a failed predecessor, not b's
        "d": {"kind": "upstream_failed", "vertex": "f"},  # up through c
        "e": {"kind": "upstream_failed", "vertex": "a"},  # up through b
        "h": {"kind": "upstream_failed", "vertex": "a"},  # up through e and b
    }
    assert _reasons(db, run.id, state="upstream_failed", limit=1, offset=4) == {"h": _reasons(db, run.id)["h"]}


def test_a_queued_run_says_which_running_runs_it_is_queued_behind(db):
    service.import_graph(db, {"name": "report", "vertices": [
        {"name": "make", "script": "true"}, {"name": "send", "script": "true"}], "edges": [["make", "send"]]},
        seal=True)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    service.add_schedule(db, schedules.spec_from("hourly", "report", every="1h", start=start, overlap="queue",
                                                 catchup="all"))
    first, second = (d.run for d in service.decide_due(db, scheduler="t", now=start + timedelta(hours=1)))
    queued = {"kind": "queued", "behind": [first]}
    assert _reasons(db, second) == {"make": queued, "send": queued}
    assert _reasons(db, first)["send"] == {"kind": "predecessors", "vertices": ["make"], "more": 0}
    service.cancel_run(db, first)  # its turn has come: until a scheduler starts it, it is behind nothing
    assert _reasons(db, second)["make"] == {"kind": "queued", "behind": []}
    assert service.promote_queued(db) == [second]
    assert _reasons(db, second)["make"]["kind"] == "unclaimed"
    # a backfill's runs wait behind its running runs (not the schedule's)
    made = service.backfill(db, "report", start, start + timedelta(hours=3), schedule="hourly", max_active=2)
    ids = [r.run for r in made.runs]
    assert [r.state for r in made.runs] == ["running", "running", "queued"]
    assert _reasons(db, ids[2])["make"] == {"kind": "queued", "behind": ids[:2]}


def test_the_apis_and_the_clis_run_json_carry_each_tracks_reason(db, db_url, tmp_path, cli):
    service.import_graph(db, {"name": "g", "vertices": [{"name": n, "script": "true"} for n in "ab"],
                              "edges": [["a", "b"]]}, seal=True)
    run = service.start_run(db, "g", detach=True).id
    expected = {"a": {"kind": "unclaimed", "workers": [], "alive": 0},
                "b": {"kind": "predecessors", "vertices": ["a"], "more": 0}}
    server = Server(db_url, tmp_path / "serve.log", "--no-worker")
    try:
        r = httpx.get(server.url + f"/api/v1/runs/{run}", headers={"Authorization": f"Bearer {server.first_token}"})
    finally:
        server.stop()
    assert r.status_code == 200, r.text
    tracks = r.json()["tracks"]
    assert {t["vertex"]: t["reason"] for t in tracks} == expected
    assert all(set(t) == TRACK_KEYS | {"reason"} for t in tracks)
    code, out, _ = cli("runs", "show", str(run), "--json")
    assert code == 0 and {t["vertex"]: t["reason"] for t in json.loads(out)["tracks"]} == expected
