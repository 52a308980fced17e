"""Reads the web pages need and the API has no call for: a graph's drawing (levels, the last
run's states, the critical path) and its start form's fields. Each is one read transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline_engine import forms, inputtypes, layout, store
from pipeline_engine.db import Database
from pipeline_engine.errors import NotFoundError
from pipeline_engine.service.runs import DEFAULT_DURATION, _pipeline, _runnable
from pipeline_engine.views import _iso



def graph_drawing(db: Database, name: str, *, version: int | None = None, around: str | None = None,
                  depth: int = 2) -> layout.Drawing:
    """The drawing of a version of a graph (the newest unless ``version``), each vertex in its
    state of the graph's last run, the critical path by that run's priorities (recent
    durations; a chain of most vertices before any run); ``around``: only that
    vertex's neighbourhood (NotFoundError: no such vertex). A graph with a cycle (a draft) is
    drawn without levels: every vertex at level 0."""
    with db.transaction(write=False) as s:
        graph = store.get_graph(s, name, version=version)
        names = store.vertex_names(s, graph.id)
        edges = store.edge_names(s, graph.id)
        versions = [g.id for g in store.graph_versions(s, name)]
        last = store.last_run(s, versions)
        tracks = store.track_states(s, last.id) if last is not None else {}
    states = {v: state for v, (state, _) in tracks.items()}
    try:
        if tracks and all(v in tracks for v in names):
            # the last run's priorities are each vertex's critical path as that run weighed it
            # (recent durations): no need to read the history again
            critical = layout.chain_by(names, edges, {v: tracks[v][1] for v in names})
        else:
            critical = layout.chain(names, edges, {v: DEFAULT_DURATION for v in names})
    except ValueError:  # a cycle: a draft drawn flat
        critical, edges = [], []
    if around is not None:
        try:
            return layout.neighbourhood(names, edges, around, states, depth=depth, critical=critical)
        except KeyError:
            raise NotFoundError(f"graph '{name}': vertex '{around}' not found") from None
    return layout.draw(names, edges, states, critical)


def start_fields(db: Database, name: str, *, version: int | None = None) -> tuple[int, list[forms.Field]]:
    """The version a start of ``name`` runs (the newest sealed, or ``version``, sealed; as
    ``start_run`` refuses them) and its start form's fields."""
    with db.transaction(write=False) as s:
        graph = _runnable(s, name, version)
        schemas = {v.name: inputtypes.parse_schema(v.name, v.inputs) for v in store.vertices(s, graph.id)}
        return graph.version, forms.fields(schemas)


#: attempts a run's timeline draws at most (a 10,000-track run with retries fits)
TIMELINE_BARS = 20_000


def run_timeline(db: Database, run_id: int) -> dict:
    """A run's timeline: a bar per attempt, retries, timeouts and lost leases each their own
    (vertex, attempt, seconds from the run's start to the attempt's start and to its end, or
    None while it runs, outcome), by start, for the run page's Gantt chart."""
    from pipeline_engine.service.runs import run_attempts

    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        at = store.now()
    page = run_attempts(db, run_id, limit=TIMELINE_BARS)
    origin = pipeline.started_at or at

    def since(t):
        return None if t is None else round((t - origin).total_seconds(), 3)

    bars = [[a.vertex, a.attempt, since(a.started_at), since(a.finished_at), a.outcome] for a in page.attempts]
    return {"run": run_id, "state": pipeline.state, "started_at": _iso(origin), "now": since(at), "bars": bars,
            "total": page.total}


@dataclass(frozen=True)
class Eta:
    """When a run is expected to end, and its critical path."""

    #: seconds left (None: the run has ended)
    seconds_left: float | None
    finish_at: datetime | None
    #: the chain of vertices that takes longest, by the priorities the run started with
    critical: list[str]


def run_eta(db: Database, run_id: int) -> Eta:
    """A run's expected end. Each track's priority is the heaviest path from it to a sink, by
    the median durations of recent runs (DEFAULT_DURATION without history), fixed when the run
    started: what is left is the largest of a waiting or pending track's, and of a running
    one's less the time it has run. Only estimates: a vertex with a set priority weighs that."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        critical = store.critical_chain(s, run_id, pipeline.graph_id)
        if pipeline.state not in ("running", "queued"):
            return Eta(None, None, critical)
        most, running = store.time_left(s, run_id)
        at = store.now()
    left = most or 0.0
    for weight, started in running:
        if started is not None:
            left = max(left, weight - (at - started).total_seconds())
    return Eta(left, at + timedelta(seconds=left), critical)
