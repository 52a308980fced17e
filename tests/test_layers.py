"""The package's layers, enforced: a forbidden import or call fails here, naming the module and
what it reaches for. Pure modules import no database or processes; only the store, the models,
the database handle and the migrations build SQL; only ``lifecycle`` composes transitions (calls
the store's state writes); only executors touch an attempt's processes; the worker side never
imports the service layer, and the service layer never reaches processes; the CLI (and the
coming API and scheduler) reach the database through the service layer, never the store."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipeline_engine")

#: modules that know neither the database nor processes
PURE = {"claims", "dag", "diff", "errors", "events", "executors.base", "inputtypes", "limits", "logfiles", "params",
        "roles", "actors", "plans", "reasons", "rendering", "shell", "sources", "schedules", "spec", "states",
        "timetable", "views", "layout", "forms", "figures"}
#: the only modules that may build SQL (import SQLAlchemy's SQL constructs)
SQL = {"store", "models", "db", "migrate"}
#: the engine's side: it must not import the use cases
WORKER = {"runner", "worker", "plans", "claims", "leases", "lifecycle", "executors", "executor", "recovery", "events",
          "retrying"}
#: the front ends: they reach the database through the service layer
FRONT = {"cli", "api", "scheduler", "web"}
#: where an attempt's processes are touched (spawned, signalled, looked for)
PROCESSES = {"executor", "executors"}
#: the store's state writes, which only the lifecycle composes (a claim and the worker's own
#: bookkeeping are the worker's: ``claim_tracks``, ``heartbeat``, ``release_worker``)
TRANSITIONS = {"record_attempts", "add_attempts", "release_successors", "mark_upstream_failed", "finish_if_done",
               "cancel_pipeline", "take_back", "hand_back",
               "hand_back_unheld", "reset_unsucceeded", "restart_pipeline"}
#: calls that reach processes: (module or object name, attribute)
PROCESS_CALLS = {("os", "kill"), ("os", "killpg"), ("executor", "kill_marked"), ("executor", "kill_group"),
                 ("executor", "run_script"), ("subprocess", "Popen"), ("subprocess", "run")}
#: what any module may take from SQLAlchemy without building SQL: types and errors
SQLALCHEMY_TYPES = {"sqlalchemy.exc", "sqlalchemy.orm", "sqlalchemy.engine"}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


def _imports(path):
    """(module imported, names) for every import of a file, TYPE_CHECKING blocks included."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = tuple(a.name for a in node.names)
            yield node.module, names
            if node.module == "pipeline_engine":  # from pipeline_engine import store
                for n in names:
                    yield f"pipeline_engine.{n}", ()


def _ours(imported: str) -> str | None:
    return imported.split(".")[1] if imported.startswith("pipeline_engine.") else None


MODULES = dict(_modules())


def test_the_modules_are_all_known():
    assert {"store", "service", "runner", "worker", "lifecycle", "executors", "cli", "views"} <= {
        m.split(".")[0] for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_respect_the_layers(module):
    top = module.split(".")[0]
    problems = []
    for imported, names in _imports(MODULES[module]):
        ours = _ours(imported)
        if (top in PURE or module in PURE) and (ours in {"db", "store", "models", "runner", "executor", "service",
                                                          "recovery", "worker", "lifecycle", "leases", "retrying"}
                                                 or (ours == "executors" and imported != "pipeline_engine.executors.base")
                            or imported.split(".")[0] in {"sqlalchemy", "subprocess", "alembic"}):
            problems.append(f"pure module {module} imports {imported}")
        if top not in SQL and top != "migrations" and imported.split(".")[0] == "sqlalchemy" \
                and imported not in SQLALCHEMY_TYPES and not (imported == "sqlalchemy" and set(names) <= {"exc"}):
            problems.append(f"{module} imports {imported} {names}: only the store builds SQL")
        if top in WORKER and ours == "service":
            problems.append(f"worker module {module} imports the service layer")
        if top in FRONT and ours in {"store", "models", "lifecycle"}:
            problems.append(f"{module} imports {imported}: it goes through the service layer")
        if top == "service" and ours in {"executor", "executors", "worker", "runner"}:
            problems.append(f"service module {module} imports {imported}: the use cases never touch processes")
        if top not in PROCESSES and imported == "subprocess":
            problems.append(f"{module} imports subprocess: only executors run processes")
    assert problems == []


def _calls(path):
    """(object name, attribute) of every call ``name.attribute(...)`` in a file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_lifecycle_composes_transitions_and_only_executors_touch_processes(module):
    top = module.split(".")[0]
    problems = []
    for name, attr in _calls(MODULES[module]):
        if name == "store" and attr in TRANSITIONS and top not in {"lifecycle", "store"}:
            problems.append(f"{module} calls store.{attr}: a transition goes through lifecycle")
        if (name, attr) in PROCESS_CALLS and top not in PROCESSES:
            problems.append(f"{module} calls {name}.{attr}: only executors touch an attempt's processes")
    assert problems == []


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks above see a forbidden call and a forbidden import (they could not pass vacuously)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import subprocess\nfrom pipeline_engine import store\n\n\ndef f(c):\n"
                   "    store.finish_if_done(c, 1)\n    os.killpg(1, 9)\n")
    assert ("store", "finish_if_done") in set(_calls(bad)) and ("os", "killpg") in set(_calls(bad))
    assert ("subprocess", ()) in set(_imports(bad)) and ("pipeline_engine.store", ()) in set(_imports(bad))
