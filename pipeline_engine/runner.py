"""Run one pipeline in this process.

Worker threads only run processes; the dispatcher (the calling thread) alone talks to the
database, on one connection. Each time attempts end it writes them all, releases their
successors and claims the next tracks in one transaction, and hands tracks to the threads only
after it has committed: every state change is in the database before anything depends on it.

So that a thread never idles while the dispatcher's transaction is in flight, the dispatcher
keeps up to ``workers`` tracks claimed ahead in a queue: a thread that finishes a process starts
the next claimed one at once. A queued track is ``running`` in the database (claimed by this
runner) a moment before its process starts; its ``started_at`` is rewritten with the real start
when its attempt is recorded.
"""
from __future__ import annotations

import os
import queue
import socket
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from pipeline_engine import dag, executor, store
from pipeline_engine.db import Database
from pipeline_engine.service import RunStart
from pipeline_engine.states import TrackState as T

#: threads per run when none is asked for
DEFAULT_WORKERS = 4
#: claimed tracks queued per thread, so a thread that finishes starts the next at once
_QUEUED = 2
#: seconds the dispatcher waits for more ended attempts while threads still have work queued
_COALESCE = 0.002


@dataclass(frozen=True)
class Event:
    """A change the runner made, for progress displays: a track ``started`` an attempt or
    ``ended`` one in ``state`` (pending again when a retry follows), became ``ready`` (its
    predecessors all succeeded) or was ``skipped`` (upstream_failed). Delivered from the runner's
    threads: a listener must be thread-safe and quick."""
    kind: str
    vertex: str
    state: str
    attempt: int
    duration: float | None = None
    error: str | None = None


@dataclass
class _Job:
    track_id: int
    vertex: str
    timeout: float | None
    max_attempts: int
    successors: list[int]


class _Ended(NamedTuple):
    track_id: int
    attempt: int
    outcome: executor.Outcome
    started_at: datetime
    finished_at: datetime


def worker_name() -> str:
    """This process's identity in the database: host, pid and a random suffix (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner:
    def __init__(self, db: Database, run: RunStart, *, workers: int | None = None,
                 output_cap: int = executor.DEFAULT_OUTPUT_CAP, log_dir: str | None = None,
                 on_event: Callable[[Event], None] | None = None):
        self.db, self.run = db, run
        self.workers = workers or DEFAULT_WORKERS
        self.output_cap = output_cap
        self.log_dir = log_dir
        self.on_event = on_event
        self.name = worker_name()
        with db.transaction(write=False) as s:
            rows = store.run_tracks(s, run.id)
            edges = store.edge_names(s, rows[0][1].graph_id) if rows else []
        by_name = {v.name: t.id for t, v in rows}
        succs = dag.adjacency(list(by_name), edges)
        # Successors by track id; descendants are walked only when a track fails for good.
        self.succs = {by_name[v]: [by_name[h] for h in heads] for v, heads in succs.items()}
        self.jobs = {t.id: _Job(t.id, v.name, v.timeout, t.max_attempts, self.succs[t.id]) for t, v in rows}
        self.initial = [t.id for t, _ in rows if t.state == T.PENDING]
        self.attempts = {t.id: t.attempt for t, _ in rows}

    def execute(self) -> str:
        """Run until nothing is left to run; returns the pipeline's final state."""
        ready = deque(self.initial)
        inbox: queue.SimpleQueue = queue.SimpleQueue()   # claimed tracks, to the threads
        outbox: queue.SimpleQueue = queue.SimpleQueue()  # ended attempts, to the dispatcher
        threads = [threading.Thread(target=self._work, args=(inbox, outbox), daemon=True,
                                    name=f"run{self.run.id}-{i}") for i in range(self.workers)]
        for thread in threads:
            thread.start()
        in_flight = 0  # claimed, not yet ended
        try:
            with self.db.connection() as conn:
                ended: list[_Ended] = []
                while True:
                    in_flight -= len(ended)
                    with conn.begin():
                        events = self._record(conn, ended, ready)
                        want = min((1 + _QUEUED) * self.workers - in_flight, len(ready))
                        claimed = store.claim_tracks(conn, [ready.popleft() for _ in range(want)], self.name,
                                                     self.attempts)
                    in_flight += len(claimed)
                    self._emit(events)  # before the threads can report the claimed tracks' starts
                    for job in claimed:
                        inbox.put(job)
                    if not in_flight:
                        break
                    ended = self._collect(outbox, inbox)
        finally:
            for _ in threads:
                inbox.put(None)
            for thread in threads:
                thread.join()
        return self._finish()

    def _collect(self, outbox: queue.SimpleQueue, inbox: queue.SimpleQueue) -> list[_Ended]:
        """Wait for attempts to end. Take every one that has ended meanwhile (one transaction
        records them all); while the threads still have claimed tracks queued, nothing waits
        on the dispatcher, so wait a moment longer for up to ``workers`` of them."""
        ended = [outbox.get()]
        while True:
            try:
                ended.append(outbox.get_nowait())
                continue
            except queue.Empty:
                pass
            if len(ended) >= _QUEUED * self.workers or inbox.qsize() == 0:
                return ended
            try:
                ended.append(outbox.get(timeout=_COALESCE))
            except queue.Empty:
                return ended

    def _work(self, inbox: queue.SimpleQueue, outbox: queue.SimpleQueue) -> None:
        """A worker thread: run claimed tracks until told to stop. No database here."""
        while (job := inbox.get()) is not None:
            track_id, attempt = job
            vertex = self.jobs[track_id].vertex
            self._emit([Event("started", vertex, T.RUNNING, attempt)])
            started_at = store.now()
            outcome = self._attempt(track_id, attempt)
            outbox.put(_Ended(track_id, attempt, outcome, started_at, store.now()))

    def _attempt(self, track_id: int, attempt: int) -> executor.Outcome:
        job = self.jobs[track_id]
        rendered = self.run.rendered[job.vertex]
        log_path = None
        if self.log_dir is not None:
            log_path = os.path.join(self.log_dir, f"run-{self.run.id}", f"{job.vertex}.log")
        try:
            return executor.run_script(rendered.script, rendered.env, timeout=job.timeout,
                                       secrets=self.run.secrets, output_cap=self.output_cap,
                                       log_path=log_path, log_header=f"attempt {attempt}")
        except Exception as exc:  # noqa: BLE001 -- a bug here must fail the track, not leave it running
            return executor.Outcome(None, False, "", "", 0.0, error=f"engine error: {exc!r}")

    def _record(self, conn, ended: list[_Ended], ready: deque) -> list[Event]:
        """Write ended attempts; successors of those that succeeded are counted, retries go
        back to pending, and a final failure marks its descendants. Returns the events."""
        released: Counter[int] = Counter()
        events = []
        for track_id, attempt, outcome, started_at, finished_at in ended:
            job = self.jobs[track_id]
            if outcome.ok:
                target = T.SUCCEEDED
            elif attempt < job.max_attempts:
                target = T.PENDING
            else:
                target = T.FAILED
            if not store.record_attempt(conn, track_id, attempt, target, started_at=started_at, finished_at=finished_at,
                                        exit_code=outcome.exit_code, error=outcome.error, stdout=outcome.stdout,
                                        stderr=outcome.stderr, log_path=outcome.log_path):
                continue  # no longer ours (cancelled, or taken over): its result does not count
            events.append(Event("ended", job.vertex, target, attempt, outcome.duration, outcome.error))
            if target == T.SUCCEEDED:
                released.update(job.successors)
            elif target == T.PENDING:
                ready.append(track_id)
            else:
                below = sorted(dag.descendants([track_id], self.succs))
                store.mark_upstream_failed(conn, below)
                events += [Event("skipped", self.jobs[t].vertex, T.UPSTREAM_FAILED, self.attempts[t]) for t in below]
        now_ready = store.release_successors(conn, released)
        ready.extend(now_ready)
        return events + [Event("ready", self.jobs[t].vertex, T.PENDING, self.attempts[t]) for t in now_ready]

    def _emit(self, events: list[Event]) -> None:
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    def _finish(self) -> str:
        with self.db.transaction() as s:
            counts = store.state_counts(s, self.run.id)
            state = "succeeded" if set(counts) <= {T.SUCCEEDED.value} else "failed"
            store.finish_pipeline(s, self.run.id, state)
            return state


def run_pipeline(db: Database, run: RunStart, *, workers: int | None = None, log_dir: str | None = None,
                 on_event: Callable[[Event], None] | None = None) -> str:
    """Execute a started run to its end in this process; returns its final state."""
    return Runner(db, run, workers=workers, log_dir=log_dir, on_event=on_event).execute()
