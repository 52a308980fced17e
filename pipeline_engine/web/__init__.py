"""The web UI that ``pipeline-engine serve`` serves beside the API: server-rendered pages over
the service layer (``pages``), sessions made from API tokens (``auth``), templates and their
filters (``render``); scripts and styles ship in ``static/`` (no CDN, nothing fetched at run
time). Every answer carries a Content-Security-Policy that allows no inline script."""
from pipeline_engine.web.app import install

__all__ = ["install"]
