"""What changed between two definitions of a graph (two of its versions). Pure: it reads
``GraphSpec``s and knows no database. Vertices are compared in their graph-file form, so a
field added to vertices is compared without a change here; the order of vertices and edges
is not part of what a graph does, and does not count."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pipeline_engine.spec import GraphSpec, VertexSpec

#: vertex keys compared on their own (the rest of the graph-file form is compared key by key)
_APART = ("name", "script", "inputs")


@dataclass(frozen=True)
class VertexChange:
    vertex: str
    #: graph-file key -> (before, after); None where a key is absent (its default)
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    inputs_added: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs_removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: input name -> (schema before, schema after)
    inputs_changed: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)
    #: the script's unified diff, without its two header lines; empty when the script is the same
    script: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"vertex": self.vertex,
                "fields": {k: {"before": a, "after": b} for k, (a, b) in self.fields.items()},
                "inputs_added": self.inputs_added, "inputs_removed": self.inputs_removed,
                "inputs_changed": {k: {"before": a, "after": b} for k, (a, b) in self.inputs_changed.items()},
                "script": "\n".join(self.script)}


@dataclass(frozen=True)
class GraphDiff:
    #: (before, after) when the graph's description changed
    description: tuple[str, str] | None = None
    added: tuple[str, ...] = ()  #: vertex names
    removed: tuple[str, ...] = ()
    changed: tuple[VertexChange, ...] = ()
    edges_added: tuple[tuple[str, str], ...] = ()
    edges_removed: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.description or self.added or self.removed or self.changed or self.edges_added
                    or self.edges_removed)

    def to_dict(self) -> dict[str, Any]:
        return {"description": None if self.description is None else
                {"before": self.description[0], "after": self.description[1]},
                "vertices_added": list(self.added), "vertices_removed": list(self.removed),
                "vertices_changed": [c.to_dict() for c in self.changed],
                "edges_added": [list(e) for e in self.edges_added],
                "edges_removed": [list(e) for e in self.edges_removed]}


def _vertex_change(old: VertexSpec, new: VertexSpec) -> VertexChange | None:
    a, b = old.to_dict(), new.to_dict()
    fields = {k: (a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])
              if k not in _APART and a.get(k) != b.get(k)}
    added = {k: v for k, v in new.inputs.items() if k not in old.inputs}
    removed = {k: v for k, v in old.inputs.items() if k not in new.inputs}
    changed = {k: (old.inputs[k], new.inputs[k]) for k in old.inputs
               if k in new.inputs and old.inputs[k] != new.inputs[k]}
    script: tuple[str, ...] = ()
    if old.script != new.script:
        script = tuple(difflib.unified_diff(old.script.splitlines(), new.script.splitlines(), lineterm="", n=2))[2:]
    if not (fields or added or removed or changed or script):
        return None
    return VertexChange(old.name, fields, added, removed, changed, script)


def diff(old: GraphSpec, new: GraphSpec) -> GraphDiff:
    """What ``new`` changes in ``old``: vertices (in ``new``'s order, removed ones in ``old``'s),
    edges, inputs, scripts and the description. The graphs' names and pools are not compared
    (pools are shared by every graph, not part of one)."""
    before = {v.name: v for v in old.vertices}
    after = {v.name: v for v in new.vertices}
    changes = [_vertex_change(before[n], v) for n, v in after.items() if n in before]
    old_edges, new_edges = set(old.edges), set(new.edges)
    return GraphDiff(
        description=(old.description, new.description) if old.description != new.description else None,
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(c for c in changes if c is not None),
        edges_added=tuple(e for e in new.edges if e not in old_edges),
        edges_removed=tuple(e for e in old.edges if e not in new_edges))


def same(old: GraphSpec, new: GraphSpec) -> bool:
    """Whether two definitions do the same (see ``diff``)."""
    return diff(old, new).empty
