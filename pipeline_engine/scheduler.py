"""The scheduler process (``pipeline-engine scheduler``, or a thread of ``serve`` and ``worker
--scheduler``): every tick, one look that takes the decisions due (``service.decide_due``).
Any number of them may run against one database, on any hosts: the database makes each
decision exactly once. One that is killed loses nothing: what it had not committed is decided
by the next look, its own or another's.

Clocks: a scheduler decides a fire time once its own clock has passed it. Two schedulers whose
clocks differ by up to ``GRACE`` (60 s) take the same decisions, the slower one later: a fire
time is *missed* only when the first clock to reach it reads it more than the grace late."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from pipeline_engine import service
from pipeline_engine.db import Database
from pipeline_engine.errors import DatabaseError
from pipeline_engine.schedules import GRACE
from pipeline_engine.views import DecisionInfo

log = logging.getLogger("pipeline_engine.scheduler")

#: seconds between looks, by default
TICK = 1.0


class Scheduler:
    """Looks for due fire times every ``tick`` seconds until stopped, and at the soonest fire
    time when that comes first."""

    def __init__(self, db: Database, name: str, *, tick: float = TICK, grace: timedelta = GRACE,
                 clock: Callable[[], datetime] | None = None,
                 on_decision: Callable[[DecisionInfo], None] | None = None):
        self.db, self.name, self.tick, self.grace = db, name, tick, grace
        self.clock = clock
        self.on_decision = on_decision
        self.stopping = threading.Event()

    def look(self) -> list[DecisionInfo]:
        """Take every decision due now, and start the queued runs whose turn has come."""
        decisions = service.decide_due(self.db, scheduler=self.name, now=self.clock() if self.clock else None,
                                       grace=self.grace)
        service.promote_queued(self.db)
        for d in decisions:
            if self.on_decision is not None:
                self.on_decision(d)
        return decisions

    def run(self) -> None:
        """Look every tick until ``stop``. A database that does not answer is tried again at the
        next tick (the decisions wait; none is lost)."""
        while not self.stopping.is_set():
            wait = self.tick
            try:
                self.look()
                soonest = service.next_due(self.db)
                if soonest is not None and self.clock is None:  # wake for it rather than a tick later
                    wait = min(wait, max(0.0, (soonest - datetime.now(timezone.utc)).total_seconds()) + 0.001)
            except DatabaseError as exc:
                log.warning("%s: the database did not answer (%s); trying again in %.1f s", self.name,
                            str(exc).splitlines()[0], self.tick)
            self.stopping.wait(wait)

    def stop(self) -> None:
        self.stopping.set()
