"""Templates and the words and figures they print. Autoescape is on for every template: what a
user wrote (descriptions, scripts, names, output, parameter values) reaches a page as text."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
import logging
from html import escape

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pipeline_engine import __version__

log = logging.getLogger("pipeline_engine.web")

_env = Environment(loader=PackageLoader("pipeline_engine.web", "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def when(value: datetime | None) -> str:
    """A moment as UTC, to the second (the page's script shows it in the reader's zone too)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def seconds(value: float | None) -> str:
    """A duration in words a person reads at a glance: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def between(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    end = end or datetime.now(timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return seconds(max(0.0, (end - start).total_seconds()))


def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f} %"


_env.filters.update(when=when, iso=iso, seconds=seconds, percent=percent)
_env.globals.update(between=between, engine_version=__version__)


def render(request: Request, template: str, caller: Any, *, status: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` for ``caller`` (None on the login page)."""
    page = _env.get_template(template).render(request=request, me=caller, path=request.url.path, **context)
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def render_error(request: Request, caller: Any, status: int, message: str, problems: list[str]) -> HTMLResponse:
    try:
        return render(request, "error.html", caller, status=status, code=status, message=message,
                      problems=[p for p in problems if p != message])
    except Exception:  # the error page itself failed (a defect, logged by the caller): plain words
        log.exception("the error page failed")
        return HTMLResponse(f"<!doctype html><title>{status}</title><p>{escape(message)}</p>", status_code=status)
