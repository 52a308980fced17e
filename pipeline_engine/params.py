"""Pure: typed input schemas, parameter resolution, and safe rendering of scripts.

A value never becomes shell code. It travels in an environment variable ``PE_<name>``, and
the ``{name}`` placeholder becomes a reference to that variable whose form fits the quoting
context the placeholder stands in (found by a small bash lexer). The shell then expands the
reference as data: no word splitting, no globbing, no evaluation.
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_engine.errors import InputSchemaError, ParameterError

INPUT_TYPES = ("str", "int", "float", "bool", "ip", "choice", "secret")
SPEC_KEYS = ("type", "required", "default", "description", "min", "max", "pattern", "choices")
ENV_PREFIX = "PE_"
MASK = "********"
INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a vertex."""

    name: str
    type: str = "str"
    required: bool = True
    #: None means no default; otherwise already coerced to the type's Python value
    default: Any = None
    description: str = ""
    min: int | float | None = None
    max: int | float | None = None
    pattern: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def secret(self) -> bool:
        return self.type == "secret"

    def coerce(self, raw: Any) -> Any:
        """The typed value of ``raw`` (text from a command line or a Python value), or
        ValueError with a short reason."""
        t = self.type
        if t == "int":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)) or \
                    (isinstance(raw, str) and not _INT.fullmatch(raw.strip())):
                raise ValueError(f"expected int, got {raw!r}")
            value = int(raw)
        elif t == "float":
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)) or \
                    (isinstance(raw, str) and not _FLOAT.fullmatch(raw.strip())):
                raise ValueError(f"expected float, got {raw!r}")
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(f"expected a finite float, got {raw!r}")
        elif t == "bool":
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower() if isinstance(raw, (str, int)) else None
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError(f"expected bool (true/false, yes/no, on/off, 1/0), got {raw!r}")
        elif t == "ip":
            try:
                return str(ipaddress.ip_address(str(raw).strip()))
            except ValueError:
                raise ValueError(f"expected ip, got {raw!r}") from None
        elif t == "choice":
            value = str(raw)
            if value not in (self.choices or ()):
                raise ValueError(f"must be one of: {', '.join(self.choices or ())}, got {raw!r}")
            return value
        else:  # str, secret
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise ValueError(f"expected {t}, got {type(raw).__name__}")
            value = str(raw)
            if "\x00" in value:
                raise ValueError("contains a NUL character")
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise ValueError(f"does not match pattern {self.pattern!r}"
                                 + ("" if self.secret else f", got {value!r}"))
            return value
        if self.min is not None and value < self.min:
            raise ValueError(f"must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be <= {self.max}, got {value}")
        return value

    def to_text(self, value: Any) -> str:
        """The text a typed value becomes in the script."""
        if value is None:
            return ""
        if self.type == "bool":
            return "true" if value else "false"
        if self.type == "float":
            return repr(float(value))
        return str(value)

    def to_dict(self) -> dict[str, Any]:
        """The export form: ``type`` and the keys that differ from their defaults."""
        out: dict[str, Any] = {"type": self.type}
        if not self.required:
            out["required"] = False
        for key in ("default", "description", "min", "max", "pattern"):
            value = getattr(self, key)
            if value not in (None, ""):
                out[key] = value
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


def _spec(vertex: str, name: Any, raw: Any) -> InputSpec:
    where = f"vertex '{vertex}': input '{name}'"
    if not isinstance(name, str) or not INPUT_NAME.fullmatch(name):
        raise InputSchemaError(f"vertex '{vertex}': input name {name!r} is not valid"
                               " (letters, digits and '_', not starting with a digit)")
    if isinstance(raw, str):
        raw = {"type": raw}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InputSchemaError(f"{where}: must be a mapping of {', '.join(SPEC_KEYS)} or a type name")
    unknown = [k for k in raw if k not in SPEC_KEYS]
    if unknown:
        raise InputSchemaError(f"{where}: unknown key {', '.join(repr(k) for k in unknown)}"
                               f" (allowed: {', '.join(SPEC_KEYS)})")
    t = raw.get("type", "str")
    if t not in INPUT_TYPES:
        raise InputSchemaError(f"{where}: unknown type {t!r} (expected one of: {', '.join(INPUT_TYPES)})")
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise InputSchemaError(f"{where}: required must be true or false, got {required!r}")
    description = raw.get("description", "") or ""
    if not isinstance(description, str):
        raise InputSchemaError(f"{where}: description must be a string")
    bounds = {}
    for key in ("min", "max"):
        if key in raw and raw[key] is not None:
            if t not in ("int", "float"):
                raise InputSchemaError(f"{where}: {key} applies to int and float inputs, not {t}")
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputSchemaError(f"{where}: {key} must be a number, got {value!r}")
            bounds[key] = int(value) if t == "int" and float(value).is_integer() else value
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise InputSchemaError(f"{where}: min {bounds['min']} is greater than max {bounds['max']}")
    pattern = raw.get("pattern")
    if pattern is not None:
        if t not in ("str", "secret"):
            raise InputSchemaError(f"{where}: pattern applies to str and secret inputs, not {t}")
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise InputSchemaError(f"{where}: pattern {pattern!r} is not a valid regular expression ({exc})") from None
    choices = raw.get("choices")
    if t == "choice":
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise InputSchemaError(f"{where}: a choice input needs 'choices', a non-empty list of strings")
        choices = tuple(choices)
    elif choices is not None:
        raise InputSchemaError(f"{where}: choices apply to choice inputs, not {t}")
    spec = InputSpec(name=name, type=t, required=required, description=description, pattern=pattern,
                     choices=choices, **bounds)
    if raw.get("default") is not None:
        if t == "secret":
            raise InputSchemaError(f"{where}: a secret cannot have a default (defaults are stored in clear)")
        try:
            default = spec.coerce(raw["default"])
        except ValueError as exc:
            raise InputSchemaError(f"{where}: default {raw['default']!r} is not valid: {exc}") from None
        spec = InputSpec(**{**spec.__dict__, "default": default})
    return spec


def parse_schema(vertex: str, inputs: Mapping[str, Any] | None) -> dict[str, InputSpec]:
    """Validate a vertex's input schema; InputSchemaError names the vertex and the input."""
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise InputSchemaError(f"vertex '{vertex}': inputs must be a mapping of input name to its spec")
    return {name: _spec(vertex, name, raw) for name, raw in inputs.items()}


def schema_to_dict(schema: Mapping[str, InputSpec]) -> dict[str, dict[str, Any]]:
    return {name: spec.to_dict() for name, spec in schema.items()}


# --- parameters -----------------------------------------------------------------------------

def _pairs(params: Mapping[str, Any] | Iterable[str] | None) -> tuple[list[tuple[str, Any]], list[str]]:
    if params is None:
        return [], []
    if isinstance(params, Mapping):
        return list(params.items()), []
    pairs, problems = [], []
    for item in params:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            problems.append(f"parameter {item!r} must be KEY=VALUE or VERTEX.KEY=VALUE")
        else:
            pairs.append((key.strip(), value))
    return pairs, problems


def _assign(vertices: Mapping[str, Mapping[str, InputSpec]], params) -> tuple[dict, list[str]]:
    """{vertex: {input: raw value}} from the parameters (vertex-specific keys win)."""
    pairs, problems = _pairs(params)
    given: dict[str, dict[str, Any]] = {v: {} for v in vertices}
    specific: set[tuple[str, str]] = set()
    for key, value in pairs:
        vertex, dot, name = key.rpartition(".")
        if dot:
            if vertex not in vertices:
                problems.append(f"parameter '{key}': no vertex '{vertex}'")
            elif name not in vertices[vertex]:
                problems.append(f"parameter '{key}': vertex '{vertex}' has no input '{name}'")
            else:
                given[vertex][name] = value
                specific.add((vertex, name))
            continue
        targets = [v for v, schema in vertices.items() if key in schema]
        if not targets:
            problems.append(f"parameter '{key}': no vertex declares an input '{key}'")
        for v in targets:
            if (v, key) not in specific:
                given[v][key] = value
    return given, problems


def resolve(vertices: Mapping[str, Mapping[str, InputSpec]],
            params: Mapping[str, Any] | Iterable[str] | None) -> dict[str, dict[str, Any]]:
    """Every vertex's typed input values: ``name=value`` applies to each vertex declaring
    ``name``, ``VERTEX.name=value`` to that vertex only; defaults fill the rest. Raises one
    ParameterError listing every problem (``.problems``), never echoing a secret."""
    given, problems = _assign(vertices, params)
    out: dict[str, dict[str, Any]] = {}
    for vertex, schema in vertices.items():
        values = out[vertex] = {}
        for name, spec in schema.items():
            if name in given[vertex]:
                try:
                    values[name] = spec.coerce(given[vertex][name])
                except ValueError as exc:
                    reason = f"expected {spec.type} matching its pattern" if spec.secret else str(exc)
                    problems.append(f"vertex '{vertex}': input '{name}': {reason}")
            elif spec.default is not None:
                values[name] = spec.default
            elif spec.required:
                problems.append(f"vertex '{vertex}': input '{name}' ({spec.type}) is required")
            else:
                values[name] = None
    if problems:
        problems = sorted(dict.fromkeys(problems))
        err = ParameterError("\n".join(problems))
        err.problems = problems
        raise err
    return out


def missing(vertices: Mapping[str, Mapping[str, InputSpec]],
            params: Mapping[str, Any] | Iterable[str] | None) -> list[tuple[str, InputSpec]]:
    """The required inputs that have no value and no default, as (vertex, spec), for a
    prompt to ask: an input name shared by several vertices is listed once (its first
    vertex), since a plain ``name=value`` answers them all."""
    given, _ = _assign(vertices, params)
    out, seen = [], set()
    for vertex, schema in vertices.items():
        for name, spec in schema.items():
            if spec.required and spec.default is None and name not in given[vertex] and name not in seen:
                seen.add(name)
                out.append((vertex, spec))
    return out


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by MASK."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


# --- scripts ------------------------------------------------------------------------------------

# Quoting contexts the lexer tells apart.
NORMAL, DQUOTE, SQUOTE, ANSI, ARITH, HEREDOC, HEREDOC_QUOTED = (
    "normal", "double-quoted", "single-quoted", "ansi-c", "arithmetic", "here-document", "quoted here-document")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MARK = "\x00"  # stands for a placeholder while lexing (scripts never contain NUL)
_WORD_BREAK = set(" \t\n;&|()<>")


def _contexts(text: str) -> list[tuple[str, str, bool]]:
    """The quoting context of each placeholder mark in ``text``, in order, as
    (context, here-document delimiter, strip tabs).

    A bash lexer with a context stack. Approximations: ``case`` patterns' lone ``)`` inside
    ``$( )`` end the substitution early; ``((`` is taken as arithmetic only at a word start;
    expansions inside a here-document body are not followed (a placeholder there is a
    here-document placeholder either way)."""
    out: list[tuple[str, str, bool]] = []
    stack: list[list] = [["N", 0]]  # N normal, C $( ), B backticks, P ${ }, D, S, A, R arithmetic
    heredocs: list[tuple[str, bool, bool]] = []
    i, n, word_start = 0, len(text), True
    while i < n:
        kind = stack[-1][0]
        c = text[i]
        two = text[i:i + 2]
        if c == _MARK:
            out.append(({"D": DQUOTE, "S": SQUOTE, "A": ANSI, "R": ARITH}.get(kind, NORMAL), "", False))
            i, word_start = i + 1, False
            continue
        if kind == "S":
            if c == "'":
                stack.pop()
            i += 1
            continue
        if kind == "A":
            if c == "\\":
                i += _escape(text, i)
            else:
                if c == "'":
                    stack.pop()
                i += 1
            continue
        if c == "\\":
            i, word_start = i + _escape(text, i), False
            continue
        if kind == "D":
            if c == '"':
                stack.pop()
                i += 1
            elif text.startswith("$((", i):
                stack.append(["R", 0]); i += 3
            elif two == "$(":
                stack.append(["C", 0]); i += 2
            elif two == "${":
                stack.append(["P", 0]); i += 2
            elif c == "`":
                stack.append(["B", 0]); i += 1
            else:
                i += 1
            continue
        if kind == "R":
            if c == "(":
                stack[-1][1] += 1
            elif c == ")":
                if stack[-1][1] == 0:
                    stack.pop()
                    i += 2 if two == "))" else 1
                    continue
                stack[-1][1] -= 1
            i += 1
            continue
        # normal-like contexts: N, C, B, P
        if c == "'":
            stack.append(["S", 0]); i += 1
        elif c == '"':
            stack.append(["D", 0]); i += 1
        elif two == "$'":
            stack.append(["A", 0]); i += 2
        elif text.startswith("$((", i) or (word_start and two == "((" and kind != "P"):
            stack.append(["R", 0]); i += 3 if c == "$" else 2
        elif two == "$(":
            stack.append(["C", 0]); i += 2
        elif two == "${":
            stack.append(["P", 0]); i += 2
        elif c == "`":
            if kind == "B":
                stack.pop()
            else:
                stack.append(["B", 0])
            i += 1
        elif c == "}" and kind == "P":
            stack.pop(); i += 1
        elif c == "(" and kind == "C":
            stack[-1][1] += 1; i += 1
        elif c == ")" and kind == "C":
            if stack[-1][1] == 0:
                stack.pop()
            else:
                stack[-1][1] -= 1
            i += 1
        elif c == "#" and word_start and kind != "P":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.extend((NORMAL, "", False) for _ in range(text.count(_MARK, i, end)))
            i = end
            continue
        elif two == "<<" and not text.startswith("<<<", i):
            i = _heredoc_operator(text, i + 2, heredocs)
        elif c == "\n" and heredocs:
            i = _heredoc_bodies(text, i + 1, heredocs, out)
            heredocs.clear()
            word_start = True
            continue
        else:
            i += 1
        word_start = c in _WORD_BREAK
    return out


def _escape(text: str, i: int) -> int:
    # A backslash escapes the next character, but never swallows a placeholder.
    return 1 if text[i + 1:i + 2] == _MARK else 2


def _heredoc_operator(text: str, i: int, heredocs: list) -> int:
    strip = i < len(text) and text[i] == "-"
    i += strip
    while i < len(text) and text[i] in " \t":
        i += 1
    start = i
    while i < len(text) and text[i] not in _WORD_BREAK:
        i += 1
    word = text[start:i]
    quoted = any(q in word for q in "'\"\\")
    delimiter = word.replace("'", "").replace('"', "").replace("\\", "")
    if delimiter:
        heredocs.append((delimiter, quoted, strip))
    return i


def _heredoc_bodies(text: str, i: int, heredocs: list, out: list) -> int:
    for delimiter, quoted, strip in heredocs:
        while i < len(text):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            line = text[i:end]
            i = end + 1
            if (line.lstrip("\t") if strip else line) == delimiter:
                break
            ctx = HEREDOC_QUOTED if quoted else HEREDOC
            out.extend((ctx, delimiter, strip) for _ in range(line.count(_MARK)))
    return min(i, len(text))


@dataclass(frozen=True)
class Template:
    vertex: str
    source: str
    #: literal text, or (input name, context, here-document delimiter, strip tabs)
    parts: tuple
    #: declared inputs used, in order of first use
    placeholders: tuple[str, ...]
    #: {word}s left as written because the vertex declares no such input
    unknown: tuple[str, ...]


def compile_script(vertex: str, script: str, schema: Mapping[str, InputSpec]) -> Template:
    """Split ``script`` into literal text and placeholders, each with its quoting context.
    Raises InputSchemaError where a value could become code: a non-int input inside
    arithmetic, where bash evaluates text (``a[$(cmd)]`` runs cmd)."""
    literal: list[str] = []
    names: list[str] = []
    unknown: list[str] = []
    i = 0
    while i < len(script):
        two = script[i:i + 2]
        if two in ("{{", "}}"):
            literal.append(two[0]); i += 2
            continue
        m = _PLACEHOLDER.match(script, i)
        if m and not (i > 0 and script[i - 1] == "$"):
            if m.group(1) in schema:
                literal.append(_MARK); names.append(m.group(1))
            else:
                literal.append(m.group(0))
                if m.group(1) not in unknown:
                    unknown.append(m.group(1))
            i = m.end()
            continue
        literal.append(script[i]); i += 1
    text = "".join(literal)
    contexts = _contexts(text)
    if len(contexts) != len(names):
        raise InputSchemaError(f"vertex '{vertex}': a placeholder stands where its quoting cannot be"
                               " determined (e.g. in a here-document delimiter)")
    parts: list = []
    for chunk, name, (ctx, delimiter, strip) in zip(text.split(_MARK), names, contexts):
        if ctx == ARITH and schema[name].type != "int":
            raise InputSchemaError(f"vertex '{vertex}': input '{name}' ({schema[name].type}) stands inside"
                                   " shell arithmetic, where only int inputs are safe")
        parts.extend([chunk, (name, ctx, delimiter, strip)])
    parts.append(text.split(_MARK)[-1])
    return Template(vertex=vertex, source=script, parts=tuple(p for p in parts if p != ""),
                    placeholders=tuple(dict.fromkeys(names)), unknown=tuple(unknown))


@dataclass(frozen=True)
class Rendered:
    #: what runs, as ``bash -e -o pipefail -c script``: references, not values
    script: str
    #: what may be stored or shown: ``script`` with secret values masked
    shown: str
    #: PE_<name> -> value text, for every input of the vertex
    env: dict[str, str]


_REFERENCE = {
    NORMAL: '"${{{var}}}"',
    DQUOTE: "${{{var}}}",
    HEREDOC: "${{{var}}}",
    SQUOTE: "'\"${{{var}}}\"'",
    ANSI: "'\"${{{var}}}\"$'",
}


def render(template: Template, values: Mapping[str, Any], schema: Mapping[str, InputSpec]) -> Rendered:
    """The script to run, its shown form and its environment, for resolved ``values``."""
    env = {ENV_PREFIX + name: spec.to_text(values.get(name)) for name, spec in schema.items()}
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        name, ctx, delimiter, strip = part
        value = env[ENV_PREFIX + name]
        if ctx == ARITH:
            out.append(value or "0")
        elif ctx == HEREDOC_QUOTED:
            # Nothing expands here, so the value goes in as it is; a line equal to the
            # delimiter would end the document and run what follows as code.
            if any((line.lstrip("\t") if strip else line) == delimiter for line in value.split("\n")):
                raise ParameterError(f"vertex '{template.vertex}': input '{name}': a line of the value"
                                     f" equals the here-document delimiter {delimiter!r}")
            out.append(value)
        else:
            out.append(_REFERENCE[ctx].format(var=ENV_PREFIX + name))
    script = "".join(out)
    secrets = [env[ENV_PREFIX + n] for n, s in schema.items() if s.secret]
    return Rendered(script=script, shown=mask(script, secrets), env=env)
