"""pipeline_engine: DAGs of shell-script vertices, with every run's state in SQL."""
from pipeline_engine.errors import PipelineEngineError

__version__ = "0.1.0"
__all__ = ["Database", "PipelineEngineError", "connect", "__version__"]


def __getattr__(name: str):
    # the database handle imports SQLAlchemy: only when asked for, so that `--version` starts fast
    if name in ("Database", "connect"):
        from pipeline_engine import db

        return getattr(db, name)
    raise AttributeError(f"module 'pipeline_engine' has no attribute {name!r}")
