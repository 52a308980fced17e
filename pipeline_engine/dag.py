"""Pure graph algorithms over vertex names and an edge list. No database here.

Every function is linear in vertices + edges.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

V = TypeVar("V", bound=Hashable)


def adjacency(vertices: Iterable[V], edges: Iterable[tuple[V, V]]) -> dict[V, list[V]]:
    """Successor lists, in edge order, for every vertex (also those without edges)."""
    succs: dict[V, list[V]] = {v: [] for v in vertices}
    for tail, head in edges:
        succs[tail].append(head)
    return succs


def topological_order(vertices: Sequence[V], edges: Iterable[tuple[V, V]]) -> tuple[list[V], list[V] | None]:
    """Kahn's algorithm.

    Returns ``(order, None)`` when the graph is acyclic, where ``order`` lists every vertex
    after all its predecessors (ties keep the order of ``vertices``). Otherwise returns
    ``(partial_order, cycle)`` where ``cycle`` is one cycle as vertices in edge order with
    the first vertex repeated at the end, e.g. ``['A', 'C', 'B', 'A']``.
    """
    succs = adjacency(vertices, edges)
    indegree = {v: 0 for v in succs}
    for heads in succs.values():
        for head in heads:
            indegree[head] += 1
    ready = deque(v for v in vertices if indegree[v] == 0)
    order: list[V] = []
    while ready:
        v = ready.popleft()
        order.append(v)
        for head in succs[v]:
            indegree[head] -= 1
            if indegree[head] == 0:
                ready.append(head)
    if len(order) == len(succs):
        return order, None
    return order, _find_cycle(succs, {v for v, d in indegree.items() if d > 0})


def _find_cycle(succs: dict[V, list[V]], blocked: set[V]) -> list[V]:
    # Every vertex Kahn could not order has a predecessor that is also unordered, so
    # walking *backwards* inside that set must revisit a vertex: that walk is a cycle.
    # Walking forwards could leave the set (a blocked vertex may only feed others).
    preds: dict[V, V] = {}
    for tail, heads in succs.items():
        if tail in blocked:
            for head in heads:
                if head in blocked and head not in preds:
                    preds[head] = tail
    position = {u: i for i, u in enumerate(succs)}
    start = min(blocked, key=position.__getitem__)
    seen: dict[V, int] = {}
    walk: list[V] = []
    v = start
    while v not in seen:
        seen[v] = len(walk)
        walk.append(v)
        v = preds[v]
    cycle = walk[seen[v]:]
    cycle.reverse()  # the backward walk, turned into edge order
    # Start the report at the earliest-declared vertex of the cycle, for stable messages.
    first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
    cycle = cycle[first:] + cycle[:first]
    return cycle + [cycle[0]]


def find_cycle(vertices: Sequence[V], edges: Iterable[tuple[V, V]]) -> list[V] | None:
    """One cycle (first vertex repeated at the end), or None if the graph is acyclic."""
    return topological_order(vertices, edges)[1]


def roots(vertices: Sequence[V], edges: Iterable[tuple[V, V]]) -> list[V]:
    """Vertices without predecessors, in the order of ``vertices``."""
    heads = {h for _, h in edges}
    return [v for v in vertices if v not in heads]


def sinks(vertices: Sequence[V], edges: Iterable[tuple[V, V]]) -> list[V]:
    """Vertices without successors, in the order of ``vertices``."""
    tails = {t for t, _ in edges}
    return [v for v in vertices if v not in tails]


def descendants(start: Iterable[V], succs: dict[V, list[V]]) -> set[V]:
    """Every vertex reachable from ``start`` (``start`` itself excluded unless on a cycle)."""
    seen: set[V] = set()
    stack = [h for s in start for h in succs.get(s, ())]
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(succs.get(v, ()))
    return seen


def critical_path(vertices: Sequence[V], edges: Iterable[tuple[V, V]], weight: dict[V, float]) -> dict[V, float]:
    """For each vertex of an acyclic graph, the heaviest path from it to a sink, its own weight
    included: ``weight[v] + max(critical_path[s] for each successor s)``. Starting the ready
    vertex with the largest value first is the critical-path list schedule. Linear."""
    edges = list(edges)
    order, cycle = topological_order(vertices, edges)
    if cycle is not None:
        raise ValueError(f"not acyclic: {cycle}")
    succs = adjacency(vertices, edges)
    path: dict[V, float] = {}
    for v in reversed(order):
        path[v] = weight[v] + max((path[s] for s in succs[v]), default=0.0)
    return path
