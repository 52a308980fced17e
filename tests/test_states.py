"""The state words and the one transition table (pure)."""
import pytest

from pipeline_engine import states
from pipeline_engine.errors import StateError
from pipeline_engine.states import PipelineState, TrackState


def test_the_words_are_exactly_the_documented_ones_and_compare_as_strings():
    assert [s.value for s in TrackState] == ["waiting", "pending", "running", "succeeded", "failed",
                                             "upstream_failed", "cancelled"]
    assert [s.value for s in PipelineState] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert TrackState.RUNNING == "running" and str(TrackState.UPSTREAM_FAILED) == "upstream_failed"


@pytest.mark.parametrize("current, target", [
    ("waiting", "pending"), ("pending", "running"), ("running", "succeeded"), ("running", "failed"),
    ("running", "pending"), ("waiting", "upstream_failed"), ("pending", "cancelled"), ("failed", "pending"),
])
def test_allowed_track_moves(current, target):
    assert states.check_track(current, target) == target


@pytest.mark.parametrize("current, target", [
    ("waiting", "running"), ("pending", "succeeded"), ("succeeded", "running"), ("succeeded", "failed"),
    ("upstream_failed", "running"), ("waiting", "waiting"),
])
def test_illegal_track_moves_raise(current, target):
    with pytest.raises(StateError, match=f"track cannot go from {current} to {target}"):
        states.check_track(current, target)


def test_pipeline_moves_and_finished_sets():
    assert states.check_pipeline("running", "failed") == "failed"
    with pytest.raises(StateError):
        states.check_pipeline("succeeded", "running")
    assert states.TRACK_FINISHED == {"succeeded", "failed", "upstream_failed", "cancelled"}
    assert states.sources_of(TrackState.RUNNING) == {"pending"}
    assert states.sources_of(TrackState.PENDING) == {"waiting", "running", "failed", "upstream_failed", "cancelled"}


def test_every_state_has_a_row_in_the_table():
    assert set(states.TRACK_TRANSITIONS) == set(TrackState)
    assert set(states.PIPELINE_TRANSITIONS) == set(PipelineState)
