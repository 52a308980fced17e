"""Every error belongs to one family, which gives the CLI's exit code and the API's HTTP status."""
import pytest

from pipeline_engine import errors, service
from pipeline_engine.errors import (
    ConflictError,
    DatabaseError,
    NotFoundError,
    PipelineEngineError,
    RunStateError,
    ValidationError,
)

FAMILIES = {ValidationError: (2, 422), NotFoundError: (2, 404), ConflictError: (2, 409), DatabaseError: (3, 503),
            errors.AccessError: (2, 403)}
#: the statuses HTTP has for a particular kind of its family
STATUS = {errors.UnauthorizedError: 401, errors.TooLargeError: 413}


def _leaves():
    return [c for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, PipelineEngineError) and c is not PipelineEngineError]


@pytest.mark.parametrize("cls", _leaves(), ids=lambda c: c.__name__)
def test_every_error_is_in_one_family_with_its_exit_code_and_http_status(cls):
    # its family is the first one it inherits from (a sealed graph is a conflict first, and
    # still a GraphError for those who catch that)
    family = next((c for c in cls.__mro__ if c in FAMILIES), None)
    assert family is not None, f"{cls.__name__} is in no family"
    exit_code, status = FAMILIES[family]
    if cls is errors.CycleError:  # graph check's documented exit code for a cycle
        exit_code = 1
    if cls in (errors.DatabaseMissingError, errors.DatabaseURLError):  # the user's URL: a usage error
        exit_code = 2
    status = STATUS.get(cls, status)
    assert (cls.exit_code, cls.http_status) == (exit_code, status), cls


def test_a_conflict_is_a_conflict_not_a_graph_or_failed_run_error(cli, db):
    # a run in the wrong state was a graph-status error; a pool in use exited 1, as a failed run
    service.import_graph(db, {"name": "g", "pools": {"db": 1},
                              "vertices": [{"name": "a", "script": "true", "pool": "db"}]}, seal=True)
    code, _, err = cli("pool", "delete", "db")
    assert code == 2 and "pool 'db' is named by vertices of graph 'g'" in err
    code, out, _ = cli("run", "g")
    run_id = int(out.split()[1])
    with pytest.raises(RunStateError, match=f"run {run_id} has succeeded: only a running or queued run can be cancelled") as exc:
        service.cancel_run(db, run_id)
    assert not isinstance(exc.value, errors.GraphError) and exc.value.http_status == 409
    code, _, err = cli("cancel", str(run_id))
    assert code == 2 and "only a running or queued run can be cancelled" in err


def test_problems_are_one_line_each():
    error = ValidationError("vertex 'a': script is empty\nvertex 'b': timeout must be > 0\n")
    assert error.problems == ["vertex 'a': script is empty", "vertex 'b': timeout must be > 0"]
