"""pipeline_engine: DAGs of shell-script vertices, with every run's state in SQL."""
from pipeline_engine.db import Database, connect
from pipeline_engine.errors import PipelineEngineError

__version__ = "0.1.0"
__all__ = ["Database", "PipelineEngineError", "connect", "__version__"]
