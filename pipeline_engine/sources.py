"""Where run inputs come from besides ``-p NAME=VALUE`` and the prompt: ``-p NAME=@FILE`` (a
file's content) and ``PIPELINE_ENGINE_PARAM_NAME`` variables. No database; the environment is
read by ``settings`` and passed in.

Both keep secrets off command lines (``ps``, shell history, crontabs). A value is never shown in
an error: only the parameter's name and the file or variable.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from pipeline_engine.errors import ParameterError
from pipeline_engine.settings import PARAM_PREFIX


def _read(key: str, path: str) -> str:
    """The content of ``path`` with one trailing newline (``\\n`` or ``\\r\\n``) stripped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ParameterError(f"parameter '{key}': cannot read file '{path}': {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParameterError(f"parameter '{key}': file '{path}' is not valid UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def expand_files(parameters: Iterable[str]) -> list[str]:
    """``KEY=VALUE`` items with each ``KEY=@FILE`` replaced by ``KEY=`` and the file's content,
    and a value starting ``@@`` by the same value with one ``@`` less (a literal ``@``). Other
    items are kept as they are (``inputtypes.resolve`` reports those that are not KEY=VALUE).
    Raises ParameterError naming the parameter and the file when a file cannot be read."""
    out = []
    for item in parameters:
        key, sep, value = item.partition("=")
        if sep and value.startswith("@@"):
            item = f"{key}={value[1:]}"
        elif sep and value.startswith("@"):
            item = f"{key}={_read(key, value[1:])}"
        out.append(item)
    return out


def from_environ(parameters: Iterable[str], environ: Mapping[str, str], declared: Collection[str]) -> list[str]:
    """``parameters`` followed by ``NAME=VALUE`` for each variable of ``environ`` (NAME -> value,
    see ``settings.param_environ``) whose NAME is in ``declared`` and that ``parameters`` does
    not set with a plain ``NAME=`` (the command line wins; a ``VERTEX.NAME=`` item still wins
    for its vertex only). Variables for inputs nobody declares are ignored: the environment
    may hold inputs of other graphs."""
    parameters = list(parameters)
    plain = {p.partition("=")[0] for p in parameters if "=" in p}
    extra = []
    for name in sorted(environ):
        if name in declared and name not in plain:
            value = environ[name]
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ParameterError(f"parameter '{name}': environment variable {PARAM_PREFIX}{name}"
                                     " is not valid UTF-8 text") from None
            extra.append(f"{name}={value}")
    return parameters + extra
