"""Typed inputs of a vertex, the parameters of a run, and safe rendering of scripts.

Pure: no database, no processes.

* **Schemas.** ``parse_schema`` validates a vertex's declared inputs (plain YAML/JSON data) into
  ``InputSpec`` objects; ``InputSpec.coerce`` turns a raw value into a typed one.
* **Parameters.** ``resolve`` gives every vertex's inputs their values from a run's parameters,
  reporting every problem at once; ``missing`` lists what an interactive prompt should ask.
* **Rendering.** ``compile_script`` finds the ``{name}`` placeholders of a script and the bash
  quoting context of each; ``render`` replaces each with a reference to the environment variable
  ``PE_<name>`` written for that context, so a value reaches bash as data and never runs as code.

The quoting context comes from a small bash lexer (checked against bash 5.2). It approximates:

* ``$((`` always opens arithmetic, and ``((`` at the start of a word opens an arithmetic command
  (bash falls back to a subshell when the text does not parse as arithmetic).
* ``)`` ends ``$(`` unless it closes a ``(`` or ends a ``case`` pattern; ``case``/``esac`` count
  wherever they start a word, not only in command position.
* In ``${...}`` within double quotes or a here-document, ``'`` is a literal character (as for
  ``${x:-word}``; bash treats it as a quote for some other operators).
* Inside backticks a backslash escapes the next character; nested backticks are not tracked.
* A here-document delimiter is its word after quote removal; ``$'...'`` there is not recognised.
  Bodies start at the next newline at command level, in the order their operators appeared.
  Inside a substitution or ``( )``, bash 5.2 may end a body at a line that merely starts with
  the delimiter: the lexer ends it there, and a value may never produce such a line.
* Arithmetic is recognised in ``$(( ))``, ``(( ))``, ``$[ ]``, ``${a[...]}`` subscripts and
  ``${s:offset:length}``, where only ``int`` inputs may stand. Bash also evaluates *data* as
  arithmetic in ``[[ a -eq b ]]``, ``let``, ``declare -i``, ``test -v`` and ``a[i]=`` assignments:
  there a value arrives as data that the script hands to bash to evaluate, as with ``eval``;
  declare such inputs ``int``.
"""
from __future__ import annotations

import ipaddress
import math
import re
import reprlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from pipeline_engine.errors import InputSchemaError, ParameterError

INPUT_TYPES = ("str", "int", "float", "bool", "ip", "choice", "secret")
#: environment variables carrying input values are named ENV_PREFIX + input name
ENV_PREFIX = "PE_"
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
                address = ipaddress.ip_address(text)
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
    return {name: _parse_spec(vertex, name, raw) for name, raw in inputs.items()}


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


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by MASK, longest first,
    in one pass (so a mask is never masked again)."""
    found = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not found:
        return text
    return re.sub("|".join(map(re.escape, found)), MASK, text)


# --- the bash lexer -------------------------------------------------------------------------

# Frame kinds. Command level: where words, comments, here-documents and parentheses live.
_TOP, _CMDSUB, _BACKTICK = "top", "cmdsub", "backtick"
_CMD = (_TOP, _CMDSUB, _BACKTICK)
_BRACE, _DQ, _SQ, _ANSI, _ARITH = "brace", "dquote", "squote", "ansi", "arith"
_HEREDOC, _QHEREDOC, _COMMENT = "heredoc", "quoted-heredoc", "comment"

_METACHARS = " \t\n;&|()<>"  # after these a new word starts
_CASE = re.compile(r"(case|esac)(?=[ \t\n;&|()<>])")
_PARAM = re.compile(r"[!#]?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])")


@dataclass(eq=False)
class _Frame:
    kind: str
    close: str = ""  # the text that ends an arithmetic frame: "))", "]" or "}"
    opened: list = field(default_factory=list)  # open "(", "[", "{" or "case" inside this frame
    quoted: bool = False  # a ${...} within double quotes or a here-document
    delim: str = ""  # here-documents only
    strip_tabs: bool = False
    nested: bool = False  # inside a substitution or ( ): bash 5.2 ends the body more eagerly


def _ends_heredoc(line: str, doc: Any) -> bool:
    """Whether bash may end here-document ``doc`` (a frame or a slot) at ``line``."""
    if doc.strip_tabs:
        line = line.lstrip("\t")
    return line == doc.delim or (doc.nested and line.startswith(doc.delim))


class _Lexer:
    """Follows bash's quoting context through a script's literal text, fed chunk by chunk.

    Chunks are separated by placeholders, which never change the context; ``placeholder`` says
    how to write one at the current point.
    """

    def __init__(self) -> None:
        self.stack = [_Frame(_TOP)]
        self.pending: list[_Frame] = []  # here-documents whose body starts at the next newline
        self.word_start = self.line_start = True
        self.dangling = ""  # why nothing may directly follow the text fed last

    def feed(self, text: str) -> None:
        self.dangling = ""
        i = 0
        while i < len(text):
            if self.line_start and (j := self._heredoc_end(text, i)) is not None:
                i = j
                continue
            j = self._step(text, i)
            self.line_start = j == i + 1 and text[i] == "\n"
            i = j

    def placeholder(self) -> tuple[str, _Frame]:
        """The form of a reference at this point (see ``_REFERENCE``, plus "literal" and
        "arith"), and the frame it stands in. Raises ValueError when none would be safe."""
        if self.dangling:
            raise ValueError(self.dangling)
        self.word_start = self.line_start = False  # a reference is part of a word and a line
        top = self.stack[-1]
        if top.kind == _QHEREDOC:
            if any(f.kind == _BACKTICK for f in self.stack):
                # bash finds the closing backtick before it reads the here-document: a backtick
                # in the literal value would end the substitution
                raise ValueError("stands in a quoted here-document inside backticks; use $( )")
            return "literal", top
        if top.kind in (_SQ, _ANSI):
            return top.kind, top
        if top.kind != _COMMENT:
            for frame in reversed(self.stack):
                if frame.kind == _ARITH:
                    return "arith", frame
                if frame.kind in _CMD:
                    break
        return ("bare" if top.kind in (_DQ, _HEREDOC) else "quoted"), top

    # -- one step: consume the construct at text[i], return the index after it --

    def _step(self, text: str, i: int) -> int:
        top, c = self.stack[-1], text[i]
        if top.kind == _QHEREDOC:  # nothing expands: skip to the end of the line
            end = text.find("\n", i)
            return len(text) if end == -1 else max(end, i + 1)
        if top.kind == _SQ or (top.kind == _ANSI and c == "'"):
            if c == "'":
                self._pop()
            return i + 1
        if top.kind == _COMMENT:
            if c == "\n":
                self._pop()
                return i  # the newline belongs to the command level (here-documents start)
            return i + 1
        if c == "\\":
            if i + 1 == len(text):
                self.dangling = ("follows a backslash, which would escape the first character"
                                 " of its reference (write \\\\ for a literal backslash)")
            return i + 2
        if top.kind == _ANSI:
            return i + 1
        if (top.kind, c) in ((_DQ, '"'), (_BACKTICK, "`")):
            self._pop()
            return i + 1
        j = self._expansion(text, i)
        if j is not None:
            return j
        if top.kind in (_DQ, _HEREDOC):
            return i + 1
        if top.kind == _ARITH:
            return self._arith(text, i, top)
        return self._word(text, i, top)

    def _push(self, kind: str, close: str = "", **kw: Any) -> None:
        self.stack.append(_Frame(kind, close, **kw))
        self.word_start = kind in (_CMDSUB, _BACKTICK)

    def _pop(self) -> None:
        self.stack.pop()
        self.word_start = False  # what closed was part of a word

    def _expansion(self, text: str, i: int) -> int | None:
        """Open $((, $(, $[, ${ or a backtick at text[i]; None if there is none."""
        for opener, kind, close in (("$((", _ARITH, "))"), ("$(", _CMDSUB, ""),
                                    ("$[", _ARITH, "]"), ("`", _BACKTICK, "")):
            if text.startswith(opener, i):
                self._push(kind, close)
                return i + len(opener)
        if not text.startswith("${", i):
            return None
        top = self.stack[-1]
        quoted = top.kind in (_DQ, _HEREDOC) or top.quoted
        m = _PARAM.match(text, i + 2)
        after = text[m.end():m.end() + 2] if m else ""
        if after[:1] == ":" and after[1:] not in ("-", "=", "?", "+"):
            self._push(_ARITH, "}")  # ${s:offset:length}: both are arithmetic
            return m.end() + 1
        self._push(_BRACE, quoted=quoted)
        if after[:1] == "[":
            self._push(_ARITH, "]")  # a subscript is arithmetic for indexed arrays
            return m.end() + 1
        return i + 2

    def _arith(self, text: str, i: int, top: _Frame) -> int:
        c = text[i]
        if c == '"':
            self._push(_DQ)
        elif c in "([":
            top.opened.append(c)
        elif top.opened and c == {"(": ")", "[": "]"}[top.opened[-1]]:
            top.opened.pop()
        elif not top.opened and text.startswith(top.close, i):
            self._pop()
            return i + len(top.close)
        return i + 1

    def _word(self, text: str, i: int, top: _Frame) -> int:
        """Command-level text and the word parts of ${...}."""
        c, at_word = text[i], self.word_start
        self.word_start = c in _METACHARS
        if c == '"' or (c == "'" and not top.quoted):
            self._push(_DQ if c == '"' else _SQ)
        elif c == "$" and not top.quoted and text[i + 1:i + 2] in ("'", '"'):
            self._push(_ANSI if text[i + 1] == "'" else _DQ)  # $"..." is a translated "..."
            return i + 2
        elif top.kind == _BRACE:
            if c == "{":
                top.opened.append(c)
            elif c == "}" and top.opened:
                top.opened.pop()
            elif c == "}":
                self._pop()
        elif c == "#" and at_word:
            self._push(_COMMENT)
        elif c == "\n":
            self._next_heredoc()
        elif text.startswith("<<<", i):  # a here-string is an ordinary word
            return i + 3
        elif text.startswith("<<", i):
            return self._heredoc_operator(text, i)
        elif at_word and text.startswith("((", i):
            self._push(_ARITH, "))")
            return i + 2
        elif c == "(":
            top.opened.append(c)
        elif c == ")":
            if top.opened and top.opened[-1] == "(":
                top.opened.pop()
            elif not top.opened and top.kind == _CMDSUB:
                self._pop()
            # else: the end of a case pattern (or a stray parenthesis)
        elif at_word and (m := _CASE.match(text, i)):
            if m.group(1) == "case":
                top.opened.append("case")
            elif top.opened and top.opened[-1] == "case":
                top.opened.pop()
            self.word_start = False
            return m.end()
        return i + 1

    def _heredoc_operator(self, text: str, i: int) -> int:
        j, n = i + 2, len(text)
        strip_tabs = text.startswith("-", j)
        j += strip_tabs
        while j < n and text[j] in " \t":
            j += 1
        word, quoted = [], False
        while j < n and text[j] not in _METACHARS:
            if text[j] in "'\"":
                end = text.find(text[j], j + 1)
                if end == -1:
                    j = n
                    break
                word.append(text[j + 1:end])
                quoted, j = True, end + 1
            elif text[j] == "\\":
                word.append(text[j + 1:j + 2])
                quoted, j = True, j + 2
            else:
                word.append(text[j])
                j += 1
        if j >= n:
            self.dangling = "cannot be part of a here-document delimiter"
        if word or quoted:
            nested = any(f.kind in (_CMDSUB, _BACKTICK) or "(" in f.opened for f in self.stack)
            self.pending.append(_Frame(_QHEREDOC if quoted else _HEREDOC, delim="".join(word),
                                       strip_tabs=strip_tabs, nested=nested))
        self.word_start = False
        return min(j, n)

    def _next_heredoc(self) -> None:
        if self.pending:
            self.stack.append(self.pending.pop(0))

    def _heredoc_end(self, text: str, i: int) -> int | None:
        """At a line start: if the line ends the innermost here-document, close it and return
        the index after the line. A line cut by a placeholder never ends one."""
        doc = next((f for f in reversed(self.stack) if f.kind in (_HEREDOC, _QHEREDOC)), None)
        end = text.find("\n", i)
        if doc is None or end == -1 or not _ends_heredoc(text[i:end], doc):
            return None
        while self.stack.pop() is not doc:
            pass
        self.word_start = True
        self._next_heredoc()
        return end + 1


# --- templates ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: how a reference to variable {var} is written, by quoting context
_REFERENCE = {
    "quoted": '"${{{var}}}"',  # command level: quoted, so no word splitting or globbing
    "bare": "${{{var}}}",  # inside double quotes or an unquoted here-document
    _SQ: "'\"${{{var}}}\"'",  # close the single quotes, insert, reopen
    _ANSI: "'\"${{{var}}}\"$'",
}


class Slot(NamedTuple):
    """A placeholder in a compiled template, with how it is written."""

    name: str
    form: str  #: quoted | bare | squote | ansi | literal (quoted here-document) | arith
    delim: str = ""  #: literal only: the here-document delimiter the value must not recreate
    strip_tabs: bool = False
    nested: bool = False


@dataclass(frozen=True)
class Template:
    """A script split into literal text and ``Slot``s; ``render`` fills it."""

    vertex: str
    source: str
    parts: tuple  #: str (literal text, escapes resolved) or Slot
    placeholders: tuple[str, ...]  #: declared inputs used, in order of first use
    unknown: tuple[str, ...]  #: {word}s naming no input, left as written; in order, unique


def compile_script(vertex: str, script: str, schema: Mapping[str, InputSpec]) -> Template:
    """Find the placeholders of ``script`` and the bash quoting context of each.

    ``{name}`` of a declared input is a placeholder; ``{{`` and ``}}`` are literal braces; any other
    ``{word}``, or one right after ``$``, stays as written. Raises InputSchemaError when a
    placeholder stands where no reference is safe: a non-int input in arithmetic, right after a
    backslash, in a here-document delimiter, or in a quoted here-document inside backticks.
    """
    lexer, parts, literal = _Lexer(), [], []
    used: dict[str, None] = {}
    unknown: dict[str, None] = {}
    pos = 0
    for m in _TOKEN.finditer(script):
        literal.append(script[pos:m.start()])
        pos, name = m.end(), m.group(1)
        after_dollar = script[m.start() - 1:m.start()] == "$"
        if name is None:
            literal.append(m.group(0)[0])
            continue
        if after_dollar or name not in schema:
            literal.append(m.group(0))
            if not after_dollar:
                unknown.setdefault(name)
            continue
        text, literal = "".join(literal), []
        lexer.feed(text)
        try:
            form, frame = lexer.placeholder()
        except ValueError as exc:
            raise InputSchemaError(f"vertex '{vertex}': input '{name}': {{{name}}} {exc}") from None
        if form == "arith" and schema[name].type != "int":
            raise InputSchemaError(
                f"vertex '{vertex}': input '{name}' ({schema[name].type}) stands in arithmetic,"
                " where bash evaluates text as code: only int inputs may stand there")
        if text:
            parts.append(text)
        parts.append(Slot(name, form, frame.delim, frame.strip_tabs, frame.nested))
        used.setdefault(name)
    tail = "".join(literal) + script[pos:]
    if tail:
        parts.append(tail)
    return Template(vertex, script, tuple(parts), tuple(used), tuple(unknown))


@dataclass(frozen=True)
class Rendered:
    """A script ready for ``bash -e -o pipefail -c script`` with ``env`` added."""

    script: str  #: what runs; holds a secret only where one stands in a quoted here-document
    shown: str  #: what may be stored or shown: ``script`` with every secret value masked
    env: dict[str, str]  #: PE_<name> -> text, for every input of the schema


def render(template: Template, values: Mapping[str, Any],
           schema: Mapping[str, InputSpec]) -> Rendered:
    """Fill ``template`` (compiled against ``schema``) with typed ``values``; an absent or None
    value becomes the empty string. Values are checked again (ParameterError if bad), and a
    value that would end its quoted here-document early is refused with ParameterError.
    """
    vertex = template.vertex
    texts = {}
    for name, spec in schema.items():
        raw = values.get(name)
        try:
            texts[name] = spec.to_text(None if raw is None else spec.coerce(raw))
        except ValueError as exc:
            raise ParameterError(f"vertex '{vertex}': input '{name}': {exc}") from None
    pieces, literals, size = [], [], 0
    for part in template.parts:
        if isinstance(part, str):
            piece = part
        elif part.name not in texts:
            raise InputSchemaError(f"vertex '{vertex}': input '{part.name}' is not in the schema")
        elif part.form in ("literal", "arith"):
            # arithmetic treats an empty variable as 0: say so in the text too
            piece = texts[part.name] or ("0" if part.form == "arith" else "")
            if part.form == "literal":
                literals.append((size, size + len(piece), part))
        else:
            piece = _REFERENCE[part.form].format(var=ENV_PREFIX + part.name)
        pieces.append(piece)
        size += len(piece)
    script = "".join(pieces)
    for start, end, slot in literals:
        # check whole lines: text around the value on its lines counts too
        first, last = script.rfind("\n", 0, start) + 1, script.find("\n", end)
        if any(_ends_heredoc(line, slot)
               for line in script[first:len(script) if last == -1 else last].split("\n")):
            raise ParameterError(
                f"vertex '{vertex}': input '{slot.name}': a line of the value equals the"
                f" here-document delimiter '{slot.delim}' (or, inside a substitution, starts with"
                " it), which would end the document early and run the rest as code")
    secrets = [texts[name] for name, spec in schema.items() if spec.secret]
    return Rendered(script, mask(script, secrets),
                    {ENV_PREFIX + name: text for name, text in texts.items()})
