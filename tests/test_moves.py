"""The store's named writes (states.MOVES) and the transition table: every move is one the table
allows, and store.py writes no state but through a move (an audit of its source)."""
import ast
import os

import pytest

from pipeline_engine import states, store
from pipeline_engine.errors import StateError
from pipeline_engine.states import PipelineState, TrackState

STORE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipeline_engine", "store.py")
#: the words of every track and run state
WORDS = {s.value for s in TrackState} | {s.value for s in PipelineState}


@pytest.mark.parametrize("name", sorted(states.MOVES))
def test_every_pair_of_every_move_is_allowed_by_the_table(name):
    move = states.MOVES[name]
    check = states.check_track if isinstance(next(iter(move.sources)), TrackState) else states.check_pipeline
    assert move.sources
    for source in move.sources:
        for target in move.targets:
            assert check(source, target) == target


def test_the_moves_use_every_pair_the_table_allows():
    # a pair no write makes would be a transition nothing performs: the table and the store disagree
    # (the kind first: a track's and a run's words are equal strings)
    made = {(type(s), s, t) for m in states.MOVES.values() for s in m.sources for t in m.targets}
    allowed = {(type(s), s, t) for table in (states.TRACK_TRANSITIONS, states.PIPELINE_TRANSITIONS)
               for s, targets in table.items() for t in targets}
    assert made == allowed


def test_every_move_is_in_the_table_of_moves():
    defined = {v for v in vars(states).values() if isinstance(v, states.Move)}
    assert defined == set(states.MOVES.values())
    assert all(states.MOVES[m.name] is m for m in defined)


def test_a_move_the_table_does_not_allow_is_refused_when_it_is_made():
    with pytest.raises(StateError, match="succeeded -> running"):
        states._move("bad", {TrackState.PENDING, TrackState.SUCCEEDED}, {TrackState.RUNNING})
    with pytest.raises(StateError, match="all track states or all pipeline states"):
        states._move("mixed", {TrackState.RUNNING}, {PipelineState.FAILED})
    with pytest.raises(StateError, match="all track states or all pipeline states"):
        states._move("mixed", {PipelineState.FAILED}, {TrackState.FAILED})  # equal words, other tables


def test_a_move_names_its_targets_and_sources():
    assert states.CLAIM.target == TrackState.RUNNING
    with pytest.raises(StateError):
        _ = states.RECORD.target  # three targets
    assert states.RECORD.to("pending") is TrackState.PENDING
    with pytest.raises(StateError, match="record cannot move to cancelled"):
        states.RECORD.to("cancelled")
    assert states.RESTART.source("failed") is PipelineState.FAILED
    with pytest.raises(StateError, match="restart cannot move from succeeded"):
        states.RESTART.source("succeeded")


def test_the_guard_is_one_comparison_for_one_source_and_a_sorted_list_for_more():
    state = store._track.c.state
    one = str(store._from(state, states.CLAIM).compile(compile_kwargs={"literal_binds": True}))
    assert one == "track.state = 'pending'"
    more = str(store._from(state, states.RESET).compile(compile_kwargs={"literal_binds": True}))
    assert more == "track.state IN ('cancelled', 'failed', 'upstream_failed')"


def _tree():
    return ast.parse(open(STORE, encoding="utf-8").read())


def state_literals(tree) -> list[tuple[int, str]]:
    """(line, word) of every string literal in ``tree`` that is a state's word."""
    return sorted((n.lineno, n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in WORDS)


def _guarded(node) -> bool:
    """Whether ``node`` holds a guard from a move: ``_from(column, MOVE)``, or ``MOVE.source(state)``
    for a from-state the caller gives."""
    return any(isinstance(n, ast.Call) and ((isinstance(n.func, ast.Name) and n.func.id == "_from")
                                            or (isinstance(n.func, ast.Attribute) and n.func.attr == "source"))
               for n in ast.walk(node))


def unguarded_writes(tree) -> list[int]:
    """Lines of the state writes with no guard from a move: a ``.values(state=...)`` whose
    statement has none, or a ``{"state": ...}`` (values passed as a dict) or ``x.state = ...``
    in a function that has none."""
    out = []
    for top in tree.body:
        for n in ast.walk(top):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "values" \
                    and any(k.arg == "state" for k in n.keywords) and not _guarded(n):
                out.append(n.lineno)
            elif isinstance(n, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "state" for k in n.keys) \
                    and not _guarded(top):
                out.append(n.lineno)
            elif isinstance(n, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "state"
                                                   for t in n.targets) and not _guarded(top):
                out.append(n.lineno)
    return sorted(out)


def test_the_store_spells_no_state_word_it_takes_them_from_the_states_module():
    assert state_literals(_tree()) == [], "store.py: use the moves (states.MOVES) or the enums, not the words"


def test_every_state_write_of_the_store_is_guarded_by_a_move():
    assert unguarded_writes(_tree()) == [], "store.py: an UPDATE of a state needs _from(column, MOVE) in its WHERE"


def test_the_audits_find_a_word_put_back_and_a_write_without_its_guard():
    source = open(STORE, encoding="utf-8").read()
    guard = "_from(_track.c.state, UPSTREAM_FAILED)"
    assert source.count(guard) == 1
    tampered = ast.parse(source.replace(guard, '_track.c.state == "waiting"'))
    assert [word for _, word in state_literals(tampered)] == ["waiting"]
    assert len(unguarded_writes(tampered)) == 1
    unguarded = ast.parse(source.replace(guard, "true()"))
    assert state_literals(unguarded) == [] and len(unguarded_writes(unguarded)) == 1
    # a write whose values are a dict (take_back's) is seen too
    guard = "_from(_track.c.state, TAKE_BACK)"
    assert source.count(guard) == 1
    assert len(unguarded_writes(ast.parse(source.replace(guard, "true()")))) == 1
