"""Pure: the status and state words, and the one table of allowed transitions.

The enums are ``str`` subclasses, so a member compares equal to the word stored in
the database (``TrackState.RUNNING == "running"``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Union

from pipeline_engine.errors import StateError


class Word(str, Enum):
    """A state's (or a policy's) word: equal to the plain string the database stores, and
    printed as it."""

    def __str__(self) -> str:
        return self.value


class GraphStatus(Word):
    #: editable; any change to a checked graph makes it a draft again
    DRAFT = "draft"
    #: acyclic as of its last change; may be sealed
    CHECKED = "checked"
    #: immutable; only sealed graphs run
    SEALED = "sealed"


class TrackState(Word):
    #: some predecessor has not succeeded yet
    WAITING = "waiting"
    #: every predecessor succeeded; ready to be claimed
    PENDING = "pending"
    #: a process of this track is running now
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    #: failed for good (attempts exhausted)
    FAILED = "failed"
    #: never ran because an ancestor failed
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


class PipelineState(Word):
    #: made, waiting for its turn (a schedule's previous run, a backfill's room): no track is claimed
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptOutcome(Word):
    """How one attempt of a track ended: the word an ``attempt`` row keeps (an attempt that
    runs now is not stored; it reads as ``RUNNING_ATTEMPT``)."""

    #: its script exited 0
    SUCCEEDED = "succeeded"
    #: its script exited non-zero, was killed by a signal, or could not start
    FAILED = "failed"
    #: killed at its vertex's timeout
    TIMED_OUT = "timed_out"
    #: its worker died or went silent past its lease, and the track was taken back
    LOST = "lost"
    #: its run was cancelled while it ran
    CANCELLED = "cancelled"


#: what an attempt that runs now reads as (never stored)
RUNNING_ATTEMPT = "running"


_T = TrackState
#: track state -> the states it may move to
TRACK_TRANSITIONS: dict[TrackState, frozenset[TrackState]] = {
    _T.WAITING: frozenset({_T.PENDING, _T.UPSTREAM_FAILED, _T.CANCELLED}),
    _T.PENDING: frozenset({_T.RUNNING, _T.CANCELLED}),
    # running -> pending: a failed attempt with retries left, or a lost lease handed back
    _T.RUNNING: frozenset({_T.SUCCEEDED, _T.FAILED, _T.PENDING, _T.CANCELLED}),
    _T.SUCCEEDED: frozenset(),
    # a retry of a finished run starts these again
    _T.FAILED: frozenset({_T.PENDING, _T.WAITING}),
    _T.UPSTREAM_FAILED: frozenset({_T.PENDING, _T.WAITING}),
    _T.CANCELLED: frozenset({_T.PENDING, _T.WAITING}),
}

_P = PipelineState
PIPELINE_TRANSITIONS: dict[PipelineState, frozenset[PipelineState]] = {
    _P.QUEUED: frozenset({_P.RUNNING, _P.CANCELLED}),
    _P.RUNNING: frozenset({_P.SUCCEEDED, _P.FAILED, _P.CANCELLED}),
    _P.SUCCEEDED: frozenset(),
    _P.FAILED: frozenset({_P.RUNNING}),
    _P.CANCELLED: frozenset({_P.RUNNING}),
}

TRACK_FINISHED = frozenset({_T.SUCCEEDED, _T.FAILED, _T.UPSTREAM_FAILED, _T.CANCELLED})
PIPELINE_FINISHED = frozenset({_P.SUCCEEDED, _P.FAILED, _P.CANCELLED})


def sources_of(target: TrackState) -> frozenset[TrackState]:
    """The track states from which ``target`` may be reached (for compare-and-set writes)."""
    return frozenset(s for s, targets in TRACK_TRANSITIONS.items() if target in targets)


def check_track(current: str, target: str) -> TrackState:
    """Return ``target`` as a TrackState, or raise StateError if the move is not allowed."""
    cur, tgt = TrackState(current), TrackState(target)
    if tgt not in TRACK_TRANSITIONS[cur]:
        raise StateError(f"track cannot go from {cur} to {tgt}")
    return tgt


def check_pipeline(current: str, target: str) -> PipelineState:
    """Return ``target`` as a PipelineState, or raise StateError if the move is not allowed."""
    cur, tgt = PipelineState(current), PipelineState(target)
    if tgt not in PIPELINE_TRANSITIONS[cur]:
        raise StateError(f"pipeline cannot go from {cur} to {tgt}")
    return tgt


State = Union[TrackState, PipelineState]


@dataclass(frozen=True)
class Move:
    """One named compare-and-set write of the store: a row whose state is one of ``sources``
    goes to one of ``targets``. The store's UPDATE carries ``sources`` in its WHERE, so a row
    that moved meanwhile (a stale worker's write, a cancelled run) is left alone. Every
    ``source -> target`` pair is one the transition table allows: checked when this module is
    imported. No targets: the write keeps the state and changes other columns, only while the
    row is in ``sources`` (a heartbeat, an adoption)."""

    name: str
    sources: frozenset[State]
    targets: frozenset[State]

    @property
    def target(self) -> State:
        """The one state this move writes."""
        if len(self.targets) != 1:
            raise StateError(f"move {self.name} has {len(self.targets)} targets, not one")
        return next(iter(self.targets))

    def to(self, target: str) -> State:
        """``target`` as a state, or StateError if this move cannot write it (a parameter's check)."""
        if target not in self.targets:
            raise StateError(f"{self.name} cannot move to {target} (only to {', '.join(sorted(self.targets))})")
        return type(next(iter(self.targets)))(target)

    def source(self, state: str) -> State:
        """``state`` as a state, or StateError if this move does not start from it."""
        if state not in self.sources:
            raise StateError(f"{self.name} cannot move from {state} (only from {', '.join(sorted(self.sources))})")
        return type(next(iter(self.sources)))(state)


def _move(name: str, sources: Iterable[State], targets: Iterable[State] = ()) -> Move:
    """A move, checked against the table of its states; raises StateError if a pair is not allowed."""
    move = Move(name, frozenset(sources), frozenset(targets))
    # the types of the members, not a union of the sets: a track's and a run's words are equal strings
    if not move.sources or len({type(s) for s in (*move.sources, *move.targets)}) != 1:
        raise StateError(f"move {name}: its states must be all track states or all pipeline states")
    table: dict = TRACK_TRANSITIONS if isinstance(next(iter(move.sources)), TrackState) else PIPELINE_TRANSITIONS
    refused = sorted(f"{s} -> {t}" for s in move.sources for t in move.targets if t not in table[s])
    if refused:
        raise StateError(f"move {name} is not allowed by the transition table: {', '.join(refused)}")
    return move


# --- the store's writes of a track -------------------------------------------------------------
#: a worker takes a pending (and due) track
CLAIM = _move("claim", {_T.PENDING}, {_T.RUNNING})
#: the end of an attempt: succeeded, failed for good, or pending for a retry
RECORD = _move("record", {_T.RUNNING}, {_T.SUCCEEDED, _T.FAILED, _T.PENDING})
#: its last predecessor succeeded
RELEASE = _move("release", {_T.WAITING}, {_T.PENDING})
#: below a failure, it will never run
UPSTREAM_FAILED = _move("upstream_failed", {_T.WAITING}, {_T.UPSTREAM_FAILED})
#: a stopping worker gives back a track it claimed, the attempt not counted
HAND_BACK = _move("hand_back", {_T.RUNNING}, {_T.PENDING})
#: the lease of its worker ran out: pending for another attempt, or failed when none is left
TAKE_BACK = _move("take_back", {_T.RUNNING}, {_T.PENDING, _T.FAILED})
#: cancelling a run, the tracks that have not started
CANCEL_QUEUED = _move("cancel_queued", {_T.WAITING, _T.PENDING}, {_T.CANCELLED})
#: cancelling a run, the tracks that run now (their worker kills the process)
CANCEL_RUNNING = _move("cancel_running", {_T.RUNNING}, {_T.CANCELLED})
#: ``retry``: what did not succeed starts again, pending or waiting for its predecessors
RESET = _move("reset", {_T.FAILED, _T.UPSTREAM_FAILED, _T.CANCELLED}, {_T.PENDING, _T.WAITING})
#: a worker renews the lease of a track it runs (the state stays)
HEARTBEAT = _move("heartbeat", {_T.RUNNING})

# --- the store's writes of a run ---------------------------------------------------------------
#: none of its tracks is unfinished
FINISH = _move("finish", {_P.RUNNING}, {_P.SUCCEEDED, _P.FAILED})
CANCEL_RUN = _move("cancel_run", {_P.RUNNING, _P.QUEUED}, {_P.CANCELLED})
#: a queued run's turn has come
START_QUEUED = _move("start_queued", {_P.QUEUED}, {_P.RUNNING})
#: ``retry`` of a finished run
RESTART = _move("restart", {_P.FAILED, _P.CANCELLED}, {_P.RUNNING})
#: ``resume``: a running run changes owner (the state stays)
ADOPT = _move("adopt", {_P.RUNNING})

#: every move, by name
MOVES: dict[str, Move] = {m.name: m for m in (CLAIM, RECORD, RELEASE, UPSTREAM_FAILED, HAND_BACK, TAKE_BACK,
                                              CANCEL_QUEUED, CANCEL_RUNNING, RESET, HEARTBEAT, FINISH, CANCEL_RUN,
                                              START_QUEUED, RESTART, ADOPT)}


_PHRASES = {"queued": "is queued", "running": "is running", "succeeded": "has succeeded", "failed": "has failed",
            "cancelled": "was cancelled"}


def run_is(state: str) -> str:
    """How a run's state reads after "run 5": "has succeeded", "is running"."""
    return _PHRASES.get(str(state), f"is {state}")
