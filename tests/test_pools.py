"""Concurrency pools on every backend: a vertex names a pool, a pool has a size, and no more of a
pool's tracks run at once than its size, across every worker process and run; a freed slot is
taken at once (the workers here look for new work only every 5 s, so a hand-off that waited
for a look would show as a gap of seconds).

Each pooled script writes ``start <time>`` and ``end <time>`` (bash's $EPOCHREALTIME) inside its
own run time, so intervals that overlap in the files overlapped in reality."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, finished, run_tracks, stop, wait_for, worker

from pipeline_engine import service
from pipeline_engine.errors import GraphError, GraphFileError, NotFoundError
from pipeline_engine.runner import run_pipeline


def timed(path, vertex: str, seconds: float) -> str:
    return (f'echo "{vertex} $PIPELINE_ENGINE_TRACK start $EPOCHREALTIME" >> {path}; sleep {seconds};'
            f' echo "{vertex} $PIPELINE_ENGINE_TRACK end $EPOCHREALTIME" >> {path}')


def intervals(path) -> list[tuple[float, float]]:
    """(start, end) of every attempt recorded in ``path``."""
    starts, ends = {}, {}
    for line in open(path).read().splitlines():
        vertex, marker, what, at = line.split()
        (starts if what == "start" else ends)[(vertex, marker)] = float(at)
    assert starts.keys() == ends.keys(), "an attempt started and did not end"
    return sorted((starts[k], ends[k]) for k in starts)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


# --- definitions ----------------------------------------------------------------------------------

def test_a_graph_file_names_pools_and_sets_their_sizes(db):
    graph = {"name": "etl", "pools": {"warehouse": 2},
             "vertices": [{"name": "load", "script": "true", "pool": "warehouse"}, {"name": "report", "script": "true"}],
             "edges": [["load", "report"]]}
    info = service.import_graph(db, graph, seal=True)
    assert info.notes == ("pool 'warehouse' created with size 2",)
    assert [(p.name, p.size, p.running, p.pending) for p in service.list_pools(db)] == [("warehouse", 2, 0, 0)]
    detail = service.show_graph(db, "etl")
    assert [v.pool for v in detail.spec.vertices] == ["warehouse", None]
    assert detail.to_dict()["pools"] == {"warehouse": 2}
    # the exported file brings the pool and its size along, and imports to the same definition
    text = service.export_graph(db, "etl", "yaml")
    assert "pools:\n  warehouse: 2\n" in text and "pool: warehouse" in text
    service.set_pool(db, "warehouse", 3)
    exported = json.loads(service.export_graph(db, "etl", "json"))
    assert exported["pools"] == {"warehouse": 3}
    assert service.import_graph(db, exported, name="etl2").notes == ()  # it carried the size there is now
    assert dataclasses.replace(service.show_graph(db, "etl2").spec, name="etl") == service.show_graph(db, "etl").spec
    # a file imported again does not undo a `pool set` made since (issue 11, item 14)
    graph["name"] = "etl3"
    assert service.import_graph(db, graph).notes == (
        "pool 'warehouse' kept at size 3 (the file says 2; use --apply-pools to change it)",)
    assert [(p.name, p.size) for p in service.list_pools(db)] == [("warehouse", 3)]
    graph["name"] = "etl4"
    assert service.import_graph(db, graph, apply_pools=True).notes == ("pool 'warehouse' size 3 -> 2",)
    assert [(p.name, p.size) for p in service.list_pools(db)] == [("warehouse", 2)]


def test_bad_pools_in_a_graph_file_are_named_and_nothing_is_written(db, unchanged):
    graph = {"name": "bad", "pools": {"ok": 1, "neg": -1, "text": "two", "bad name": 1},
             "vertices": [{"name": "a", "script": "true", "pool": "no such/thing"}]}
    with unchanged():
        with pytest.raises(GraphFileError) as exc:
            service.import_graph(db, graph)
    problems = exc.value.problems
    assert any("pool 'neg': size must be an integer from 0" in p for p in problems)
    assert any("pool 'text': size must be an integer" in p for p in problems)
    assert any("pool name 'bad name' is not valid" in p for p in problems)
    assert any(p.startswith("vertex 'a': pool name 'no such/thing' is not valid") for p in problems)
    with unchanged():
        with pytest.raises(GraphFileError, match="'pools' must be a mapping"):
            service.import_graph(db, {"name": "x", "pools": [1], "vertices": [{"name": "a", "script": "true"}]})


def test_a_run_needs_its_pools_to_exist(db, unchanged):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true", "pool": "gpu"},
                                                        {"name": "b", "script": "true", "pool": "gpu"}]})
    warnings = service.check_graph(db, "g").warnings
    assert warnings == ["pool 'gpu' (vertex 'a', 'b') does not exist: the graph cannot run until it does"
                        " (pipeline-engine pool set gpu SIZE)"]
    service.seal_graph(db, "g")
    with unchanged():
        with pytest.raises(NotFoundError, match=r"graph 'g': pool 'gpu' \(vertex 'a', 'b'\) does not exist"):
            service.start_run(db, "g")
    service.set_pool(db, "gpu", 1)
    run = service.start_run(db, "g")
    assert {v: t.pool for v, t in run_tracks(db, run.id).items()} == {"a": "gpu", "b": "gpu"}
    assert [t.pool for t in service.show_run(db, run.id).tracks] == ["gpu", "gpu"]
    assert [(p.name, p.pending) for p in service.list_pools(db)] == [("gpu", 2)]


def test_pool_commands(cli, db, unchanged):
    code, out, _ = cli("pool", "set", "db", "2", "--description", "the warehouse")
    assert code == 0 and "pool 'db': size 2, 0 running, 0 pending" in out
    code, out, _ = cli("pool", "set", "db", "4")
    assert code == 0 and "size 4" in out
    code, out, _ = cli("pool", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [{k: r[k] for k in ("name", "size", "description", "running", "pending")} for r in rows] == [
        {"name": "db", "size": 4, "description": "the warehouse", "running": 0, "pending": 0}]
    code, out, _ = cli("pool", "list")
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "SIZE", "RUNNING", "PENDING", "DESCRIPTION"]
    with unchanged():
        code, _, err = cli("pool", "set", "db", "--", "-1")
        assert code == 2 and "Invalid value for 'SIZE'" in err
        code, _, err = cli("pool", "set", "db", "two")
        assert code == 2 and "Invalid value for 'SIZE'" in err
        code, _, err = cli("pool", "set", "bad/name", "1")
        assert code == 2 and "pool name 'bad/name' is not valid" in err
        code, _, err = cli("pool", "delete", "nope")
        assert code == 2 and "pool 'nope' not found" in err
    service.import_graph(db, {"name": "user", "vertices": [{"name": "a", "script": "true", "pool": "db"}]})
    with unchanged():
        code, _, err = cli("pool", "delete", "db")
        assert code == 2 and "pool 'db' is named by vertices of graph 'user'" in err
    service.delete_graph(db, "user")
    code, out, _ = cli("pool", "delete", "db")
    assert code == 0 and cli("pool", "list")[1] == "no pools\n"


# --- the limit, across workers and runs -------------------------------------------------------------

def test_a_pool_limits_its_tracks_across_workers_and_runs(db, db_url, tmp_path):
    """Three runs (one owned by a `run` process, two detached) on three worker processes: the
    pool's tracks never run more than two at once, and do run two at once; tracks outside the
    pool are not held back."""
    pooled, free = tmp_path / "pooled", tmp_path / "free"
    vertices = [{"name": f"p{i}", "script": timed(pooled, f"p{i}", 0.3), "pool": "db"} for i in range(6)]
    vertices += [{"name": f"f{i}", "script": timed(free, f"f{i}", 0.3)} for i in range(6)]
    service.import_graph(db, {"name": "mixed", "pools": {"db": 2}, "vertices": vertices}, seal=True)
    runs = [service.start_run(db, "mixed", detach=True).id for _ in range(2)]
    log = open(tmp_path / "workers.log", "w")
    workers = [worker(db_url, log, "--concurrency", "4", "--poll", "0.05") for _ in range(3)]
    owned = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "run", "mixed",
                              "--workers", "4"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        out, _ = owned.communicate(timeout=120)
        assert owned.returncode == 0, out
        for run_id in runs:
            assert wait_for(lambda: finished(db, run_id), 120, f"run {run_id}") == "succeeded"
    finally:
        if owned.poll() is None:
            owned.kill()
        stop(*workers)
    spans = intervals(pooled)
    assert len(spans) == 18
    assert most_at_once(spans) == 2
    assert most_at_once(intervals(free)) > 2
    assert [(p.running, p.pending) for p in service.list_pools(db)] == [(0, 0)]


def test_a_freed_slot_is_taken_at_once_not_at_the_next_look(db, db_url, tmp_path):
    side = tmp_path / "pooled"
    vertices = [{"name": f"p{i}", "script": timed(side, f"p{i}", 0.2), "pool": "one"} for i in range(8)]
    service.import_graph(db, {"name": "serial", "pools": {"one": 1}, "vertices": vertices}, seal=True)
    run = service.start_run(db, "serial", detach=True)
    log = open(tmp_path / "workers.log", "w")
    workers = [worker(db_url, log, "--concurrency", "2", "--poll", "5") for _ in range(2)]
    try:
        assert wait_for(lambda: finished(db, run.id), 60, "the run") == "succeeded"
    finally:
        stop(*workers)
    spans = intervals(side)
    assert len(spans) == 8 and most_at_once(spans) == 1
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    # record, claim and spawn: milliseconds; a look for work comes only every 5 s
    assert max(gaps) < 1.0, gaps


def test_a_freed_slot_goes_at_once_to_a_run_no_worker_has_looked_at_yet(db, db_url, tmp_path):
    """The worker that frees the slot finds the waiting track in the database itself, in the
    transaction that records the end: the new run's track starts without waiting for a look."""
    side = tmp_path / "pooled"
    service.import_graph(db, {"name": "long", "pools": {"one": 1}, "vertices": [
        {"name": "first", "script": timed(side, "first", 1.5), "pool": "one"}]}, seal=True)
    service.import_graph(db, {"name": "later", "vertices": [
        {"name": "second", "script": timed(side, "second", 0.1), "pool": "one"}]}, seal=True)
    run = service.start_run(db, "long", detach=True)
    log = open(tmp_path / "workers.log", "w")
    workers = [worker(db_url, log, "--concurrency", "2", "--poll", "5") for _ in range(2)]
    try:
        wait_for(lambda: side.exists(), 20, "the first track to start")
        later = service.start_run(db, "later", detach=True)  # after every worker's first look
        assert wait_for(lambda: finished(db, later.id), 30, "the later run") == "succeeded"
        assert finished(db, run.id) == "succeeded"
    finally:
        stop(*workers)
    (first, second) = intervals(side)
    assert 0 <= second[0] - first[1] < 1.0, (first, second)


def test_a_pool_of_size_0_holds_its_tracks_until_it_grows(db, db_url, tmp_path):
    service.import_graph(db, {"name": "held", "pools": {"gate": 0}, "vertices": [
        {"name": "gated", "script": "true", "pool": "gate"}, {"name": "other", "script": "true"}]}, seal=True)
    run = service.start_run(db, "held", detach=True)
    log = open(tmp_path / "worker.log", "w")
    w = worker(db_url, log, "--concurrency", "2", "--poll", "0.05")
    try:
        wait_for(lambda: run_tracks(db, run.id)["other"].state == "succeeded", 30, "the ungated track")
        time.sleep(1.0)  # twenty looks for work
        assert run_tracks(db, run.id)["gated"].state == "pending"
        assert [(p.name, p.pending) for p in service.list_pools(db)] == [("gate", 1)]
        service.set_pool(db, "gate", 1)
        assert wait_for(lambda: finished(db, run.id), 30, "the run once the pool grew") == "succeeded"
    finally:
        stop(w)


def test_a_pooled_track_on_the_critical_path_is_not_starved_by_queued_work(db, tmp_path):
    """One thread: the pooled track outranks the rest (priority), so it starts first even though
    it may only be claimed for an idle thread."""
    log = tmp_path / "order"
    vertices = [{"name": f"f{i}", "script": f"echo f{i} >> {log}"} for i in range(6)]
    vertices.append({"name": "pooled", "script": f"echo pooled >> {log}", "pool": "p", "priority": 50})
    service.import_graph(db, {"name": "rank", "pools": {"p": 1}, "vertices": vertices}, seal=True)
    run = service.start_run(db, "rank")
    assert run_pipeline(db, run, workers=1) == "succeeded"
    assert log.read_text().split()[0] == "pooled"


def test_the_python_api_sets_and_removes_a_vertex_pool(db, unchanged):
    service.create_graph(db, "api")
    assert service.add_vertex(db, "api", "a", "true", pool="gpu").pool == "gpu"
    assert service.update_vertex(db, "api", "a", retries=1).pool == "gpu"  # kept when not given
    assert service.update_vertex(db, "api", "a", pool=None).pool is None
    with unchanged():
        with pytest.raises(GraphError, match="vertex 'b': pool name 'a b' is not valid"):
            service.add_vertex(db, "api", "b", "true", pool="a b")
        with pytest.raises(GraphError, match="pool 'x': size must be an integer from 0 to 1000000, got 2000000"):
            service.set_pool(db, "x", 2_000_000)


def test_graph_import_says_which_pools_it_set(cli, example):
    code, out, _ = cli("graph", "import", example("sales-report.yaml"), "--seal")
    assert code == 0 and out.splitlines() == ["pool 'reporting_host' created with size 1",
                                              "graph 'sales-report' version 1 imported: 7 vertices, 7 edges, sealed"]
    assert cli("pool", "set", "reporting_host", "3")[0] == 0
    code, out, _ = cli("graph", "import", example("sales-report.yaml"), "--name", "again")
    assert code == 0 and out.splitlines()[0] == ("pool 'reporting_host' kept at size 3 (the file says 1;"
                                                 " use --apply-pools to change it)")
    code, out, _ = cli("graph", "show", "sales-report")
    assert "report  (pool reporting_host, after" in out and "pools:       reporting_host (size 3)" in out
    code, out, _ = cli("graph", "import", example("sales-report.yaml"), "--name", "third", "--apply-pools")
    assert code == 0 and out.splitlines()[0] == "pool 'reporting_host' size 3 -> 1"
    code, out, _ = cli("graph", "show", "sales-report")
    assert "pools:       reporting_host (size 1)" in out


def test_a_slot_is_not_left_waiting_behind_work_queued_ahead(db, tmp_path):
    """Two threads, a pool of one, pooled tracks that outrank a backlog of unpooled sleeps: the
    thread that frees the slot must be free to take it over, so nothing below the waiting pooled
    track is queued ahead (else it waits for the queue: 0.3 s or more per hand-off)."""
    side = tmp_path / "pooled"
    vertices = [{"name": f"p{i}", "script": timed(side, f"p{i}", 0.3), "pool": "one", "priority": 10}
                for i in range(4)]
    vertices += [{"name": f"f{i}", "script": "sleep 0.3", "priority": 1} for i in range(12)]
    service.import_graph(db, {"name": "backlog", "pools": {"one": 1}, "vertices": vertices}, seal=True)
    assert run_pipeline(db, service.start_run(db, "backlog"), workers=2) == "succeeded"
    spans = intervals(side)
    assert most_at_once(spans) == 1
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    assert max(gaps) < 0.15, gaps
