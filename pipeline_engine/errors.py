"""One exception tree for everything a user can get wrong or run into.

Every error carries the process exit code the CLI uses for it, and a message
that names the graph, vertex, edge or input at fault. The class docstring is
the default message.
"""
from __future__ import annotations


class PipelineEngineError(Exception):
    """pipeline_engine failed."""

    #: exit code of the CLI when this error ends a command
    exit_code = 2

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


# --- looking things up -------------------------------------------------------

class NotFoundError(PipelineEngineError):
    """Not found."""


class AlreadyExistsError(PipelineEngineError):
    """Already exists."""


# --- graphs ------------------------------------------------------------------

class GraphError(PipelineEngineError):
    """The graph is not valid."""


class CycleError(GraphError):
    """The graph has a cycle."""

    exit_code = 1

    def __init__(self, graph: str, cycle: list[str]):
        self.graph = graph
        #: the vertices of one cycle, in edge order, first vertex repeated at the end
        self.cycle = list(cycle)
        super().__init__(f"graph '{graph}': cycle: {' -> '.join(self.cycle)}")


class SealedGraphError(GraphError):
    """The graph is sealed and cannot change; copy it into a new draft instead."""


class GraphStatusError(GraphError):
    """The graph is not in the status this operation needs."""


class GraphFileError(GraphError):
    """The graph file is not valid."""


# --- inputs and parameters ---------------------------------------------------

class InputError(PipelineEngineError):
    """An input is not valid."""


class InputSchemaError(InputError):
    """A vertex declares an invalid input schema."""


class ParameterError(InputError):
    """A run parameter is missing or has a bad value."""


# --- settings ----------------------------------------------------------------

class SettingError(PipelineEngineError):
    """A setting is not valid."""


# --- runs --------------------------------------------------------------------

class StateError(PipelineEngineError):
    """Illegal state transition."""

    exit_code = 1


# --- the database ------------------------------------------------------------

class DatabaseError(PipelineEngineError):
    """The database failed; the driver's error is the __cause__."""

    exit_code = 3


class SchemaVersionError(DatabaseError):
    """The database schema is not up to date: run `pipeline-engine db upgrade`."""


class DatabaseMissingError(DatabaseError):
    """The database does not exist: create it with `pipeline-engine --db URL db upgrade`."""

    exit_code = 2


class DatabaseURLError(DatabaseError):
    """The database URL is not one pipeline_engine can use."""

    exit_code = 2


class DatabaseUnusableError(DatabaseError):
    """The database cannot be written, and waiting will not change that (disk full, read-only,
    its file deleted): someone must fix it."""
