"""Runs: create one (in a caller's transaction, or in its own), read them, and steer them
after their start (cancel, retry, resume)."""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from pipeline_engine import actors, dag, inputtypes, lifecycle, limits, recovery, rendering, store
from pipeline_engine.db import Database
from pipeline_engine.errors import (GraphError, GraphStatusError, IdempotencyKeyError, NotFoundError, ParameterError,
                                    RunStateError, SecretsNeedOwnerError)
from pipeline_engine.models import Graph, Track, Vertex
from pipeline_engine.reasons import EXPLAINED, LIST_LIMIT, PoolFigures, RunFacts, why
from pipeline_engine.schedules import Trigger
from pipeline_engine.service._base import _after_bulk, _audit, _fit, _write
from pipeline_engine.service.graphs import _label, _missing_pools, _refuse_clashes
from pipeline_engine.service.operations import _takers
from pipeline_engine.spec import GRAPH_NAME, check_name
from pipeline_engine.states import TRACK_FINISHED, GraphStatus, PipelineState, TrackState, run_is
from pipeline_engine.views import (AttemptInfo, RunActivity, RunAttempts, RunChanges, RunInfo, RunStart, RunSummary,
                                   TrackInfo)


def _masked_params(given: Mapping[str, Any] | list[str] | None, secret_names: set[str]) -> dict[str, Any]:
    pairs = given.items() if isinstance(given, Mapping) else (str(p).partition("=")[::2] for p in (given or ()))
    return {key: inputtypes.MASK if key.rpartition(".")[2] in secret_names else value for key, value in pairs}


def _runnable(s: Session, name: str, version: int | None = None) -> Graph:
    """The version of the graph a run uses: ``version``, which must be sealed, or else the
    newest sealed one."""
    if version is not None:
        graph = store.get_graph(s, name, version=version)
        if graph.status != GraphStatus.SEALED:
            raise GraphStatusError(f"{_label(graph)} is a {graph.status}: only sealed versions run"
                                   f" (graph check {name}; graph seal {name})")
        return graph
    graph = store.newest_sealed(s, name)
    if graph is None:
        newest = store.get_graph(s, name)
        raise GraphStatusError(f"graph '{name}' has no sealed version ({_label(newest)} is a {newest.status}):"
                               f" only sealed versions run (graph check {name}; graph seal {name})")
    return graph


def missing_inputs(db: Database, graph: str, parameters: Mapping[str, Any] | list[str] | None = None, *,
                   version: int | None = None) -> list[tuple[str, inputtypes.InputSpec]]:
    """The required inputs a run of ``graph`` with ``parameters`` would lack, as the
    (vertex, spec) pairs a prompt should ask for (see ``inputtypes.missing``). Reads only; an unknown
    or unsealed graph raises as in ``start_run``."""
    with db.transaction(write=False) as s:
        g = _runnable(s, graph, version)
        schemas = {v.name: inputtypes.parse_schema(v.name, v.inputs) for v in store.vertices(s, g.id)}
    return inputtypes.missing(schemas, parameters)


def input_names(db: Database, graph: str, *, version: int | None = None) -> set[str]:
    """The names of the inputs the vertices of ``graph`` declare (reads only; an unknown or
    unsealed graph raises as in ``start_run``)."""
    with db.transaction(write=False) as s:
        g = _runnable(s, graph, version)
        return {n for v in store.vertices(s, g.id) for n in inputtypes.parse_schema(v.name, v.inputs)}


#: seconds a vertex weighs on the critical path before it has run successfully
DEFAULT_DURATION = 1.0


def priorities(vertices: list[Vertex], edges: list[tuple[str, str]], history: dict[str, list[float]]
               ) -> dict[str, float]:
    """Each vertex's priority in a new run: the heaviest path from it to a sink, each vertex
    weighed by the median of its recent successful durations, by vertex name (DEFAULT_DURATION
    without history), unless the vertex sets ``priority`` itself."""
    weight = {v.name: statistics.median(history[v.name]) if history.get(v.name) else DEFAULT_DURATION
              for v in vertices}
    path = dag.critical_path([v.name for v in vertices], edges, weight)
    return {v.name: v.priority if v.priority is not None else path[v.name] for v in vertices}


def _refuse_oversized(rendered: Mapping[str, rendering.Rendered]) -> None:
    """Refuse values that would keep bash from starting (see ``limits``): sizes, never values."""
    problems = [p for vertex, r in rendered.items() for p in limits.check(vertex, r.script, r.env)]
    if problems:
        raise ParameterError("\n".join(problems))


def start_run(db: Database, graph: str, parameters: Mapping[str, Any] | list[str] | None = None, *,
              name: str | None = None, workers: int | None = None, owner: str | None = None,
              detach: bool = False, version: int | None = None, trigger: str = Trigger.MANUAL) -> RunStart:
    """Create a run of a sealed graph, its newest sealed version unless ``version``
    names another sealed one: every vertex's inputs are resolved and validated first
    (a missing or bad input is a ParameterError and nothing is written), then the pipeline and
    one track per vertex are created in one transaction, roots ``pending`` and the rest
    ``waiting``. Tracks store their inputs and rendered script with secrets masked.

    ``owner`` names the worker that alone will run it (``run`` in this process); with
    ``detach`` nobody owns it and any ``pipeline-engine worker`` picks it up. A graph with
    secret inputs cannot run detached: secrets are never stored, so no other process could
    have them.

    ``workers`` is the thread count the caller will run it with (``run --workers``): it is
    checked (a positive integer) but not stored, since the worker that runs it decides."""
    with _write(db) as s:
        run = create_run(s, graph, parameters, name=name, workers=workers, owner=owner, detach=detach,
                         version=version, trigger=trigger)
    _after_bulk(db, len(run.pending) + len(run.waiting), Track)
    return run


#: how long an Idempotency-Key names the run it started
IDEMPOTENCY_WINDOW = timedelta(hours=24)


class _Lost(Exception):
    """Another request with the same Idempotency-Key committed first."""


def start_run_once(db: Database, graph: str, parameters: Mapping[str, Any] | None, *, key: str, digest: str,
                   name: str | None = None, version: int | None = None,
                   trigger: str = Trigger.MANUAL) -> tuple[int, bool]:
    """``start_run`` (detached) under an idempotency key of the current actor: the same ``key``
    with the same request (``digest``) within a day gives the run it started then, and a new
    one is not started; with another request it is an IdempotencyKeyError. Returns (run id,
    whether it was started now). Two requests racing with one key start one run."""
    actor = actors.current()

    def earlier(row) -> int | None:
        if row is None or row.created_at < store.now() - IDEMPOTENCY_WINDOW:
            return None
        if row.digest != digest:
            raise IdempotencyKeyError(f"Idempotency-Key {key!r} was used within the last day for another request"
                                      f" (run {row.pipeline_id}): use a new key for a new request")
        return row.pipeline_id

    try:
        with _write(db) as s:
            # no lock: of two requests racing with one key, the second's insert waits for the first
            # and fails on the key, and the whole of it goes
            row = store.find_idempotency(s, actor, key)
            found = earlier(row)
            if found is not None:
                return found, False
            if row is not None:  # older than the window: the key starts afresh
                store.delete_idempotency(s, row)
            run = create_run(s, graph, parameters, name=name, version=version, detach=True, trigger=trigger)
            try:
                with s.begin_nested():
                    store.add_idempotency(s, actor, key, digest, run.id)
            except sa_exc.IntegrityError:
                raise _Lost() from None  # the whole transaction goes: the run is not started twice
        _after_bulk(db, len(run.pending) + len(run.waiting), Track)
        return run.id, True
    except _Lost:
        with db.transaction(write=False) as s:
            found = earlier(store.find_idempotency(s, actor, key))
        if found is None:  # the winner's row is gone again (pruned): rare; say so rather than guess
            raise IdempotencyKeyError(f"Idempotency-Key {key!r}: a concurrent request with it changed; send it"
                                      " again") from None
        return found, False


def create_run(s: Session, graph: str, parameters: Mapping[str, Any] | list[str] | None = None, *,
               name: str | None = None, workers: int | None = None, owner: str | None = None,
               detach: bool = False, version: int | None = None, trigger: str = Trigger.MANUAL,
               schedule: str | None = None, fire_at: datetime | None = None, queued: bool = False,
               backfill_id: int | None = None, run_key: str | None = None) -> RunStart:
    """``start_run`` inside the caller's transaction (``s``): a scheduler creates a run with the
    schedule's advance, a sub-graph vertex its child with the parent's step, each atomically. On
    an error nothing is written by it; the caller's transaction is the caller's to end."""
    if name is not None:
        check_name("run", name, GRAPH_NAME)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise GraphError(f"workers must be a positive integer, got {workers!r}")
    g = _runnable(s, graph, version)
    rows = store.vertices(s, g.id)
    edges = store.edge_names(s, g.id)
    missing = _missing_pools(s, rows)
    if missing:
        raise NotFoundError("; ".join(f"graph '{graph}': pool '{p}' (vertex {users}) does not exist:"
                                      f" pipeline-engine pool set {p} SIZE" for p, users in missing.items()))
    schemas = {v.name: inputtypes.parse_schema(v.name, v.inputs) for v in rows}
    _refuse_clashes(graph, schemas)
    values = inputtypes.resolve(schemas, parameters)
    rendered = {v.name: rendering.render_script(v.name, v.script, schemas[v.name], values[v.name]) for v in rows}
    _refuse_oversized(rendered)
    indegree = {v.name: 0 for v in rows}
    for _, head in edges:
        indegree[head] += 1
    history = store.recent_durations(s, [v.id for v in store.graph_versions(s, graph)])
    priority = priorities(rows, edges, history)
    secret_names = {n for schema in schemas.values() for n, spec in schema.items() if spec.secret}
    if detach and secret_names:
        raise SecretsNeedOwnerError(f"graph '{graph}' has secret inputs ({', '.join(sorted(secret_names))}), which"
                                    " are never stored: a detached run could not pass them to a worker; run it"
                                    " without --detach", names=sorted(secret_names))
    tracks = []
    for v in rows:
        inputs = {n: (inputtypes.MASK if spec.secret and values[v.name][n] else values[v.name][n])
                  for n, spec in schemas[v.name].items()}
        tracks.append({"vertex_id": v.id, "state": "pending" if indegree[v.name] == 0 else "waiting",
                       "attempt": 0, "max_attempts": v.retries + 1, "waiting_on": indegree[v.name],
                       "priority": priority[v.name], "pool": v.pool, "inputs": inputs,
                       "script": rendered[v.name].shown,
                       "stdout": "", "stderr": ""})
    _fit(s, {f"run of graph '{graph}': the track of vertex '{v.name}'": t for v, t in zip(rows, tracks)})
    started_by = actors.current()
    pipeline = store.create_pipeline(s, g.id, name, _masked_params(parameters, secret_names), tracks,
                                     owner=None if detach else owner, secret_inputs=bool(secret_names),
                                     started_by=started_by, trigger=str(trigger), schedule=schedule, fire_at=fire_at,
                                     queued=queued, backfill_id=backfill_id, run_key=run_key)
    _audit(s, "run.start", pipeline.id, f"graph '{graph}' version {g.version}")
    return RunStart(id=pipeline.id, graph=graph, name=name, version=g.version, started_at=pipeline.started_at,
                    started_by=started_by, owner=pipeline.owner, trigger=str(trigger), schedule=schedule,
                    fire_at=fire_at,
                    pending=[v.name for v in rows if indegree[v.name] == 0],
                    waiting=[v.name for v in rows if indegree[v.name] > 0], rendered=rendered,
                    secrets=sorted({str(values[v][n]) for v, schema in schemas.items()
                                    for n, spec in schema.items() if spec.secret and values[v][n]}))


def _retry_at(t) -> datetime | None:
    return t.not_before if t.state == TrackState.PENDING and t.not_before is not None else None


def show_run(db: Database, run_id: int, *, limit: int | None = None, offset: int = 0, state: str | None = None,
             output: bool = True, reasons: bool = True) -> RunInfo:
    """A run, its track counts by state (in SQL), and a page of its tracks in declaration order
    (``limit``/``offset``, only those in ``state`` if given), with their captured output unless
    ``output`` is false. Each track of the page that is not running or finished, and each
    upstream_failed one, carries why (``pipeline_engine.reasons``), unless ``reasons`` is false:
    a few queries bounded by the page, whatever the run's size."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        graph = s.get(Graph, pipeline.graph_id)
        counts = store.counts_by_run(s, [run_id])[run_id]
        live = [w.name for w, _ in recovery.live_workers(s)]
        takers = _takers(s, live)
        if output:
            pairs = store.run_tracks_page(s, run_id, limit=limit, offset=offset, state=state)
            why = _reasons(s, pipeline, [t for t, _ in pairs], live, takers) if reasons else {}
            tracks = [TrackInfo(vertex=v.name, state=t.state, attempt=t.attempt, exit_code=t.exit_code,
                                started_at=t.started_at, finished_at=t.finished_at, error=t.error,
                                stdout=t.stdout, stderr=t.stderr, log_path=t.log_path, worker=t.worker,
                                pool=t.pool, retry_at=_retry_at(t), reason=why.get(t.vertex_id))
                      for t, v in pairs]
        else:  # a page of a big run, as the API and `runs show` read it: plain rows
            rows = store.run_track_rows(s, run_id, limit=limit, offset=offset, state=state)
            why = _reasons(s, pipeline, rows, live, takers) if reasons else {}
            tracks = [TrackInfo(vertex=r.vertex, state=r.state, attempt=r.attempt, exit_code=r.exit_code,
                                started_at=r.started_at, finished_at=r.finished_at, error=r.error,
                                log_path=r.log_path, worker=r.worker, pool=r.pool, retry_at=_retry_at(r),
                                reason=why.get(r.vertex_id))
                      for r in rows]
        return RunInfo(id=pipeline.id, graph=graph.name, version=graph.version, name=pipeline.name,
                       state=pipeline.state,
                       started_at=pipeline.started_at, finished_at=pipeline.finished_at, counts=counts,
                       tracks=tracks, total=sum(counts.values()), parameters=dict(pipeline.params or {}),
                       owner=pipeline.owner, worker_alive=bool(takers), started_by=pipeline.started_by,
                       **_origin(pipeline))


def _reasons(s: Session, pipeline, page: Sequence[Any], live: list[str], takers: list[str]) -> dict[int, dict]:
    """Vertex id -> why (``reasons.why``, in its JSON form) for each track of ``page`` (rows or
    Track objects: state, vertex_id, pool, not_before) that has a reason. ``live`` names the
    live workers, ``takers`` those of them that take runs nobody owns."""
    explained = [t for t in page if t.state in EXPLAINED]
    if not explained:
        return {}
    queued = pipeline.state == PipelineState.QUEUED

    def vertices(state: str) -> list[int]:
        return [t.vertex_id for t in explained if t.state == state]

    unmet = {} if queued else store.unmet_predecessors(s, pipeline.id, pipeline.graph_id,
                                                       vertices(TrackState.WAITING), LIST_LIMIT)
    failed = store.failed_ancestors(s, pipeline.id, pipeline.graph_id, vertices(TrackState.UPSTREAM_FAILED))
    pools = {} if queued else {
        name: PoolFigures(name, size, running, tuple(held)) for name, (size, running, held) in store.pool_figures(
            s, {t.pool for t in explained if t.state == TrackState.PENDING and t.pool}, LIST_LIMIT).items()}
    run = RunFacts(state=pipeline.state, behind=_behind(s, pipeline) if queued else (), owner=pipeline.owner,
                   owner_alive=pipeline.owner in live, secret=bool(pipeline.secret_inputs), workers=tuple(takers))
    now = store.now()
    out = {}
    for t in explained:
        names, count = unmet.get(t.vertex_id, ((), 0))
        reason = why(t.state, run, now=now, retry_at=t.not_before, unmet=names, unmet_count=count,
                     failed=failed.get(t.vertex_id), pool=pools.get(t.pool) if t.pool else None)
        if reason is not None:
            out[t.vertex_id] = reason.to_dict()
    return out


def _behind(s: Session, pipeline) -> tuple[int, ...]:
    """The running runs a queued run waits for, as ``promote_queued`` gives turns: its
    backfill's (while ``max_active`` of them run), else its schedule's (while one runs)."""
    if pipeline.backfill_id is not None:
        return tuple(store.runs_of_backfill(s, pipeline.backfill_id, PipelineState.RUNNING, limit=LIST_LIMIT))
    if pipeline.schedule is not None:
        return tuple(store.runs_of_schedule(s, pipeline.schedule, PipelineState.RUNNING)[:LIST_LIMIT])
    return ()


def track_output(db: Database, run_id: int, vertex: str) -> TrackInfo:
    """One track of a run, with its captured output and log file's path."""
    with db.transaction(write=False) as s:
        _pipeline(s, run_id)
        t = store.find_track(s, run_id, vertex)
        if t is None:
            raise NotFoundError(f"run {run_id}: no vertex '{vertex}'")
        return TrackInfo(vertex=vertex, state=t.state, attempt=t.attempt, exit_code=t.exit_code,
                         started_at=t.started_at, finished_at=t.finished_at, error=t.error, stdout=t.stdout,
                         stderr=t.stderr, log_path=t.log_path, worker=t.worker, pool=t.pool, retry_at=_retry_at(t))


def run_attempts(db: Database, run_id: int, *, limit: int = 1000, offset: int = 0) -> RunAttempts:
    """A page of a run's attempts (``limit``/``offset``), ordered by start: every attempt of
    its tracks that ended (retries, timeouts, lost leases and cancels included) and those that
    run now (outcome ``running``, no end), with how many there are in all. Two queries,
    whatever the run's size. NotFoundError for an unknown run; runs made before the attempts
    were kept (schema 0015) show none that ended."""
    for name, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise GraphError(f"{name} must be an integer >= 0, got {value!r}")
    with db.transaction(write=False) as s:
        _pipeline(s, run_id)
        total = store.count_run_attempts(s, run_id)
        rows = store.run_attempts(s, run_id, limit=limit, offset=offset) if limit and offset < total else []
    return RunAttempts(attempts=[AttemptInfo(vertex=r.vertex, attempt=r.attempt, worker=r.worker,
                                             started_at=r.started_at, finished_at=r.finished_at, outcome=r.outcome,
                                             exit_code=r.exit_code, error=r.error) for r in rows], total=total)


def list_runs(db: Database, *, graph: str | None = None, state: str | None = None, trigger: str | None = None,
              limit: int | None = None, offset: int = 0) -> list[RunSummary]:
    """A page of runs, newest first (only those of ``graph``, in ``state`` and made by
    ``trigger`` when given), each with its track counts by state aggregated in SQL."""
    if state is not None and state not in {str(x) for x in PipelineState}:
        raise GraphError(f"unknown run state {state!r}: one of {', '.join(str(x) for x in PipelineState)}")
    if trigger is not None and trigger not in {str(x) for x in Trigger}:
        raise GraphError(f"unknown trigger {trigger!r}: one of {', '.join(str(x) for x in Trigger)}")
    with db.transaction(write=False) as s:
        graph_ids = None
        if graph is not None:
            store.get_graph(s, graph)
            graph_ids = [g.id for g in store.graph_versions(s, graph)]
        page = store.list_runs(s, graph_ids=graph_ids, state=state, trigger=trigger, limit=limit, offset=offset)
        counts = store.counts_by_run(s, [p.id for p, _, _ in page])
        return [RunSummary(id=p.id, graph=g, name=p.name, state=p.state, started_at=p.started_at,
                           finished_at=p.finished_at, counts=counts[p.id], owner=p.owner, version=v,
                           started_by=p.started_by, **_origin(p))
                for p, g, v in page]


def _origin(pipeline) -> dict[str, Any]:
    """How a run came to be (a run made before 0012 was started by hand)."""
    return {"trigger": pipeline.trigger or str(Trigger.MANUAL), "schedule": pipeline.schedule,
            "fire_at": pipeline.fire_at}


# --- runs after their start: workers, cancel, retry, resume -------------------------------------

def _pipeline(s: Session, run_id: int, lock: bool = False):
    from pipeline_engine.models import Pipeline

    pipeline = s.get(Pipeline, run_id, with_for_update=lock)
    if pipeline is None:
        raise NotFoundError(f"run {run_id} not found")
    return pipeline


def _secret_schemas(schemas: dict[str, dict[str, inputtypes.InputSpec]]) -> dict[str, dict[str, inputtypes.InputSpec]]:
    return {v: {n: spec for n, spec in schema.items() if spec.secret} for v, schema in schemas.items()}


def _to_run(state: str, rows) -> set[str]:
    """The vertices of a run whose tracks can still run in it: of a running run (resume) those
    not finished; of a failed or cancelled one (retry) those ``lifecycle.retry`` starts
    again."""
    if state == PipelineState.RUNNING:
        return {v.name for t, v in rows if t.state not in TRACK_FINISHED}
    return {v.name for t, v in rows if t.state != TrackState.SUCCEEDED}


def _needed_secrets(state: str, rows) -> dict[str, dict[str, inputtypes.InputSpec]]:
    """The secret inputs of a run, required only for the vertices that can still run: a secret
    of another vertex may be given (it is checked) but is not asked for."""
    needed = _to_run(state, rows)
    schemas = _secret_schemas({v.name: inputtypes.parse_schema(v.name, v.inputs) for _, v in rows})
    return {v: schema if v in needed else {n: dataclasses.replace(spec, required=False) for n, spec in schema.items()}
            for v, schema in schemas.items()}


def secret_names(db: Database, run_id: int) -> set[str]:
    """The names of the secret inputs the vertices of a run declare (reads only)."""
    with db.transaction(write=False) as s:
        _pipeline(s, run_id)
        rows = store.run_tracks(s, run_id)
    return _secret_names(rows)


def _secret_names(rows) -> set[str]:
    return {n for schema in _secret_schemas({v.name: inputtypes.parse_schema(v.name, v.inputs) for _, v in rows}).values()
            for n in schema}


def missing_secrets(db: Database, run_id: int, parameters: Mapping[str, Any] | list[str] | None = None
                    ) -> list[tuple[str, inputtypes.InputSpec]]:
    """The secret inputs that ``parameters`` lacks for the vertices of a run that can still run
    (see ``load_run``): a process that takes a run over (resume, retry) must be given them
    again, since they are never stored."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        rows = store.run_tracks(s, run_id)
        state = pipeline.state
    return inputtypes.missing(_needed_secrets(state, rows), parameters)


def load_run(db: Database, run_id: int, parameters: Mapping[str, Any] | list[str] | None = None) -> RunStart:
    """A run's scripts rendered again from the database: the inputs stored with each track, and
    the secret inputs, which are never stored, from ``parameters`` (only secrets are accepted
    there). Used by workers, ``resume`` and ``retry``. Only the secrets of the tracks that can
    still run are required (a running run's unfinished ones; a finished run's unsucceeded ones,
    which retry starts again); a vertex with secrets that cannot run is not rendered."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        graph = s.get(Graph, pipeline.graph_id)
        rows = store.run_tracks(s, run_id)
        state = pipeline.state
    schemas = {v.name: inputtypes.parse_schema(v.name, v.inputs) for _, v in rows}
    secret_values = inputtypes.resolve(_needed_secrets(state, rows), parameters)
    to_run = _to_run(state, rows)
    rendered = {}
    for t, v in rows:
        if v.name not in to_run and any(spec.secret for spec in schemas[v.name].values()):
            continue  # never runs again, and its secrets need not have been given
        values = {**(t.inputs or {}), **secret_values[v.name]}
        rendered[v.name] = rendering.render_script(v.name, v.script, schemas[v.name], values)
    _refuse_oversized(rendered)
    secrets = sorted({str(x) for per in secret_values.values() for x in per.values() if x})
    return RunStart(id=run_id, graph=graph.name, name=pipeline.name, version=graph.version,
                    started_at=pipeline.started_at, started_by=pipeline.started_by, owner=pipeline.owner,
                    pending=[v.name for t, v in rows if t.state == "pending"],
                    waiting=[v.name for t, v in rows if t.state == "waiting"], rendered=rendered, secrets=secrets)


def cancel_run(db: Database, run_id: int, *, wait: float = 0.0, poll: float = 0.1) -> dict[str, int]:
    """Cancel a running run: waiting and pending tracks become ``cancelled`` at once, running
    ones too, and the workers running them terminate their process groups at their next
    heartbeat. With ``wait`` seconds, return once every worker has let go of the run's tracks
    (or its lease ran out: a dead worker runs nothing). Returns the track counts by state."""
    with _write(db) as s:
        pipeline = _pipeline(s, run_id)
        if pipeline.state not in (PipelineState.RUNNING, PipelineState.QUEUED):
            raise RunStateError(f"run {run_id} {run_is(pipeline.state)}: only a running or queued run can be"
                                " cancelled")
        if lifecycle.cancel(s, run_id) is None:  # it finished after it was read: nothing is cancelled
            raise RunStateError(f"run {run_id} finished while it was being cancelled; look at it again")
        _audit(s, "run.cancel", run_id)
    deadline = time.monotonic() + wait
    while True:
        with db.transaction(write=False) as s:
            holders = store.track_holders(s, run_id)
        with db.transaction(write=False) as s:
            live = {w.name for w, _ in recovery.live_workers(s)}
        if not holders & live or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if holders - live:  # dead workers will never acknowledge: let go for them
        with _write(db) as s:
            store.forget_holders(s, run_id, holders - live)
    with db.transaction(write=False) as s:
        return store.counts_by_run(s, [run_id])[run_id]


def retry_run(db: Database, run_id: int, *, owner: str | None = None, detach: bool = False) -> list[str]:
    """Start the failed, upstream_failed and cancelled tracks of a finished run again (each gets
    a new attempt and its retries anew); succeeded tracks are kept. Returns the vertex names
    that will run again."""
    with _write(db) as s:
        pipeline = _pipeline(s, run_id, lock=True)  # before its tracks, as prune locks them
        if pipeline.state not in (PipelineState.FAILED, PipelineState.CANCELLED):
            raise RunStateError(f"run {run_id} {run_is(pipeline.state)}: only a failed or cancelled run can be"
                                " retried")
        if store.track_holders(s, run_id):
            raise RunStateError(f"run {run_id}: a worker still holds some of its tracks; wait for the cancel"
                                " to finish")
        if detach and pipeline.secret_inputs:
            names = sorted(_secret_names(store.run_tracks(s, run_id)))
            raise SecretsNeedOwnerError(f"run {run_id} has secret inputs ({', '.join(names)}), which are never"
                                        " stored: retry it without --detach", names=names)
        again = lifecycle.retry(s, run_id, pipeline.state, None if detach else owner)
        if again is None:
            raise RunStateError(f"run {run_id} changed while it was being retried; look at it again")
        _audit(s, "run.retry", run_id, f"{len(again)} vertex(es) again")
        return again


def resume_run(db: Database, run_id: int, owner: str) -> list[tuple[int, int]]:
    """Let ``owner`` adopt a running run whose engine died: its running tracks held by dead
    workers are taken back now (pending while retries remain, else failed), and the run is
    ``owner``'s. Refused while the run's owner is alive. Returns the attempts taken back from
    dead workers of this host (track id, attempt): ``owner``, which alone may claim the run's
    tracks now, kills what is left of them before it claims (``Worker.adopt``); nothing is
    killed here."""
    with _write(db) as s:
        pipeline = _pipeline(s, run_id)
        if pipeline.state != PipelineState.RUNNING:
            raise RunStateError(f"run {run_id} {run_is(pipeline.state)}: only a running run can be resumed"
                                f" (pipeline-engine retry {run_id} starts a finished one again)")
        live = {w.name for w, _ in recovery.live_workers(s)}
        if pipeline.owner is not None and pipeline.owner in live:
            raise RunStateError(f"run {run_id} is being run by {pipeline.owner}, which is alive")
        if not store.adopt_pipeline(s, run_id, pipeline.owner, owner):
            raise RunStateError(f"run {run_id} changed while it was being resumed; look at it again")
        _audit(s, "run.resume", run_id)
        return recovery.take_back_from_dead(s.connection(), run_id, live)


def runs_activity(db: Database, since: datetime | None, *, known: Iterable[int] = (),
                  after: int | None = None) -> tuple[datetime, int, list[RunActivity]]:
    """What the stream of every run's events looks at: (when it was read, the newest run's id,
    the runs) where the runs are every running run, the runs ``known`` whatever their state now
    (one that has ended is seen ending), and every run started after the run id ``after``
    (none when None) — each with a mark of its tracks' changes at or after ``since``."""
    known = set(known)
    with db.transaction(write=False) as s:
        at = store.now()
        newest = store.newest_pipeline_id(s)
        rows = store.runs_to_watch(s, known, newest if after is None else after)
        watched = [r.id for r in rows if r.state == PipelineState.RUNNING or r.id in known]
        changes = {} if since is None else store.track_activity(s, watched, since)
    return at, newest, [RunActivity(id=r.id, graph=r.graph, state=r.state, changes=changes.get(r.id, (None, 0)))
                        for r in rows]


def run_counts(db: Database, run_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Track counts by state of each of these runs, aggregated in SQL."""
    with db.transaction(write=False) as s:
        return store.counts_by_run(s, run_ids)


def run_changes(db: Database, run_id: int, since: datetime | None, *, counts: bool = False) -> RunChanges:
    """A run's state, and its tracks whose state changed at or after ``since`` (none when
    ``since`` is None), read by an index whatever the run's size; with ``counts``, its track
    counts by state too. NotFoundError for an unknown run."""
    with db.transaction(write=False) as s:
        at = store.now()
        pipeline = _pipeline(s, run_id)
        changed = [] if since is None else [
            (t.id, TrackInfo(vertex=name, state=t.state, attempt=t.attempt, exit_code=t.exit_code,
                             started_at=t.started_at, finished_at=t.finished_at, error=t.error, worker=t.worker,
                             pool=t.pool, retry_at=_retry_at(t)), t.changed_at)
            for t, name in store.changed_tracks(s, run_id, since)]
        return RunChanges(id=run_id, state=pipeline.state, tracks=changed,
                          counts=store.counts_by_run(s, [run_id])[run_id] if counts else None, at=at,
                          started_at=pipeline.started_at, finished_at=pipeline.finished_at)
