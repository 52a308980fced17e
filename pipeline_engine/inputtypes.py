"""Typed inputs of a vertex, and the parameters of a run. Pure: no database, no processes.

* **Schemas.** ``parse_schema`` validates a vertex's declared inputs (plain YAML/JSON data) into
  ``InputSpec`` objects; ``InputSpec.coerce`` turns a raw value into a typed one.
* **Parameters.** ``resolve`` gives every vertex's inputs their values from a run's parameters,
  reporting every problem at once; ``missing`` lists what an interactive prompt should ask.
"""
from __future__ import annotations

import ipaddress
import math
import re
import reprlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from pipeline_engine.errors import InputSchemaError, ParameterError

INPUT_TYPES = ("str", "int", "float", "bool", "ip", "choice", "secret")
#: what a secret value becomes wherever it is shown
MASK = "********"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}
#: a zone id (``fe80::1%eth0``) is an interface name or number, nothing a shell could read as code
_ZONE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
#: longest int accepted (Python converts at most 4300 digits to and from text)
INT_DIGITS = 4000
_SPEC_KEYS = ("type", "required", "default", "description", "min", "max", "pattern", "choices")


# --- input schemas -------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 2


def shown(raw: Any) -> str:
    """A short repr of ``raw`` for an error message: never more than about 60 characters,
    however big or deep the value (the whole repr is never built)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 128:
        return f"an integer of about {int(raw.bit_length() * 0.30103) + 1} digits"  # repr() may refuse it
    text = _SHORT.repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _show(raw: Any, hide: bool) -> str:
    return "<secret>" if hide else shown(raw)


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a vertex. ``parse_schema`` builds and validates these.

    Typed values are plain Python values (str, int, float, bool; an ip is its normalised
    string), so resolved parameters serialise as JSON.
    """

    name: str
    type: str = "str"
    required: bool = True
    default: Any = None  #: None: no default; else already coerced
    description: str = ""
    min: int | float | None = None
    max: int | float | None = None
    pattern: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def secret(self) -> bool:
        """True if the value must never be shown: not in errors, logs or stored scripts."""
        return self.type == "secret"

    def coerce(self, raw: Any) -> Any:
        """Return the typed value of ``raw`` (a string from a command line or prompt, or a Python
        value from YAML or an API), checked against min/max/pattern/choices.

        Raises ValueError with a short reason, which never contains a secret's value.
        """
        return self._coerce(raw, hide=self.secret)

    def _coerce(self, raw: Any, hide: bool) -> Any:
        bad = ValueError(f"expected {self.type}, got {_show(raw, hide)}")
        text = raw.strip() if isinstance(raw, str) else None
        value: Any  # the input's type
        if self.type == "int":
            if _is_number(raw) and isinstance(raw, int):
                value = raw
            elif text is None or not _INT.fullmatch(text):
                raise bad
            elif len(text) > INT_DIGITS:  # int() would refuse it with Python's own words
                raise ValueError(f"expected int of at most {INT_DIGITS} digits, got {_show(raw, hide)}")
            else:
                value = int(text)
            if value.bit_length() > INT_DIGITS * 3.33:
                raise ValueError(f"expected int of at most {INT_DIGITS} digits, got {_show(raw, hide)}")
        elif self.type == "float":
            try:
                if text is not None and _FLOAT.fullmatch(text):
                    value = float(text)
                elif _is_number(raw):
                    value = float(raw)
                else:
                    raise bad
            except OverflowError:
                raise bad from None
            if not math.isfinite(value):
                raise ValueError(f"expected a finite float, got {_show(raw, hide)}")
        elif self.type == "bool":
            if isinstance(raw, bool):
                value = raw
            elif text is not None and text.lower() in _BOOL_WORDS:
                value = _BOOL_WORDS[text.lower()]
            else:
                raise bad
        elif self.type == "ip":
            try:
                address = ipaddress.ip_address(text or "")
            except ValueError:
                raise bad from None
            zone = getattr(address, "scope_id", None)
            if zone is not None and (not _ZONE.fullmatch(zone) or zone in (".", "..")):
                raise ValueError(f"expected ip, got {_show(raw, hide)}: a zone id (after %) is an interface"
                                 " name of up to 15 letters, digits, '_', '.', '-'")
            value = str(address)
        else:  # str, secret, choice: text
            if _is_number(raw):
                raw = str(raw)  # a YAML number given for a text input: take it as written
            if not isinstance(raw, str):
                raise bad
            if "\x00" in raw:  # values travel in environment variables, which cannot hold NUL
                raise ValueError("must not contain a NUL character")
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:  # bytes that are not UTF-8 (a command line decodes them to surrogates)
                raise ValueError("is not valid UTF-8 text") from None
            value = raw
        if self.min is not None and value < self.min:
            raise ValueError(f"must be >= {self.min}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be <= {self.max}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValueError(f"does not match pattern '{self.pattern}'")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of: {', '.join(self.choices)}")
        return value

    def to_text(self, value: Any) -> str:
        """The text a typed value becomes in a script; None becomes the empty string."""
        if value is None:
            return ""
        if self.type == "bool":
            return "true" if value else "false"
        if self.type == "float":
            return repr(float(value))
        if self.type == "int":
            return str(int(value))
        if self.type == "ip":
            return str(ipaddress.ip_address(str(value)))
        return str(value)

    def to_dict(self) -> dict:
        """The export form: "type" and every key that differs from its default. It round-trips
        through ``parse_schema``."""
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def parse_schema(vertex: str, inputs: Mapping | None) -> dict[str, InputSpec]:
    """Validate a vertex's declared inputs ``{name: spec}``; a spec is a mapping of
    ``_SPEC_KEYS``, a bare type name, or None (a str input).

    Raises InputSchemaError naming the vertex and the input at fault.
    """
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise InputSchemaError(f"vertex '{vertex}': inputs must be a mapping of input name to spec,"
                               f" got {type(inputs).__name__}")
    schema, problems = {}, []
    for name, raw in inputs.items():  # every input's problem at once
        try:
            schema[name] = _parse_spec(vertex, name, raw)
        except InputSchemaError as exc:
            problems.append(str(exc))
    if problems:
        raise InputSchemaError("\n".join(problems))
    return schema


def _parse_spec(vertex: str, name: Any, raw: Any) -> InputSpec:
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise InputSchemaError(f"vertex '{vertex}': input name {shown(name)} is not valid"
                               " (letters, digits and '_', not starting with a digit)")

    def fail(reason: str) -> InputSchemaError:
        return InputSchemaError(f"vertex '{vertex}': input '{name}': {reason}")

    if raw is None or isinstance(raw, str):
        raw = {} if raw is None else {"type": raw}
    elif not isinstance(raw, Mapping):
        raise fail(f"spec must be a mapping or a type name, got {type(raw).__name__}")
    unknown = [str(key) for key in raw if key not in _SPEC_KEYS]
    if unknown:
        raise fail(f"unknown key{'s' if len(unknown) > 1 else ''} "
                   f"{', '.join(shown(k) for k in unknown)} (expected: {', '.join(_SPEC_KEYS)})")
    kind = raw.get("type", "str")
    if not isinstance(kind, str) or kind not in INPUT_TYPES:
        raise fail(f"unknown type {shown(kind)} (expected one of: {', '.join(INPUT_TYPES)})")
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise fail(f"required must be true or false, got {shown(required)}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail(f"description must be a string, got {type(description).__name__}")
    low, high = raw.get("min"), raw.get("max")
    for key, bound in (("min", low), ("max", high)):
        if bound is not None and kind not in ("int", "float"):
            raise fail(f"{key} applies to int and float inputs, not {kind}")
        if bound is not None and not (_is_number(bound) and -sys.float_info.max <= bound <= sys.float_info.max):
            raise fail(f"{key} must be a number, got {shown(bound)}")
    if low is not None and high is not None and low > high:
        raise fail(f"min {low} is greater than max {high}")
    pattern = raw.get("pattern")
    if pattern is not None:
        if kind not in ("str", "secret"):
            raise fail(f"pattern applies to str and secret inputs, not {kind}")
        if not isinstance(pattern, str):
            raise fail(f"pattern must be a string, got {shown(pattern)}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise fail(f"pattern {shown(pattern)} is not a valid regular expression ({exc})") from None
        except (RecursionError, OverflowError, MemoryError):
            raise fail(f"pattern {shown(pattern)} is nested too deeply to compile") from None
    choices = raw.get("choices")
    if kind == "choice":
        if (not isinstance(choices, (list, tuple)) or not choices
                or not all(isinstance(c, str) and "\x00" not in c for c in choices)):
            raise fail("a choice input needs 'choices': a non-empty list of strings")
        choices = tuple(choices)
    elif choices is not None:
        raise fail(f"choices apply to choice inputs, not {kind}")
    spec = InputSpec(name, kind, required, None, description, low, high, pattern, choices)
    default = raw.get("default")
    if default is not None:
        if spec.secret:
            raise fail("a secret cannot have a default: defaults are stored in the graph in clear")
        try:
            spec = replace(spec, default=spec.coerce(default))
        except ValueError as exc:
            raise fail(f"default {_show(default, False)} is not valid: {exc}") from None
    return spec


def schema_to_dict(schema: Mapping[str, InputSpec]) -> dict[str, dict]:
    """The export form of a schema: input name -> ``InputSpec.to_dict()``."""
    return {name: spec.to_dict() for name, spec in schema.items()}


# --- a run's parameters ---------------------------------------------------------------------

def _given(params: Mapping | Iterable[str] | None) -> tuple[dict[str, Any], list[str]]:
    """Parameters as key -> raw value, and the problems of items that are not KEY=VALUE."""
    if params is None:
        return {}, []
    if isinstance(params, Mapping):
        return {str(k): v for k, v in params.items()}, []
    if isinstance(params, (str, bytes)):
        raise TypeError("params must be a mapping or an iterable of 'KEY=VALUE' strings")
    given, problems = {}, []
    for item in params:
        key, sep, value = str(item).partition("=")
        if sep:
            given[key] = value  # a later item wins, as on a command line
        else:
            problems.append(f"parameter '{item}' must be KEY=VALUE or VERTEX.KEY=VALUE")
    return given, problems


def resolve(vertices: Mapping[str, Mapping[str, InputSpec]],
            params: Mapping | Iterable[str] | None) -> dict[str, dict[str, Any]]:
    """Give every input of every vertex its typed value: vertex -> input name -> value.

    ``params`` is a mapping or ``KEY=VALUE`` strings. A key ``name`` applies to every vertex that
    declares input ``name``; ``VERTEX.name`` (split on the last dot) to that vertex only, and wins.
    Defaults fill the rest; an optional input with neither resolves to None. Raises one
    ParameterError listing every problem (sorted, one per line, also as ``.problems``): bad
    values, missing required inputs, keys no vertex declares. Secret values are never echoed.
    """
    given, problems = _given(params)
    plain: dict[str, Any] = {}
    scoped: dict[tuple[str, str], Any] = {}
    declared = {name for schema in vertices.values() for name in schema}
    secret_names = {n for schema in vertices.values() for n, s in schema.items() if s.secret}
    for key, raw in given.items():
        vertex, dot, name = key.rpartition(".")
        if not dot:
            if name in declared:
                plain[name] = raw
            else:
                problems.append(f"parameter '{key}': no vertex declares an input '{key}'")
        elif vertex not in vertices:
            problems.append(f"parameter '{key}': no vertex '{vertex}'")
        elif name not in vertices[vertex]:
            problems.append(f"parameter '{key}': vertex '{vertex}' has no input '{name}'")
        else:
            scoped[(vertex, name)] = raw
    resolved: dict[str, dict[str, Any]] = {}
    for vertex, schema in vertices.items():
        values = resolved[vertex] = {}
        for name, spec in schema.items():
            if (vertex, name) in scoped:
                raw, hide = scoped[(vertex, name)], spec.secret
            elif name in plain:
                # the same plain value may feed a secret of another vertex: hide it here too
                raw, hide = plain[name], name in secret_names
            else:
                if spec.required and spec.default is None:
                    problems.append(f"vertex '{vertex}': input '{name}' ({spec.type}) is required")
                values[name] = spec.default
                continue
            try:
                values[name] = spec._coerce(raw, hide)
            except ValueError as exc:
                problems.append(f"vertex '{vertex}': input '{name}': {exc}")
    if problems:
        problems = sorted(set(problems))
        error = ParameterError("\n".join(problems))
        error.problems = problems
        raise error
    return resolved


def missing(vertices: Mapping[str, Mapping[str, InputSpec]],
            params: Mapping | Iterable[str] | None = None) -> list[tuple[str, InputSpec]]:
    """The (vertex, spec) pairs an interactive prompt should ask for: required inputs with no
    default and no value in ``params``, in vertex and declaration order.

    A plain key answers every vertex that declares the name, so each name is listed once per
    distinct (name, type), with the first vertex that needs it. Answer each with the plain key
    ``spec.name``; two pairs share a name only when vertices declare it with different types.
    Items of ``params`` that are not KEY=VALUE are ignored here (``resolve`` reports them).
    """
    given, _ = _given(params)
    asked: set[tuple[str, str]] = set()
    out = []
    for vertex, schema in vertices.items():
        for name, spec in schema.items():
            if (not spec.required or spec.default is not None or name in given
                    or f"{vertex}.{name}" in given or (name, spec.type) in asked):
                continue
            asked.add((name, spec.type))
            out.append((vertex, spec))
    return out
