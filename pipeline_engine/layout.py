"""Pure: how a graph is drawn. Each vertex gets a level (the longest chain of predecessors
above it: roots are level 0) and a row within its level, so that the DAG reads left to right.
A graph too big to draw vertex by vertex is drawn as its levels (one box per level, with its
vertices counted by state), and any vertex's neighbourhood can be drawn on demand. Linear in
vertices + edges; no database here."""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline_engine import dag

V = TypeVar("V", bound=Hashable)

#: more vertices than this and the graph page draws levels, not vertices
DRAW_LIMIT = 400
#: a neighbourhood drawn on demand holds at most this many vertices
NEIGHBOURHOOD_LIMIT = 200


def levels(vertices: Sequence[V], edges: Iterable[tuple[V, V]]) -> dict[V, int]:
    """Each vertex's level: 0 for a root, else one more than its deepest predecessor's.
    ValueError on a cycle (a draft may have one: it has no levels)."""
    edges = list(edges)
    order, cycle = dag.topological_order(vertices, edges)
    if cycle is not None:
        raise ValueError(f"not acyclic: {cycle}")
    succs = dag.adjacency(vertices, edges)
    level = {v: 0 for v in vertices}
    for v in order:
        for s in succs[v]:
            if level[s] < level[v] + 1:
                level[s] = level[v] + 1
    return level


def chain(vertices: Sequence[V], edges: Iterable[tuple[V, V]], weight: Mapping[V, float]) -> list[V]:
    """The critical path: the heaviest chain from a root to a sink, ``weight`` per vertex
    (ties: the earlier vertex of ``vertices``)."""
    if not vertices:
        return []
    edges = list(edges)
    return chain_by(vertices, edges, dag.critical_path(vertices, edges, dict(weight)))


def chain_by(vertices: Sequence[V], edges: Iterable[tuple[V, V]], path: Mapping[V, float]) -> list[V]:
    """The chain that starts at the root with the largest ``path`` (each vertex's heaviest
    path to a sink, as a run's priorities hold it) and goes on to the successor with the
    largest one."""
    if not vertices:
        return []
    edges = list(edges)
    succs = dag.adjacency(vertices, edges)
    position = {v: i for i, v in enumerate(vertices)}
    v = max(dag.roots(vertices, edges), key=lambda r: (path[r], -position[r]))
    out = [v]
    while succs[v]:
        v = max(succs[v], key=lambda s: (path[s], -position[s]))
        out.append(v)
    return out


@dataclass(frozen=True)
class Drawing:
    """What the graph page draws: ``vertices`` (name, level, row, state) and ``edges`` among
    them, or, for a graph over ``DRAW_LIMIT``, ``levels`` (level, vertices, counts by state)."""

    total: int
    vertices: list[dict[str, Any]] = field(default_factory=list)
    edges: list[tuple[Any, Any]] = field(default_factory=list)
    levels: list[dict[str, Any]] = field(default_factory=list)
    critical: list[Any] = field(default_factory=list)
    #: the vertex whose neighbourhood this is (None: the whole graph)
    around: Any = None
    #: vertices left out of a neighbourhood over NEIGHBOURHOOD_LIMIT
    left_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "vertices": self.vertices, "edges": [list(e) for e in self.edges],
                "levels": self.levels, "critical": self.critical, "around": self.around,
                "left_out": self.left_out}


def _rows(names: Iterable[V], level: Mapping[V, int]) -> dict[V, int]:
    row: dict[V, int] = {}
    used: Counter[int] = Counter()
    for v in names:
        row[v] = used[level[v]]
        used[level[v]] += 1
    return row


def draw(vertices: Sequence[V], edges: Iterable[tuple[V, V]], states: Mapping[V, str],
         critical: Sequence[V] = (), limit: int = DRAW_LIMIT) -> Drawing:
    """The drawing of a whole graph: every vertex when there are at most ``limit``, else its
    levels with their counts by state. ``states``: each vertex's state in the last run (a
    vertex missing from it: ``none``)."""
    edges = list(edges)
    level = levels(vertices, edges)
    if len(vertices) <= limit:
        row = _rows(vertices, level)
        return Drawing(total=len(vertices), edges=edges, critical=list(critical),
                       vertices=[{"name": v, "level": level[v], "row": row[v], "state": states.get(v, "none")}
                                 for v in vertices])
    by_level: dict[int, Counter[str]] = {}
    for v in vertices:
        by_level.setdefault(level[v], Counter())[states.get(v, "none")] += 1
    return Drawing(total=len(vertices), critical=list(critical),
                   levels=[{"level": n, "vertices": sum(c.values()), "counts": dict(c)}
                           for n, c in sorted(by_level.items())])


def neighbourhood(vertices: Sequence[V], edges: Iterable[tuple[V, V]], around: V, states: Mapping[V, str],
                  depth: int = 2, limit: int = NEIGHBOURHOOD_LIMIT, critical: Sequence[V] = ()) -> Drawing:
    """The drawing of ``around`` and the vertices within ``depth`` edges up or down from it
    (nearest first, at most ``limit``), with the edges among them. KeyError: no such vertex."""
    edges = list(edges)
    succs = dag.adjacency(vertices, edges)
    preds: dict[V, list[V]] = {v: [] for v in succs}
    for t, h in edges:
        preds[h].append(t)
    if around not in succs:
        raise KeyError(around)
    kept, seen, frontier = {around}, {around}, [around]
    for _ in range(depth):
        nxt = []
        for v in frontier:
            for w in (*preds[v], *succs[v]):
                if w not in seen:
                    seen.add(w)
                    if len(kept) < limit:
                        kept.add(w)
                        nxt.append(w)
        frontier = nxt
    names = [v for v in vertices if v in kept]
    inside = [(t, h) for t, h in edges if t in kept and h in kept]
    level = levels(names, inside)
    row = _rows(names, level)
    return Drawing(total=len(vertices), edges=inside, around=around, left_out=len(seen) - len(kept),
                   critical=[v for v in critical if v in kept],
                   vertices=[{"name": v, "level": level[v], "row": row[v], "state": states.get(v, "none")}
                             for v in names])
