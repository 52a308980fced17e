"""Console: the live progress of a run, fed by the runner's events. No database.

On a terminal one status line is redrawn in place a few times a second: elapsed time, counts per
state, and the vertices running now. Elsewhere (a pipe, a CI log) each attempt that ends prints
one line instead, so a log shows what happened without control characters.

Once started, only the progress thread writes: the listener, called in the engine's threads
(the dispatcher, between a batch's commit and handing the claimed tracks to the threads), only
updates counts and queues lines. A write releases the GIL, and the engine's threads then wait
to get it back; a slow reader of the stream (a full pipe) would stall the engine itself.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from typing import TextIO

from pipeline_engine.events import Event
from pipeline_engine.states import TrackState as T

#: the order states are shown in
ORDER = [T.SUCCEEDED, T.RUNNING, T.PENDING, T.WAITING, T.FAILED, T.UPSTREAM_FAILED, T.CANCELLED]
_REDRAW = 0.2  # seconds between redraws of the status line


def elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Counts per state and the running vertices, kept from the runner's events (which arrive
    from several threads), and shown on ``stream``."""

    def __init__(self, states: dict[str, str], stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.state = dict(states)  # vertex -> state
        self.running: dict[str, float] = {}  # vertex -> when it started
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self._out = threading.Lock()  # one writer at a time: the status line and notices
        self._lines: list[str] = []  # ended attempts' lines not written yet (without a terminal)
        self.stopping = False  # the run was asked to stop: the status line says so

    # --- fed by the runner -----------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.state[event.vertex] = event.state
            if event.kind == "started":
                self.running[event.vertex] = time.monotonic()
            else:
                self.running.pop(event.vertex, None)
            if not self.live and event.kind == "ended":
                self._lines.append(self._describe(event))
        if self._thread is None:  # not started: no thread writes them
            self._write_lines()

    @staticmethod
    def _describe(event: Event) -> str:
        took = f" in {event.duration:.2f} s" if event.duration is not None else ""
        why = f": {event.error}" if event.error else ""
        if event.state == T.PENDING:
            wait = f" in {event.retry_in:g} s" if event.retry_in else ""
            return f"  {event.vertex}: attempt {event.attempt} failed{took}{why}; retrying{wait}"
        return f"  {event.vertex}: {event.state}{took}{why}"

    def notice(self, text: str) -> None:
        """Print ``text`` on a line of its own (a stop was asked: ``Engine.on_stop``); the
        status line, redrawn below it, shows the stopping state from now on."""
        with self._out:
            self.stopping = True
            self.stream.write(("\r\x1b[2K" if self.live else "") + self._take_lines() + text + "\n")
            self.stream.flush()

    # --- shown --------------------------------------------------------------------------

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self.state.values())

    def line(self) -> str:
        """The status line: ``[00:03] 5/12 done: 4 succeeded, 2 running, ... | running: a, b``."""
        with self._lock:
            counts = Counter(self.state.values())
            running = sorted(self.running, key=self.running.get)
        done = sum(counts[s] for s in (T.SUCCEEDED, T.FAILED, T.UPSTREAM_FAILED, T.CANCELLED))
        parts = ", ".join(f"{counts[s]} {s}" for s in ORDER if counts[s])
        text = f"[{elapsed(time.monotonic() - self.started)}] {'stopping: ' if self.stopping else ''}" \
               f"{done}/{len(self.state)} done: {parts}"
        if running:
            shown = ", ".join(running[:5]) + (f" +{len(running) - 5}" if len(running) > 5 else "")
            text += f" | running: {shown}"
        return text

    def start(self) -> Progress:
        """Start the thread that redraws the status line, or writes the queued lines, every
        0.2 s."""
        self._thread = threading.Thread(target=self._redraw if self.live else self._flush, name="progress",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop redrawing and clear the status line; write the lines still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self.live:
                with self._out:
                    self.stream.write("\r\x1b[2K")
                    self.stream.flush()
        self._write_lines()

    def _redraw(self) -> None:
        while not self._stop.wait(_REDRAW):
            width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn
            text = self.line()[:width]
            with self._out:
                self.stream.write("\r\x1b[2K" + text)
                self.stream.flush()

    def _flush(self) -> None:
        while not self._stop.wait(_REDRAW):
            self._write_lines()

    def _take_lines(self) -> str:
        with self._lock:
            lines, self._lines = self._lines, []
        return "".join(line + "\n" for line in lines)

    def _write_lines(self) -> None:
        """Write the queued lines, in one write."""
        with self._out:
            text = self._take_lines()
            if text:
                self.stream.write(text)
                self.stream.flush()
