"""The lifecycle composes transitions inside its caller's transaction; a move the run's state no
longer allows changes nothing."""
import pytest
from conftest import run_tracks
from sqlalchemy import update

from pipeline_engine import lifecycle, service
from pipeline_engine.errors import RunStateError
from pipeline_engine.models import Pipeline


def test_a_cancel_of_a_run_that_finished_meanwhile_changes_nothing(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    # Given a run that finished after a cancel read it as running (its track is left pending here,
    # so that a cancel that went ahead anyway would show)
    with db.transaction() as s:
        s.execute(update(Pipeline).where(Pipeline.id == run.id).values(state="succeeded"))
    # When the lifecycle is asked to cancel it, it says so, and the caller's rollback undoes the rest
    with pytest.raises(RuntimeError), db.transaction() as s:
        assert lifecycle.cancel(s, run.id) is None
        raise RuntimeError("the caller rolls back")
    # Then nothing changed
    assert run_tracks(db, run.id)["a"].state == "pending"
    with db.transaction(write=False) as s:
        assert s.get(Pipeline, run.id).state == "succeeded"


def test_a_cancel_returns_the_runs_finished_event(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    with db.transaction() as s:
        event = lifecycle.cancel(s, run.id)
    assert (event.kind, event.state, event.run) == ("finished", "cancelled", run.id)
    assert run_tracks(db, run.id)["a"].state == "cancelled"
    with pytest.raises(RunStateError, match="only a running or queued run can be cancelled"):
        service.cancel_run(db, run.id)
