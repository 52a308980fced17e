"""The contract between a worker and whatever runs its attempts.

The worker's dispatcher owns the database: it claims tracks, then ``submit``s their attempts;
the executor runs them and hands each end to the ``deliver`` callable it was started with (the
dispatcher's queue), and never writes anything itself. An end is delivered exactly once per
submitted attempt, started or not, so the dispatcher always learns what became of a claim.
Everything the worker decides about a running attempt reaches the executor as a call:
``revoke`` (no longer ours), ``fence`` (the lease may run out: kill now, record nothing),
``interrupt`` (a stop's grace is over), ``abandon`` (the database cannot take results)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from pipeline_engine.rendering import Rendered


@dataclass(frozen=True)
class Outcome:
    """How an attempt's process ended."""
    #: the shell's exit status; negative N when signal N ended it; None if it never started
    exit_code: int | None
    timed_out: bool
    #: the tails of the output, decoded as UTF-8, secrets masked
    stdout: str
    stderr: str
    duration: float
    #: why it ended, when not by its own exit (timeout, could not start)
    error: str | None = None
    #: the file the full output went to, if any
    log_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class Attempt:
    """One attempt of a track, with everything it needs to run without the database."""
    track_id: int
    attempt: int
    run: int
    vertex: str
    #: its critical-path priority: higher starts first among those submitted
    priority: float
    #: the script with its values (rendered when the attempt starts; a rendering error fails it)
    render: Callable[[], Rendered]
    timeout: float | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Sequence[str] = ()
    log_path: str | None = None
    #: the best priority among the tracks its success may release (None: it has no successor).
    #: When one outranks every attempt waiting, the executor waits for ``recorded`` before it
    #: starts the next one, so that the critical path goes first.
    successors_rank: float | None = None


class Ended(NamedTuple):
    """What became of a submitted attempt."""
    track_id: int
    attempt: int
    outcome: Outcome
    started_at: datetime
    finished_at: datetime
    #: killed (or never started) because the worker could not renew its lease: record nothing
    fenced: bool = False
    #: terminated because the worker stopped: hand the track back, the attempt not counted
    interrupted: bool = False


class Executor(Protocol):
    """What a worker needs from an executor."""

    def start(self, deliver: Callable[[Ended], None]) -> None:
        """Begin taking attempts; every end goes to ``deliver`` (from the executor's threads)."""

    def submit(self, attempts: Iterable[Attempt]) -> None:
        """Run these attempts, highest priority first, as capacity allows."""

    def queued(self) -> int:
        """How many submitted attempts have not started yet."""

    def recorded(self, track_ids: Iterable[int]) -> None:
        """These ends are written (what they released is claimed): attempts held for it go on."""

    def revoke(self, attempts: Mapping[int, int], *, kill: bool) -> None:
        """These attempts (track id -> attempt) are no longer the worker's: never start them; end
        the running ones at once (``kill``: another copy may start elsewhere) or gently
        (SIGTERM, then SIGKILL after a grace: cancelled)."""

    def fence(self, announce: Callable[[int], None] | None = None) -> int:
        """Kill every running attempt at once (SIGKILL: its group, and whatever carries its
        marker; ``announce`` is told how many first); their ends are delivered ``fenced``.
        Attempts due to start while the worker is cut off (the ``cut_off`` it was given says so)
        are not started, and delivered ``fenced`` too. Returns how many were killed."""

    def withdraw(self) -> list[tuple[int, int]]:
        """Take back the submitted attempts that have not started (a stop): (track id, attempt)."""

    def interrupt(self, grace: float) -> None:
        """Terminate the running attempts (SIGTERM, SIGKILL after ``grace``); their ends are
        delivered ``interrupted``."""

    def abandon(self) -> None:
        """The results cannot be written: start nothing more, terminate what runs."""

    def kill_leftovers(self, attempts: Iterable[tuple[int, int]]) -> int:
        """Kill what is left on this host of these attempts (track id, attempt) of another,
        dead, worker: before their tracks run again. Returns how many processes there were."""

    def sweep_leftovers(self) -> None:
        """Kill what attempts that ended left running outside their process group."""

    def shutdown(self) -> None:
        """Run what was submitted, then stop the threads (after ``withdraw`` for a stop)."""
