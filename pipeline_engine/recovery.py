"""Finding the workers that are gone — dead (their process is not there any more) or silent
past their lease — and taking their tracks back (``lifecycle.take_back``). What is left of
their attempts on this host is killed first by the ``kill`` the caller passes: an executor's
(``executors.local.LocalExecutor.kill_leftovers``); without one, nothing is killed."""
from __future__ import annotations

from sqlalchemy.engine import Connection

from pipeline_engine import executor, lifecycle, store
from pipeline_engine.settings import this_host


def dead_local_workers(conn: Connection, host: str | None = None) -> set[str]:
    """Workers registered from this host whose process is gone (killed, crashed): they are dead
    now, whatever their lease says. A pid reused by another process keeps its worker alive
    until its lease runs out."""
    return {name for name, pid in store.local_workers(conn, host or this_host()) if not executor.process_running(pid)}


def recover_expired(conn: Connection, *, kill: lifecycle.Kill | None = None, exclude: str | None = None,
                    host: str | None = None) -> int:
    """Take back the running tracks of workers that are dead or whose lease ran out (not
    ``exclude``'s own), and finish every running pipeline left with nothing to do (also one
    whose last tracks two workers recorded at once). Returns how many were taken back."""
    here = host or this_host()
    expired = [r for r in store.expired_tracks(conn, store.worker_leases(conn), store.DEFAULT_LEASE,
                                               dead_local_workers(conn, here))
               if r.worker != exclude]
    lifecycle.take_back(conn, expired, "its worker died or its lease expired", host=here, kill=kill)
    lifecycle.finish_done(conn)
    return len(expired)


def live_workers(s):
    """Workers alive now (see ``store.live_workers``), minus the dead ones of this host."""
    dead = dead_local_workers(s.connection())
    return [(w, n) for w, n in store.live_workers(s, store.DEFAULT_LEASE) if w.name not in dead]


def take_back_from_dead(conn: Connection, pipeline_id: int, live: set[str]) -> list[tuple[int, int]]:
    """``resume``: take back at once the running tracks of a run whose workers are not alive.
    Returns the attempts (track id, attempt) whose worker ran on this host: what is left of them
    must be killed (by the resuming worker's executor) before the run's tracks are claimed."""
    rows = [r for r in store.running_tracks(conn, pipeline_id) if r.worker not in live]
    hosts, here = store.worker_hosts(conn), this_host()
    lifecycle.take_back(conn, rows, "its worker died; the run was resumed")
    return [(r.id, r.attempt) for r in rows if hosts.get(r.worker) == here]
