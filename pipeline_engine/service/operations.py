"""Operating the installation: workers, recovery of dead workers' tracks, pruning old runs."""
from __future__ import annotations

from collections.abc import Callable
import math
from datetime import datetime, timedelta, timezone

from sqlalchemy.orm import Session

from pipeline_engine import lifecycle, recovery, store
from pipeline_engine.db import Database
from pipeline_engine.errors import GraphError
from pipeline_engine.service._base import _audit, _write
from pipeline_engine.service.pools import _pool_info
from pipeline_engine.views import AuditEntry, Figures, WorkerInfo


def _takers(s: Session, live: list[str]) -> list[str]:
    """Of the live workers ``live`` (names), those that take runs nobody owns: not a ``run`` or
    ``resume`` process, which run their own run only."""
    owners = store.running_owners(s)
    return [name for name in live if name not in owners]


def _worker_alive(s: Session) -> bool:
    return bool(_takers(s, [w.name for w, _ in recovery.live_workers(s)]))


def worker_alive(db: Database) -> bool:
    """Whether a worker that takes runs nobody owns (``run --detach``) is alive now: not
    stopped, its heartbeat within its lease, and not a ``run`` or ``resume`` process (those run
    their own run only)."""
    with db.transaction(write=False) as s:
        return _worker_alive(s)


def list_workers(db: Database) -> list[WorkerInfo]:
    """Live workers (not stopped, heartbeat within their lease), by name."""
    with db.transaction(write=False) as s:
        return [_worker_info(w, n) for w, n in recovery.live_workers(s)]


def _worker_info(w, tracks: int) -> WorkerInfo:
    return WorkerInfo(w.name, w.host, w.pid, w.concurrency, w.lease, w.started_at, w.heartbeat_at, tracks)


def recover(db: Database, *, kill: lifecycle.Kill | None = None) -> int:
    """Take back now the running tracks of workers whose lease ran out (or, on this host, whose
    process is gone); returns how many. ``kill`` (an executor's, for a caller on a worker host:
    ``executors.local.kill_leftovers``) is given the attempts whose worker ran on this host
    before they are taken back, so that none runs twice at once; without it nothing is killed."""
    with _write(db) as s:
        taken = recovery.recover_expired(s.connection(), kill=kill)
        _audit(s, "recover", "workers", f"{taken} track(s) taken back")
        return taken


def prune_runs(db: Database, older_than_days: float, *, batch: int = 500,
               on_batch: Callable[[list[int]], None] | None = None, dry_run: bool = False) -> tuple[int, int]:
    """Delete the runs that finished more than ``older_than_days`` ago, with their tracks, in
    transactions of ``batch`` runs (short: running work is never waited on). ``on_batch``
    gets each batch's run ids once deleted. Returns (runs, tracks) deleted; with ``dry_run``,
    what would be deleted now, and nothing is."""
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, (int, float)) or older_than_days < 0:
        raise GraphError(f"--older-than must be a number of days >= 0, got {older_than_days!r}")
    if math.isnan(older_than_days):
        raise GraphError(f"--older-than must be a number of days >= 0, got {older_than_days!r}")
    try:
        before = store.now() - timedelta(days=older_than_days)
    except OverflowError:  # further back than any date: no run finished then
        before = datetime(1000, 1, 1, tzinfo=timezone.utc)  # the earliest every backend stores
    if dry_run:
        with db.transaction(write=False) as s:
            return store.count_old_finished_runs(s.connection(), before)
    runs = tracks = 0
    while True:
        with _write(db) as s:
            conn = s.connection()
            candidates = store.old_finished_runs(conn, before, batch)
            ids, n = store.delete_runs(conn, candidates, before)  # a run retried meanwhile is kept
        runs, tracks = runs + len(ids), tracks + n
        if ids and on_batch is not None:
            on_batch(ids)
        if len(candidates) < batch:
            with _write(db) as s:
                _audit(s, "prune", "runs", f"older than {older_than_days:g} days: {runs} run(s), {tracks} track(s)")
            return runs, tracks


def ping(db: Database) -> None:
    """Ask the database to answer (the schema checked on first use): DatabaseError if it does not."""
    with db.connection(write=False) as conn:
        store.ping(conn)


def list_audit(db: Database, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
    """A page of the audit log, newest first: who did what, to what, when."""
    with db.transaction(write=False) as s:
        return [AuditEntry(a.id, a.at, a.actor, a.action, a.target, a.detail)
                for a in store.list_audit(s, limit=limit, offset=offset)]


def figures(db: Database) -> Figures:
    """What monitoring reads, in one read-only transaction: runs by state, the running runs'
    tracks by state, the pools and the live workers."""
    with db.transaction(write=False) as s:
        usage = store.pool_usage(s)
        return Figures(runs=store.runs_by_state(s), tracks=store.running_tracks_by_state(s),
                       pools=[_pool_info(p, usage.get(p.name, {})) for p in store.list_pools(s)],
                       workers=[_worker_info(w, n) for w, n in recovery.live_workers(s)], at=store.now())
