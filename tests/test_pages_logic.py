"""The pure parts behind the pages: levels and drawings of a graph, the start form's fields,
percentiles; and the history figures on every backend."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from pipeline_engine import figures, forms, layout, service, store
from pipeline_engine.inputtypes import parse_schema
from pipeline_engine.models import Pipeline
from pipeline_engine.service import history


def test_levels_are_the_longest_chain_above_each_vertex():
    vs = ["a", "b", "c", "d"]
    es = [("a", "b"), ("b", "c"), ("a", "c"), ("d", "c")]
    assert layout.levels(vs, es) == {"a": 0, "b": 1, "c": 2, "d": 0}
    with pytest.raises(ValueError):
        layout.levels(["a", "b"], [("a", "b"), ("b", "a")])


def test_the_critical_chain_follows_the_heaviest_path():
    vs = ["a", "b", "c", "d"]
    es = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert layout.chain(vs, es, {"a": 1, "b": 5, "c": 2, "d": 1}) == ["a", "b", "d"]
    assert layout.chain(vs, es, {"a": 1, "b": 1, "c": 9, "d": 1}) == ["a", "c", "d"]
    assert layout.chain([], [], {}) == []
    # from a run's priorities (each vertex's heaviest path to a sink), no weights needed
    assert layout.chain_by(vs, es, {"a": 9, "b": 3, "c": 8, "d": 1}) == ["a", "c", "d"]


def test_a_big_graph_is_drawn_by_levels_with_counts_by_state():
    vs = [f"v{i}" for i in range(10)]
    es = [(f"v{i}", f"v{i + 5}") for i in range(5)]
    d = layout.draw(vs, es, {"v0": "failed", "v1": "failed"}, limit=4)
    assert d.vertices == [] and d.levels == [{"level": 0, "vertices": 5, "counts": {"failed": 2, "none": 3}},
                                             {"level": 1, "vertices": 5, "counts": {"none": 5}}]
    small = layout.draw(vs, es, {}, limit=10)
    assert [(v["name"], v["level"], v["row"]) for v in small.vertices[:6]] == [
        ("v0", 0, 0), ("v1", 0, 1), ("v2", 0, 2), ("v3", 0, 3), ("v4", 0, 4), ("v5", 1, 0)]


def test_a_neighbourhood_is_bounded_and_says_what_it_left_out():
    vs = ["hub"] + [f"s{i}" for i in range(10)]
    es = [("hub", f"s{i}") for i in range(10)]
    d = layout.neighbourhood(vs, es, "hub", {}, depth=1, limit=4)
    assert len(d.vertices) == 4 and d.left_out == 7 and d.around == "hub"
    assert all(t == "hub" for t, _ in d.edges) and len(d.edges) == 3
    with pytest.raises(KeyError):
        layout.neighbourhood(vs, es, "nope", {})


def _schemas(**vertices):
    return {v: parse_schema(v, inputs) for v, inputs in vertices.items()}


def test_one_field_per_name_unless_its_types_differ():
    found = forms.fields(_schemas(a={"rows": {"type": "int", "max": 5}, "day": "str"},
                                  b={"rows": {"type": "int", "max": 9, "description": "rows to read"},
                                     "day": "int"}))
    assert [(f.key, f.control, f.vertices) for f in found] == [
        ("rows", "number", ("a", "b")), ("a.day", "text", ("a",)), ("b.day", "number", ("b",))]
    assert found[0].spec.description == "rows to read"


def test_what_a_form_sends_becomes_parameters():
    found = forms.fields(_schemas(a={"n": "int", "go": "bool", "opt": {"type": "str", "required": False}}))
    assert forms.parameters({"n": "3", "opt": "", "csrf": "x", "name": "r"}, found) == {"n": "3", "go": "false"}
    assert forms.parameters({"n": "3", "go": "true", "extra": "1"}, found) == {"n": "3", "go": "true", "extra": "1"}


def test_a_problem_is_put_at_the_field_it_names():
    found = forms.fields(_schemas(a={"rows": "int", "day": "str"}, b={"day": "int"}))
    assert forms.field_of("vertex 'a': input 'rows': must be <= 5", found) == "rows"
    assert forms.field_of("vertex 'b': input 'day' (int) is required", found) == "b.day"
    assert forms.field_of("parameter 'rows': cannot read file", found) == "rows"
    assert forms.field_of("parameter 'zzz': no vertex declares an input 'zzz'", found) is None


def test_percentiles_interpolate_between_ranks():
    assert figures.percentile([3.0], 0.95) == 3.0
    assert figures.percentile([1.0, 2.0], 0.5) == 1.5
    assert figures.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    with pytest.raises(ValueError):
        figures.percentile([], 0.5)


@pytest.mark.backends
def test_the_graphs_overview_and_vertex_durations(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    service.import_graph(db, {"name": "idle", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    ids = [service.start_run(db, "g", detach=True).id for _ in range(4)]
    for run_id in ids[:3]:
        service.cancel_run(db, run_id)
    now = store.now()
    with db.transaction() as s:  # two succeeded, one failed recently; one 40 days ago
        for run_id, state, age in zip(ids, ["succeeded", "succeeded", "failed", "succeeded"], [1, 2, 3, 40]):
            s.execute(update(Pipeline).where(Pipeline.id == run_id).values(
                state=state, started_at=now - timedelta(days=age), finished_at=now - timedelta(days=age) + timedelta(seconds=30)))
    rows = {o.name: o for o in history.graph_overview(db, service.list_graphs(db))}
    assert rows["idle"].last_run is None and rows["idle"].success_rate is None
    g = rows["g"]
    assert g.last_run.id == ids[-1] and g.last_run.duration == pytest.approx(30)
    assert g.runs_in_window == 3 and g.success_rate == pytest.approx(2 / 3)
    days = history.run_history(db, graph="g")
    # every day of the window, so that each stands where it fell: three with a run
    assert len(days[0].days) == 31 and days[0].days[-1].day == now.strftime("%Y-%m-%d")
    ran = [d for d in days[0].days if d.runs]
    assert [d.runs for d in ran] == [1, 1, 1] and ran[0].failed == 1
    assert [d.day for d in ran] == [(now - timedelta(days=age)).strftime("%Y-%m-%d") for age in (3, 2, 1)]
    assert all(d.median is None and d.longest is None for d in days[0].days if not d.runs)
    assert history.vertex_durations(db, "g") == {}  # no track succeeded


@pytest.mark.backends
def test_a_runs_eta_is_its_longest_path_left_by_the_priorities_it_started_with(db):
    from pipeline_engine.service import pages

    service.import_graph(db, {"name": "eta", "vertices": [{"name": "a", "script": "true"},
                                                          {"name": "b", "script": "true"},
                                                          {"name": "c", "script": "true"}],
                              "edges": [["a", "b"]]}, seal=True)
    run = service.start_run(db, "eta", detach=True)
    eta = pages.run_eta(db, run.id)
    # no history: each vertex weighs DEFAULT_DURATION, so a -> b is 2 of them
    assert eta.seconds_left == pytest.approx(2 * service.DEFAULT_DURATION)
    assert eta.critical == ["a", "b"]
    service.cancel_run(db, run.id)
    assert pages.run_eta(db, run.id).seconds_left is None


@pytest.mark.backends
def test_the_etas_critical_chain_is_walked_in_sql_as_the_graph_page_walks_it(db):
    """Past 1,000 steps (MariaDB ends a recursion there unless told, without a word), with a
    tie (the first declared goes first) and a root of a set priority beside the chain's."""
    from pipeline_engine.service.runs import _pipeline

    n = 1200
    vertices = [{"name": f"c{i}", "script": "true"} for i in range(n)]
    vertices += [{"name": "tie", "script": "true"}, {"name": "heavy", "script": "true", "priority": 5.0},
                 {"name": "light", "script": "true"}]
    edges = [[f"c{i}", f"c{i + 1}"] for i in range(n - 1)]
    edges += [["c5", "tie"], ["heavy", "light"], ["tie", "c7"]]
    service.import_graph(db, {"name": "long", "vertices": vertices, "edges": edges}, seal=True)
    run = service.start_run(db, "long", detach=True)
    with db.transaction(write=False) as s:
        graph_id = _pipeline(s, run.id).graph_id
        names, pairs = store.vertex_names(s, graph_id), store.edge_names(s, graph_id)
        tracks = store.track_states(s, run.id)
        walked = store.critical_chain(s, run.id, graph_id)
    expected = layout.chain_by(names, pairs, {v: tracks[v][1] for v in names})
    # c5 -> c6 and c5 -> tie weigh the same: c6 was declared first
    assert walked == expected == [f"c{i}" for i in range(n)]


def test_reasons_in_words_never_print_a_missing_name():
    from pipeline_engine.web import render

    words = render._env.get_template("_macros.html").module.reason_words
    assert str(words({"kind": "upstream_failed", "vertex": None}, 7)).strip() == "a vertex upstream failed"
    assert ">extract</a> failed" in str(words({"kind": "upstream_failed", "vertex": "extract"}, 7))
    owner = str(words({"kind": "owner", "worker": None, "alive": False}, 7)).strip()
    assert owner == "only the worker that holds its secrets may run it, and it is not alive"
    assert "None" not in owner
