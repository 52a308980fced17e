"""The package's layers, enforced: a forbidden import fails here, naming the module and what it
imports. (Pure modules import no database or processes; only the store, the models, the database
handle and the migrations build SQL; the worker side never imports the service layer; the CLI
reaches the database through the service layer, never the store.)"""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipeline_engine")

#: modules that know neither the database nor processes
PURE = {"dag", "diff", "errors", "events", "inputtypes", "limits", "logfiles", "params", "rendering", "shell", "sources",
        "spec", "states", "views"}
#: the only modules that may build SQL (import SQLAlchemy's SQL constructs)
SQL = {"store", "models", "db", "migrate"}
#: the engine's side: it must not import the use cases
WORKER = {"runner", "executor", "recovery", "events"}
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
    assert {"store", "service", "runner", "cli", "views"} <= {m.split(".")[0] for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_respect_the_layers(module):
    top = module.split(".")[0]
    problems = []
    for imported, names in _imports(MODULES[module]):
        ours = _ours(imported)
        if top in PURE and (ours in {"db", "store", "models", "runner", "executor", "service", "recovery"}
                            or imported.split(".")[0] in {"sqlalchemy", "subprocess", "alembic"}):
            problems.append(f"pure module {module} imports {imported}")
        if top not in SQL and top != "migrations" and imported.split(".")[0] == "sqlalchemy" \
                and imported not in SQLALCHEMY_TYPES and not (imported == "sqlalchemy" and set(names) <= {"exc"}):
            problems.append(f"{module} imports {imported} {names}: only the store builds SQL")
        if top in WORKER and ours == "service":
            problems.append(f"worker module {module} imports the service layer")
        if top == "cli" and ours in {"store", "models"}:
            problems.append(f"cli imports {imported}: it goes through the service layer")
    assert problems == []
