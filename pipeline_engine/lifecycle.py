"""The one place where track and run transitions are composed: an attempt's end recorded, its
descendants failed, its successors released, the run finished, a run cancelled, a track handed
back or taken back. Each function works inside its caller's transaction (the store's writes
are compare-and-sets from the states the transition table in ``states.py`` allows) and returns
the events its changes make, for the caller to publish once the transaction has committed.

Every attempt that ends — recorded, cancelled while it ran, taken back — leaves one ``attempt``
row, written with its track's move; one handed back (its worker stopping, or fenced) is not
counted and leaves none (its number is used again)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from pipeline_engine import dag, spec, store
from pipeline_engine.events import Event
from pipeline_engine.executors.base import Attempt, Ended
from pipeline_engine.plans import Plans
from pipeline_engine.states import AttemptOutcome as A
from pipeline_engine.states import PipelineState as P
from pipeline_engine.states import TrackState as T

#: kills what is left on this host of attempts (track id, attempt) before their tracks are taken back
Kill = Callable[[list[tuple[int, int]]], object]

#: why a fenced attempt's track went back to pending (its error, and its "ended" event's)
FENCED = "stopped: its worker could not renew its lease in time (the database did not answer); it runs again"
INTERRUPTED = "interrupted: its worker stopped"


@dataclass
class Recorded:
    """What recording a batch of ends did."""
    events: list[Event] = field(default_factory=list)
    #: tracks that became pending and are due now (retries, released successors, handed back)
    ready: list[int] = field(default_factory=list)
    #: pipelines where a track finished (they may be finished now)
    touched: set[int] = field(default_factory=set)
    #: retries that wait: track id -> the time before which it is not claimed
    later: dict[int, datetime] = field(default_factory=dict)
    #: fenced attempts handed back: track id -> its attempts so far now
    handed: dict[int, int] = field(default_factory=dict)
    #: ends not recorded: their tracks were no longer this worker's (cancelled, taken back)
    lost: list[int] = field(default_factory=list)
    #: fenced attempts whose tracks another worker took meanwhile
    fenced_lost: list[int] = field(default_factory=list)


def started(a: Attempt) -> Event:
    """An attempt's process is about to start."""
    return Event("started", a.vertex, T.RUNNING, a.attempt, run=a.run)


def record(conn: Connection, worker: str, ended: Sequence[Ended], plans: Plans, *, careful: bool = False) -> Recorded:
    """Write ended attempts: success releases successors, a failure with attempts left goes back
    to pending (not claimed before its ``retry_delay`` has passed), a final failure marks its
    descendants ``upstream_failed``. An interrupted or fenced attempt is not recorded: its track
    is handed back, if still this worker's. An end whose track is no longer this worker's
    (cancelled, taken back) does not count; the worker lets go of it. Each end written leaves
    its attempt's row (one statement for the batch)."""
    out = Recorded()
    released: Counter[int] = Counter()
    ends = []
    for e in ended:
        job = plans.jobs[e.track_id]
        if e.interrupted:
            store.hand_back(conn, worker, e.track_id, e.attempt, INTERRUPTED)
            out.events.append(Event("ended", job.vertex, T.PENDING, e.attempt, e.outcome.duration, "interrupted",
                                    job.pipeline_id))
            continue
        if e.fenced:
            if store.hand_back(conn, worker, e.track_id, e.attempt, FENCED):
                out.handed[e.track_id] = e.attempt - 1
                out.ready.append(e.track_id)
                out.events.append(Event("ended", job.vertex, T.PENDING, e.attempt, e.outcome.duration, FENCED,
                                        job.pipeline_id))
            else:
                out.fenced_lost.append(e.track_id)  # taken back (or cancelled): the taker runs it
            continue
        outcome = e.outcome
        if outcome.ok:
            target = T.SUCCEEDED
        elif e.attempt < job.max_attempts:
            target = T.PENDING
        else:
            target = T.FAILED
        wait = spec.retry_wait(job.retry_delay, job.retry_backoff, e.attempt) if target == T.PENDING else 0.0
        ends.append({"track_id": e.track_id, "attempt": e.attempt, "target": target, "outcome": ended_as(outcome),
                     "started_at": e.started_at,
                     "finished_at": e.finished_at, "exit_code": outcome.exit_code, "error": outcome.error,
                     "stdout": outcome.stdout, "stderr": outcome.stderr, "log_path": outcome.log_path,
                     "duration": outcome.duration,
                     "not_before": e.finished_at + timedelta(seconds=wait) if wait > 0 else None})
    written = store.record_attempts(conn, ends, careful=careful)
    store.add_attempts(conn, [{**end, "worker": worker} for end in ends if end["track_id"] in written],
                       careful=careful)
    for end in ends:
        track_id, attempt, target = end["track_id"], end["attempt"], end["target"]
        job = plans.jobs[track_id]
        if track_id not in written:
            out.lost.append(track_id)
            continue
        wait = (end["not_before"] - end["finished_at"]).total_seconds() if end["not_before"] else None
        out.events.append(Event("ended", job.vertex, target, attempt, end["duration"], end["error"],
                                job.pipeline_id, wait))
        if target == T.SUCCEEDED:
            released.update(job.successors)
            out.touched.add(job.pipeline_id)
        elif target == T.PENDING and end["not_before"] is not None:
            out.later[track_id] = end["not_before"]
        elif target == T.PENDING:
            out.ready.append(track_id)
        else:
            out.touched.add(job.pipeline_id)
            below = sorted(dag.descendants([track_id], plans.plans[job.pipeline_id].succs))
            out.events += fail_descendants(conn, below, plans)
    if out.lost or out.fenced_lost:
        store.release_worker(conn, worker, out.lost + out.fenced_lost)
    now_ready = store.release_successors(conn, released)
    out.events += [Event("ready", plans.jobs[t].vertex, T.PENDING, plans.attempts[t], run=plans.jobs[t].pipeline_id)
                   for t in now_ready]
    out.ready += now_ready
    return out


def ended_as(outcome) -> A:
    """The outcome word of an attempt whose process ended so (an executor's ``Outcome``)."""
    return A.SUCCEEDED if outcome.ok else A.TIMED_OUT if outcome.timed_out else A.FAILED


def fail_descendants(conn: Connection, track_ids: Sequence[int], plans: Plans | None = None) -> list[Event]:
    """These waiting tracks will never run: ``upstream_failed``."""
    store.mark_upstream_failed(conn, track_ids)
    if plans is None:
        return []
    return [Event("skipped", plans.jobs[t].vertex, T.UPSTREAM_FAILED, plans.attempts[t],
                  run=plans.jobs[t].pipeline_id) for t in track_ids]


def finish(conn: Connection, pipeline_id: int) -> Event | None:
    """Finish the run if none of its tracks is unfinished: ``succeeded`` when all succeeded,
    else ``failed``. Returns its ``finished`` event, or None when it goes on."""
    state = store.finish_if_done(conn, pipeline_id)
    return None if state is None else Event("finished", "", state, 0, run=pipeline_id)


def finish_done(conn: Connection) -> list[Event]:
    """Finish every running run left with no unfinished track (see ``store.done_pipelines``)."""
    return [e for e in map(lambda p: finish(conn, p), store.done_pipelines(conn)) if e is not None]


def cancel(s: Session, pipeline_id: int) -> Event | None:
    """The run and its unfinished tracks become ``cancelled``; running tracks keep their worker,
    which ends their processes at its next heartbeat and then lets go of them. Returns the
    run's ``finished`` event, or None when it was no longer running (then the caller rolls back:
    the tracks' writes must not stand)."""
    if not store.cancel_pipeline(s, pipeline_id):
        return None
    return Event("finished", "", P.CANCELLED, 0, run=pipeline_id)


def hand_back(conn: Connection, worker: str, attempts: Iterable[tuple[int, int]], why: str) -> None:
    """Tracks ``worker`` claimed and will not finish: pending again, the attempts not counted."""
    for track_id, attempt in attempts:
        store.hand_back(conn, worker, track_id, attempt, why)


def hand_back_unheld(conn: Connection, worker: str, held: Iterable[int]) -> int:
    """After a database fault: tracks the database says ``worker`` runs but it does not (claimed
    by a commit whose acknowledgement was lost) go back to pending, the attempts not counted."""
    return store.hand_back_unheld(conn, worker, held)


def retry(s: Session, pipeline_id: int, state: str, owner: str | None) -> list[str] | None:
    """A finished run (``state``: failed or cancelled) runs again: its failed, upstream_failed
    and cancelled tracks start anew (pending or waiting, a new attempt each and their retries
    anew), the run is ``running``, ``owner``'s (None: the workers'). Returns the vertices that
    run again, or None when the run is no longer in ``state`` (nothing is changed then: the
    caller rolls back)."""
    again = store.reset_unsucceeded(s, pipeline_id)
    return again if store.restart_pipeline(s, pipeline_id, state, owner) else None


def take_back(conn: Connection, rows: Sequence, reason: str, *, host: str | None = None,
              kill: Kill | None = None) -> set[int]:
    """Take back running tracks (rows with id, pipeline_id, worker, attempt, max_attempts,
    heartbeat_at, started_at) whose worker is gone: pending for another attempt while retries
    remain, else failed, with their descendants ``upstream_failed``; each attempt taken back ends
    ``lost`` now. First, with ``kill``, what is left of
    those whose worker ran on ``host`` (this host) is killed, so that a track never runs twice
    at once here. Returns the pipelines touched."""
    if kill is not None and host is not None and rows:
        hosts = store.worker_hosts(conn)
        here = [(r.id, r.attempt) for r in rows if hosts.get(r.worker) == host]
        if here:
            kill(here)
    touched = set()
    stamp = store.now()
    lost = []
    for r in rows:
        target = T.PENDING if r.attempt < r.max_attempts else T.FAILED
        if store.take_back(conn, r.id, r.worker, r.attempt, target, reason, r.heartbeat_at, at=stamp):
            touched.add(r.pipeline_id)
            lost.append({"track_id": r.id, "attempt": r.attempt, "worker": r.worker,
                         "started_at": r.started_at or stamp, "finished_at": stamp, "outcome": A.LOST,
                         "exit_code": None, "error": reason})
            if target == T.FAILED:
                fail_descendants(conn, store.descendant_tracks(conn, r.pipeline_id, [r.id]))
    store.add_attempts(conn, lost)
    return touched
