"""One exception tree for everything a user can get wrong or run into.

Every error carries the process exit code the CLI uses for it, the HTTP status the API
answers with, and a message that names the graph, vertex, edge or input at fault (one line
per problem: ``problems``). The class docstring is the default message. Five families:

- ``ValidationError`` -- the request is wrong (a graph, an input, a setting): exit 2, 422;
- ``NotFoundError`` -- what it names does not exist: exit 2, 404;
- ``ConflictError`` -- it is right but the state does not allow it now (a sealed graph, a pool
  in use, a run in the wrong state): exit 2, 409;
- ``DatabaseError`` -- the database is unavailable or unusable: exit 3, 503;
- ``AccessError`` -- the API's caller may not do it: no valid token (401), a role too small (403).

``TooLargeError`` is a validation error the API answers with 413. Each class's ``kind`` is the API's word for it (``{"error": {"type": kind}}``).
"""
from __future__ import annotations


class PipelineEngineError(Exception):
    """pipeline_engine failed."""

    #: exit code of the CLI when this error ends a command
    exit_code = 2
    #: status of the API's answer when this error ends a request
    http_status = 422
    #: the API's word for the family (``{"error": {"type": ...}}``)
    kind = "validation"

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())
        #: one line per problem (an error may report several at once)
        self.problems: list[str] = [line for line in str(self).splitlines() if line.strip()]

    @property
    def message(self) -> str:
        return str(self)


class ValidationError(PipelineEngineError):
    """The request is not valid."""


class ConflictError(PipelineEngineError):
    """The request is valid, but not in the state things are in now."""

    http_status = 409
    kind = "conflict"


# --- looking things up -------------------------------------------------------

class NotFoundError(PipelineEngineError):
    """Not found."""

    http_status = 404
    kind = "not_found"


class AlreadyExistsError(ConflictError):
    """Already exists."""


# --- graphs ------------------------------------------------------------------

class GraphError(ValidationError):
    """The graph is not valid."""


class CycleError(GraphError):
    """The graph has a cycle."""

    exit_code = 1

    def __init__(self, graph: str, cycle: list[str]):
        self.graph = graph
        #: the vertices of one cycle, in edge order, first vertex repeated at the end
        self.cycle = list(cycle)
        super().__init__(f"graph '{graph}': cycle: {' -> '.join(self.cycle)}")


class SealedGraphError(ConflictError, GraphError):
    """The graph version is sealed and cannot change; start the next version instead."""


class GraphStatusError(ConflictError, GraphError):
    """The graph is not in the status this operation needs."""


class GraphFileError(GraphError):
    """The graph file is not valid."""


# --- inputs and parameters ---------------------------------------------------

class InputError(ValidationError):
    """An input is not valid."""


class InputSchemaError(InputError):
    """A vertex declares an invalid input schema."""


class ParameterError(InputError):
    """A run parameter is missing or has a bad value."""


class SecretsNeedOwnerError(ConflictError, ParameterError):
    """The graph has secret inputs, which are never stored: only a process that runs the run
    itself can hold them."""

    def __init__(self, message: str | None = None, names: list[str] | None = None):
        super().__init__(message)
        #: the secret inputs' names
        self.names = sorted(names or [])


# --- schedules ---------------------------------------------------------------

class ScheduleError(ValidationError):
    """A schedule is not valid: its cron expression, interval, time zone, times or policies."""


# --- settings ----------------------------------------------------------------

class SettingError(ValidationError):
    """A setting is not valid."""


# --- runs --------------------------------------------------------------------

class StateError(ConflictError):
    """Illegal state transition."""


class RunStateError(ConflictError):
    """The run is not in the state this operation needs."""


class IdempotencyKeyError(ConflictError):
    """The Idempotency-Key was used within the last day for another request."""


class PoolInUseError(ConflictError):
    """The pool is named by vertices and cannot be deleted."""


# --- the API -----------------------------------------------------------------

class AccessError(PipelineEngineError):
    """The caller may not do this."""

    http_status = 403
    kind = "forbidden"


class UnauthorizedError(AccessError):
    """No valid token: send 'Authorization: Bearer TOKEN' (pipeline-engine token create)."""

    http_status = 401
    kind = "unauthorized"


class ForbiddenError(AccessError):
    """The token's role does not allow this."""


class TooLargeError(ValidationError):
    """The request's body is too large."""

    http_status = 413
    kind = "too_large"


# --- the database ------------------------------------------------------------

class DatabaseError(PipelineEngineError):
    """The database failed; the driver's error is the __cause__."""

    exit_code = 3
    http_status = 503
    kind = "unavailable"


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
