"""Rendering a vertex's script with its input values, and masking secrets in output. Pure.

``compile_script`` finds the ``{name}`` placeholders of a script and, through ``shell.read``,
where each stands; ``render`` replaces each with a reference to the environment variable
``PE_<name>`` written for its site, so that a value reaches bash as data and never runs as code.

The safety property: a placeholder is accepted only where the reader positively knows that bash
takes its value as data (an ``int`` also in arithmetic and name positions), and only in a script
the reader follows with certainty (``shell``, default-deny); the value itself is never pasted
into the script, only a reference to its variable (``Rendered.shown == script``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline_engine import shell
from pipeline_engine.errors import InputSchemaError, ParameterError
from pipeline_engine.inputtypes import MASK, InputSpec

#: environment variables carrying input values are named ENV_PREFIX + input name
ENV_PREFIX = "PE_"


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by MASK, longest first,
    in one pass (so a mask is never masked again)."""
    found = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not found:
        return text
    return re.sub("|".join(map(re.escape, found)), MASK, text)


_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: how a reference to variable {var} is written, by the form of its site
_REFERENCE = {
    shell.WORD: '"${{{var}}}"',  # command level: quoted, so no word splitting or globbing
    shell.COMMENT: '"${{{var}}}"',
    shell.DQ: "${{{var}}}",  # inside double quotes or an unquoted here-document
    shell.HEREDOC: "${{{var}}}",
    shell.SQ: "'\"${{{var}}}\"'",  # close the single quotes, insert, reopen
    shell.ANSI: "'\"${{{var}}}\"$'",
}
_ROLES = {  # what a role is, as said in an error; int inputs may stand in these roles
    shell.ARITH: "stands in arithmetic ('{construct}')",
    shell.NAME: "stands where bash takes a variable name ('{construct}') and evaluates a subscript in it",
    shell.OPTION: "stands where '{construct}' reads its options, and a value starting with '-' would be"
                  " taken as one (put -- before it)",
    shell.CODE: "is an argument of '{construct}', which runs its arguments as code or as a command",
    shell.SPECIAL: "is assigned to '{construct}', a variable that changes what bash runs or how it reads the"
                   " script",
    shell.INTEGERS: "is data in a script that gives a variable the integer attribute ({construct}), and bash"
                    " evaluates whatever reaches such a variable as arithmetic",
    shell.DUPLICATE: "is the target of '>&', which bash expands a second time, as code, when it is not a file"
                     " descriptor number (write '> FILE 2>&1' or '&> FILE')",
    shell.UNKNOWN: "is an argument of a command the script does not name, which bash may take as code or a"
                   " name (name the command, or pass the value on in a variable: v={placeholder})",
}
_REFUSED = {  # where no input of any type may stand
    shell.COMMAND: "names the command to run: a value may not choose what runs",
    shell.BACKSLASH: "follows a backslash, which would escape the first character of its reference"
                     " (write \\\\ for a literal backslash)",
    shell.DELIMITER: "stands in a here-document delimiter",
    shell.QHEREDOC: "stands in a quoted here-document ({construct}), where it would be pasted into the script"
                    " as text: use an unquoted here-document (<<EOF), where the value arrives by reference",
    shell.BRACE: "stands inside a parameter expansion '${{…}}': assign it to a variable first"
                 " (v={placeholder}) and expand that",
    shell.BACKTICK: "stands inside backticks, which bash reads twice: use $( ) instead",
}


class Slot(NamedTuple):
    """A placeholder in a compiled template, with how it is written."""

    name: str
    form: str  #: a form of ``shell``: word | dquote | squote | ansi | heredoc | comment | arith


@dataclass(frozen=True)
class Template:
    """A script split into literal text and ``Slot``s; ``render`` fills it."""

    vertex: str
    source: str
    parts: tuple  #: str (literal text, escapes resolved) or Slot
    placeholders: tuple[str, ...]  #: declared inputs used, in order of first use
    unknown: tuple[str, ...]  #: {word}s naming no input, left as written; in order, unique


def compile_script(vertex: str, script: str, schema: Mapping[str, InputSpec]) -> Template:
    """Find the placeholders of ``script`` and where each stands (``shell.read``).

    ``{name}`` of a declared input is a placeholder; ``{{`` and ``}}`` are literal braces; any other
    ``{word}``, or one right after ``$``, stays as written. Default-deny: raises InputSchemaError,
    naming the vertex, the placeholder, its line and the construct, unless every placeholder
    stands where bash takes its value as data (or, for an int input, in arithmetic or as a name),
    and unless the whole script is one the reader follows with certainty.
    """
    parts: list[Any] = []  # literal text and slot numbers; then literal text and Slots
    literal: list[str] = []
    slots: list[str] = []
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
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(len(slots))
        slots.append(name)
        used.setdefault(name)
    tail = "".join(literal) + script[pos:]
    if tail:
        parts.append(tail)
    if slots:
        sites = _read(vertex, script, parts, slots, schema)
        parts = [p if isinstance(p, str) else Slot(slots[p], sites[p].form) for p in parts]
    return Template(vertex, script, tuple(parts), tuple(used), tuple(unknown))


def _read(vertex: str, script: str, parts: list, slots: list[str],
          schema: Mapping[str, InputSpec]) -> dict[int, shell.Site]:
    """Where each slot stands, checked against its input's type (InputSchemaError if refused)."""
    if any(ord(c) >= shell.MARK_BASE for c in script) or len(slots) >= shell.MARK_LIMIT - shell.MARK_BASE:
        raise InputSchemaError(f"vertex '{vertex}': the script holds a character from Unicode's private use"
                               " area B, which the engine uses to read placeholders")
    marked = "".join(p if isinstance(p, str) else shell.mark(p) for p in parts)
    try:
        sites = shell.read(marked)
    except shell.Unsure as exc:
        if exc.site is None:
            first = "{" + slots[0] + "}"
            raise InputSchemaError(
                f"vertex '{vertex}': line {exc.line}: {exc.reason}: the engine cannot read this script with"
                f" certainty, so it takes no placeholder ({first} and any other); see the README's"
                " Placeholders section") from None
        sites = {exc.site[0]: exc.site[1]}
    for k, name in enumerate(slots):
        site = sites.get(k)
        if site is None or site.role == shell.DATA:
            continue
        placeholder = "{" + name + "}"
        where = f"vertex '{vertex}': {placeholder} at line {site.line}"
        if site.role in _REFUSED:
            what = _REFUSED[site.role].format(construct=site.construct, placeholder=placeholder)
            raise InputSchemaError(f"{where} {what}")
        if schema[name].type != "int":
            what = _ROLES[site.role].format(construct=site.construct, placeholder=placeholder)
            raise InputSchemaError(f"{where} {what}: only int inputs may stand there"
                                   f" ('{name}' is {schema[name].type})")
    missing = [k for k in range(len(slots)) if k not in sites]
    if missing:  # every mark is read or the reader is unsure: this is a bug, refuse to guess
        raise InputSchemaError(f"vertex '{vertex}': {{{slots[missing[0]]}}} could not be placed")
    return sites


@dataclass(frozen=True)
class Rendered:
    """A script ready for ``bash -e -o pipefail -c script`` with ``env`` added."""

    script: str  #: what runs: values stand in it only as digits of int inputs in arithmetic
    shown: str  #: what may be stored or shown (the same text: no secret is ever in ``script``)
    env: dict[str, str]  #: PE_<name> -> text, for every input of the schema


def render(template: Template, values: Mapping[str, Any],
           schema: Mapping[str, InputSpec]) -> Rendered:
    """Fill ``template`` (compiled against ``schema``) with typed ``values``; an absent or None
    value becomes the empty string. Values are checked again (ParameterError if bad).
    """
    vertex = template.vertex
    texts = {}
    for name, spec in schema.items():
        raw = values.get(name)
        try:
            texts[name] = spec.to_text(None if raw is None else spec.coerce(raw))
        except ValueError as exc:
            raise ParameterError(f"vertex '{vertex}': input '{name}': {exc}") from None
    pieces = []
    for part in template.parts:
        if isinstance(part, str):
            pieces.append(part)
        elif part.name not in texts:
            raise InputSchemaError(f"vertex '{vertex}': input '{part.name}' is not in the schema")
        elif part.form == shell.ARITH:
            if schema[part.name].type != "int":  # compile_script refuses it; never paste other text
                raise InputSchemaError(f"vertex '{vertex}': input '{part.name}' is not int")
            pieces.append(texts[part.name] or "0")  # arithmetic treats an empty variable as 0
        else:
            pieces.append(_REFERENCE[part.form].format(var=ENV_PREFIX + part.name))
    script = "".join(pieces)
    return Rendered(script, script, {ENV_PREFIX + name: text for name, text in texts.items()})


def render_script(vertex: str, script: str, schema: Mapping[str, InputSpec], values: Mapping[str, Any]) -> Rendered:
    """The one place a vertex's script becomes what runs: read (``compile_script``, which
    refuses a placeholder where its value could become code) and filled with ``values``."""
    return render(compile_script(vertex, script, schema), values, schema)
