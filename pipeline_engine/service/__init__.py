"""The use cases: what the CLI (and the coming API) call, by domain: ``graphs`` (and their
versions), ``pools``, ``runs``, ``operations`` (workers, recovery, pruning). Each function is one
transaction on the caller's ``Database``: on any error nothing is written. What they return is
in ``pipeline_engine.views``.

    >>> from pipeline_engine import connect, service
    >>> db = connect("sqlite:///demo.db")
    >>> service.import_graph(db, {"name": "hello", "vertices": [
    ...     {"name": "greet", "script": "echo hello {who}", "inputs": {"who": "str"}}]}, seal=True)
    >>> service.start_run(db, "hello", {"who": "world"}, detach=True)
"""
from pipeline_engine.models import Graph  # kept for scripts that reached it here
from pipeline_engine.service.graphs import (
    create_graph,
    new_version,
    list_versions,
    rename_graph,
    delete_graph,
    list_graphs,
    show_graph,
    diff_graph,
    add_vertex,
    update_vertex,
    remove_vertex,
    add_edge,
    remove_edge,
    check_graph,
    seal_graph,
    copy_graph,
    import_graph,
    export_graph,
)
from pipeline_engine.service.pools import (
    set_pool,
    list_pools,
    delete_pool,
)
from pipeline_engine.service.runs import (
    missing_inputs,
    input_names,
    DEFAULT_DURATION,
    priorities,
    start_run,
    create_run,
    show_run,
    track_output,
    list_runs,
    secret_names,
    missing_secrets,
    load_run,
    cancel_run,
    retry_run,
    resume_run,
)
from pipeline_engine.service.operations import (
    worker_alive,
    list_workers,
    recover,
    prune_runs,
)
from pipeline_engine.views import (
    GraphInfo,
    VersionInfo,
    GraphDetail,
    CheckResult,
    Deleted,
    PoolInfo,
    RunStart,
    TrackInfo,
    RunSummary,
    RunInfo,
    WorkerInfo,
)

__all__ = [
    "Graph",
    "create_graph",
    "new_version",
    "list_versions",
    "rename_graph",
    "delete_graph",
    "list_graphs",
    "show_graph",
    "diff_graph",
    "add_vertex",
    "update_vertex",
    "remove_vertex",
    "add_edge",
    "remove_edge",
    "check_graph",
    "seal_graph",
    "copy_graph",
    "import_graph",
    "export_graph",
    "set_pool",
    "list_pools",
    "delete_pool",
    "missing_inputs",
    "input_names",
    "DEFAULT_DURATION",
    "priorities",
    "start_run",
    "create_run",
    "show_run",
    "track_output",
    "list_runs",
    "secret_names",
    "missing_secrets",
    "load_run",
    "cancel_run",
    "retry_run",
    "resume_run",
    "worker_alive",
    "list_workers",
    "recover",
    "prune_runs",
    "GraphInfo",
    "VersionInfo",
    "GraphDetail",
    "CheckResult",
    "Deleted",
    "PoolInfo",
    "RunStart",
    "TrackInfo",
    "RunSummary",
    "RunInfo",
    "WorkerInfo",
]
