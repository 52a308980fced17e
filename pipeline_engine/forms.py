"""Pure: the start form of a graph, made from its vertices' typed inputs. One field per input
name; a name that vertices declare with different types (or choices) gets one field per vertex
instead, keyed ``VERTEX.name`` as on the command line. What the form sends becomes a
run's parameters, and a problem the inputs' check reports is put back at the field it names."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline_engine.inputtypes import InputSpec


@dataclass(frozen=True)
class Field:
    #: the form field's name: the input's name, or ``VERTEX.name``
    key: str
    spec: InputSpec
    #: the vertices that read it
    vertices: tuple[str, ...]

    @property
    def control(self) -> str:
        """The HTML control: number, select, checkbox, password or text."""
        return {"int": "number", "float": "number", "choice": "select", "bool": "checkbox",
                "secret": "password"}.get(self.spec.type, "text")

    @property
    def step(self) -> str:
        return "1" if self.spec.type == "int" else "any"


def _kind(spec: InputSpec) -> tuple:
    """What one control can ask for: the type (and a choice's choices). Bounds, patterns and
    defaults may differ between vertices: each vertex checks the one value by its own."""
    return spec.type, spec.choices


def fields(schemas: Mapping[str, Mapping[str, InputSpec]]) -> list[Field]:
    """The form's fields in declaration order (vertex by vertex): a plain one per input name
    that every vertex declares with one type, else one per declaring vertex. A plain field
    shows the first declaration that has a description."""
    declared: dict[str, list[tuple[str, InputSpec]]] = {}
    for vertex, schema in schemas.items():
        for name, spec in schema.items():
            declared.setdefault(name, []).append((vertex, spec))
    out: list[Field] = []
    for name, uses in declared.items():
        if len({_kind(spec) for _, spec in uses}) == 1:
            described = next((s for _, s in uses if s.description), uses[0][1])
            out.append(Field(name, described, tuple(v for v, _ in uses)))
        else:
            out.extend(Field(f"{vertex}.{name}", spec, (vertex,)) for vertex, spec in uses)
    return out


def parameters(form: Mapping[str, str], found: list[Field]) -> dict[str, str]:
    """A run's parameters from what the form sent: a checkbox sends ``true`` when ticked (a
    ``bool`` field not sent is false); an empty field is left out, so that its default (or the
    check's "required") applies. Keys that are no field are kept: the check refuses them."""
    out: dict[str, str] = {}
    keys = {f.key for f in found}
    for f in found:
        value = form.get(f.key)
        if f.spec.type == "bool":
            out[f.key] = "true" if value not in (None, "", "false") else "false"
        elif value is not None and value != "":
            out[f.key] = value
    for key, value in form.items():
        if key not in keys and key not in ("csrf", "name") and value != "":
            out[key] = value
    return out


_VERTEX_INPUT = re.compile(r"^vertex '(?P<vertex>[^']*)': input '(?P<name>[^']*)'")
_PARAMETER = re.compile(r"^parameter '(?P<key>[^']*)'")


def field_of(problem: str, found: list[Field]) -> str | None:
    """The key of the field ``problem`` (a line of a ParameterError) is about, or None."""
    keys = {f.key for f in found}
    m = _VERTEX_INPUT.match(problem)
    if m:
        for key in (f"{m['vertex']}.{m['name']}", m["name"]):
            if key in keys:
                return key
        return None
    m = _PARAMETER.match(problem)
    if m and m["key"] in keys:
        return m["key"]
    return None
