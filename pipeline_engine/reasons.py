"""Pure: why a track that is not running is not running yet, as a word and its details, decided
from plain facts (the store reads them for a page of tracks: see ``service.show_run``).

A running, succeeded, failed or cancelled track has no reason. The others have the first of
these that holds:

- ``upstream_failed``: the track will never run; ``vertex`` names a failed ancestor (a failed
  predecessor, else one found up through upstream_failed predecessors).
- ``queued``: its run waits for its turn (a schedule's previous run still going, a backfill's
  room full); ``behind`` lists the running runs of that schedule or backfill.
- ``predecessors``: a waiting track; ``vertices`` names its predecessors that have not
  succeeded (at most ``LIST_LIMIT``), ``more`` counts the rest.
- ``retry_delay``: pending, not claimed before ``at``, its retry's time.
- ``pool_full``: pending, every slot of its pool is taken (``running`` of ``size``): ``held_by``
  lists the runs whose running tracks hold them. A pool that is gone has size 0, as claims count it.
- ``owner``: pending in a run only one process may run (``run``, ``resume``, a server's run with
  secrets): that ``worker``, and whether it is ``alive``.
- ``unclaimed``: pending, and no worker has taken it yet: ``workers`` names the live workers that
  take runs nobody owns (at most ``LIST_LIMIT``), ``alive`` counts them (0: none is alive).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_engine.states import PipelineState, TrackState, Word

#: the most names (or run ids) one reason lists
LIST_LIMIT = 20


class Kind(Word):
    #: an ancestor failed: it will never run
    UPSTREAM_FAILED = "upstream_failed"
    #: its run waits for its turn
    QUEUED = "queued"
    #: some predecessor has not succeeded
    PREDECESSORS = "predecessors"
    #: its retry is due later
    RETRY_DELAY = "retry_delay"
    #: its pool has no free slot
    POOL_FULL = "pool_full"
    #: only its run's owner may claim it
    OWNER = "owner"
    #: no worker has claimed it yet
    UNCLAIMED = "unclaimed"


#: the track states that have a reason
EXPLAINED = frozenset({TrackState.WAITING, TrackState.PENDING, TrackState.UPSTREAM_FAILED})


@dataclass(frozen=True)
class Reason:
    """Why a track is not running: its ``kind`` and the details, (key, value) pairs in the order
    ``to_dict`` writes them (sequences as tuples, times as datetimes)."""

    kind: Kind
    details: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"kind": word, detail: value...}``, lists for tuples, ISO 8601 times."""
        return {"kind": self.kind.value, **{key: _plain(value) for key, value in self.details}}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class PoolFigures:
    """A pool as a claim sees it: its size and its running tracks (across every run)."""

    name: str
    size: int
    running: int
    #: the runs whose running tracks hold its slots, lowest id first
    held_by: tuple[int, ...] = ()

    @property
    def full(self) -> bool:
        return self.running >= self.size


@dataclass(frozen=True)
class RunFacts:
    """What is the same for every track of one run."""

    state: str
    #: queued: the running runs of its schedule or backfill, lowest id first
    behind: tuple[int, ...] = ()
    #: the one process that may run it (None: any worker)
    owner: str | None = None
    owner_alive: bool = False
    #: it has secret inputs: only an owner can run it
    secret: bool = False
    #: the live workers that take runs nobody owns, by name
    workers: tuple[str, ...] = ()


def why(state: str, run: RunFacts, *, now: datetime, retry_at: datetime | None = None,
        unmet: Sequence[str] = (), unmet_count: int | None = None, failed: str | None = None,
        pool: PoolFigures | None = None) -> Reason | None:
    """The reason a track in ``state`` of ``run`` is not running (see the module), or None for a
    running or finished one. ``unmet`` names its predecessors that have not succeeded (in
    declaration order; ``unmet_count`` of them in all, when more were read than named);
    ``failed`` a failed ancestor; ``pool`` its pool's figures; ``retry_at`` when it may be
    claimed; ``now`` the time to compare it with."""
    if state == TrackState.UPSTREAM_FAILED:
        return Reason(Kind.UPSTREAM_FAILED, (("vertex", failed),))
    if state not in (TrackState.WAITING, TrackState.PENDING):
        return None
    if run.state == PipelineState.QUEUED:
        return Reason(Kind.QUEUED, (("behind", tuple(run.behind[:LIST_LIMIT])),))
    if state == TrackState.WAITING:
        shown = tuple(unmet[:LIST_LIMIT])
        total = max(len(unmet) if unmet_count is None else unmet_count, len(shown))
        return Reason(Kind.PREDECESSORS, (("vertices", shown), ("more", total - len(shown))))
    if retry_at is not None and retry_at > now:
        return Reason(Kind.RETRY_DELAY, (("at", retry_at),))
    if pool is not None and pool.full:
        return Reason(Kind.POOL_FULL, (("pool", pool.name), ("size", pool.size), ("running", pool.running),
                                       ("held_by", tuple(pool.held_by[:LIST_LIMIT]))))
    if run.owner is not None or run.secret:
        return Reason(Kind.OWNER, (("worker", run.owner), ("alive", run.owner is not None and run.owner_alive)))
    return Reason(Kind.UNCLAIMED, (("workers", tuple(run.workers[:LIST_LIMIT])), ("alive", len(run.workers))))
