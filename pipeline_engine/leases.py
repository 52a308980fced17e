"""A worker's leases: the heartbeat that renews them, the sweep that takes back other workers'
expired ones, and self-fencing.

A worker renews a heartbeat on the tracks it runs every second or so; a track whose worker has
not renewed it within the worker's lease is taken back by any other worker's sweep (pending for
another attempt, failed when none is left). A heartbeat that finds a track no longer this
worker's (taken back, or cancelled) revokes its attempt: the executor ends its process and the
worker records nothing for it.

Self-fencing. Others may take a track back once its lease (counted from the last heartbeat that
renewed it) has run out, so a worker must not run it past that moment: a watchdog thread, which
needs no database, has the executor kill every attempt it runs once no heartbeat has succeeded
for ``lease - fence_margin`` seconds, and the executor starts nothing meanwhile. Those attempts
are recorded nothing: once the database answers, each is handed back (``pending``, the attempt
not counted) if this worker still holds it, else left to the worker that took it. The
dispatcher may be stuck much longer than the lease inside one statement (a connection that
hangs: the drivers have no read timeout), hence a thread of its own. While a transaction is
retried, a heartbeat is tried about every second between the retries, so that a batch that
keeps failing on a database that still answers (deadlocks, say) does not fence the worker."""
from __future__ import annotations

import logging
import threading
import time

from pipeline_engine import recovery, store
from pipeline_engine.db import Database
from pipeline_engine.errors import DatabaseError, DatabaseUnusableError, SettingError
from pipeline_engine.executors.base import Executor
from pipeline_engine.retrying import Transactor
from pipeline_engine.states import TrackState as T

log = logging.getLogger("pipeline_engine.leases")

#: the fencing margin: a worker that has not renewed its heartbeat for ``lease - margin`` kills its
#: processes. At least this many seconds (it covers the watchdog's tick, the kill, and the
#: difference between this host's clock and a taker's: leases are judged on wall clocks) ...
FENCE_MARGIN_MIN = 1.0
#: ... and a quarter of the lease, but never more than a third of it, so that a worker misses at
#: least two heartbeats before it kills anything (``heartbeat_every`` is at most a third)
FENCE_MARGIN_SHARE = 0.25
#: seconds between the watchdog's looks at the last successful heartbeat (at most)
_FENCE_TICK = 0.1


def default_fence_margin(lease: float) -> float:
    """The default fencing margin for ``lease``: ``max(FENCE_MARGIN_MIN, FENCE_MARGIN_SHARE *
    lease)``, at most a third of the lease (30 s: 7.5 s, the processes killed after 22.5 s
    without a heartbeat; 3 s: 1 s; 1.5 s: 0.5 s)."""
    return min(max(FENCE_MARGIN_MIN, FENCE_MARGIN_SHARE * lease), lease / 3)


def sweep_every(lease: float) -> float:
    """Seconds between a worker's sweeps: a quarter of the lease, between 0.5 and 5."""
    return max(0.5, min(lease / 4, 5.0))


class Lease:
    """The leases of worker ``name``: see the module's docstring."""

    def __init__(self, name: str, db: Database, tx: Transactor, executor: Executor, *, lease: float,
                 fence_margin: float | None = None, host: str):
        margin = default_fence_margin(lease) if fence_margin is None else fence_margin
        if not 0 < margin < lease:
            raise SettingError(f"fence margin {margin:g} s must be more than 0 and less than the lease ({lease:g} s)")
        self.name, self.db, self.tx, self.executor, self.host = name, db, tx, executor, host
        self.lease = lease
        self.heartbeat_every = min(1.0, lease / 3)
        #: seconds before the lease runs out when a worker cut off from the database kills its
        #: processes; ``fence_margin`` (0 < margin < lease) overrides the default
        self.fence_margin = margin
        self.fence_after = lease - margin
        self._lock = threading.Lock()
        #: monotonic time at which the last heartbeat that succeeded began (every track this
        #: worker holds was renewed or claimed since); None while not serving
        self._renewed: float | None = None
        # the dispatcher's tracks in flight, for a heartbeat between another transaction's retries
        self._held: dict[int, int] | None = None
        self._renewing = False  # a heartbeat is being written (its own retries renew nothing more)
        self._next_retry_beat = 0.0
        self._done = threading.Event()
        self._watchdog: threading.Thread | None = None

    def begin(self, since: float, held: dict[int, int]) -> None:
        """The worker is registered (at monotonic ``since``) and holds ``held`` (track id ->
        attempt, kept up to date by the dispatcher): the watchdog starts."""
        self._renewed, self._held = since, held
        self._done.clear()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name=f"{self.name}-fence")
        self._watchdog.start()

    def end(self) -> None:
        self._done.set()
        if self._watchdog is not None and self._watchdog.is_alive():
            self._watchdog.join()
        self._watchdog = None
        self._renewed, self._held = None, None

    def cut_off(self) -> bool:
        """Whether no heartbeat has succeeded for ``fence_after`` seconds: others may take this
        worker's tracks back soon, so it must run none of them."""
        return self._renewed is not None and time.monotonic() - self._renewed > self.fence_after

    def renew(self, in_flight: dict[int, int], attempts: int | None = None) -> None:
        """Write a heartbeat for the worker and its tracks in flight; revoke those no longer its own."""
        self.db.check_file()  # writes to a deleted SQLite file succeed, into nothing: stop instead
        began = time.monotonic()  # the time it writes is later: the lease is counted from then
        self._renewing = True
        try:
            lost = self.tx.run(lambda c: store.heartbeat(c, self.name, list(in_flight)), attempts=attempts)
        finally:
            self._renewing = False
        with self._lock:
            was_cut_off = self.cut_off()
            if self._renewed is not None:
                self._renewed = max(self._renewed, began)
            cut_off = self.cut_off()
        if was_cut_off and not cut_off:
            log.warning("%s: the database answers again: its heartbeat is renewed, it runs tracks again", self.name)
        if lost:
            cancelled = [t for t, state in lost.items() if state == T.CANCELLED]
            taken = [t for t in lost if t not in cancelled]
            if taken:
                log.warning("%s: %d track(s) taken back by another worker; killing their processes",
                            self.name, len(taken))
            self.executor.revoke({t: in_flight[t] for t in taken if t in in_flight}, kill=True)
            self.executor.revoke({t: in_flight[t] for t in cancelled if t in in_flight}, kill=False)

    def beat_while_retrying(self) -> None:
        """One try of a heartbeat, when one is due, from inside another transaction's retries
        (on the dispatcher's thread: it owns the connection)."""
        now = time.monotonic()
        if self._held is None or self._renewing or self._renewed is None or now < self._next_retry_beat \
                or now - self._renewed < self.heartbeat_every:
            return
        self._next_retry_beat = now + self.heartbeat_every
        try:
            self.renew(self._held, attempts=1)
        except DatabaseUnusableError:
            raise
        except DatabaseError:  # the database does not answer it either: the retry goes on
            self.tx.drop()

    def sweep(self) -> None:
        """Take back the tracks of workers whose lease ran out, and finish their pipelines."""
        if self.tx.run(lambda c: recovery.recover_expired(c, kill=self.executor.kill_leftovers, exclude=self.name,
                                                          host=self.host)):
            log.warning("%s: took back tracks of workers whose lease ran out", self.name)

    def _watch(self) -> None:
        """The watchdog thread: fence this worker whenever it is cut off. It reads a clock and
        has processes killed; no database, so that a dispatcher stuck in a statement cannot delay it."""
        tick = min(_FENCE_TICK, self.fence_margin / 4)
        while not self._done.wait(tick):
            if self.cut_off():
                self._fence()

    def _fence(self) -> None:
        silent = time.monotonic() - (self._renewed or 0.0)
        why = "its tracks may have been taken back by another worker already" if silent > self.lease else \
            "before another worker can take its tracks back"  # past the lease: it was paused (SIGSTOP), or slow

        def announce(n: int) -> None:  # before the kill, which waits for the processes to be gone
            log.warning("%s: no heartbeat renewed for %.1f s (lease %g s): killing %d running attempt(s), %s",
                        self.name, silent, self.lease, n, why)
        self.executor.fence(announce)
