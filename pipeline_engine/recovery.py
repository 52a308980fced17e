"""Taking tracks back from workers that are gone: dead (their process is not there any more)
or silent past their lease. Database writes go through ``store``; the leftovers of a worker on
this host are killed first (``executor.kill_marked``), so that a track never runs twice at
once here."""
from __future__ import annotations

from sqlalchemy.engine import Connection

from pipeline_engine import executor, store
from pipeline_engine.settings import this_host


def dead_local_workers(conn: Connection, host: str | None = None) -> set[str]:
    """Workers registered from this host whose process is gone (killed, crashed): they are dead
    now, whatever their lease says. A pid reused by another process keeps its worker alive
    until its lease runs out."""
    return {name for name, pid in store.local_workers(conn, host or this_host()) if not executor.process_running(pid)}


def take_back(conn: Connection, db_key: str, rows, reason: str, host: str | None = None) -> set[int]:
    """Kill what is left of these running tracks on this host (when their worker ran here),
    then take them back in the database. Returns the pipelines touched."""
    here = host or this_host()
    hosts = store.worker_hosts(conn)
    executor.kill_marked(executor.marker(db_key, r.id, r.attempt) for r in rows if hosts.get(r.worker) == here)
    return store.take_back_tracks(conn, rows, reason)


def recover_expired(conn: Connection, db_key: str, exclude: str | None = None, host: str | None = None) -> int:
    """Take back the running tracks of workers that are dead or whose lease ran out (not
    ``exclude``'s own), and finish every running pipeline left with nothing to do (also one
    whose last tracks two workers recorded at once). Returns how many were taken back."""
    expired = [r for r in store.expired_tracks(conn, store.worker_leases(conn), store.DEFAULT_LEASE,
                                               dead_local_workers(conn, host))
               if r.worker != exclude]
    take_back(conn, db_key, expired, "its worker died or its lease expired", host)
    store.finish_done_pipelines(conn)
    return len(expired)


def live_workers(s):
    """Workers alive now (see ``store.live_workers``), minus the dead ones of this host."""
    dead = dead_local_workers(s.connection())
    return [(w, n) for w, n in store.live_workers(s, store.DEFAULT_LEASE) if w.name not in dead]


def take_back_from_dead(conn: Connection, db_key: str, pipeline_id: int, live: set[str]) -> None:
    """``resume``: take back at once the running tracks of a run whose workers are not alive."""
    rows = [r for r in store.running_tracks(conn, pipeline_id) if r.worker not in live]
    take_back(conn, db_key, rows, "its worker died; the run was resumed")
