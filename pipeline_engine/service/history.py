"""What the history pages show: each graph's last run, success rate and next fire time; each
vertex's median and p95 duration over recent runs; run durations per graph per day; one
vertex's durations run by run. Reads only, a fixed number of queries whatever the number of
graphs, each bounded by its window (days, or recent runs)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline_engine import figures, store
from pipeline_engine.db import Database
from pipeline_engine.views import GraphInfo, _iso

#: runs whose durations give a vertex's median and p95
RECENT_RUNS = 20


@dataclass(frozen=True)
class LastRun:
    id: int
    state: str
    started_at: datetime | None
    duration: float | None


@dataclass(frozen=True)
class GraphOverview:
    """A graph as the graphs page lists it."""

    name: str
    description: str
    status: str
    version: int
    vertices: int
    last_run: LastRun | None
    #: succeeded / finished runs started in the window (None: none finished)
    success_rate: float | None
    runs_in_window: int
    next_fire_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        last = self.last_run
        return {"name": self.name, "status": self.status, "version": self.version, "vertices": self.vertices,
                "last_run": None if last is None else {"id": last.id, "state": last.state,
                                                       "started_at": _iso(last.started_at),
                                                       "duration": last.duration},
                "success_rate": self.success_rate, "runs_in_window": self.runs_in_window,
                "next_fire_at": _iso(self.next_fire_at)}


def _took(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def graph_overview(db: Database, graphs: list[GraphInfo], *, days: int = 30) -> list[GraphOverview]:
    """``graphs`` (``list_graphs``) with their last run, success rate over ``days`` and next
    fire time."""
    since = store.now() - timedelta(days=days)
    with db.transaction(write=False) as s:
        last = store.last_runs_by_graph(s)
        states = store.run_states_since(s, since)
        fires = store.next_fires(s)
    out = []
    for g in graphs:
        p = last.get(g.name)
        counts = states.get(g.name, {})
        finished = sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))
        out.append(GraphOverview(
            name=g.name, description=g.description, status=g.status, version=g.version, vertices=g.vertices,
            last_run=None if p is None else LastRun(p.id, p.state, p.started_at, _took(p.started_at, p.finished_at)),
            success_rate=counts.get("succeeded", 0) / finished if finished else None,
            runs_in_window=sum(counts.values()), next_fire_at=fires.get(g.name)))
    return out


@dataclass(frozen=True)
class Durations:
    median: float
    p95: float
    samples: int


def vertex_durations(db: Database, graph: str, *, runs: int = RECENT_RUNS,
                     names: list[str] | None = None) -> dict[str, Durations]:
    """Vertex name -> median and p95 of its successful attempts' durations in the graph's last
    ``runs`` runs (any version, by vertex name); only of ``names`` when given."""
    with db.transaction(write=False) as s:
        versions = [g.id for g in store.graph_versions(s, graph)]
        history = store.recent_durations(s, versions, runs=runs, names=names) if versions else {}
    return {v: Durations(statistics.median(d), figures.percentile(d, 0.95), len(d)) for v, d in history.items() if d}


@dataclass(frozen=True)
class Day:
    """One graph's finished runs of one UTC day."""

    graph: str
    day: str
    runs: int
    succeeded: int
    failed: int
    median: float | None
    longest: float | None


@dataclass(frozen=True)
class GraphHistory:
    graph: str
    days: list[Day] = field(default_factory=list)


def run_history(db: Database, *, days: int = 30, graph: str | None = None) -> list[GraphHistory]:
    """Per graph that finished a run in the last ``days``, per UTC day of them (every day,
    from the first to today, so that a chart's days stand where they fell): finished runs, how
    many succeeded and failed, their median and longest duration."""
    since = store.now() - timedelta(days=days)
    with db.transaction(write=False) as s:
        ids = [g.id for g in store.graph_versions(s, graph)] if graph else None
        rows = store.finished_runs_since(s, since, ids) if ids is None or ids else []
    buckets: dict[str, dict[str, list]] = {}
    for name, start, end, state in rows:
        buckets.setdefault(name, {}).setdefault(start.strftime("%Y-%m-%d"), []).append((_took(start, end), state))
    window = [(since.date() + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days + 1)]
    out = []
    for name in sorted(buckets):
        out.append(GraphHistory(name, [_day(name, day, buckets[name].get(day, [])) for day in window]))
    return out


def _day(graph: str, day: str, runs: list[tuple[float | None, str]]) -> Day:
    took = [d for d, _ in runs if d is not None]
    return Day(graph, day, len(runs), sum(1 for _, st in runs if st == "succeeded"),
               sum(1 for _, st in runs if st == "failed"), statistics.median(took) if took else None,
               max(took, default=None))


@dataclass(frozen=True)
class TrendPoint:
    run: int
    started_at: datetime | None
    duration: float | None
    state: str


def vertex_trend(db: Database, graph: str, vertex: str, *, runs: int = 50) -> list[TrendPoint]:
    """``vertex``'s duration and state in each of the graph's last ``runs`` runs, oldest first."""
    with db.transaction(write=False) as s:
        versions = [g.id for g in store.graph_versions(s, graph)]
        rows = store.vertex_runs(s, versions, vertex, runs) if versions else []
    return [TrendPoint(r, start, duration, state) for r, start, duration, state in rows]
