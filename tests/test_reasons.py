"""Why a track is not running yet: the pure decision (``reasons``)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_engine import reasons
from pipeline_engine.reasons import Kind, PoolFigures, RunFacts, why
from pipeline_engine.states import TrackState

UTC = timezone.utc
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RUNNING = RunFacts(state="running")
#: the keys of each kind's JSON form
SHAPES = {"predecessors": {"kind", "vertices", "more"}, "upstream_failed": {"kind", "vertex"},
          "queued": {"kind", "behind"}, "retry_delay": {"kind", "at"},
          "pool_full": {"kind", "pool", "size", "running", "held_by"}, "owner": {"kind", "worker", "alive"},
          "unclaimed": {"kind", "workers", "alive"}}


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
