"""What the service returns: plain values, each with the one JSON form (``to_dict``) that the
CLI's ``--json`` and the API speak. Pure: no database."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline_engine import rendering
from pipeline_engine.spec import GraphSpec


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class GraphInfo:
    name: str
    description: str
    status: str
    vertices: int
    edges: int
    created_at: datetime
    updated_at: datetime
    sealed_at: datetime | None
    #: what else the operation changed, for the user to read (an import's pool sizes)
    notes: tuple[str, ...] = ()
    #: what the check the operation made warns about (as ``graph check``), if it made one
    warnings: tuple[str, ...] = ()
    #: which version of the name this is (1, 2, 3...)
    version: int = 1
    #: the newest sealed version of the name: the one ``run NAME`` runs (None: none yet)
    sealed_version: int | None = None
    #: an import found the newest sealed version identical to the file and created nothing
    unchanged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "description": self.description, "status": self.status,
                "vertices": self.vertices, "edges": self.edges, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at), "sealed_at": _iso(self.sealed_at),
                "sealed_version": self.sealed_version}


@dataclass(frozen=True)
class VersionInfo:
    """One version of a graph name, as ``graph versions`` lists it."""

    version: int
    status: str
    created_at: datetime
    sealed_at: datetime | None
    #: how many runs it has
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "status": self.status, "created_at": _iso(self.created_at),
                "sealed_at": _iso(self.sealed_at), "runs": self.runs}


@dataclass(frozen=True)
class GraphDetail:
    """A graph's definition and its status."""

    info: GraphInfo
    spec: GraphSpec

    def to_dict(self) -> dict[str, Any]:
        out = self.info.to_dict()
        out["vertices"] = [{"name": v.name, "description": v.description, "script": v.script,
                            "inputs": v.inputs, "timeout": v.timeout, "retries": v.retries,
                            "retry_delay": v.retry_delay, "retry_backoff": v.retry_backoff,
                            "priority": v.priority, "pool": v.pool, "cwd": v.cwd, "env": dict(v.env)}
                           for v in self.spec.vertices]
        out["edges"] = [[t, h] for t, h in self.spec.edges]
        out["pools"] = dict(self.spec.pools)
        return out


@dataclass(frozen=True)
class CheckResult:
    graph: str
    status: str
    #: a topological order of the vertices (Kahn's)
    order: list[str]
    #: things that are allowed but probably unintended, e.g. a {word} that names no input
    warnings: list[str] = field(default_factory=list)
    #: the version checked: the newest
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"graph": self.graph, "version": self.version, "status": self.status, "order": self.order,
                "warnings": self.warnings}


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed (or, with ``dry_run``, would remove)."""

    vertices: int
    edges: int
    runs: tuple[int, ...]  #: the runs' ids (their log files are the caller's to remove)
    tracks: int
    #: the versions deleted
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class PoolInfo:
    """A pool, with its tracks that run (each holds a slot) and that wait, counted in SQL."""

    name: str
    size: int
    description: str
    running: int
    pending: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "description": self.description, "running": self.running,
                "pending": self.pending, "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class RunStart:
    """A run just created. ``rendered`` holds each vertex's script and environment with the
    real secret values: it lives in memory only and is never stored."""

    id: int
    graph: str
    name: str | None
    #: the version of the graph it runs
    version: int
    #: vertex names of the tracks that are ready (the roots)
    pending: list[str]
    waiting: list[str]
    rendered: dict[str, rendering.Rendered] = field(repr=False)
    #: the run's secret values, to mask in captured output
    secrets: list[str] = field(default_factory=list, repr=False)
    started_at: datetime | None = None
    started_by: str | None = None
    #: the process that runs it alone; None: any worker
    owner: str | None = None
    trigger: str = "manual"
    schedule: str | None = None
    fire_at: datetime | None = None

    def summary(self) -> RunSummary:
        """The run as it was just created (what reading it back at once would give)."""
        counts = {state: len(names) for state, names in (("pending", self.pending), ("waiting", self.waiting))
                  if names}
        return RunSummary(id=self.id, graph=self.graph, name=self.name, state="running", started_at=self.started_at,
                          finished_at=None, counts=counts, owner=self.owner, version=self.version,
                          started_by=self.started_by, trigger=self.trigger, schedule=self.schedule,
                          fire_at=self.fire_at)


@dataclass(frozen=True)
class TrackInfo:
    vertex: str
    state: str
    attempt: int
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")
    log_path: str | None = None
    #: the worker running it now
    worker: str | None = None
    #: the concurrency pool it takes a slot of while it runs
    pool: str | None = None
    #: pending, waiting for its retry: not started before this time
    retry_at: datetime | None = None
    #: why it is not running yet (``reasons.Reason.to_dict``); None: running, finished, or not asked
    reason: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"vertex": self.vertex, "state": self.state, "attempt": self.attempt, "exit_code": self.exit_code,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at), "error": self.error,
                "worker": self.worker, "pool": self.pool, "retry_at": _iso(self.retry_at), "reason": self.reason}


@dataclass(frozen=True)
class AttemptInfo:
    """One attempt of a track, as a run's timeline draws it: a bar from its start to its end
    (none while it runs)."""

    vertex: str
    #: the track's attempt number (1, 2, ...)
    attempt: int
    #: the worker that ran it (runs it)
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    #: succeeded, failed, timed_out, lost (its lease taken back), cancelled; running while it runs
    outcome: str
    exit_code: int | None
    #: why it ended, when not by its exit code (cut short)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"vertex": self.vertex, "attempt": self.attempt, "worker": self.worker,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at), "outcome": self.outcome,
                "exit_code": self.exit_code, "error": self.error}


@dataclass(frozen=True)
class RunAttempts:
    """A page of a run's attempts by start, and how many it has in all."""

    attempts: list[AttemptInfo]
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": [a.to_dict() for a in self.attempts], "total": self.total}


@dataclass(frozen=True)
class RunSummary:
    id: int
    graph: str
    name: str | None
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    #: track counts by state, aggregated in SQL
    counts: dict[str, int] = field(default_factory=dict)
    #: the process that runs it alone (``run``, ``resume``); None: any worker
    owner: str | None = None
    #: the version of the graph it runs
    version: int = 1
    #: who started it: an API token's name, ``cli:USER@HOST``... (None: a run made before 0010)
    started_by: str | None = None
    #: how it came to be: manual, api, schedule, backfill
    trigger: str = "manual"
    #: the schedule that made it, and the fire time it was made for
    schedule: str | None = None
    fire_at: datetime | None = None

    @property
    def for_workers(self) -> bool:
        """Running, left to the workers (``--detach``), with tracks waiting to start."""
        return self.state == "running" and self.owner is None and self.counts.get("pending", 0) > 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "graph": self.graph, "version": self.version, "name": self.name, "state": self.state,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at), "counts": self.counts,
                "started_by": self.started_by, "trigger": self.trigger, "schedule": self.schedule,
                "fire_at": _iso(self.fire_at)}


@dataclass(frozen=True)
class RunInfo(RunSummary):
    #: one page of the run's tracks (all of them unless a limit was asked)
    tracks: list[TrackInfo] = field(default_factory=list)
    #: how many tracks the run has
    total: int = 0
    #: the parameters given to the run, secrets as ``inputtypes.MASK`` (their values are never stored)
    parameters: dict[str, Any] = field(default_factory=dict)
    #: some worker that takes runs nobody owns is alive now
    worker_alive: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "total": self.total, "tracks": [t.to_dict() for t in self.tracks],
                "parameters": self.parameters, "worker_alive": self.worker_alive}


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    concurrency: int
    lease: float
    started_at: datetime
    heartbeat_at: datetime
    #: tracks it runs now
    tracks: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "pid": self.pid, "concurrency": self.concurrency,
                "lease": self.lease, "started_at": _iso(self.started_at), "heartbeat_at": _iso(self.heartbeat_at),
                "tracks": self.tracks}


@dataclass(frozen=True)
class TokenInfo:
    """An API token as ``token list`` shows it: never the token itself."""

    name: str
    role: str
    created_at: datetime | None
    last_used_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": _iso(self.created_at),
                "last_used_at": _iso(self.last_used_at)}


@dataclass(frozen=True)
class AuditEntry:
    """One state-changing call: who, what, to what, when."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": _iso(self.at), "actor": self.actor, "action": self.action, "target": self.target,
                "detail": self.detail}


@dataclass(frozen=True)
class Figures:
    """What monitoring reads at one moment (``/metrics``)."""

    #: runs by state
    runs: dict[str, int]
    #: the running runs' tracks by state
    tracks: dict[str, int]
    pools: list[PoolInfo]
    #: the live workers
    workers: list[WorkerInfo]
    #: when it was read (the database's clock)
    at: datetime


@dataclass(frozen=True)
class RunActivity:
    """A run as the stream of every run's events watches it: its state, and a mark of its
    tracks' recent changes (their newest change and how many changed since a moment), which
    moves whenever a track's state changes."""

    id: int
    graph: str
    state: str
    changes: tuple[datetime | None, int]


@dataclass(frozen=True)
class RunChanges:
    """What changed in a run since a moment (the API's event stream): its state now, and its
    tracks whose state changed since then, each with its id and the time of its change."""

    id: int
    state: str
    #: track id, the track, when its state changed
    tracks: list[tuple[int, TrackInfo, datetime]]
    #: the run's counts by state, when asked for
    counts: dict[str, int] | None
    #: when this was read (this process's clock, as the writers' changes are)
    at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The run's event of its own stream: its state and counts, when it started and ended."""
        return {"id": self.id, "state": self.state, "counts": self.counts, "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at)}


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as ``schedule list`` shows it (instants in UTC)."""

    name: str
    graph: str
    cron: str | None
    every: str | None
    timezone: str
    parameters: dict[str, Any]
    catchup: str
    max_catchup: int
    overlap: str
    start: datetime | None
    end: datetime | None
    paused: bool
    next_fire_at: datetime | None
    last_fire_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "graph": self.graph, "cron": self.cron, "every": self.every,
                "timezone": self.timezone, "parameters": self.parameters, "catchup": self.catchup,
                "max_catchup": self.max_catchup, "overlap": self.overlap, "start": _iso(self.start),
                "end": _iso(self.end), "paused": self.paused, "next_fire_at": _iso(self.next_fire_at),
                "last_fire_at": _iso(self.last_fire_at)}


@dataclass(frozen=True)
class FireTime:
    """One fire time, in the schedule's zone and in UTC."""

    local: datetime
    utc: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"local": self.local.isoformat(), "utc": self.utc.isoformat()}


@dataclass(frozen=True)
class DecisionInfo:
    """What a scheduler decided for one fire time of a schedule."""

    schedule: str
    fire_at: datetime
    decision: str
    run: int | None
    reason: str
    decided_at: datetime
    scheduler: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"fire_at": _iso(self.fire_at), "decision": self.decision, "run": self.run, "reason": self.reason,
                "decided_at": _iso(self.decided_at)}
