"""Pure: the status and state words, and the one table of allowed transitions.

The enums are ``str`` subclasses, so a member compares equal to the word stored in
the database (``TrackState.RUNNING == "running"``).
"""
from __future__ import annotations

from enum import Enum

from pipeline_engine.errors import StateError


class GraphStatus(str, Enum):
    #: editable; any change to a checked graph makes it a draft again
    DRAFT = "draft"
    #: acyclic as of its last change; may be sealed
    CHECKED = "checked"
    #: immutable; only sealed graphs run
    SEALED = "sealed"

    def __str__(self) -> str:
        return self.value


class TrackState(str, Enum):
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

    def __str__(self) -> str:
        return self.value


class PipelineState(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


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


_PHRASES = {"running": "is running", "succeeded": "has succeeded", "failed": "has failed",
            "cancelled": "was cancelled"}


def run_is(state: str) -> str:
    """How a run's state reads after "run 5": "has succeeded", "is running"."""
    return _PHRASES.get(str(state), f"is {state}")
