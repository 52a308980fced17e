"""Attempts as processes of this host, on ``concurrency`` threads (today's engine).

Each thread takes the best submitted attempt, runs its script in a new process group
(``executor.run_script``) and delivers its end. The threads never touch the database. So that a
thread never idles while the dispatcher's transaction is in flight, the worker keeps attempts
submitted ahead: a thread that finishes one starts the next at once, highest priority first,
except when the end it just delivered may release a successor that outranks every attempt
waiting: then it waits for ``recorded`` (or a second) before it takes the next."""
from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone

from pipeline_engine import executor
from pipeline_engine.errors import PipelineEngineError
from pipeline_engine.executor import Outcome
from pipeline_engine.executors.base import Attempt, Ended

log = logging.getLogger("pipeline_engine.executors.local")

#: how long a thread waits to see what its end released before it takes the next attempt
_HOLD = 1.0


class LocalExecutor:
    """Runs attempts on ``concurrency`` threads; see the module's docstring. ``cut_off`` tells
    whether the worker may have lost its lease (then nothing starts); ``on_start`` is called
    in the thread just before an attempt's process starts."""

    def __init__(self, concurrency: int, *, db_key: str, name: str = "worker",
                 output_cap: int = executor.DEFAULT_OUTPUT_CAP,
                 cut_off: Callable[[], bool] = lambda: False,
                 on_start: Callable[[Attempt], None] = lambda attempt: None):
        self.concurrency, self.db_key, self.name, self.output_cap = concurrency, db_key, name, output_cap
        self._cut_off, self._on_start = cut_off, on_start
        self._deliver: Callable[[Ended], None] | None = None
        self._threads: list[threading.Thread] = []
        self._inbox: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._procs: dict[int, int] = {}  # track id -> process group, while it runs
        self._running: dict[int, int] = {}  # track id -> attempt, while its process runs
        # attempts no longer the worker's (track id -> attempt): not started, killed if started.
        # By attempt: the same track may come back (a retry, a take-back) and must run then
        self._revoked: dict[int, int] = {}
        self._fenced: dict[int, int] = {}  # attempts killed or not started while cut off
        self._interrupted: dict[int, int] = {}  # attempts terminated because the worker stops
        self._abandoned = False
        self._draining = False  # a stop: threads hold for nothing
        self._round = threading.Condition()
        self._awaiting: set[int] = set()  # tracks whose threads wait for their end to be written
        self._recorded: set[int] = set()  # of those, the ones the dispatcher has written
        self._leftovers: queue.SimpleQueue = queue.SimpleQueue()  # markers of attempts to look for

    # --- the contract (executors.base.Executor) ----------------------------------------------

    def start(self, deliver: Callable[[Ended], None]) -> None:
        self._deliver = deliver
        self._draining = False
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"{self.name}-{i}")
                         for i in range(self.concurrency)]
        for thread in self._threads:
            thread.start()

    def submit(self, attempts: Iterable[Attempt]) -> None:
        for a in attempts:
            self._inbox.put((-a.priority, next(self._seq), a))

    def queued(self) -> int:
        return self._inbox.qsize()

    def recorded(self, track_ids: Iterable[int]) -> None:
        if self._awaiting:
            with self._round:
                self._recorded.update(t for t in track_ids if t in self._awaiting)
                self._round.notify_all()

    def revoke(self, attempts: Mapping[int, int], *, kill: bool) -> None:
        with self._lock:
            self._revoked.update(attempts)
            groups = [self._procs[t] for t in attempts if t in self._procs]
        for pgid in groups:
            if kill:
                _kill_now(pgid)
            else:
                self._end_gently(pgid, executor.DEFAULT_KILL_GRACE)

    def fence(self, announce: Callable[[int], None] | None = None) -> int:
        with self._lock:
            victims = {t: a for t, a in self._running.items() if self._fenced.get(t) != a}
            self._fenced.update(victims)
            groups = [self._procs[t] for t in victims if t in self._procs]
        if victims and announce is not None:
            announce(len(victims))
        for pgid in groups:
            _kill_now(pgid)
        if victims:
            executor.kill_marked(executor.marker(self.db_key, t, a) for t, a in victims.items())
        return len(victims)

    def withdraw(self) -> list[tuple[int, int]]:
        with self._round:
            self._draining = True
            self._round.notify_all()
        taken, keep = [], []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            (keep if item[2] is None else taken).append(item)
        for item in keep:  # the threads' ends stay
            self._inbox.put(item)
        return [(a.track_id, a.attempt) for _, _, a in taken]

    def interrupt(self, grace: float) -> None:
        with self._lock:
            victims = {t: g for t, g in self._procs.items() if t not in self._interrupted}
            self._interrupted.update({t: self._running[t] for t in victims if t in self._running})
        for pgid in victims.values():
            self._end_gently(pgid, grace)

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            groups = list(self._procs.values())
        for pgid in groups:
            self._end_gently(pgid, 2.0)

    def kill_leftovers(self, attempts: Iterable[tuple[int, int]]) -> int:
        return kill_leftovers(self.db_key, attempts)

    def sweep_leftovers(self) -> None:
        marks = []
        while True:
            try:
                marks.append(self._leftovers.get_nowait())
            except queue.Empty:
                break
        if marks and executor.kill_marked(marks):
            log.warning("%s: killed processes that finished attempts left running", self.name)

    def shutdown(self) -> None:
        with self._round:
            self._draining = True
            self._round.notify_all()
        for _ in self._threads:
            self._inbox.put((math.inf, next(self._seq), None))  # after any work left
        for thread in self._threads:
            thread.join()
        self._threads = []
        self.sweep_leftovers()

    # --- the threads ----------------------------------------------------------------------------

    def _work(self) -> None:
        """A thread: run submitted attempts until told to stop."""
        deliver = self._deliver
        while (a := self._inbox.get()[2]) is not None:
            started_at = _now()
            if self._lost(a.track_id, a.attempt):
                outcome = Outcome(None, False, "", "", 0.0, error="lost before it started")
            else:
                self._on_start(a)
                outcome = self._run(a)
            with self._lock:
                self._procs.pop(a.track_id, None)
                self._running.pop(a.track_id, None)
                if self._revoked.get(a.track_id) == a.attempt:
                    del self._revoked[a.track_id]  # that attempt is over: nothing more to stop
                fenced = self._fenced.get(a.track_id) == a.attempt
                if fenced:
                    del self._fenced[a.track_id]
                interrupted = self._interrupted.get(a.track_id) == a.attempt
                if interrupted:
                    del self._interrupted[a.track_id]
            # a successor may outrank every attempt waiting: let the dispatcher write this end and
            # claim what it released before this thread takes the next one
            hold = outcome.ok and self._may_release_better(a)
            if hold:
                with self._round:
                    self._awaiting.add(a.track_id)
            deliver(Ended(a.track_id, a.attempt, outcome, started_at, _now(), fenced, interrupted))
            if hold:
                with self._round:
                    self._round.wait_for(lambda: a.track_id in self._recorded or self._draining, timeout=_HOLD)
                    self._recorded.discard(a.track_id)
                    self._awaiting.discard(a.track_id)

    def _may_release_better(self, a: Attempt) -> bool:
        if a.successors_rank is None:
            return False
        with self._inbox.mutex:
            best = -self._inbox.queue[0][0] if self._inbox.queue else None
        return best is not None and a.successors_rank > best

    def _lost(self, track_id: int, attempt: int) -> bool:
        """Whether this attempt must not run: the results cannot be written, it is no longer the
        worker's, or the worker is cut off from the database (then the attempt is fenced)."""
        with self._lock:
            if self._cut_off():
                self._fenced[track_id] = attempt
            return self._abandoned or self._revoked.get(track_id) == attempt or self._fenced.get(track_id) == attempt

    def _run(self, a: Attempt) -> Outcome:
        def spawned(pgid: int) -> None:
            with self._lock:
                self._procs[a.track_id] = pgid
                self._running[a.track_id] = a.attempt
            if self._lost(a.track_id, a.attempt):  # lost while it was being spawned
                _kill_now(pgid)

        try:
            try:
                rendered = a.render()
            except PipelineEngineError as exc:
                return Outcome(None, False, "", "", 0.0, error=f"cannot render the script: {exc}")
            env = {**a.env, **rendered.env, executor.MARKER: executor.marker(self.db_key, a.track_id, a.attempt)}
            return executor.run_script(rendered.script, env, timeout=a.timeout, secrets=a.secrets, cwd=a.cwd,
                                       output_cap=self.output_cap, log_path=a.log_path,
                                       log_header=f"attempt {a.attempt}", log_fresh=a.attempt == 1,
                                       on_spawn=spawned, defer=self._leftovers.put)
        except Exception as exc:  # noqa: BLE001 -- a bug here must fail the track, not leave it running
            # the type and place only: an exception's text may carry a value (a secret) in clear
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("%s: engine error running %s: %s at %s:%d", self.name, a.vertex, type(exc).__name__,
                      os.path.basename(where.filename), where.lineno)
            return Outcome(None, False, "", "", 0.0, error=f"engine error: {type(exc).__name__} at"
                           f" {os.path.basename(where.filename)}:{where.lineno}")

    @staticmethod
    def _end_gently(pgid: int, grace: float) -> None:
        threading.Thread(target=executor.kill_group, args=(pgid, grace), daemon=True).start()


def kill_leftovers(db_key: str, attempts: Iterable[tuple[int, int]]) -> int:
    """Kill every process of this host that carries the marker of one of these attempts (track
    id, attempt) of database ``db_key``; returns how many there were."""
    return executor.kill_marked(executor.marker(db_key, t, a) for t, a in attempts)


def _now() -> datetime:  # the store's clock (``store.now``): times as the database keeps them
    return datetime.now(timezone.utc)


def _kill_now(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
