"""Every state-changing use case records who did it, in its own transaction; a refused one
records nothing."""
from __future__ import annotations

import pytest

from pipeline_engine import actors, service
from pipeline_engine.errors import PipelineEngineError


def _log(db):
    return [(a.actor, a.action, a.target) for a in reversed(service.list_audit(db, limit=1000))]


def test_each_change_records_its_actor_action_and_target(db):
    with actors.acting_as("alice"):
        service.create_graph(db, "g", "first")
        service.add_vertex(db, "g", "a", "echo {n}", inputs={"n": "int"})
        service.add_vertex(db, "g", "b", "true")
        service.add_edge(db, "g", "a", "b")
        service.update_vertex(db, "g", "b", script="echo b")
        service.remove_edge(db, "g", "a", "b")
        service.remove_vertex(db, "g", "b")
        service.check_graph(db, "g")
        service.seal_graph(db, "g")
        service.new_version(db, "g")
        service.copy_graph(db, "g", "h", version=1)
        service.rename_graph(db, "h", "h2")
        service.set_pool(db, "p", 1)
        service.set_pool(db, "p", 3)
        service.delete_pool(db, "p")
    with actors.acting_as("bob"):
        run = service.start_run(db, "g", {"n": 1}, detach=True).id
        service.cancel_run(db, run)
        service.retry_run(db, run, detach=True)
        service.cancel_run(db, run)
        service.recover(db)
        service.prune_runs(db, 1000)
        service.create_token(db, "t", "viewer")
        service.revoke_token(db, "t")
        service.delete_graph(db, "h2")
        service.import_graph(db, {"name": "i", "vertices": [{"name": "x", "script": "true"}]}, seal=True)
    assert _log(db) == [
        ("alice", "graph.create", "g"), ("alice", "vertex.add", "g"), ("alice", "vertex.add", "g"),
        ("alice", "edge.add", "g"), ("alice", "vertex.update", "g"), ("alice", "edge.remove", "g"),
        ("alice", "vertex.remove", "g"), ("alice", "graph.check", "g"), ("alice", "graph.seal", "g"),
        ("alice", "graph.new_version", "g"), ("alice", "graph.copy", "g"), ("alice", "graph.rename", "h"),
        ("alice", "pool.set", "p"), ("alice", "pool.set", "p"), ("alice", "pool.delete", "p"),
        ("bob", "run.start", str(run)), ("bob", "run.cancel", str(run)), ("bob", "run.retry", str(run)),
        ("bob", "run.cancel", str(run)), ("bob", "recover", "workers"), ("bob", "prune", "runs"),
        ("bob", "token.create", "t"), ("bob", "token.revoke", "t"), ("bob", "graph.delete", "h2"),
        ("bob", "graph.import", "i")]
    details = [a.detail for a in reversed(service.list_audit(db, limit=1000))]
    assert details[13] == "size 1 -> 3" and details[15] == "graph 'g' version 1"
    assert service.show_run(db, run).started_by == "bob"


def test_a_refused_change_records_nothing_and_reads_record_nothing(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    before = _log(db)
    for refused in (lambda: service.seal_graph(db, "g"), lambda: service.delete_pool(db, "nope"),
                    lambda: service.start_run(db, "nope"), lambda: service.revoke_token(db, "nope"),
                    lambda: service.cancel_run(db, 999)):
        with pytest.raises(PipelineEngineError):
            refused()
    service.check_graph(db, "g")  # sealed: a check changes nothing
    service.list_graphs(db)
    service.show_graph(db, "g")
    service.list_runs(db)
    service.delete_graph(db, "g", dry_run=True)
    service.prune_runs(db, 1, dry_run=True)
    assert _log(db) == before


def test_python_code_that_sets_no_actor_acts_as_python_user_at_host(db):
    service.set_pool(db, "p", 1)
    assert service.list_audit(db, limit=1)[0].actor == actors.local("python")
    assert actors.local("python").startswith("python:") and "@" in actors.local("python")
