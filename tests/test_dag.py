"""Kahn's order and cycle reports, on hand-made graphs and random ones."""
from hypothesis import given, settings, strategies as st

from pipeline_engine import dag


def is_topological(order, vertices, edges):
    position = {v: i for i, v in enumerate(order)}
    return sorted(order) == sorted(vertices) and all(position[t] < position[h] for t, h in edges)


def is_cycle(cycle, edges):
    edge_set = set(edges)
    return (len(cycle) >= 3 and cycle[0] == cycle[-1] and len(set(cycle[:-1])) == len(cycle) - 1
            and all((a, b) in edge_set for a, b in zip(cycle, cycle[1:])))


def test_seed_diamond_orders_every_vertex_after_its_predecessors():
    edges = [("A", "B"), ("A", "C"), ("C", "B"), ("B", "D")]
    order, cycle = dag.topological_order(["A", "B", "C", "D"], edges)
    assert cycle is None
    assert order == ["A", "C", "B", "D"]


def test_seed_cycle_is_reported_in_edge_order():
    edges = [("B", "A"), ("A", "C"), ("C", "B"), ("B", "D")]
    order, cycle = dag.topological_order(["A", "B", "C", "D"], edges)
    assert cycle == ["A", "C", "B", "A"]
    assert "D" not in order  # D hangs below the cycle


def test_graphs_without_edges_and_with_several_roots_or_sinks_are_dags():
    assert dag.topological_order(["solo"], []) == (["solo"], None)
    assert dag.topological_order(["x", "y", "z"], []) == (["x", "y", "z"], None)
    roots = [("a", "m"), ("b", "m"), ("c", "m")]
    assert dag.find_cycle(["a", "b", "c", "m"], roots) is None
    assert dag.roots(["a", "b", "c", "m"], roots) == ["a", "b", "c"]
    sinks = [("r", "x"), ("r", "y")]
    assert dag.sinks(["r", "x", "y"], sinks) == ["x", "y"]


def test_two_vertex_cycle_and_cycle_below_an_acyclic_part():
    assert dag.find_cycle(["a", "b"], [("a", "b"), ("b", "a")]) == ["a", "b", "a"]
    edges = [("root", "p"), ("p", "q"), ("q", "r"), ("r", "p"), ("root", "z")]
    assert dag.find_cycle(["root", "p", "q", "r", "z"], edges) == ["p", "q", "r", "p"]


def test_a_vertex_that_only_feeds_a_cycle_is_not_part_of_the_report():
    # x -> a, and a <-> b: the cycle walk must not wander into x.
    edges = [("x", "a"), ("a", "b"), ("b", "a")]
    assert dag.find_cycle(["x", "a", "b"], edges) == ["a", "b", "a"]
    # a vertex fed by the cycle but not on it
    edges = [("a", "b"), ("b", "a"), ("b", "out")]
    assert dag.find_cycle(["out", "a", "b"], edges) == ["a", "b", "a"]


def test_descendants_follow_every_path():
    succs = dag.adjacency("abcde", [("a", "b"), ("b", "c"), ("a", "d")])
    assert dag.descendants(["a"], succs) == {"b", "c", "d"}
    assert dag.descendants(["b"], succs) == {"c"}
    assert dag.descendants(["e"], succs) == set()


def test_long_chain_is_linear_not_recursive():
    n = 100_000
    names = list(range(n))
    edges = [(i, i + 1) for i in range(n - 1)]
    order, cycle = dag.topological_order(names, edges)
    assert cycle is None and order == names
    edges.append((n - 1, 0))
    assert len(dag.find_cycle(names, edges)) == n + 1


@st.composite
def random_graphs(draw):
    n = draw(st.integers(1, 12))
    vertices = [f"v{i}" for i in range(n)]
    pairs = [(a, b) for a in vertices for b in vertices if a != b]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=30)) if pairs else []
    return vertices, edges


def has_cycle_brute_force(vertices, edges):
    succs = dag.adjacency(vertices, edges)
    # a vertex reaches itself
    return any(v in dag.descendants([v], succs) for v in vertices)


@settings(max_examples=300, deadline=None)
@given(random_graphs())
def test_kahn_agrees_with_brute_force(graph):
    vertices, edges = graph
    order, cycle = dag.topological_order(vertices, edges)
    if has_cycle_brute_force(vertices, edges):
        assert cycle is not None and is_cycle(cycle, edges)
    else:
        assert cycle is None and is_topological(order, vertices, edges)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 40), st.randoms(use_true_random=False))
def test_random_dags_built_forwards_always_have_an_order(n, rnd):
    vertices = [f"v{i}" for i in range(n)]
    edges = {(vertices[i], vertices[j]) for i in range(n) for j in range(i + 1, n) if rnd.random() < 0.2}
    shuffled = vertices[:]
    rnd.shuffle(shuffled)
    order, cycle = dag.topological_order(shuffled, sorted(edges))
    assert cycle is None and is_topological(order, vertices, edges)


def test_critical_path_weighs_the_heaviest_way_to_a_sink():
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("e", "d")]
    weight = {"a": 1.0, "b": 5.0, "c": 1.0, "d": 2.0, "e": 0.5}
    assert dag.critical_path(list("abcde"), edges, weight) == {"d": 2.0, "b": 7.0, "c": 3.0, "e": 2.5, "a": 8.0}
    assert dag.critical_path(["x"], [], {"x": 3.0}) == {"x": 3.0}


@given(st.integers(min_value=1, max_value=30), st.randoms(use_true_random=False))
def test_critical_path_is_at_least_each_successors_plus_own_weight(n, rnd):
    names = list(range(n))
    edges = [(i, j) for i in names for j in names if i < j and rnd.random() < 0.2]
    weight = {v: rnd.uniform(0.0, 3.0) for v in names}
    path = dag.critical_path(names, edges, weight)
    for tail, head in edges:
        assert path[tail] >= weight[tail] + path[head] - 1e-9
    for v in dag.sinks(names, edges):
        assert path[v] == weight[v]
