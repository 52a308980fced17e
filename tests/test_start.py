"""Starting a run: inputs resolved up front, pipeline and tracks created in one transaction."""
import pytest
from conftest import run_tracks

from pipeline_engine import params, service
from pipeline_engine.errors import GraphError, GraphStatusError, NotFoundError, ParameterError
from pipeline_engine.models import Pipeline


def tracks_of(db, run_id):
    return run_tracks(db, run_id)


def pipeline_of(db, run_id):
    with db.transaction(write=False) as s:
        return s.get(Pipeline, run_id)


def test_roots_are_pending_and_the_rest_wait_on_their_predecessors(db, example):
    service.import_graph(db, example("diamond.yaml"), seal=True)
    run = service.start_run(db, "diamond", name="first", workers=2)
    assert (run.pending, run.waiting) == (["A"], ["B", "C", "D"])
    tracks = tracks_of(db, run.id)
    assert {n: (t.state, t.waiting_on, t.attempt, t.max_attempts) for n, t in tracks.items()} == {
        "A": ("pending", 0, 0, 1), "B": ("waiting", 2, 0, 1), "C": ("waiting", 1, 0, 1), "D": ("waiting", 1, 0, 1)}
    pipeline = pipeline_of(db, run.id)
    assert (pipeline.state, pipeline.name) == ("running", "first")
    assert not hasattr(pipeline, "workers")  # the thread count is the worker's: not stored
    assert pipeline.started_at is not None and pipeline.finished_at is None


def test_inputs_and_scripts_are_stored_with_secrets_masked(db, example):
    service.import_graph(db, example("sales-report.yaml"), seal=True)
    run = service.start_run(db, "sales-report", ["token=hunter2-secret", "rows=10", "report.currency=USD"])
    tracks = tracks_of(db, run.id)
    report = tracks["report"]
    assert report.inputs["token"] == params.MASK and report.inputs["currency"] == "USD"
    assert tracks["total"].inputs["currency"] == "EUR"  # the vertex-specific key touched only report
    assert tracks["extract"].inputs["rows"] == 10 and tracks["extract"].max_attempts == 3
    assert tracks["prepare"].script == 'mkdir -p "${PE_workdir}/${PE_day}"'
    assert pipeline_of(db, run.id).params == {"token": params.MASK, "rows": "10", "report.currency": "USD"}
    for track in tracks.values():
        assert "hunter2" not in track.script and "hunter2" not in str(track.inputs)
    # the real value exists only in memory, for the executor
    assert run.rendered["report"].env["PE_token"] == "hunter2-secret"


def test_bad_or_missing_inputs_write_nothing(db, unchanged):
    service.create_graph(db, "g")
    service.add_vertex(db, "g", "ping", "ping -c 1 {ip}", inputs={"ip": {"type": "ip"}})
    service.check_graph(db, "g")
    service.seal_graph(db, "g")
    with unchanged():
        with pytest.raises(ParameterError, match=r"vertex 'ping': input 'ip' \(ip\) is required"):
            service.start_run(db, "g")
        with pytest.raises(ParameterError, match="vertex 'ping': input 'ip': expected ip, got 'nope'"):
            service.start_run(db, "g", {"ip": "nope"})
        with pytest.raises(ParameterError, match="no vertex declares an input 'colour'"):
            service.start_run(db, "g", {"ip": "::1", "colour": "red"})
        with pytest.raises(GraphError, match="workers must be a positive integer"):
            service.start_run(db, "g", {"ip": "::1"}, workers=0)
        with pytest.raises(NotFoundError):
            service.start_run(db, "nope")


def test_only_sealed_graphs_run(db, example, unchanged):
    service.import_graph(db, example("diamond.yaml"), check=True)
    with unchanged(), pytest.raises(GraphStatusError, match="only sealed versions run"):
        service.start_run(db, "diamond")
