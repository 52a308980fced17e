"""Graph files: YAML, and JSON with the same keys. Text in, ``GraphSpec`` out, and back."""
from __future__ import annotations

import os
import re
import sys
from typing import Any, BinaryIO

import simplejson
import yaml

from pipeline_engine import inputtypes
from pipeline_engine.errors import GraphFileError
from pipeline_engine.spec import GraphSpec, graph_from_dict

FORMATS = ("yaml", "json")


#: largest graph file accepted, in bytes; a bigger one is refused before it is parsed
MAX_FILE_BYTES = 16 * 1024 * 1024
#: deepest nesting of lists and mappings accepted (a graph file needs 6 levels)
MAX_DEPTH = 32
#: longest number accepted, in characters (Python converts at most 4300 digits)
MAX_NUMBER_CHARS = 100

_TAG = "tag:yaml.org,2002:"
#: YAML 1.2 core schema, except that a number with a leading zero (0755) is text: YAML 1.1
#: read it as octal, 1.2 as decimal, and a graph file should not depend on which one is meant.
_CORE = (
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("int", r"[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    ("float", r"[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+.0123456789")),
)
#: input types whose default and choices are text
_TEXT_TYPES = ("str", "secret", "choice")


class _Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema (``on``, ``no``, ``12:30:00`` and dates are text),
    no anchors or aliases (an alias bomb expands exponentially), nesting at most MAX_DEPTH deep,
    and no key given twice in one mapping (PyYAML keeps the last)."""

    yaml_implicit_resolvers: dict = {}
    yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise GraphFileError(f"line {line}: anchors and aliases (&name, *name) are not allowed in graph files")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise GraphFileError(f"line {line}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_scalar_node(self, anchor):
        plain = self.peek_event().implicit[0]  # untagged and unquoted
        node = super().compose_scalar_node(anchor)
        node.plain = plain
        return node

    def construct_document(self, node):
        _keep_text(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise GraphFileError(f"line {key_node.start_mark.line + 1}: key {inputtypes.shown(key)} is given twice")
                seen.add(key)
            except TypeError:
                raise GraphFileError(f"line {key_node.start_mark.line + 1}: a key must be a plain value") from None
        return super().construct_mapping(node, deep=deep)

    def construct_core_int(self, node):
        text = self._number_text(node)
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith(("0o", "0x")):
            return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
        return sign * int(digits)

    def construct_core_float(self, node):
        text = self._number_text(node).lower()
        return float(text.replace(".inf", "inf").replace(".nan", "nan"))

    def construct_core_bool(self, node):
        return self.construct_scalar(node).lower() == "true"

    def _number_text(self, node) -> str:
        text = self.construct_scalar(node)
        if len(text) > MAX_NUMBER_CHARS:
            raise GraphFileError(f"line {node.start_mark.line + 1}: a number of more than"
                                 f" {MAX_NUMBER_CHARS} characters")
        return text


for _kind, _pattern, _first in _CORE:
    _Loader.add_implicit_resolver(_TAG + _kind, re.compile(f"^(?:{_pattern})$"), _first)
_Loader.add_constructor(_TAG + "int", _Loader.construct_core_int)
_Loader.add_constructor(_TAG + "float", _Loader.construct_core_float)
_Loader.add_constructor(_TAG + "bool", _Loader.construct_core_bool)


def _as_text(node) -> None:
    """A plain scalar that resolved to a number or bool becomes the text that was written."""
    if isinstance(node, yaml.ScalarNode) and getattr(node, "plain", False) \
            and node.tag in (_TAG + "int", _TAG + "float", _TAG + "bool"):
        node.tag = _TAG + "str"


def _items(node, kind):
    return node.value if isinstance(node, kind) else []


def _keep_text(root) -> None:
    """Mark the plain scalars given as the default or the choices of a text input, or as a value
    of a vertex's ``env``, as text before construction: ``default: 0x1F`` of a str input stays
    "0x1F", ``true`` stays "true"."""
    def value_of(mapping, key):
        return next((v for k, v in _items(mapping, yaml.MappingNode)
                     if isinstance(k, yaml.ScalarNode) and k.value == key), None)

    for vertex in _items(value_of(root, "vertices"), yaml.SequenceNode):
        for _, value in _items(value_of(vertex, "env"), yaml.MappingNode):
            _as_text(value)  # env: {LEVEL: 3} is the text "3", as written
        for _, spec in _items(value_of(vertex, "inputs"), yaml.MappingNode):
            kind = value_of(spec, "type")
            if kind is None or isinstance(kind, yaml.ScalarNode) and kind.value in _TEXT_TYPES:
                _as_text(value_of(spec, "default"))
                for choice in _items(value_of(spec, "choices"), yaml.SequenceNode):
                    _as_text(choice)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise GraphFileError(f"key {inputtypes.shown(key)} is given twice")
        out[key] = value
    return out


def _json_number(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise GraphFileError(f"not valid JSON: a number of more than {MAX_NUMBER_CHARS} characters")
    return text


def _depth(data: Any) -> int:
    """How deep lists and mappings nest in ``data`` (iteratively: no recursion limit)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _check_size(size: int, what: str) -> None:
    if size > MAX_FILE_BYTES:
        raise GraphFileError(f"{what} is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes"
                             f" ({MAX_FILE_BYTES // 1024 // 1024} MiB) for a graph file")


def parse(text: str, fmt: str | None = None) -> Any:
    """Parse a graph file's text (``fmt`` 'yaml' or 'json'; guessed from the text if None).
    Text over MAX_FILE_BYTES, nesting deeper than MAX_DEPTH, anchors and aliases are refused."""
    if len(text) > MAX_FILE_BYTES // 4:
        _check_size(len(text.encode("utf-8", "surrogateescape")), "the graph file")
    if fmt is None:
        if not text.lstrip().startswith("{"):
            return parse(text, "yaml")
        try:  # JSON, or a YAML flow mapping (`{name: g, ...}`): whichever it parses as
            return parse(text, "json")
        except GraphFileError as exc:
            if not getattr(exc, "json_syntax", False):
                raise
            try:
                return parse(text, "yaml")
            except GraphFileError:
                raise exc from None
    try:
        if fmt == "json":
            data = simplejson.loads(text, object_pairs_hook=_no_duplicates,
                                    parse_int=lambda t: int(_json_number(t)),
                                    parse_float=lambda t: float(_json_number(t)))
            if _depth(data) > MAX_DEPTH:
                raise GraphFileError(f"not valid JSON: nested more than {MAX_DEPTH} levels deep")
            return data
        return yaml.load(text, Loader=_Loader)
    except simplejson.JSONDecodeError as exc:
        err = GraphFileError(f"not valid JSON: {exc}")
        err.json_syntax = True
        raise err from None
    except yaml.YAMLError as exc:
        raise GraphFileError(_yaml_problem(exc)) from None
    except RecursionError:  # simplejson recurses per level: deeper than Python allows
        raise GraphFileError(f"not valid JSON: nested more than {MAX_DEPTH} levels deep") from None


def _mark(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error on one line, where it is first: ``line 3, column 5: not valid YAML:
    expected ..., (while parsing a block mapping that starts at line 1, column 1)``."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None or mark is None:  # a reader error (a control character) has no mark
        message = " ".join(str(exc).split())
        return f"not valid YAML: {message if len(message) <= 300 else message[:297] + '...'}"
    message = " ".join(problem.split())
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and (context_mark.line, context_mark.column) != (mark.line, mark.column):
        message += f" ({' '.join(context.split())} that starts at {_mark(context_mark)})"
    elif context:
        message += f" ({' '.join(context.split())})"
    return f"{_mark(mark)}: not valid YAML: {message if len(message) <= 300 else message[:297] + '...'}"


def loads(text: str, fmt: str | None = None) -> GraphSpec:
    """Parse and validate a graph file's text."""
    return graph_from_dict(parse(text, fmt))


#: how messages name a graph file read from standard input
STDIN = "<stdin>"


def load(path: str) -> GraphSpec:
    """Read, parse and validate a graph file; the format follows the extension. ``-`` reads
    standard input, YAML or JSON, whichever it parses as."""
    if path == "-":
        return load_stream(sys.stdin.buffer, STDIN)
    ext = os.path.splitext(path)[1].lower()
    fmt = "json" if ext == ".json" else "yaml" if ext in (".yaml", ".yml") else None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # never more: a huge file (or /dev/zero) is refused unread
        if len(data) > MAX_FILE_BYTES:
            _check_size(max(len(data), os.path.getsize(path)), f"graph file {path}")
    except OSError as exc:
        raise GraphFileError(f"cannot read graph file {path}: {exc.strerror}") from None
    return load_bytes(data, path, fmt)


def load_stream(stream: BinaryIO, where: str) -> GraphSpec:
    """Read, parse and validate a graph file from ``stream`` (named ``where`` in messages)."""
    try:
        data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise GraphFileError(f"cannot read graph file {where}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise GraphFileError(f"graph file {where} is over the limit of {MAX_FILE_BYTES} bytes"
                             f" ({MAX_FILE_BYTES // 1024 // 1024} MiB) for a graph file")
    return load_bytes(data, where, None)


def load_bytes(data: bytes, where: str, fmt: str | None) -> GraphSpec:
    """Decode (UTF-8), parse and validate a graph file's bytes (named ``where`` in messages)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphFileError(f"graph file {where} is not UTF-8 text") from None
    try:
        return loads(text, fmt)
    except GraphFileError as exc:
        err = GraphFileError(f"{where}: {exc}")
        err.problems = getattr(exc, "problems", [str(exc)])
        raise err from None


class _Dumper(yaml.SafeDumper):
    """Quotes a string that YAML 1.1 or the core schema would read as something else."""


for _kind, _pattern, _first in _CORE:
    _Dumper.add_implicit_resolver(_TAG + _kind, re.compile(f"^(?:{_pattern})$"), _first)


def _str(dumper, value: str):
    # Multi-line scripts read best as literal blocks.
    style = "|" if "\n" in value and value == value.rstrip(" ") and "\t" not in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dumps(spec: GraphSpec, fmt: str = "yaml") -> str:
    """The graph file of ``spec``; loading it gives ``spec`` back."""
    data = spec.to_dict()
    if fmt == "json":
        return simplejson.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    raise GraphFileError(f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})")
