"""Execute tracks: those of one run this process owns (``run``, ``resume``, ``retry``), or of any
run nobody owns (``pipeline-engine worker``). Several such processes share one database.

Worker threads only run processes; the dispatcher (the calling thread) alone talks to the
database, on one connection. Each time attempts end it writes them all, releases their
successors and claims the next tracks in one transaction, and hands tracks to the threads only
after it has committed: every state change is in the database before anything depends on it.

So that a thread never idles while the dispatcher's transaction is in flight, the dispatcher
keeps up to two tracks per thread claimed ahead in a queue: a thread that finishes a process
starts the next claimed one at once. A queued track is ``running`` in the database (claimed by
this worker) a moment before its process starts; its ``started_at`` is rewritten with the real
start when its attempt is recorded.

Durability. A claim is a compare-and-set (``pending`` -> ``running``, checked by row count) after
``SELECT ... FOR UPDATE SKIP LOCKED`` where the backend has it; SQLite's write lock serialises.
A worker renews a heartbeat on the tracks it runs every second or so; a track whose worker has
not renewed it within the worker's lease is taken back by any other worker's sweep (pending for
another attempt, failed when none is left). A worker that finds it lost a track (taken back, or
cancelled) kills its process group and records nothing for it. A database fault is retried with
backoff on a new connection while the processes run on; results are written once it is back,
and every write is a compare-and-set, so none is written twice.

Self-fencing. Others may take a track back once its lease (counted from the last heartbeat that
renewed it) has run out, so a worker must not run it past that moment: a watchdog thread, which
needs no database, kills (SIGKILL, the whole group, then the processes carrying the attempt's
marker) every process this worker runs once no heartbeat has succeeded for ``lease -
fence_margin`` seconds, and the threads start nothing claimed meanwhile. Those attempts are
recorded nothing: once the database answers, each is handed back (``pending``, the attempt not
counted) if this worker still holds it, else left to the worker that took it. The dispatcher may
be stuck much longer than the lease inside one statement (a connection that hangs: the drivers
have no read timeout), hence a thread of its own. While a transaction is retried, a heartbeat is
tried about every second between the retries, so that a batch that keeps failing on a database
that still answers (deadlocks, say) does not fence the worker.

Concurrency pools. A track of a vertex that names a pool is claimed only in a transaction that
has locked the pool's row and counted its running tracks (``store.pool_room``), so no more than
its size run at once across every worker and run; pool rows are locked first in a transaction,
in name order, before any track row, so workers never deadlock over them. Such a track is claimed
only for a thread that is idle now (it never holds a slot while queued behind other work), and
nothing ranked below a track waiting for a full pool is queued ahead. A worker whose pooled track
ends (its thread now idle) looks, in the transaction that records it, for a pending track of that
pool and claims it: a freed slot is taken at once. Tracks of a pool found full wait aside;
they are tried again when this worker frees a slot of their pool and at each look (``poll``), the
way a slot freed by a busy worker of another process reaches them. On MariaDB the worker's
connection reads committed rows, so the count after the lock sees every claim committed before it.

Retries that wait. A failed attempt of a vertex with a ``retry_delay`` is recorded ``pending`` with
the time before which no claim may take it (``track.not_before``; looks and claims skip it until
then). It holds no thread and no pool slot meanwhile: the worker that recorded it keeps it aside in
memory and wakes when its time comes (any worker's look finds it from then on); a cancel meanwhile
just cancels a pending track.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import os
import queue
import signal
import threading
import time
import traceback
import uuid
from collections import ChainMap, Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import simplejson
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from pipeline_engine import dag, executor, inputtypes, recovery, rendering, settings, spec, store
from pipeline_engine.db import Database, _first_line
from pipeline_engine.errors import DatabaseError, DatabaseUnusableError, PipelineEngineError, SettingError
from pipeline_engine.events import Bus, Event  # noqa: F401 -- runner.Event stays importable
from pipeline_engine.logfiles import log_path
from pipeline_engine.models import NAME_LENGTH, storable
from pipeline_engine.settings import this_host
from pipeline_engine.states import TrackState as T
from pipeline_engine.views import RunStart

log = logging.getLogger("pipeline_engine.runner")

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
_MAX_BACKOFF = 5.0
#: a worker's transactions last milliseconds; the server ends one left idle this long at least
_MIN_IDLE_LIMIT = 5.0
#: the fencing margin: a worker that has not renewed its heartbeat for ``lease - margin`` kills its
#: processes. At least this many seconds (it covers the watchdog's tick, the kill, and the
#: difference between this host's clock and a taker's: leases are judged on wall clocks) ...
FENCE_MARGIN_MIN = 1.0
#: ... and a quarter of the lease, but never more than a third of it, so that a worker misses at
#: least two heartbeats before it kills anything (``heartbeat_every`` is at most a third)
FENCE_MARGIN_SHARE = 0.25
#: seconds between the watchdog's looks at the last successful heartbeat (at most)
_FENCE_TICK = 0.1
_WAKE = object()  # put in the outbox to wake the dispatcher (a stop was asked)
#: why a fenced attempt's track went back to pending (its error, and its "ended" event's)
_FENCED = "stopped: its worker could not renew its lease in time (the database did not answer); it runs again"


@dataclass
class _Job:
    track_id: int
    pipeline_id: int
    vertex: str
    timeout: float | None
    max_attempts: int
    successors: list[int]
    #: for a run whose scripts are not in memory: the vertex's script, its input schema and the
    #: track's stored values (JSON text), rendered only when the track runs
    source: tuple[str, str, str] | None = None
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    #: the vertex's working directory and variables (``VertexSpec.cwd``, ``VertexSpec.env``)
    cwd: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass
class _Plan:
    """What a worker needs to run the tracks of one pipeline: scripts and successors."""
    pipeline_id: int
    rendered: dict[str, rendering.Rendered]
    secrets: list[str]
    jobs: dict[int, _Job]
    succs: dict[int, list[int]]
    owned: bool


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


class _Ended(NamedTuple):
    track_id: int
    attempt: int
    outcome: executor.Outcome
    started_at: datetime
    finished_at: datetime


def _render(job: _Job) -> rendering.Rendered:
    """A track's script with its stored input values (a run without secrets)."""
    script, schema_json, values_json = job.source
    schema = inputtypes.parse_schema(job.vertex, simplejson.loads(schema_json) if schema_json else {})
    values = simplejson.loads(values_json) if values_json else {}
    return rendering.render_script(job.vertex, script, schema, values)


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


def default_fence_margin(lease: float) -> float:
    """The default fencing margin for ``lease``: ``max(FENCE_MARGIN_MIN, FENCE_MARGIN_SHARE *
    lease)``, at most a third of the lease (30 s: 7.5 s, the processes killed after 22.5 s
    without a heartbeat; 3 s: 1 s; 1.5 s: 0.5 s)."""
    return min(max(FENCE_MARGIN_MIN, FENCE_MARGIN_SHARE * lease), lease / 3)


def worker_name() -> str:
    """This process's identity in the database: host, pid and a random suffix (pids repeat)."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _GaveUp(DatabaseError):
    """Stopping, the grace is over, and the database still fails: stop without it."""


def _retryable(exc: BaseException) -> bool:
    """A fault worth waiting out: the connection went away, a deadlock, a serialization
    failure, a lock wait timeout, SQLite busy."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return isinstance(exc, (ConnectionError, OSError))


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
        self.lease, self.grace, self.poll = lease, grace, poll
        self.heartbeat_every = min(1.0, lease / 3)
        #: seconds before the lease runs out when a worker cut off from the database kills its
        #: processes (see "Self-fencing" above); ``fence_margin`` (0 < margin < lease) overrides it
        margin = default_fence_margin(lease) if fence_margin is None else fence_margin
        if not 0 < margin < lease:
            raise SettingError(f"fence margin {margin:g} s must be more than 0 and less than the lease ({lease:g} s)")
        self.fence_margin = margin
        self.fence_after = lease - margin
        #: seconds the database server lets this worker sit inside a transaction before it ends
        #: the session (a frozen worker's locks must not outlive its lease by much)
        self.idle_limit = min(max(lease / 3, _MIN_IDLE_LIMIT), 30.0)
        self.log_dir = None if log_dir is None else check_log_dir(log_dir)
        self.output_cap, self.on_stop = output_cap, on_stop
        self.events = Bus(on_event)
        self.plans: dict[int, _Plan] = {}
        self.jobs: dict[int, _Job] = {}
        self.attempts: dict[int, int] = {}
        # pending tracks this worker knows of, highest priority first: (-priority, track id)
        self.ready: list[tuple[float, int]] = []
        self._queued: set[int] = set()
        self.priority: dict[int, float] = {}
        self.stopping = threading.Event()  # stop claiming, let running tracks finish
        self._stop_deadline: float | None = None
        self._stop_now = False  # a stop without grace was asked
        self._told = 0  # what ``on_stop`` was told: 0 nothing, 1 the graceful stop, 2 the stop now
        self._lock = threading.Lock()
        self._procs: dict[int, int] = {}  # track id -> process group, while it runs
        self._running: dict[int, int] = {}  # track id -> attempt, while its process runs
        #: monotonic time at which the last heartbeat that succeeded began (every track this
        #: worker holds was renewed or claimed since); None while not serving
        self._renewed: float | None = None
        # attempts killed or not started because the heartbeat failed too long (track id ->
        # attempt): recorded nothing, handed back if still held
        self._fenced: dict[int, int] = {}
        # the dispatcher's tracks in flight, for a heartbeat between another transaction's retries
        self._held: dict[int, int] | None = None
        self._renewing = False  # a heartbeat is being written (its own retries renew nothing more)
        self._next_retry_beat = 0.0
        # attempts lost (track id -> attempt): do not start, kill if started. By attempt: the
        # same track may come back to this worker (a retry, a take-back) and must run then
        self._revoked: dict[int, int] = {}
        self._abandoned = False  # the database cannot take results: start nothing more
        self._interrupted: set[int] = set()  # tracks this worker terminated while stopping
        # claimed tracks for the threads, highest priority first: a track that became ready
        # after others were claimed ahead still starts before them
        self._inbox: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._round = threading.Condition()
        self._awaiting: set[int] = set()  # tracks whose threads wait for their end to be written
        self._recorded: set[int] = set()  # of those, the ones the dispatcher has written
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._conn: Connection | None = None
        self._faulted = False  # a transaction failed since the last reconciliation
        self._careful = False  # record each end in its own savepoint (the database refused one)
        self._leftovers: queue.SimpleQueue = queue.SimpleQueue()  # markers of attempts to look for
        self._unrunnable: set[int] = set()  # runs this worker failed to load
        self.pool_of: dict[int, str] = {}  # track id -> its pool, for tracks of vertices in one
        # tracks of pools found full, aside from ``ready`` until a slot may be free: pool -> heap
        self.blocked: dict[str, list[tuple[float, int]]] = {}
        # retries that wait (they hold no thread and no slot meanwhile): (due, track id), and
        # track id -> due
        self.delayed: list[tuple[datetime, int]] = []
        self._due_at: dict[int, datetime] = {}

    # --- what to run ---------------------------------------------------------------------------

    def adopt(self, run: RunStart) -> None:
        """Run ``run``'s tracks with the scripts (and secrets) it holds in memory."""
        self._load(run.id, run, owned=True)

    def _load(self, pipeline_id: int, run: RunStart | None = None, owned: bool = False) -> _Plan:
        """Read what running a pipeline's tracks needs: one light row per track and the edges.
        Without ``run`` (a run nobody owns: no secrets) scripts are rendered when they run."""
        with self.db.transaction(write=False) as s:
            rows = store.plan_rows(s, pipeline_id)
            graph_id = store.pipeline_graph(s, pipeline_id)
            edges = store.edge_names(s, graph_id) if rows else []
        by_name = {r.vertex: r.id for r in rows}
        succs = {by_name[v]: [by_name[h] for h in heads]
                 for v, heads in dag.adjacency(list(by_name), edges).items()}
        jobs = {r.id: _Job(r.id, pipeline_id, r.vertex, r.timeout, r.max_attempts, succs[r.id],
                           None if run is not None else (r.script, r.schema, r.values),
                           r.retry_delay or 0.0, r.retry_backoff or 1.0, r.cwd, r.env or {}) for r in rows}
        plan = _Plan(pipeline_id, run.rendered if run is not None else {}, run.secrets if run is not None else [],
                     jobs, succs, owned)
        self.plans[pipeline_id] = plan
        self.jobs.update(jobs)
        for r in rows:
            self.attempts[r.id] = r.attempt
            self.priority[r.id] = r.priority or 0.0
            if r.pool is not None:
                self.pool_of[r.id] = r.pool
        if owned:
            stamp = store.now()
            for r in rows:
                if r.state == T.PENDING and r.not_before is not None and r.not_before > stamp:
                    self._later(r.id, r.not_before)
            self._push([r.id for r in rows if r.state == T.PENDING and r.id not in self._due_at])
        return plan

    def _later(self, track_id: int, when: datetime) -> None:
        """A track waiting for its retry: ready again at ``when`` (the database refuses to let it
        be claimed before)."""
        self._due_at[track_id] = when
        heapq.heappush(self.delayed, (when, track_id))

    def _wake_delayed(self) -> float | None:
        """Retries whose wait is over join the ready queue. Returns 0 if some did, else the
        seconds until the next one is due, or None when none waits."""
        stamp, woke = store.now(), False
        while self.delayed:
            when, track_id = self.delayed[0]
            if self._due_at.get(track_id) != when:  # forgotten, or due at another time since
                heapq.heappop(self.delayed)
                continue
            if when > stamp:
                return 0.0 if woke else (when - stamp).total_seconds()
            heapq.heappop(self.delayed)
            del self._due_at[track_id]
            if track_id in self.jobs:
                self._push([track_id])
                woke = True
        return 0.0 if woke else None

    def _push(self, track_ids) -> None:
        for track_id in track_ids:
            if track_id not in self._queued:
                self._queued.add(track_id)
                heapq.heappush(self.ready, (-self.priority.get(track_id, 0.0), track_id))

    def _pop(self, n: int, in_flight: dict[int, int]) -> list[int]:
        """Up to ``n`` known pending tracks, highest priority (critical path) first. Tracks of a
        pool found full are set aside (they stay known: ``_unblock`` brings them back)."""
        out = []
        while self.ready and len(out) < n:
            item = heapq.heappop(self.ready)
            track_id = item[1]
            pool = self.pool_of.get(track_id)
            if pool is not None and pool in self.blocked:
                heapq.heappush(self.blocked[pool], item)
                continue
            self._queued.discard(track_id)
            if track_id not in in_flight:
                out.append(track_id)
        return out

    def _unblock(self, pools) -> None:
        """Tracks set aside for these pools are tried again."""
        for pool in list(pools):
            for item in self.blocked.pop(pool, []):
                heapq.heappush(self.ready, item)

    def _block(self, track_ids) -> None:
        """Pending tracks whose pools were full at a claim: aside until a slot may be free."""
        for track_id in track_ids:
            heap = self.blocked.setdefault(self.pool_of[track_id], [])
            if track_id not in self._queued:
                self._queued.add(track_id)
                heapq.heappush(heap, (-self.priority.get(track_id, 0.0), track_id))

    def _forget(self, pipeline_id: int) -> None:
        plan = self.plans.pop(pipeline_id, None)
        if plan is not None:
            for track_id in plan.jobs:
                self.jobs.pop(track_id, None)
                self.attempts.pop(track_id, None)
                self.priority.pop(track_id, None)
                self.pool_of.pop(track_id, None)
                self._due_at.pop(track_id, None)

    def _evict(self, in_flight: dict[int, int], keep: int | None = None) -> None:
        """Forget the runs that ended without this worker finishing them (another worker did,
        ``cancel``, the sweep), once none of their tracks is in flight here: a long-lived
        worker's memory holds the runs it serves, not every run it ever served."""
        busy = {self.jobs[t].pipeline_id for t in in_flight if t in self.jobs}
        idle = [p for p in self.plans if p not in busy and p != keep]
        gone = set(self._unrunnable)
        if idle or gone:
            running = self._tx(lambda c: store.running_pipelines(c, [*idle, *gone]))
            gone -= running
            self._unrunnable -= gone
            ended = [p for p in idle if p not in running]
            if not ended:
                return
            for pipeline_id in ended:
                self._forget(pipeline_id)
            # the queues keep only the tracks still known
            self.ready = [item for item in self.ready if item[1] in self.jobs]
            heapq.heapify(self.ready)
            for heap in self.blocked.values():
                heap[:] = [item for item in heap if item[1] in self.jobs]
                heapq.heapify(heap)
            self._queued &= self.jobs.keys()

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

    # --- the dispatcher ------------------------------------------------------------------------

    def _serve(self, until: int | None) -> str:
        threads = [threading.Thread(target=self._work, daemon=True, name=f"{self.name}-{i}")
                   for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        in_flight: dict[int, int] = {}  # claimed track id -> attempt, until its end is recorded
        watching = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(watching,), daemon=True, name=f"{self.name}-fence")
        try:
            began = time.monotonic()
            self._tx(lambda c: store.register_worker(c, self.name, self.host, os.getpid(),
                                                     self.concurrency, self.lease))
            self._renewed = began  # it holds nothing yet: whatever it claims is renewed from now on
            self._held = in_flight
            watchdog.start()
            ended: list[_Ended] = []
            next_beat = next_sweep = next_poll = next_recheck = 0.0
            while True:
                now = time.monotonic()
                for e in ended:
                    in_flight.pop(e.track_id, None)
                if self._cut_off():  # renew first: what the batch claims must not be fenced at once
                    self._heartbeat(in_flight)
                    next_beat = time.monotonic() + self.heartbeat_every
                self._wake_delayed()
                look = now >= next_poll and not self.stopping.is_set()
                # slots this worker freed are tried at once; every pool found full, at each poll
                freed = {self.pool_of[e.track_id] for e in ended if e.track_id in self.pool_of}
                if look and now >= next_recheck:
                    self._unblock(self.blocked)
                    next_recheck = now + self.poll
                else:
                    self._unblock(freed)
                free = 0 if self.stopping.is_set() else (1 + _QUEUED) * self.concurrency - len(in_flight)
                idle = 0 if self.stopping.is_set() else max(0, self.concurrency - len(in_flight))
                taken = self._pop(free, in_flight)
                batch = lambda c: self._batch(c, ended, in_flight, until, look, taken, free, idle, freed)  # noqa: E731
                try:
                    events, found, claimed, finished = self._tx(batch)
                except store.RowRefused as exc:  # rolled back: written again, each end in a safe form
                    log.warning("%s: the database refused an attempt's end (%s); recording it without"
                                " its output", self.name, exc)
                    self._careful = True
                    try:
                        events, found, claimed, finished = self._tx(batch)
                    finally:
                        self._careful = False
                self._unfence(ended)  # before a track handed back and claimed again is started
                if self._faulted:  # a commit may have landed unacknowledged: hand back what it claimed
                    self._faulted = False
                    held = {*in_flight, *(t for t, _ in claimed)}
                    self._tx(lambda c: store.hand_back_unheld(c, self.name, held))
                if look or found.more:  # more to find, or to claim besides a full pool's tracks: at once
                    next_poll = now if found.more else now + self.poll
                self._apply(found, claimed, in_flight)
                self._emit(events)  # before the threads can report the claimed tracks' starts
                for job in claimed:
                    self._inbox.put((-self.priority.get(job[0], 0.0), next(self._seq), job))
                if self._awaiting:
                    with self._round:  # threads waiting to see what their tracks' ends released
                        self._recorded.update(e.track_id for e in ended if e.track_id in self._awaiting)
                        self._round.notify_all()
                for pipeline_id in finished:
                    self._forget(pipeline_id)
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat(in_flight)
                    self._evict(in_flight, keep=until)
                    self._kill_leftovers()
                    next_beat = now + self.heartbeat_every
                if now >= next_sweep:
                    self._sweep()
                    next_sweep = now + max(0.5, min(self.lease / 4, 5.0))
                if self.stopping.is_set():
                    self._stop_step(in_flight)
                    self._tell_stop(len(in_flight))
                    if not in_flight:
                        return self._pipeline_state(until) if until is not None else "stopped"
                elif until is not None and not in_flight and not self.ready:
                    state = self._pipeline_state(until)
                    if state != "running":
                        return state
                wake = next_beat if in_flight and not self.blocked else min(next_beat, next_poll)
                due_in = self._wake_delayed()  # also the retries this batch recorded
                if due_in is not None:  # a retry's wait ends: claim it then, not at the next beat
                    wake = min(wake, now + due_in)
                ended = self._collect(in_flight, until=wake)
        except _GaveUp as exc:  # stopped by a signal while the database was failing
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
            for _ in threads:
                self._inbox.put((math.inf, next(self._seq), None))  # after any work left
            for thread in threads:
                thread.join()
            watching.set()
            if watchdog.is_alive():
                watchdog.join()
            self._renewed, self._held = None, None
            self._kill_leftovers()
            try:
                self._tx(lambda c: store.stop_worker(c, self.name), attempts=3)
            except DatabaseError:
                pass
            if self._conn is not None:
                try:  # the connection goes back to the pool: without this worker's limit
                    self.db.limit_idle_transactions(self._conn, None)
                except Exception:  # noqa: BLE001 -- a broken connection is discarded by the pool
                    self._conn.invalidate()
                self._conn.close()
                self._conn = None

    def _batch(self, conn: Connection, ended: list[_Ended], in_flight: dict[int, int], until: int | None,
               look: bool, taken: list[int], free: int, idle: int, freed: set[str]):
        """One transaction: record ended attempts, release successors, claim what can start.
        Changes nothing in memory (the transaction may be retried); ``_apply`` does that after
        the commit."""
        # first of all, the pools whose tracks this batch may claim: those it frees a slot of,
        # those of the tracks it took from the ready queue and of the successors it may release
        pool_at = self.pool_of.get
        wanted = {*freed, *filter(None, map(pool_at, taken))}
        for e in ended:
            wanted.update(filter(None, map(pool_at, self.jobs[e.track_id].successors)))
        sizes = store.lock_pools(conn, wanted)
        events, ready, touched, later, handed = self._record(conn, ended)
        finished = []
        for pipeline_id in touched:
            plan = self.plans.get(pipeline_id)
            if plan is not None and not plan.owned and store.finish_if_done(conn, pipeline_id):
                finished.append(pipeline_id)
        free = max(free, 0)
        # what this worker knew was ready and what just became ready
        known = [*taken, *(t for t in ready if t not in in_flight)]
        seen = set(known)
        found = _Found([], {}, False, [], {}, {}, later, handed)
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
            return self.pool_of.get(track_id) or found.pools.get(track_id)

        if sizes.keys() & freed and idle:  # a slot this worker freed goes to a track waiting for it, anywhere
            pipelines = [p for p in store.claimable_pipelines(conn, self.name, until) if p not in self._unrunnable]
            learn(store.pending_tracks(conn, pipelines, idle + len(known), pools=sorted(sizes.keys() & freed)))
        if look and sum(1 for t in known if pool_of(t) is None) < free:
            if pipelines is None:
                pipelines = [p for p in store.claimable_pipelines(conn, self.name, until)
                             if p not in self._unrunnable]
            asked = free + len(seen) + _LOOK_AHEAD
            rows = store.pending_tracks(conn, pipelines, asked)
            found.more = len(rows) == asked  # as many as it asked for: look again at once
            learn(rows)  # beyond what can start now, remembered: later batches claim from memory

        def rank(t: int) -> float:
            return self.priority[t] if t in self.priority else found.prios.get(t, 0.0)

        known.sort(key=lambda t: (-rank(t), t))
        # the best track this worker set aside earlier for a full pool
        bar = max((-heap[0][0] for heap in self.blocked.values() if heap), default=None)
        # highest priority first; a pool's track only within its pool's room, and only for a
        # thread idle now: it must not hold a slot while it waits behind other work, and what
        # ranks below it waits too (the queue drains until a thread is free for it). Below a
        # track of a full pool (now or set aside before) nothing is queued ahead either: the
        # thread that frees a slot of that pool is then idle, and takes the slot over in the
        # transaction that records its end.
        room = store.pool_room(conn, sizes)
        candidates: list[int] = []
        held_up = False
        cap = free
        for track_id in known:
            pool = pool_of(track_id)
            if bar is not None and rank(track_id) <= bar:
                cap = min(cap, idle)
            if held_up or len(candidates) >= cap:
                found.rest.append(track_id)
            elif pool is None:
                candidates.append(track_id)
            elif pool not in wanted:  # found by the look: its pool is locked first in the next batch,
                held_up = True        # which comes at once; what ranks below it waits for that one
                found.rest.append(track_id)
                found.more = True
            elif room.get(pool, 0) <= 0:
                found.aside.append(track_id)  # its pool is full (or gone); what ranks below it is
                cap = min(cap, idle)          # not queued ahead: a thread must come free for it
            elif len(candidates) >= idle:
                held_up = True
                found.rest.append(track_id)
            else:
                room[pool] -= 1
                candidates.append(track_id)
        if found.aside and len(candidates) < free:
            found.more = True  # what can run besides a full pool's tracks: look again at once
        claimed = store.claim_tracks(conn, candidates, self.name, ChainMap(handed, self.attempts) if handed
                                     else self.attempts)
        if until is not None and not in_flight and not claimed and not found.rest and not found.aside \
                and not self.ready and not self.blocked:
            store.finish_if_done(conn, until)
        return events, found, claimed, finished

    def _apply(self, found: _Found, claimed: list[tuple[int, int]], in_flight: dict[int, int]) -> None:
        """After a batch committed: what became ready and was not claimed joins the ready queue
        (what was taken from it is gone: claimed, or taken by another worker), tracks of full
        pools wait aside; plans of new pipelines are loaded."""
        origin = found.origin
        for pipeline_id in set(origin.values()) - set(self.plans):
            try:
                self._load(pipeline_id)
            except Exception as exc:  # noqa: BLE001 -- one bad run must not stop the worker
                log.error("%s: cannot run run %d: %s; its tracks are handed back", self.name, pipeline_id, exc)
                mine, why = [(t, a) for t, a in claimed if origin.get(t) == pipeline_id], f"worker cannot run it: {exc}"
                self._tx(lambda c: [store.hand_back(c, self.name, t, a, why) for t, a in mine])
                claimed[:] = [(t, a) for t, a in claimed if origin.get(t) != pipeline_id]
                self._unrunnable.add(pipeline_id)  # not claimed again by this worker
        self._push(t for t in found.rest if origin.get(t) not in self._unrunnable and t in self.jobs)
        self._block(t for t in found.aside if origin.get(t) not in self._unrunnable and t in self.pool_of)
        for track_id, when in found.later.items():
            self._later(track_id, when)
        self.attempts.update(found.handed)
        for track_id, attempt in claimed:
            self.attempts[track_id] = attempt
            in_flight[track_id] = attempt

    def _record(self, conn: Connection, ended: list[_Ended]
                ) -> tuple[list[Event], list[int], set[int], dict[int, datetime], dict[int, int]]:
        """Write ended attempts; successors of those that succeeded are counted, retries go
        back to pending (not claimed before their ``retry_delay`` has passed), and a final
        failure marks its descendants. Fenced attempts are not recorded: handed back if still
        held. Returns the events, the tracks that became pending (due now), the pipelines where a
        track finished, the retries that wait, with their time, and the fenced tracks handed back
        (track id -> its attempts so far now)."""
        released: Counter[int] = Counter()
        events, ready, touched, lost = [], [], set(), []
        later: dict[int, datetime] = {}
        handed: dict[int, int] = {}
        fenced_lost: list[int] = []
        ends = []
        for track_id, attempt, outcome, started_at, finished_at in ended:
            job = self.jobs[track_id]
            if track_id in self._interrupted:
                store.hand_back(conn, self.name, track_id, attempt, "interrupted: its worker stopped")
                events.append(Event("ended", job.vertex, T.PENDING, attempt, outcome.duration, "interrupted",
                                    job.pipeline_id))
                continue
            if self._fenced and self._was_fenced(track_id, attempt):
                if store.hand_back(conn, self.name, track_id, attempt, _FENCED):
                    handed[track_id] = attempt - 1
                    ready.append(track_id)
                    events.append(Event("ended", job.vertex, T.PENDING, attempt, outcome.duration, _FENCED,
                                        job.pipeline_id))
                else:
                    fenced_lost.append(track_id)  # taken back (or cancelled): the taker runs it
                continue
            if outcome.ok:
                target = T.SUCCEEDED
            elif attempt < job.max_attempts:
                target = T.PENDING
            else:
                target = T.FAILED
            wait = spec.retry_wait(job.retry_delay, job.retry_backoff, attempt) if target == T.PENDING else 0.0
            ends.append({"track_id": track_id, "attempt": attempt, "target": target, "started_at": started_at,
                         "finished_at": finished_at, "exit_code": outcome.exit_code, "error": outcome.error,
                         "stdout": outcome.stdout, "stderr": outcome.stderr, "log_path": outcome.log_path,
                         "duration": outcome.duration,
                         "not_before": finished_at + timedelta(seconds=wait) if wait > 0 else None})
        written = store.record_attempts(conn, ends, careful=self._careful)
        for end in ends:
            track_id, attempt, target = end["track_id"], end["attempt"], end["target"]
            job = self.jobs[track_id]
            if track_id not in written:
                lost.append(track_id)  # no longer ours (cancelled, or taken back): its result does not count
                continue
            wait = (end["not_before"] - end["finished_at"]).total_seconds() if end["not_before"] else None
            events.append(Event("ended", job.vertex, target, attempt, end["duration"], end["error"],
                                job.pipeline_id, wait))
            if target == T.SUCCEEDED:
                released.update(job.successors)
                touched.add(job.pipeline_id)
            elif target == T.PENDING and end["not_before"] is not None:
                later[track_id] = end["not_before"]
            elif target == T.PENDING:
                ready.append(track_id)
            else:
                touched.add(job.pipeline_id)
                below = sorted(dag.descendants([track_id], self.plans[job.pipeline_id].succs))
                store.mark_upstream_failed(conn, below)
                events += [Event("skipped", self.jobs[t].vertex, T.UPSTREAM_FAILED, self.attempts[t],
                                 run=job.pipeline_id) for t in below]
        if fenced_lost:
            log.warning("%s: %d killed attempt(s) not recorded: their tracks were taken back by another worker"
                        " (or cancelled) while this worker could not reach the database", self.name, len(fenced_lost))
        if lost:
            log.warning("%s: %d result(s) not recorded: their tracks were taken back by another worker or"
                        " cancelled", self.name, len(lost))
        if lost or fenced_lost:
            store.release_worker(conn, self.name, lost + fenced_lost)
        now_ready = store.release_successors(conn, released)
        events += [Event("ready", self.jobs[t].vertex, T.PENDING, self.attempts[t], run=self.jobs[t].pipeline_id)
                   for t in now_ready]
        return events, ready + now_ready, touched, later, handed

    def _collect(self, in_flight: dict[int, int], until: float) -> list[_Ended]:
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
            if len(ended) >= _QUEUED * self.concurrency or self._inbox.qsize() == 0 or _WAKE in ended:
                break
            try:
                ended.append(self._outbox.get(timeout=_COALESCE))
            except queue.Empty:
                break
        return [e for e in ended if e is not _WAKE]

    # --- leases ----------------------------------------------------------------------------------

    def _heartbeat(self, in_flight: dict[int, int], attempts: int | None = None) -> None:
        self.db.check_file()  # writes to a deleted SQLite file succeed, into nothing: stop instead
        began = time.monotonic()  # the time it writes is later: the lease is counted from then
        self._renewing = True
        try:
            lost = self._tx(lambda c: store.heartbeat(c, self.name, list(in_flight)), attempts=attempts)
        finally:
            self._renewing = False
        with self._lock:
            was_cut_off = self._cut_off()
            if self._renewed is not None:
                self._renewed = max(self._renewed, began)
            cut_off = self._cut_off()
        if was_cut_off and not cut_off:
            log.warning("%s: the database answers again: its heartbeat is renewed, it runs tracks again", self.name)
        if lost:
            cancelled = [t for t, state in lost.items() if state == T.CANCELLED]
            taken = [t for t in lost if t not in cancelled]
            if taken:
                log.warning("%s: %d track(s) taken back by another worker; killing their processes",
                            self.name, len(taken))
            self._revoke({t: in_flight[t] for t in taken if t in in_flight}, kill=True)
            self._revoke({t: in_flight[t] for t in cancelled if t in in_flight}, kill=False)

    def _cut_off(self) -> bool:
        """Whether no heartbeat has succeeded for ``fence_after`` seconds: others may take this
        worker's tracks back soon, so it must run none of them."""
        return self._renewed is not None and time.monotonic() - self._renewed > self.fence_after

    def _watch(self, done: threading.Event) -> None:
        """The watchdog thread: fence this worker whenever it is cut off. It reads a clock and
        kills processes; no database, so that a dispatcher stuck in a statement cannot delay it."""
        tick = min(_FENCE_TICK, self.fence_margin / 4)
        while not done.wait(tick):
            if self._cut_off():
                self._fence()

    def _fence(self) -> None:
        """Kill every attempt this worker runs (SIGKILL to its process group, then to whatever
        carries its marker elsewhere) and mark them fenced: nothing is recorded for them."""
        with self._lock:
            victims = {t: a for t, a in self._running.items() if self._fenced.get(t) != a}
            self._fenced.update(victims)
            groups = [self._procs[t] for t in victims if t in self._procs]
        if not victims:
            return
        silent = time.monotonic() - (self._renewed or 0.0)
        why = "its tracks may have been taken back by another worker already" if silent > self.lease else \
            "before another worker can take its tracks back"  # past the lease: it was paused (SIGSTOP), or slow
        log.warning("%s: no heartbeat renewed for %.1f s (lease %g s): killing %d running attempt(s), %s",
                    self.name, silent, self.lease, len(victims), why)
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        executor.kill_marked(executor.marker(self.db.key, t, a) for t, a in victims.items())

    def _was_fenced(self, track_id: int, attempt: int) -> bool:
        with self._lock:
            return self._fenced.get(track_id) == attempt

    def _unfence(self, ended: list[_Ended]) -> None:
        """These attempts' ends are written: forget that they were fenced (the same track may be
        claimed again under the same attempt number, a hand-back not counting)."""
        if not self._fenced:
            return
        with self._lock:
            for e in ended:
                if self._fenced.get(e.track_id) == e.attempt:
                    del self._fenced[e.track_id]

    def _sweep(self) -> None:
        """Take back the tracks of workers whose lease ran out, and finish their pipelines."""
        if self._tx(lambda c: recovery.recover_expired(c, self.db.key, exclude=self.name, host=self.host)):
            log.warning("%s: took back tracks of workers whose lease ran out", self.name)

    def _kill_leftovers(self) -> None:
        """Kill what succeeded attempts left running outside their process group (a daemon started
        with ``setsid``, its output elsewhere): one scan of this host's processes for every attempt
        that ended since the last heartbeat, not one per attempt. Failed attempts were looked at
        when they ended (before any retry)."""
        marks = []
        while True:
            try:
                marks.append(self._leftovers.get_nowait())
            except queue.Empty:
                break
        if marks and executor.kill_marked(marks):
            log.warning("%s: killed processes that finished attempts left running", self.name)

    def _revoke(self, attempts: Mapping[int, int], kill: bool) -> None:
        """These attempts (track id -> attempt) are no longer ours: never start them; end the
        processes of those that run, at once (``kill``: another copy may start elsewhere) or by
        SIGTERM and, after a grace period, SIGKILL (cancelled)."""
        with self._lock:
            self._revoked.update(attempts)
            groups = [self._procs[t] for t in attempts if t in self._procs]
        for pgid in groups:
            if kill:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                threading.Thread(target=executor.kill_group, args=(pgid, executor.DEFAULT_KILL_GRACE),
                                 daemon=True).start()

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
        queued = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item[2] is None:
                self._inbox.put(item)
                break
            queued.append(item[2])
        if queued:
            def hand_back(conn):
                for track_id, attempt in queued:
                    store.hand_back(conn, self.name, track_id, attempt, "not started: its worker stopped")
            self._tx(hand_back)
            for track_id, _ in queued:
                in_flight.pop(track_id, None)
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
            with self._lock:
                victims = {t: g for t, g in self._procs.items() if t not in self._interrupted}
                self._interrupted.update(victims)
            for pgid in victims.values():
                threading.Thread(target=executor.kill_group, args=(pgid, 2.0), daemon=True).start()

    # --- worker threads ----------------------------------------------------------------------------

    def _work(self) -> None:
        """A worker thread: run claimed tracks until told to stop. No database here."""
        while (job := self._inbox.get()[2]) is not None:
            track_id, attempt = job
            j = self.jobs[track_id]
            started_at = store.now()
            if self._lost(track_id, attempt):
                outcome = executor.Outcome(None, False, "", "", 0.0, error="lost before it started")
            else:
                self._emit([Event("started", j.vertex, T.RUNNING, attempt, run=j.pipeline_id)])
                outcome = self._attempt(j, attempt)
            with self._lock:
                self._procs.pop(track_id, None)
                self._running.pop(track_id, None)
                if self._revoked.get(track_id) == attempt:
                    del self._revoked[track_id]  # that attempt is over: nothing more to stop
            # a successor may outrank every track queued: then let the dispatcher write this end
            # and claim what it released before this thread takes the next one
            wait = outcome.ok and self._may_release_better(j)
            if wait:
                with self._round:
                    self._awaiting.add(track_id)
            self._outbox.put(_Ended(track_id, attempt, outcome, started_at, store.now()))
            if wait:
                with self._round:
                    self._round.wait_for(lambda: track_id in self._recorded or self.stopping.is_set(), timeout=1.0)
                    self._recorded.discard(track_id)
                    self._awaiting.discard(track_id)

    def _may_release_better(self, job: _Job) -> bool:
        """Whether a successor of ``job`` has a higher priority than the best track queued for
        the threads (then taking that one now would not follow the critical path)."""
        if not job.successors:
            return False
        with self._inbox.mutex:
            best = -self._inbox.queue[0][0] if self._inbox.queue else None
        return best is not None and max(self.priority.get(t, 0.0) for t in job.successors) > best

    def _lost(self, track_id: int, attempt: int) -> bool:
        """Whether this attempt must not run: the database cannot take results, the track is no
        longer ours, or this worker is cut off from the database (then the attempt is fenced)."""
        with self._lock:
            if self._cut_off():
                self._fenced[track_id] = attempt
            return self._abandoned or self._revoked.get(track_id) == attempt or self._fenced.get(track_id) == attempt

    def _attempt(self, job: _Job, attempt: int) -> executor.Outcome:
        plan = self.plans[job.pipeline_id]
        rendered = plan.rendered.get(job.vertex)
        if rendered is None:
            try:
                rendered = _render(job)
            except PipelineEngineError as exc:
                return executor.Outcome(None, False, "", "", 0.0, error=f"cannot render the script: {exc}")
        path = None if self.log_dir is None else log_path(self.log_dir, job.pipeline_id, job.vertex)

        def spawned(pgid: int) -> None:
            with self._lock:
                self._procs[job.track_id] = pgid
                self._running[job.track_id] = attempt
            if self._lost(job.track_id, attempt):  # lost while it was being spawned
                os.killpg(pgid, signal.SIGKILL)

        env = {**job.env, **rendered.env, executor.MARKER: executor.marker(self.db.key, job.track_id, attempt)}
        try:
            return executor.run_script(rendered.script, env, timeout=job.timeout, secrets=plan.secrets, cwd=job.cwd,
                                       output_cap=self.output_cap, log_path=path,
                                       log_header=f"attempt {attempt}", log_fresh=attempt == 1, on_spawn=spawned,
                                       defer=self._leftovers.put)
        except Exception as exc:  # noqa: BLE001 -- a bug here must fail the track, not leave it running
            # the type and place only: an exception's text may carry a value (a secret) in clear
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("%s: engine error running %s: %s at %s:%d", self.name, job.vertex, type(exc).__name__,
                      os.path.basename(where.filename), where.lineno)
            return executor.Outcome(None, False, "", "", 0.0, error=f"engine error: {type(exc).__name__} at"
                                    f" {os.path.basename(where.filename)}:{where.lineno}")

    # --- the database, with faults waited out ------------------------------------------------------

    def _tx(self, fn, attempts: int | None = None):
        """Run ``fn(connection)`` in one transaction. A connection lost, a deadlock or a
        serialization failure is retried with backoff on a new connection (forever unless
        ``attempts``); processes keep running meanwhile. A fault retrying cannot fix (disk full,
        read-only, the file deleted) raises DatabaseUnusableError at once; once this worker is
        stopping and its grace is over, a fault raises _GaveUp instead of being retried."""
        delay, tried = 0.05, 0
        while True:
            tried += 1
            try:
                if self._conn is None:
                    self._conn = self.db.open_connection()
                    self.db.limit_idle_transactions(self._conn, self.idle_limit)
                with self._conn.begin():
                    return fn(self._conn)
            except (sa_exc.DBAPIError, DatabaseError, OSError) as exc:
                if isinstance(exc, DatabaseUnusableError):
                    raise
                cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
                unusable = self.db.unusable(cause)
                if unusable is not None:
                    raise unusable from exc
                if not _retryable(cause) or (attempts is not None and tried >= attempts):
                    if isinstance(exc, DatabaseError):
                        raise
                    raise DatabaseError(f"database error on {self.db.safe_url}: {exc}") from exc
                if self._grace_over():
                    raise _GaveUp(f"database error on {self.db.safe_url}: {_first_line(cause)}") from exc
                log.warning("%s: database error (%s); retrying in %.2f s", self.name, _first_line(cause), delay)
                self._drop_connection()
                self._faulted = True
                self._pause(delay)
                delay = min(delay * 2, _MAX_BACKOFF)

    def _grace_over(self) -> bool:
        return self.stopping.is_set() and self._stop_deadline is not None \
            and time.monotonic() >= self._stop_deadline

    def _drop_connection(self) -> None:
        try:
            if self._conn is not None:
                self._conn.invalidate()
                self._conn.close()
        except Exception:  # noqa: BLE001 -- the connection is gone either way
            pass
        self._conn = None

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, cut short when a stop's grace ends (a signal during a long
        backoff is not left waiting). The lease is renewed meanwhile when the database takes a
        heartbeat: a transaction that keeps failing (deadlocks, say) must not fence the worker."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and not self._grace_over():
            self._beat_while_retrying()
            time.sleep(min(left, 0.05))

    def _beat_while_retrying(self) -> None:
        """One try of a heartbeat, when one is due, from inside another transaction's retries
        (on the dispatcher's thread: it owns the connection)."""
        now = time.monotonic()
        if self._held is None or self._renewing or self._renewed is None or now < self._next_retry_beat \
                or now - self._renewed < self.heartbeat_every:
            return
        self._next_retry_beat = now + self.heartbeat_every
        try:
            self._heartbeat(self._held, attempts=1)
        except DatabaseUnusableError:
            raise
        except DatabaseError:  # the database does not answer it either: the retry goes on
            self._drop_connection()

    def _abandon(self) -> None:
        """The database cannot take this worker's results: start nothing more and end every
        running process (SIGTERM, SIGKILL 2 s later). Their tracks stay ``running`` in the
        database, for the lease (or ``resume``) to take back."""
        self.stopping.set()
        with self._lock:
            self._abandoned = True
            groups = list(self._procs.values())
        for pgid in groups:
            threading.Thread(target=executor.kill_group, args=(pgid, 2.0), daemon=True).start()

    def _pipeline_state(self, pipeline_id: int) -> str:
        return self._tx(lambda c: store.pipeline_state(c, pipeline_id))

    def _emit(self, events: list[Event]) -> None:
        self.events.emit(events)


# Kept for callers of the first API: a run executed in this process.
#: the name the worker had, for code written against it
Engine = Worker


def run_pipeline(db: Database, run: RunStart, *, workers: int | None = None, log_dir: str | None = None,
                 on_event: Callable[[Event], None] | None = None, **kwargs) -> str:
    """Execute a started run to its end in this process, as the worker it names its owner (a
    new one if none); returns its final state."""
    if kwargs.get("name") is None:
        with db.transaction(write=False) as s:
            kwargs["name"] = store.pipeline_owner(s, run.id)
    engine = Worker(db, concurrency=workers, log_dir=log_dir, on_event=on_event, **kwargs)
    engine.adopt(run)
    return engine.run(run.id)
