"""Graph files: YAML, and JSON with the same keys. Text in, ``GraphSpec`` out, and back."""
from __future__ import annotations

import os
from typing import Any

import simplejson
import yaml

from pipeline_engine.errors import GraphFileError
from pipeline_engine.spec import GraphSpec, graph_from_dict

FORMATS = ("yaml", "json")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise GraphFileError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            try:
                seen.add(key)
            except TypeError:
                raise GraphFileError(f"line {key_node.start_mark.line + 1}: a key must be a plain value")
        return super().construct_mapping(node, deep=deep)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise GraphFileError(f"key {key!r} is given twice")
        out[key] = value
    return out


def parse(text: str, fmt: str | None = None) -> Any:
    """Parse a graph file's text (``fmt`` 'yaml' or 'json'; guessed from the text if None)."""
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    try:
        if fmt == "json":
            return simplejson.loads(text, object_pairs_hook=_no_duplicates)
        return yaml.load(text, Loader=_StrictLoader)
    except simplejson.JSONDecodeError as exc:
        raise GraphFileError(f"not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise GraphFileError(f"not valid YAML: {' '.join(str(exc).split())}") from None


def loads(text: str, fmt: str | None = None) -> GraphSpec:
    """Parse and validate a graph file's text."""
    return graph_from_dict(parse(text, fmt))


def load(path: str) -> GraphSpec:
    """Read, parse and validate a graph file; the format follows the extension."""
    ext = os.path.splitext(path)[1].lower()
    fmt = "json" if ext == ".json" else "yaml" if ext in (".yaml", ".yml") else None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise GraphFileError(f"cannot read graph file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise GraphFileError(f"graph file {path} is not UTF-8 text") from None
    try:
        return loads(text, fmt)
    except GraphFileError as exc:
        err = GraphFileError(f"{path}: {exc}")
        err.problems = getattr(exc, "problems", [str(exc)])
        raise err from None


class _Dumper(yaml.SafeDumper):
    pass


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
