"""The worker: it executes tracks, those of one run it owns (``run``, ``resume``, ``retry``) or
of any run nobody owns (``pipeline-engine worker``). Several workers share one database.

Its loop is one round after another, on the dispatcher (the calling thread), which alone talks
to the database, on one connection (``retrying.Transactor``): each round writes the attempts
that ended (``lifecycle.record``: successors released, descendants failed, runs finished) and
claims the next tracks (``claims.choose``) in one transaction, and submits the claimed attempts
to the executor (``executors.local``: threads and processes) only after it has committed, so
every state change is in the database before anything depends on it. ``plans`` keeps what the
worker knows of its runs and their ready queues; ``leases`` the heartbeat, the sweep and
self-fencing.

So that a thread never idles while the dispatcher's transaction is in flight, the dispatcher
keeps up to two attempts per thread submitted ahead: a thread that finishes one starts the next
at once. A queued track is ``running`` in the database (claimed by this worker) a moment before
its process starts; its ``started_at`` is rewritten with the real start when its attempt is
recorded.

Claims. A claim is a compare-and-set (``pending`` -> ``running``, checked by row count) after
``SELECT ... FOR UPDATE SKIP LOCKED`` where the backend has it; SQLite's write lock serialises.
A database fault is retried with backoff on a new connection while the processes run on;
results are written once it is back, and every write is a compare-and-set, so none is written
twice.

Concurrency pools. A track of a vertex that names a pool is claimed only in a transaction that
has locked the pool's row and counted its running tracks (``store.pool_room``), so no more than
its size run at once across every worker and run; pool rows are locked first in a transaction,
in name order, before any track row, so workers never deadlock over them. Such a track is claimed
only for a thread that is idle now, and nothing ranked below a track waiting for a full pool is
queued ahead (``claims``). A worker whose pooled track ends (its thread now idle) looks, in the
transaction that records it, for a pending track of that pool and claims it: a freed slot is
taken at once. Tracks of a pool found full wait aside; they are tried again when this worker
frees a slot of their pool and at each look (``poll``), the way a slot freed by a busy worker of
another process reaches them. On MariaDB the worker's connection reads committed rows, so the
count after the lock sees every claim committed before it.

Retries that wait. A failed attempt of a vertex with a ``retry_delay`` is recorded ``pending`` with
the time before which no claim may take it (``track.not_before``; looks and claims skip it until
then). It holds no thread and no pool slot meanwhile: the worker that recorded it keeps it aside in
memory and wakes when its time comes (any worker's look finds it from then on); a cancel meanwhile
just cancels a pending track.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections import ChainMap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from pipeline_engine import claims, executor, lifecycle, settings, store
from pipeline_engine.db import Database
from pipeline_engine.errors import DatabaseError, DatabaseUnusableError, SettingError
from pipeline_engine.events import Bus, Event
from pipeline_engine.executors.base import Ended, Executor
from pipeline_engine.executors.local import LocalExecutor
from pipeline_engine.leases import Lease, default_fence_margin, sweep_every
from pipeline_engine.logfiles import log_path
from pipeline_engine.models import NAME_LENGTH, storable
from pipeline_engine.plans import Plan, Plans
from pipeline_engine.retrying import GaveUp, Transactor
from pipeline_engine.settings import this_host
from pipeline_engine.views import RunStart

log = logging.getLogger("pipeline_engine.worker")

__all__ = ["Worker", "check_log_dir", "default_fence_margin", "longest_log_dir", "worker_name"]

#: threads per worker when none is asked for
DEFAULT_CONCURRENCY = settings.DEFAULT_CONCURRENCY
DEFAULT_LEASE = store.DEFAULT_LEASE
#: seconds running tracks get to finish when a worker is asked to stop, before it terminates them
DEFAULT_GRACE = settings.DEFAULT_GRACE
#: seconds between looks for new work in the database when the worker has nothing queued
DEFAULT_POLL = settings.DEFAULT_POLL
#: claimed tracks queued per thread, so a thread that finishes starts the next at once
_QUEUED = 2
#: seconds the dispatcher waits for more ended attempts while threads still have work queued
_COALESCE = 0.002
#: pending tracks a look in the database remembers beyond those it can claim at once
_LOOK_AHEAD = 256
#: a worker's transactions last milliseconds; the server ends one left idle this long at least
_MIN_IDLE_LIMIT = 5.0
#: seconds a stopping worker's terminated attempts get between SIGTERM and SIGKILL
_STOP_KILL_GRACE = 2.0
_WAKE = object()  # put in the outbox to wake the dispatcher (a stop was asked)


@dataclass
class _Found:
    """What a batch learnt besides its claims: tracks known pending but not claimed (``rest``:
    back to the ready queue; ``aside``: their pool is full), the pipeline, pool and priority of
    those a look found, whether to look again at once, the retries that wait (``later``:
    track id -> the time before which it is not claimed), and the fenced attempts handed back."""
    rest: list[int]
    origin: dict[int, int]
    more: bool
    aside: list[int]
    pools: dict[int, str]
    prios: dict[int, float]
    later: dict[int, datetime] = dataclasses.field(default_factory=dict)
    #: fenced attempts this batch handed back: track id -> its attempts so far now
    handed: dict[int, int] = dataclasses.field(default_factory=dict)


def longest_log_dir() -> int:
    """The longest logs directory (absolute, in characters) whose log paths all fit in the
    database: run ids of up to 19 digits, vertex names of up to NAME_LENGTH characters."""
    return store.LOG_PATH_LENGTH - len(log_path("/", 10 ** 18, "v" * NAME_LENGTH)) + 1


def check_log_dir(log_dir: str) -> str:
    """``log_dir`` if every log path under it can be recorded, else SettingError (before anything
    runs: a path the database refuses would be found only when a track ends)."""
    path = os.path.abspath(log_dir)
    short = path if len(path) <= 60 else f"{path[:40]}...{path[-17:]}"
    if storable(path) != path:
        raise SettingError(f"logs directory {short!r} (PIPELINE_ENGINE_LOGS) is not valid UTF-8:"
                           " the database could not record its log paths")
    if len(path) > longest_log_dir():
        raise SettingError(f"logs directory {short} (PIPELINE_ENGINE_LOGS) is {len(path)} characters long:"
                           f" log paths under it would not fit the {store.LOG_PATH_LENGTH} characters the"
                           f" database keeps; use a directory of at most {longest_log_dir()} characters")
    return log_dir


def worker_name() -> str:
    """This process's identity in the database: host, pid and a random suffix (pids repeat)."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """A worker: the process side of the engine (``pipeline-engine worker``, and ``run``,
    ``retry``, ``resume`` for the run they own). One dispatcher thread owns its database
    connection; ``concurrency`` threads run the attempts' processes (``workers`` is the same,
    under the name ``run --workers`` gives it)."""

    def __init__(self, db: Database, *, concurrency: int | None = None, workers: int | None = None,
                 name: str | None = None,
                 lease: float = DEFAULT_LEASE, grace: float = DEFAULT_GRACE, poll: float = DEFAULT_POLL,
                 output_cap: int = executor.DEFAULT_OUTPUT_CAP, log_dir: str | None = None,
                 on_event: Callable[[Event], None] | None = None, host: str | None = None,
                 on_stop: Callable[[str], None] | None = None, fence_margin: float | None = None):
        executor.check_bash()  # before anything runs: the scripts' bash must read them as shell.py does
        self.db = db
        self.host = host or this_host()
        self.concurrency = concurrency or workers or DEFAULT_CONCURRENCY
        self.name = name or worker_name()
        self.grace, self.poll = grace, poll
        self.log_dir = None if log_dir is None else check_log_dir(log_dir)
        self.on_stop = on_stop
        self.events = Bus(on_event)
        self.plans = Plans()
        self.stopping = threading.Event()  # stop claiming, let running tracks finish
        self._stop_deadline: float | None = None
        self._stop_now = False  # a stop without grace was asked
        self._told = 0  # what ``on_stop`` was told: 0 nothing, 1 the graceful stop, 2 the stop now
        self._careful = False  # record each end in its own savepoint (the database refused one)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # ends from the executor, and _WAKE
        #: seconds the database server lets this worker sit inside a transaction before it ends
        #: the session (a frozen worker's locks must not outlive its lease by much)
        idle_limit = min(max(lease / 3, _MIN_IDLE_LIMIT), 30.0)
        self.tx = Transactor(db, name=self.name, idle_limit=idle_limit, give_up=self._grace_over,
                             between=lambda: self.leases.beat_while_retrying())
        self.executor: Executor = LocalExecutor(
            self.concurrency, db_key=db.key, name=self.name, output_cap=output_cap,
            cut_off=lambda: self.leases.cut_off(),
            on_start=lambda a: self.events.emit([lifecycle.started(a)]))
        self.leases = Lease(self.name, db, self.tx, self.executor, lease=lease, fence_margin=fence_margin,
                            host=self.host)
        self._leftovers: list[tuple[int, int]] = []  # attempts of dead workers to kill before claiming
        self._handed_in: queue.SimpleQueue = queue.SimpleQueue()  # runs given to this worker while it serves
        #: told each batch transaction's seconds (``worker --metrics-port``), if set
        self.on_batch: Callable[[float], None] | None = None

    @property
    def lease(self) -> float:
        return self.leases.lease

    @property
    def fence_margin(self) -> float:
        return self.leases.fence_margin

    @property
    def fence_after(self) -> float:
        return self.leases.fence_after

    @property
    def heartbeat_every(self) -> float:
        return self.leases.heartbeat_every

    # --- what to run ---------------------------------------------------------------------------

    def adopt(self, run: RunStart, leftovers: Iterable[tuple[int, int]] = ()) -> None:
        """Run ``run``'s tracks with the scripts (and secrets) it holds in memory. ``leftovers``:
        attempts (track id, attempt) of dead workers of this host, taken back from them
        (``service.resume_run``), whose processes are killed before anything is claimed."""
        self._leftovers.extend(leftovers)
        self._load(run.id, run, owned=True)

    def hand_in(self, run: RunStart) -> None:
        """Run ``run`` (created for this worker: its owner is this worker's name) with the
        scripts and secrets it holds in memory, while this worker serves. Safe from any thread:
        the dispatcher takes it in before its next batch (``serve`` hands in the runs its API
        starts with secret inputs)."""
        self._handed_in.put(run)
        self._outbox.put(_WAKE)

    def _take_handed_in(self) -> None:
        while True:
            try:
                run = self._handed_in.get_nowait()
            except queue.Empty:
                return
            self._load(run.id, run, owned=True)

    def _load(self, pipeline_id: int, run: RunStart | None = None, owned: bool = False) -> Plan:
        """Read what running a pipeline's tracks needs: one light row per track and the edges."""
        with self.db.transaction(write=False) as s:
            rows = store.plan_rows(s, pipeline_id)
            origin = store.pipeline_graph(s, pipeline_id)
            edges = store.edge_names(s, origin.graph_id) if rows else []
        return self.plans.add(pipeline_id, rows, edges, run=run, owned=owned, stamp=store.now(),
                              graph=origin.name if origin else "", fire_at=origin.fire_at if origin else None)

    def _evict(self, in_flight: dict[int, int], keep: int | None = None) -> None:
        """Forget the runs that ended without this worker finishing them (another worker did,
        ``cancel``, the sweep), once none of their tracks is in flight here: a long-lived
        worker's memory holds the runs it serves, not every run it ever served."""
        idle = self.plans.idle(in_flight, keep)
        gone = set(self.plans.unrunnable)
        if idle or gone:
            running = self.tx.run(lambda c: store.running_pipelines(c, [*idle, *gone]))
            self.plans.unrunnable -= gone - running
            ended = [p for p in idle if p not in running]
            if ended:
                self.plans.forget_all(ended)

    # --- entry points --------------------------------------------------------------------------

    def run(self, run_id: int) -> str:
        """Execute the owned run ``run_id`` until it is finished; returns its final state, or
        ``running`` when this worker was stopped first (the run can be resumed)."""
        return self._serve(until=run_id)

    def serve(self) -> None:
        """Execute tracks of any run nobody owns, until ``stop``."""
        self._serve(until=None)

    def stop(self, now: bool = False) -> None:
        """Stop claiming; running tracks get ``grace`` seconds (none with ``now``), then they
        are terminated and handed back. Safe to call from a signal handler."""
        self.stopping.set()
        self._stop_now = self._stop_now or now
        deadline = time.monotonic() + (0.0 if now else self.grace)
        if self._stop_deadline is None or deadline < self._stop_deadline:
            self._stop_deadline = deadline
        self._outbox.put(_WAKE)  # SimpleQueue.put is reentrant: safe in a signal handler

    def install_signal_handlers(self) -> None:
        """SIGTERM and Ctrl-C stop gracefully; a second one stops at once."""
        def handler(signum, frame):
            self.stop(now=self.stopping.is_set())
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    # --- the loop --------------------------------------------------------------------------------

    def _serve(self, until: int | None) -> str:
        self.executor.start(self._outbox.put)
        in_flight: dict[int, int] = {}  # claimed track id -> attempt, until its end is recorded
        try:
            began = time.monotonic()
            self.tx.run(lambda c: store.register_worker(c, self.name, self.host, os.getpid(),
                                                        self.concurrency, self.lease))
            # it holds nothing yet: whatever it claims is renewed from now on
            self.leases.begin(began, in_flight)
            if self._leftovers:  # a resumed run's attempts of dead workers: gone before it runs again
                self.executor.kill_leftovers(self._leftovers)
                self._leftovers.clear()
            ended: list[Ended] = []
            next_beat = next_sweep = next_poll = next_recheck = 0.0
            while True:
                now = time.monotonic()
                for e in ended:
                    in_flight.pop(e.track_id, None)
                self._take_handed_in()
                if self.leases.cut_off():  # renew first: what the batch claims must not be fenced at once
                    self.leases.renew(in_flight)
                    next_beat = time.monotonic() + self.leases.heartbeat_every
                self.plans.wake_delayed(store.now())
                look = now >= next_poll and not self.stopping.is_set()
                # slots this worker freed are tried at once; every pool found full, at each poll
                freed = {self.plans.pool_of[e.track_id] for e in ended if e.track_id in self.plans.pool_of}
                if look and now >= next_recheck:
                    self.plans.unblock(self.plans.blocked)
                    next_recheck = now + self.poll
                else:
                    self.plans.unblock(freed)
                free = 0 if self.stopping.is_set() else (1 + _QUEUED) * self.concurrency - len(in_flight)
                idle = 0 if self.stopping.is_set() else max(0, self.concurrency - len(in_flight))
                taken = self.plans.pop(free, in_flight)
                batch = lambda c: self._batch(c, ended, in_flight, until, look, taken, free, idle, freed)  # noqa: E731
                began_batch = time.perf_counter()
                try:
                    events, found, claimed, finished = self.tx.run(batch)
                except store.RowRefused as exc:  # rolled back: written again, each end in a safe form
                    log.warning("%s: the database refused an attempt's end (%s); recording it without"
                                " its output", self.name, exc)
                    self._careful = True
                    try:
                        events, found, claimed, finished = self.tx.run(batch)
                    finally:
                        self._careful = False
                if self.on_batch is not None:
                    self.on_batch(time.perf_counter() - began_batch)
                if self.tx.faulted:  # a commit may have landed unacknowledged: hand back what it claimed
                    self.tx.faulted = False
                    held = {*in_flight, *(t for t, _ in claimed)}
                    self.tx.run(lambda c: lifecycle.hand_back_unheld(c, self.name, held))
                if look or found.more:  # more to find, or to claim besides a full pool's tracks: at once
                    next_poll = now if found.more else now + self.poll
                self._apply(found, claimed, in_flight)
                self.events.emit(events)  # before the threads can report the claimed tracks' starts
                self.executor.submit(self.plans.attempt(t, a, self.log_dir) for t, a in claimed)
                self.executor.recorded(e.track_id for e in ended)
                self.plans.forget_all(finished)
                now = time.monotonic()
                if now >= next_beat:
                    self.leases.renew(in_flight)
                    self._evict(in_flight, keep=until)
                    self.executor.sweep_leftovers()
                    next_beat = now + self.leases.heartbeat_every
                if now >= next_sweep:
                    self.leases.sweep()
                    next_sweep = now + sweep_every(self.lease)
                if self.stopping.is_set():
                    self._stop_step(in_flight)
                    self._tell_stop(len(in_flight))
                    if not in_flight:
                        return self._pipeline_state(until) if until is not None else "stopped"
                elif until is not None and not in_flight and not self.plans.ready:
                    state = self._pipeline_state(until)
                    if state != "running":
                        return state
                wake = next_beat if in_flight and not self.plans.blocked else min(next_beat, next_poll)
                due_in = self.plans.wake_delayed(store.now())  # also the retries this batch recorded
                if due_in is not None:  # a retry's wait ends: claim it then, not at the next beat
                    wake = min(wake, now + due_in)
                ended = self._collect(until=wake)
        except GaveUp as exc:  # stopped by a signal while the database was failing
            self._abandon()
            log.warning("%s: stopped while the database fails (%s): %d track(s) left running for their lease"
                        " to take back", self.name, exc, len(in_flight))
            return "running" if until is not None else "stopped"
        except DatabaseUnusableError as exc:
            self._abandon()
            hint = f"`pipeline-engine resume {until}` continues the run" if until is not None else \
                "its tracks go back to pending when its lease runs out"
            raise DatabaseUnusableError(f"{exc}; stopped: {hint} once that is fixed") from exc
        finally:
            self.executor.shutdown()
            self.leases.end()
            try:
                self.tx.run(lambda c: store.stop_worker(c, self.name), attempts=3)
            except DatabaseError:
                pass
            self.tx.close()

    def _batch(self, conn: Connection, ended: list[Ended], in_flight: dict[int, int], until: int | None,
               look: bool, taken: list[int], free: int, idle: int, freed: set[str]):
        """One transaction: record ended attempts, release successors, claim what can start.
        Changes nothing in memory (the transaction may be retried); ``_apply`` does that after
        the commit."""
        plans = self.plans
        # first of all, the pools whose tracks this batch may claim: those it frees a slot of,
        # those of the tracks it took from the ready queue and of the successors it may release
        pool_at = plans.pool_of.get
        wanted = {*freed, *filter(None, map(pool_at, taken))}
        for e in ended:
            wanted.update(filter(None, map(pool_at, plans.jobs[e.track_id].successors)))
        sizes = store.lock_pools(conn, wanted)
        rec = lifecycle.record(conn, self.name, ended, plans, careful=self._careful)
        events = rec.events
        if rec.fenced_lost:
            log.warning("%s: %d killed attempt(s) not recorded: their tracks were taken back by another worker"
                        " (or cancelled) while this worker could not reach the database", self.name,
                        len(rec.fenced_lost))
        if rec.lost:
            log.warning("%s: %d result(s) not recorded: their tracks were taken back by another worker or"
                        " cancelled", self.name, len(rec.lost))
        finished = []
        for pipeline_id in rec.touched:
            plan = plans.plans.get(pipeline_id)
            # a run this worker owns is finished here, but the one ``run`` waits for (``until``): that
            # one once nothing of it is left in memory either (below)
            if plan is not None and (not plan.owned or pipeline_id != until) \
                    and (done := lifecycle.finish(conn, pipeline_id)) is not None:
                finished.append(pipeline_id)
                events.append(done)
        free = max(free, 0)
        # what this worker knew was ready and what just became ready
        known = [*taken, *(t for t in rec.ready if t not in in_flight)]
        seen = set(known)
        found = _Found([], {}, False, [], {}, {}, rec.later, rec.handed)
        pipelines: list[int] | None = None

        def learn(rows) -> None:
            for track_id, pipeline_id, pool, priority in rows:
                if track_id in seen or track_id in in_flight:
                    continue
                seen.add(track_id)
                known.append(track_id)
                found.origin[track_id], found.prios[track_id] = pipeline_id, priority or 0.0
                if pool is not None:
                    found.pools[track_id] = pool

        def pool_of(track_id: int) -> str | None:  # also of the tracks a look found
            return plans.pool_of.get(track_id) or found.pools.get(track_id)

        def claimable() -> list[int]:
            owned = [p for p, plan in plans.plans.items() if plan.owned]
            return [p for p in store.claimable_pipelines(conn, self.name, until, owned) if p not in plans.unrunnable]

        if sizes.keys() & freed and idle:  # a slot this worker freed goes to a track waiting for it, anywhere
            pipelines = claimable()
            learn(store.pending_tracks(conn, pipelines, idle + len(known), pools=sorted(sizes.keys() & freed)))
        if look and sum(1 for t in known if pool_of(t) is None) < free:
            if pipelines is None:
                pipelines = claimable()
            asked = free + len(seen) + _LOOK_AHEAD
            rows = store.pending_tracks(conn, pipelines, asked)
            found.more = len(rows) == asked  # as many as it asked for: look again at once
            learn(rows)  # beyond what can start now, remembered: later batches claim from memory

        def rank(t: int) -> float:
            return plans.priority[t] if t in plans.priority else found.prios.get(t, 0.0)

        choice = claims.choose(known, rank=rank, pool_of=pool_of, wanted=wanted, room=store.pool_room(conn, sizes),
                               free=free, idle=idle, bar=plans.best_aside())
        found.rest, found.aside, found.more = choice.rest, choice.aside, found.more or choice.more
        claimed = store.claim_tracks(conn, choice.claim, self.name,
                                     ChainMap(rec.handed, plans.attempts) if rec.handed else plans.attempts)
        if until is not None and not in_flight and not claimed and not found.rest and not found.aside \
                and not plans.ready and not plans.blocked and (done := lifecycle.finish(conn, until)) is not None:
            events.append(done)
        return events, found, claimed, finished

    def _apply(self, found: _Found, claimed: list[tuple[int, int]], in_flight: dict[int, int]) -> None:
        """After a batch committed: what became ready and was not claimed joins the ready queue
        (what was taken from it is gone: claimed, or taken by another worker), tracks of full
        pools wait aside; plans of new pipelines are loaded."""
        plans, origin = self.plans, found.origin
        for pipeline_id in set(origin.values()) - plans.runs():
            try:
                self._load(pipeline_id)
            except Exception as exc:  # noqa: BLE001 -- one bad run must not stop the worker
                log.error("%s: cannot run run %d: %s; its tracks are handed back", self.name, pipeline_id, exc)
                mine = [(t, a) for t, a in claimed if origin.get(t) == pipeline_id]
                why = f"worker cannot run it: {exc}"
                self.tx.run(lambda c: lifecycle.hand_back(c, self.name, mine, why))
                claimed[:] = [(t, a) for t, a in claimed if origin.get(t) != pipeline_id]
                plans.unrunnable.add(pipeline_id)  # not claimed again by this worker
        plans.push(t for t in found.rest if origin.get(t) not in plans.unrunnable and t in plans.jobs)
        plans.block(t for t in found.aside if origin.get(t) not in plans.unrunnable and t in plans.pool_of)
        for track_id, when in found.later.items():
            plans.later(track_id, when)
        plans.attempts.update(found.handed)
        for track_id, attempt in claimed:
            plans.attempts[track_id] = attempt
            in_flight[track_id] = attempt

    def _collect(self, until: float) -> list[Ended]:
        """Wait for attempts to end, at most until ``until`` (monotonic). Take every one that has
        ended meanwhile (one transaction records them all); while the threads still have claimed
        tracks queued, nothing waits on the dispatcher, so wait a moment longer for more."""
        try:
            ended = [self._outbox.get(timeout=max(0.0, until - time.monotonic()))]
        except queue.Empty:
            return []
        while True:
            try:
                ended.append(self._outbox.get_nowait())
                continue
            except queue.Empty:
                pass
            if len(ended) >= _QUEUED * self.concurrency or self.executor.queued() == 0 or _WAKE in ended:
                break
            try:
                ended.append(self._outbox.get(timeout=_COALESCE))
            except queue.Empty:
                break
        return [e for e in ended if e is not _WAKE]

    # --- stopping --------------------------------------------------------------------------------

    def _tell_stop(self, running: int) -> None:
        """Say once per stage what a stop does next (here, not in the signal handler: a handler
        must not write to a stream the interrupted code may be writing to)."""
        stage = 2 if self._stop_now else 1
        if self.on_stop is None or self._told >= stage:
            return
        self._told = stage
        what = f"{running} running {'vertex' if running == 1 else 'vertices'}"
        if not running:
            message = "stopping: no vertex is running"
        elif stage == 2:
            message = f"stopping now: terminating {what}"
        else:
            message = f"stopping: waiting up to {self.grace:g} s for {what}; Ctrl-C again to stop now"
        self.on_stop(message)

    def _stop_step(self, in_flight: dict[int, int]) -> None:
        """Stopping: hand back claimed tracks that have not started; past the deadline,
        terminate the running ones (their ends are handed back, not recorded)."""
        queued = self.executor.withdraw()
        if queued:
            self.tx.run(lambda c: lifecycle.hand_back(c, self.name, queued, "not started: its worker stopped"))
            for track_id, _ in queued:
                in_flight.pop(track_id, None)
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
            self.executor.interrupt(_STOP_KILL_GRACE)

    def _grace_over(self) -> bool:
        return self.stopping.is_set() and self._stop_deadline is not None \
            and time.monotonic() >= self._stop_deadline

    def _abandon(self) -> None:
        """The database cannot take this worker's results: start nothing more and end every
        running process. Their tracks stay ``running`` in the database, for the lease (or
        ``resume``) to take back."""
        self.stopping.set()
        self.executor.abandon()

    def _pipeline_state(self, pipeline_id: int) -> str:
        return self.tx.run(lambda c: store.pipeline_state(c, pipeline_id))
