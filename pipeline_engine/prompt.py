"""Interactive prompts for the missing inputs of a run. Console only: no database.

``ask`` takes the (vertex, InputSpec) pairs that ``inputtypes.missing`` lists and asks for each on
the terminal, by type: on stderr (stdout stays scriptable), with the input's description, type,
choices and default, again after a bad value, and without echoing a secret.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import click

from pipeline_engine.inputtypes import InputSpec


def _hint(spec: InputSpec) -> str:
    """The type as the prompt shows it, with what narrows it."""
    if spec.type == "choice":
        return f"choice: {', '.join(spec.choices or ())}"
    if spec.type == "bool":
        return "bool: yes/no"
    bits = [spec.type]
    if spec.min is not None:
        bits.append(f">= {spec.min}")
    if spec.max is not None:
        bits.append(f"<= {spec.max}")
    return ", ".join(bits)


def _check(spec: InputSpec) -> Callable[[str], str]:
    """A click ``value_proc``: a bad value becomes BadParameter, so click says why and asks
    again. It gives back the text as typed; ``start_run`` coerces it again."""
    def check(text: str) -> str:
        try:
            spec.coerce(text)
        except ValueError as exc:  # the message never holds a secret's value
            raise click.BadParameter(str(exc)) from None
        return text
    return check


def ask(items: Sequence[tuple[str, InputSpec]]) -> list[str]:
    """Ask for each (vertex, spec) in turn; return ``KEY=VALUE`` strings to add to the run's
    parameters. The key is the input's name, or ``VERTEX.name`` when several items share the
    name (vertices that declare it with different types). Raises click.Abort on Ctrl-C or end
    of input."""
    shared = Counter(spec.name for _, spec in items)
    answers = []
    for vertex, spec in items:
        key = spec.name if shared[spec.name] == 1 else f"{vertex}.{spec.name}"
        if spec.description:
            click.echo(spec.description, err=True)
        answers.append(f"{key}={_secret(key, spec) if spec.secret and spec.default is None else _value(key, spec)}")
    return answers


def _value(key: str, spec: InputSpec) -> str:
    default = None if spec.default is None else spec.to_text(spec.default)
    return click.prompt(f"{key} ({_hint(spec)})", default=default, hide_input=spec.secret,
                        value_proc=_check(spec), err=True)


def _secret(key: str, spec: InputSpec) -> str:
    """A secret without a default, typed unseen. An empty one is taken (as ``-p pw=`` takes it)
    only when Enter is pressed twice, after a message saying so: an empty line is more often a
    slip than a choice."""
    value = click.prompt(f"{key} ({_hint(spec)})", default="", show_default=False, hide_input=True,
                         value_proc=_check(spec), err=True)
    while value == "":
        click.echo(f"empty secret for '{key}': press Enter again to use it, or type the value", err=True)
        value = click.prompt(f"{key} ({_hint(spec)})", default="", show_default=False, hide_input=True,
                             value_proc=_check(spec), err=True)
        if value == "":
            return value
    return value
