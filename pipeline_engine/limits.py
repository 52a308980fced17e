"""Pure: the kernel's limits on what a vertex hands to bash, checked where the data enters
(when a vertex is saved, when a run starts) instead of failing at ``exec`` with "Argument list
too long".

A script runs as ``bash ... -c SCRIPT`` with each input in an environment variable
``PE_<name>=value``. Linux refuses to start it (E2BIG) when one argument or environment string,
with its NUL, is longer than MAX_ARG_STRLEN, or when all of them, with a pointer each, pass
ARG_MAX (a quarter of the stack limit: 2 MiB with the usual 8 MiB). The vertex's own strings
may use ARG_BUDGET of that; the rest is left for the environment the worker passes on.
"""
from __future__ import annotations

from collections.abc import Mapping

#: longest single argument or environment string, its NUL included (32 pages of 4 KiB)
MAX_ARG_STRLEN = 131072
#: what a vertex's script and PE_ variables may take together, of the usual ARG_MAX of 2 MiB
ARG_BUDGET = 2 * 1024 * 1024 - 256 * 1024
_POINTER = 8


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def check(vertex: str, script: str, env: Mapping[str, str], *, what: str = "value") -> list[str]:
    """The problems, one line each, that would keep bash from starting with ``script`` and
    ``env`` (PE_<name> -> text): a string over MAX_ARG_STRLEN, or all over ARG_BUDGET. ``what``
    names the values in the messages ("value", "default"); sizes only, never a value."""
    problems = []
    script_size = _size(script) + 1
    if script_size > MAX_ARG_STRLEN:
        problems.append(f"vertex '{vertex}': the script as it runs is {script_size} bytes, over the kernel's"
                        f" limit of {MAX_ARG_STRLEN} bytes for one argument (MAX_ARG_STRLEN, its NUL counted;"
                        " placeholders count as their references, or as the value where it is pasted)")
    total = script_size + _POINTER
    for key, text in env.items():
        size = _size(key) + 1 + _size(text) + 1
        total += size + _POINTER
        if size > MAX_ARG_STRLEN:
            name = key[3:] if key.startswith("PE_") else key
            problems.append(f"vertex '{vertex}': input '{name}': the {what} makes {key}=... {size} bytes, over"
                            f" the kernel's limit of {MAX_ARG_STRLEN} bytes for one environment variable"
                            " (MAX_ARG_STRLEN, name and NUL counted)")
    if total > ARG_BUDGET and not problems:
        problems.append(f"vertex '{vertex}': its script and inputs take {total} bytes together, over the"
                        f" {ARG_BUDGET} bytes a vertex may pass to bash (of the kernel's ARG_MAX of 2 MiB)")
    return problems
