"""What the engine tells its listeners (progress displays, and later the API's event stream):
the ``Event``s, and the one ``Bus`` they go through. A listener runs in the engine's threads;
one that raises is logged and never reaches the engine, which would otherwise stop a worker
thread or the dispatcher with a track left running forever."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("pipeline_engine.events")


@dataclass(frozen=True)
class Event:
    """A change the engine made: a track ``started`` an attempt or ``ended`` one in ``state``
    (pending again when a retry follows), became ``ready`` (its predecessors all succeeded) or
    was ``skipped`` (upstream_failed). Delivered from the engine's threads: a listener must be
    thread-safe and quick."""
    kind: str
    vertex: str
    state: str
    attempt: int
    duration: float | None = None
    error: str | None = None
    #: the run's id
    run: int | None = None
    #: an ``ended`` attempt whose retry waits: seconds until it may start
    retry_in: float | None = None


Listener = Callable[[Event], None]


class Bus:
    """Delivers each event to every listener, in order. A listener's exception is logged (with
    its traceback the first time, counted after) and the event goes on to the next listener."""

    def __init__(self, *listeners: Listener | None):
        self._listeners = [listener for listener in listeners if listener is not None]
        self._lock = threading.Lock()
        self.failures = 0  #: listener calls that raised

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, events: Iterable[Event]) -> None:
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 -- a listener's bug must not stop the engine
                    with self._lock:
                        self.failures += 1
                        first = self.failures == 1
                    if first:
                        log.exception("an event listener raised on %s; the engine goes on (later failures are"
                                      " counted, not logged)", event)
