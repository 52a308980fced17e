"""Among ready tracks the one with the longest remaining path to a sink starts first, each vertex
weighed by its recent durations; a vertex's ``priority`` overrides. On every backend, with one
worker thread, so that the order of starts is the schedule."""
from conftest import run_tracks

from pipeline_engine import service
from pipeline_engine.runner import run_pipeline


def order_of(path) -> list[str]:
    return path.read_text().split()


def test_the_critical_path_starts_first_not_the_first_declared(db, tmp_path):
    log = tmp_path / "order"
    vertices = [{"name": v, "script": f"echo {v} >> {log}"} for v in ["short", "head", "mid", "tail"]]
    service.import_graph(db, {"name": "cp", "vertices": vertices, "edges": [["head", "mid"], ["mid", "tail"]]},
                         seal=True)
    run = service.start_run(db, "cp")
    assert {v: t.priority for v, t in run_tracks(db, run.id).items()} == {
        "short": 1.0, "head": 3.0, "mid": 2.0, "tail": 1.0}
    assert run_pipeline(db, run, workers=1) == "succeeded"
    # FIFO would start `short` first; the chain is the critical path
    assert order_of(log) == ["head", "mid", "short", "tail"]


def test_a_vertex_priority_overrides_the_critical_path(db, tmp_path):
    log = tmp_path / "order"
    vertices = [{"name": "a", "script": f"echo a >> {log}"}, {"name": "b", "script": f"echo b >> {log}"},
                {"name": "urgent", "script": f"echo urgent >> {log}", "priority": 100}]
    service.import_graph(db, {"name": "pr", "vertices": vertices, "edges": [["a", "b"]]}, seal=True)
    assert service.show_graph(db, "pr").spec.vertices[2].priority == 100
    assert "priority: 100" in service.export_graph(db, "pr", "yaml")
    run = service.start_run(db, "pr")
    assert run_tracks(db, run.id)["urgent"].priority == 100
    assert run_pipeline(db, run, workers=1) == "succeeded"
    assert order_of(log) == ["urgent", "a", "b"]


def test_recent_durations_weigh_the_path(db, tmp_path):
    log = tmp_path / "order"
    vertices = [{"name": "quick", "script": f"echo quick >> {log}; sleep 0.01"},
                {"name": "slow", "script": f"echo slow >> {log}; sleep 0.4"}]
    service.import_graph(db, {"name": "hist", "vertices": vertices}, seal=True)
    first = service.start_run(db, "hist")
    assert run_pipeline(db, first, workers=1) == "succeeded"
    assert order_of(log) == ["quick", "slow"]  # no history: equal weights, declaration order
    tracks = run_tracks(db, first.id)
    assert 0.3 < tracks["slow"].duration < 5 and tracks["quick"].duration < tracks["slow"].duration
    log.unlink()
    second = service.start_run(db, "hist")
    weights = {v: t.priority for v, t in run_tracks(db, second.id).items()}
    assert weights["slow"] > weights["quick"]  # the medians of the first run
    assert run_pipeline(db, second, workers=1) == "succeeded"
    assert order_of(log) == ["slow", "quick"]
