"""Running a started run in this process, and the names the engine had before it was split by
duty (``worker``: the loop; ``plans``: runs in memory; ``claims``: what to claim; ``leases``:
heartbeat, sweep, self-fencing; ``lifecycle``: transitions; ``executors``: processes;
``retrying``: transactions that wait out faults). Code written against ``runner`` keeps working."""
from __future__ import annotations

from collections.abc import Callable

from pipeline_engine import store
from pipeline_engine.db import Database
from pipeline_engine.events import Event
from pipeline_engine.leases import FENCE_MARGIN_MIN, FENCE_MARGIN_SHARE, default_fence_margin
from pipeline_engine.views import RunStart
from pipeline_engine.worker import (DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_LEASE, DEFAULT_POLL, Worker,
                                    check_log_dir, longest_log_dir, worker_name)

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_GRACE", "DEFAULT_LEASE", "DEFAULT_POLL", "Engine", "Event",
           "FENCE_MARGIN_MIN", "FENCE_MARGIN_SHARE", "Worker", "check_log_dir", "default_fence_margin",
           "longest_log_dir", "run_pipeline", "worker_name"]

#: the name the worker had, for code written against it
Engine = Worker


def run_pipeline(db: Database, run: RunStart, *, workers: int | None = None, log_dir: str | None = None,
                 on_event: Callable[[Event], None] | None = None, **kwargs) -> str:
    """Execute a started run to its end in this process, as the worker it names its owner (a
    new one if none); returns its final state."""
    if kwargs.get("name") is None:
        with db.transaction(write=False) as s:
            kwargs["name"] = store.pipeline_owner(s, run.id)
    worker = Worker(db, concurrency=workers, log_dir=log_dir, on_event=on_event, **kwargs)
    worker.adopt(run)
    return worker.run(run.id)
