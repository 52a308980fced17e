"""Runs: start one of a sealed graph, list, show, their attempts, cancel, retry."""
from __future__ import annotations

import hashlib
import time
from typing import Annotated, Union

import simplejson

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from pipeline_engine import logfiles, service
from pipeline_engine.api import auth
from pipeline_engine.api.system import NAME_PATTERN, Version, errors
from pipeline_engine.errors import SecretsNeedOwnerError
from pipeline_engine.schedules import Trigger
from pipeline_engine.states import TRACK_FINISHED, PipelineState, TrackState
from pipeline_engine.views import RunSummary

router = APIRouter(tags=["runs"])

_ID = 2**63 - 1
_PAGE = 100_000

#: a parameter's value: a JSON number, boolean or string, validated by the inputs' types
Value = Union[StrictBool, StrictInt, StrictFloat, str]


class StartBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    parameters: dict[str, Value] = Field(default_factory=dict, description="input name (or VERTEX.name) -> value")
    name: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN,
                             description="a name for the run")
    version: Version | None = Field(default=None,
                                description="a sealed version to run (default: the newest sealed one)")


def _summary(info) -> dict:
    return RunSummary.to_dict(info)


@router.post("/graphs/{name}/runs", status_code=201, responses={
    **errors(404, 409), 200: {"description": "the run an earlier request with the same Idempotency-Key started"}})
def start_run(name: str, body: StartBody, request: Request, caller: auth.Operator, response: Response,
              idempotency_key: Annotated[str | None, Header(
                  min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
                  description="the same key and body within 24 hours return the run started first")] = None,
              ) -> dict:
    """Start a run of the graph's newest sealed version (or `version`, sealed). Every value is
    validated by the inputs' types before anything is written; workers run it."""
    db, worker = request.app.state.db, request.app.state.worker
    try:
        if idempotency_key is None:
            run = service.start_run(db, name, body.parameters, name=body.name, version=body.version, detach=True,
                                    trigger=Trigger.API)
            return _created(response, run.id, 201, run.summary())
        digest = hashlib.sha256(simplejson.dumps({"graph": name, "body": body.model_dump()},
                                                 sort_keys=True).encode()).hexdigest()
        run_id, created = service.start_run_once(db, name, body.parameters, key=idempotency_key, digest=digest,
                                                 name=body.name, version=body.version, trigger=Trigger.API)
    except SecretsNeedOwnerError as exc:
        if worker is not None and idempotency_key is not None:
            raise SecretsNeedOwnerError(f"graph '{name}' has secret inputs ({', '.join(exc.names)}): a run with"
                                        " secrets cannot be started under an Idempotency-Key (the key would"
                                        " have to keep the request, secrets and all)", names=exc.names) from None
        run = start_owned(db, worker, name, body.parameters, body.name, body.version, exc)
        return _created(response, run.id, 201, run.summary())
    return _created(response, run_id, 201 if created else 200, service.show_run(db, run_id, limit=0, output=False))


def start_owned(db, worker, name: str, parameters, run_name: str | None, version: int | None,
                exc: SecretsNeedOwnerError):
    """Start a run of a graph with secret inputs, owned by this server's ``worker``: the
    secrets stay in its memory, as with ``run``. Without a worker, ``exc`` explained."""
    if worker is None:
        raise SecretsNeedOwnerError(
            f"graph '{name}' has secret inputs ({', '.join(exc.names)}), which are never stored: only a"
            " process that runs the run can hold them, and this server runs no worker (serve --no-worker);"
            " start it with `pipeline-engine run`, or through a server that runs a worker",
            names=exc.names) from None
    run = service.start_run(db, name, parameters, name=run_name, version=version, owner=worker.name,
                            trigger=Trigger.API)
    worker.hand_in(run)
    return run


def _created(response: Response, run_id: int, status: int, run) -> dict:
    response.status_code = status
    response.headers["Location"] = f"/api/v1/runs/{run_id}"
    return _summary(run)


@router.get("/runs", responses=errors(404))
def list_runs(request: Request, caller: auth.Viewer, graph: str | None = Query(None, max_length=200),
              state: PipelineState | None = None, limit: int = Query(100, ge=1, le=10_000),
              offset: int = Query(0, ge=0, le=_ID)) -> list[dict]:
    """A page of runs, newest first, each with its track counts by state, as `runs list --json`."""
    return [r.to_dict() for r in service.list_runs(request.app.state.db, graph=graph,
                                                   state=None if state is None else state.value,
                                                   limit=limit, offset=offset)]


@router.get("/runs/{run_id}", responses=errors(404))
def show_run(request: Request, caller: auth.Viewer, run_id: int = Path(ge=1, le=_ID), state: TrackState | None = None,
             limit: int = Query(1000, ge=0, le=_PAGE), offset: int = Query(0, ge=0, le=_ID)) -> dict:
    """A run: its counts by state and total (aggregated in SQL) and a page of its tracks, as
    `runs show --json`."""
    return service.show_run(request.app.state.db, run_id, limit=limit, offset=offset,
                            state=None if state is None else state.value, output=False).to_dict()


@router.get("/runs/{run_id}/attempts", responses=errors(404))
def run_attempts(request: Request, caller: auth.Viewer, run_id: int = Path(ge=1, le=_ID),
                 limit: int = Query(1000, ge=0, le=_PAGE), offset: int = Query(0, ge=0, le=_ID)) -> dict:
    """A page of the run's attempts ordered by start, for a timeline: every attempt of its
    tracks that ended (outcome succeeded, failed, timed_out, lost or cancelled) and those that
    run now (running, no end), with the total, as `runs attempts --json`."""
    return service.run_attempts(request.app.state.db, run_id, limit=limit, offset=offset).to_dict()


@router.post("/runs/{run_id}/cancel", status_code=202, responses=errors(404, 409))
def cancel_run(request: Request, caller: auth.Operator, run_id: int = Path(ge=1, le=_ID)) -> dict:
    """Cancel a running run: its tracks that wait become cancelled at once, its running ones
    are ended by their workers at their next heartbeat."""
    db = request.app.state.db
    service.cancel_run(db, run_id)
    return _summary(service.show_run(db, run_id, limit=0, output=False))


class RetryBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    parameters: dict[str, Value] = Field(
        default_factory=dict, description="a run with secret inputs: their values again (input name, or"
                                          " VERTEX.name), since they are never stored; nothing else")


@router.post("/runs/{run_id}/retry", status_code=202, responses=errors(404, 409))
def retry_run(request: Request, caller: auth.Operator, run_id: int = Path(ge=1, le=_ID),
              body: RetryBody | None = None) -> dict:
    """Start again the tracks of a failed or cancelled run that did not succeed (the same
    sealed version); workers run them. A run with secret inputs needs their values again in
    `parameters`, and a server that runs a worker, which then runs it (as with a start)."""
    db, worker = request.app.state.db, request.app.state.worker
    parameters = body.parameters if body is not None else {}
    if parameters:  # only secrets are taken, and they are checked before anything changes
        service.load_run(db, run_id, parameters)
    try:
        again = service.retry_run(db, run_id, detach=True)
    except SecretsNeedOwnerError as exc:
        if worker is None:
            raise SecretsNeedOwnerError(
                f"run {run_id} has secret inputs ({', '.join(exc.names)}), which are never stored: only a process"
                " that runs the run can hold them, and this server runs no worker (serve --no-worker); retry it"
                " with `pipeline-engine retry`, or through a server that runs a worker", names=exc.names) from None
        service.load_run(db, run_id, parameters)  # a missing secret: a 422 naming it, and nothing changed
        again = service.retry_run(db, run_id, owner=worker.name)
        worker.hand_in(service.load_run(db, run_id, parameters))  # the tracks as the retry left them
    return {**_summary(service.show_run(db, run_id, limit=0, output=False)), "retried": again}


#: seconds between a followed log's looks at its file and its track
FOLLOW_EVERY = 0.25
_CHUNK = 64 * 1024
_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}},
         "headers": {"X-Log-Source": {"description": "`file`: the log file on the server's host; `database`:"
                                                      " the tails the database keeps (stdout, then stderr)",
                                      "schema": {"type": "string", "enum": ["file", "database"]}}}}


def log_bytes(db, logs: str | None, run_id: int, vertex: str, track, offset: int) -> tuple[bytes, str]:
    """A track's log from ``offset`` on, and where it was read (``file``: its log file on this
    host; ``database``: the tails the database keeps)."""
    finished = {str(s) for s in TRACK_FINISHED}
    path = logfiles.find(logs, db.key, run_id, vertex, track.log_path, track.state in finished) if logs else None
    if path is None:
        return (track.stdout + track.stderr).encode("utf-8", "replace")[offset:], "database"
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(), "file"


@router.get("/runs/{run_id}/tracks/{vertex}/log", response_class=Response, responses={**errors(404), 200: _TEXT})
def track_log(request: Request, caller: auth.Viewer, vertex: str, run_id: int = Path(ge=1, le=_ID),
              offset: int = Query(0, ge=0, le=2**62, description="skip this many bytes first"),
              follow: bool = Query(False, description="stream until the track has ended, its retries too")) -> Response:
    """A vertex's output, secrets masked: its log file (every attempt, stdout and stderr as
    they came) when it is on the server's host, else the tails the database keeps. With
    `follow`, what is written is sent as it comes, until the track has ended."""
    from fastapi.responses import StreamingResponse

    db, logs = request.app.state.db, request.app.state.logs
    track = service.track_output(db, run_id, vertex)
    finished = {str(s) for s in TRACK_FINISHED}
    if not follow:
        data, source = log_bytes(db, logs, run_id, vertex, track, offset)
        return Response(data, media_type="text/plain; charset=utf-8", headers={"X-Log-Source": source})
    path = logfiles.find(logs, db.key, run_id, vertex, track.log_path, track.state in finished) if logs else None

    def stream():
        nonlocal track, path
        position, f = offset, None
        try:
            while True:
                ended = track.state in finished  # read before the file: an attempt's bytes come before its end
                if f is None and path is not None:
                    f = open(path, "rb")
                    f.seek(position)
                if f is not None:
                    while chunk := f.read(_CHUNK):
                        position += len(chunk)
                        yield chunk
                if ended:
                    if f is None:  # the file is not on this host: the tails, once it has ended
                        yield (track.stdout + track.stderr).encode("utf-8", "replace")[offset:]
                    return
                time.sleep(FOLLOW_EVERY)
                track = service.track_output(db, run_id, vertex)
                if path is None and logs:
                    path = logfiles.find(logs, db.key, run_id, vertex, track.log_path, track.state in finished)
        finally:
            if f is not None:
                f.close()

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8",
                             headers={"X-Log-Source": "file" if path is not None else "database"})
