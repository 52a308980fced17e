"""The HTTP API of ``pipeline-engine serve``: FastAPI over the service layer, speaking the
JSON of the CLI's ``--json`` (``views``). ``create_app`` builds it; ``server`` runs it."""
from pipeline_engine.api.app import create_app

__all__ = ["create_app"]
