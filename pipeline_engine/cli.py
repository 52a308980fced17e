"""The command line: parse, call ``service``, render. Nothing else lives here.

Exit codes (each error carries its own, ``errors``): 0 success; 1 a check found a cycle, or a
run failed or was cancelled; 2 a usage or validation error, something not found, a conflict;
3 the database is unavailable or unusable; 130 interrupted.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from pipeline_engine import __version__, actors
from pipeline_engine.errors import DatabaseError, PipelineEngineError
from pipeline_engine.roles import NAMES as ROLE_NAMES
from pipeline_engine.settings import Settings, default_db_url
from pipeline_engine.states import TRACK_FINISHED, PipelineState, TrackState

if TYPE_CHECKING:
    from pipeline_engine import service
    from pipeline_engine.db import Database

# Only what every command needs is imported here: `--help` and `--version` start without the
# database libraries (SQLAlchemy, Alembic), YAML or the engine, which each command imports itself.

PROG = "pipeline-engine"
#: the graph file formats (``graphfile.FORMATS``, which would import YAML for every command)
FORMATS = ("yaml", "json")


class Context:
    """What every command gets: the settings and the database, opened on first use."""

    def __init__(self, db_url: str | None = None):
        self._db_url = db_url  #: --db, over PIPELINE_ENGINE_DB
        self._settings: Settings | None = None
        self._db: Database | None = None

    @property
    def settings(self) -> Settings:
        """The settings table (``settings.Settings``), read on first use: a bad value in the
        environment is an error of the commands that use it, not of every `--help`."""
        if self._settings is None:
            found = Settings.from_env()
            self._settings = replace(found, db=self._db_url) if self._db_url else found
        return self._settings

    @property
    def url(self) -> str:
        return self.settings.db

    @property
    def db(self) -> Database:
        if self._db is None:
            from pipeline_engine.db import connect

            # a SQLite path the user gave is not created behind their back (a typo would make a new,
            # empty database): only the embedded default is, and `db upgrade` creates any
            self._db = connect(self.url, create=self.url == default_db_url())
        return self._db

    def ready_to_run(self) -> None:
        """Refuse, before anything changes, what would keep this process from running scripts:
        a logs directory that cannot work, a bash older than the one the placeholder reader models."""
        from pipeline_engine.executor import check_bash

        self.log_dir  # noqa: B018 -- checked on first use
        check_bash()

    @property
    def log_dir(self) -> str:
        """Where runs write their log files: one directory per database (run ids repeat across
        them), checked before anything runs (``runner.check_log_dir``)."""
        from pipeline_engine.runner import check_log_dir

        from pipeline_engine.logfiles import database_dir

        return check_log_dir(database_dir(self.settings.logs, self.db.key))


pass_ctx = click.make_pass_decorator(Context)


def _echo_json(data) -> None:
    import simplejson

    click.echo(simplejson.dumps(data, indent=2))


def _n(count: int, noun: str) -> str:
    """"1 vertex", "2 vertices", "0 runs"."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-2] + 'ices' if noun.endswith('ex') else noun + 's'}"


def _drop_logs(ctx: Context, run_ids) -> None:
    """Remove the log files of deleted runs on this machine."""
    from pipeline_engine import logfiles

    logfiles.remove_runs(ctx.settings.logs, ctx.db.key, run_ids)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", metavar="URL",
              help="Database URL (any SQLAlchemy URL). Default: $PIPELINE_ENGINE_DB, else the SQLite file "
                   "~/.local/share/pipeline_engine/pipeline_engine.db.")
@click.version_option(__version__, prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, db_url: str | None) -> None:
    """pipeline_engine: define, check, seal and run DAGs of shell scripts, state kept in SQL."""
    if db_url is not None and not db_url.strip():
        raise click.UsageError("--db is empty: give a database URL, or leave --db out for the default")
    # what this command changes, the audit log says cli:USER@HOST did
    ctx.with_resource(actors.acting_as(actors.local("cli")))
    ctx.obj = Context(db_url)


# --- db ----------------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply the schema migrations (any backend)."""
    from pipeline_engine.db import Database

    database = Database(ctx.url, auto_migrate=True)
    before, after = database.upgrade()
    if before == after:
        click.echo(f"{database.safe_url}: schema is up to date ({after})")
    else:
        click.echo(f"{database.safe_url}: schema upgraded from {before or 'empty'} to {after}")


# --- graph -------------------------------------------------------------------------------

@cli.group()
def graph() -> None:
    """Define, check, seal and inspect graphs."""


@graph.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--name", help="Import under this name instead of the file's.")
@click.option("--check", "do_check", is_flag=True, help="Also check the graph for cycles.")
@click.option("--seal", "do_seal", is_flag=True, help="Also check and seal the graph.")
@click.option("--apply-pools", is_flag=True,
              help="Set existing pools to the sizes the file gives (else only missing pools are created).")
@pass_ctx
def graph_import(ctx: Context, file: str, name: str | None, do_check: bool, do_seal: bool, apply_pools: bool) -> None:
    """Import a YAML or JSON graph file as a draft: version 1 of a new graph, or the next
    version of one whose newest version is sealed (its draft, if it has one, is replaced).
    A file identical to the newest sealed version imports nothing. The file's pools that do
    not exist are created; existing ones keep their size unless --apply-pools."""
    from pipeline_engine import service

    if file == "-" and sys.stdin.isatty():
        click.echo("reading the graph file from standard input (end it with Ctrl-D)", err=True)
    info = service.import_graph(ctx.db, file, name=name, check=do_check, seal=do_seal, apply_pools=apply_pools)
    for warning in info.warnings:  # what graph check would say, as it says it
        click.echo(f"warning: {warning}", err=True)
    for note in info.notes:  # the pools the file set; the summary stays the last line
        click.echo(note)
    if info.unchanged:
        source = "the standard input" if file == "-" else file
        click.echo(f"graph '{info.name}' version {info.version} is sealed and identical to {source}: nothing imported")
        return
    click.echo(f"graph '{info.name}' version {info.version} imported: {_n(info.vertices, 'vertex')},"
               f" {_n(info.edges, 'edge')}, {info.status}")


@graph.command("check")
@click.argument("name")
@pass_ctx
def graph_check(ctx: Context, name: str) -> None:
    """Check a graph for cycles; an acyclic draft becomes checked. Exit 1 on a cycle."""
    from pipeline_engine import service

    result = service.check_graph(ctx.db, name)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"graph '{name}' version {result.version} is {result.status}: {_n(len(result.order), 'vertex')}"
               " in order: " + " -> ".join(result.order))


@graph.command("seal")
@click.argument("name")
@pass_ctx
def graph_seal(ctx: Context, name: str) -> None:
    """Seal a checked graph: it never changes again, and it can run."""
    from pipeline_engine import service

    info = service.seal_graph(ctx.db, name)
    for warning in info.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"graph '{name}' version {info.version} is sealed")


_VERSION = click.option("--version", "version", type=click.IntRange(min=1), metavar="N",
                        help="This version of the graph (default: the newest).")


@graph.command("copy")
@click.argument("name")
@click.argument("new")
@_VERSION
@pass_ctx
def graph_copy(ctx: Context, name: str, new: str, version: int | None) -> None:
    """Copy a version of a graph into a new graph, as its first version (a draft)."""
    from pipeline_engine import service

    detail = service.show_graph(ctx.db, name, version=version)
    info = service.copy_graph(ctx.db, name, new, version=detail.info.version)
    click.echo(f"graph '{name}' version {detail.info.version} copied to draft '{info.name}' (version 1)")


@graph.command("rename")
@click.argument("name")
@click.argument("new")
@pass_ctx
def graph_rename(ctx: Context, name: str, new: str) -> None:
    """Rename a graph."""
    from pipeline_engine import service

    service.rename_graph(ctx.db, name, new)
    click.echo(f"graph '{name}' renamed to '{new}'")


@graph.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def graph_list(ctx: Context, as_json: bool) -> None:
    """List the graphs: the newest version of each, and the version runs use."""
    from pipeline_engine import service

    graphs = service.list_graphs(ctx.db)
    if as_json:
        _echo_json([g.to_dict() for g in graphs])
    elif not graphs:
        click.echo("no graphs")
    else:
        _table(["NAME", "VERSION", "STATUS", "RUNS", "VERTICES", "EDGES", "UPDATED", "DESCRIPTION"],
               [[g.name, str(g.version), g.status, "-" if g.sealed_version is None else f"v{g.sealed_version}",
                 str(g.vertices), str(g.edges), _when(g.updated_at), g.description]
                for g in graphs])


@graph.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def graph_versions(ctx: Context, name: str, as_json: bool) -> None:
    """List the versions of a graph, oldest first, with their runs."""
    from pipeline_engine import service

    versions = service.list_versions(ctx.db, name)
    if as_json:
        _echo_json([v.to_dict() for v in versions])
        return
    _table(["VERSION", "STATUS", "CREATED", "SEALED", "RUNS"],
           [[str(v.version), v.status, _when(v.created_at), _when(v.sealed_at), str(v.runs)] for v in versions])


@graph.command("diff")
@click.argument("name")
@click.argument("old", type=click.IntRange(min=1), metavar="A")
@click.argument("new", type=click.IntRange(min=1), metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def graph_diff(ctx: Context, name: str, old: int, new: int, as_json: bool) -> None:
    """Show what version B of a graph changes in version A: vertices, edges, inputs, scripts."""
    from pipeline_engine import service

    change = service.diff_graph(ctx.db, name, old, new)
    if as_json:
        _echo_json(change.to_dict())
        return
    click.echo(f"graph '{name}': version {old} -> version {new}")
    for line in _diff_lines(change):
        click.echo(line)


def _json(value) -> str:
    import simplejson

    return "-" if value is None else simplejson.dumps(value)


def _diff_lines(change) -> list[str]:
    if change.empty:
        return ["no differences"]
    out = []
    if change.description:
        out.append(f"~ description: {_json(change.description[0])} -> {_json(change.description[1])}")
    out += [f"+ vertex '{n}'" for n in change.added]
    out += [f"- vertex '{n}'" for n in change.removed]
    for c in change.changed:
        out.append(f"~ vertex '{c.vertex}'")
        out += [f"    {key}: {_json(a)} -> {_json(b)}" for key, (a, b) in c.fields.items()]
        out += [f"    + input {{{k}}}: {_json(v)}" for k, v in c.inputs_added.items()]
        out += [f"    - input {{{k}}}: {_json(v)}" for k, v in c.inputs_removed.items()]
        out += [f"    ~ input {{{k}}}: {_json(a)} -> {_json(b)}" for k, (a, b) in c.inputs_changed.items()]
        if c.script:
            out.append("    script:")
            out += [f"      {line}" for line in c.script]
    out += [f"+ edge {t} -> {h}" for t, h in change.edges_added]
    out += [f"- edge {t} -> {h}" for t, h in change.edges_removed]
    return out


@graph.command("show")
@click.argument("name")
@_VERSION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def graph_show(ctx: Context, name: str, version: int | None, as_json: bool) -> None:
    """Show a version of a graph: status, vertices with their inputs, edges."""
    import simplejson
    from pipeline_engine import service

    detail = service.show_graph(ctx.db, name, version=version)
    if as_json:
        _echo_json(detail.to_dict())
        return
    info, spec = detail.info, detail.spec
    click.echo(f"graph:       {info.name}")
    runs = "" if info.sealed_version is None else f" (runs use version {info.sealed_version})"
    click.echo(f"version:     {info.version}{runs}")
    if info.description:
        click.echo(f"description: {info.description}")
    click.echo(f"status:      {info.status}" + (f" (sealed {_when(info.sealed_at)})" if info.sealed_at else ""))
    click.echo(f"updated:     {_when(info.updated_at)}")
    preds: dict[str, list[str]] = {v.name: [] for v in spec.vertices}
    for tail, head in spec.edges:
        preds[head].append(tail)
    click.echo(f"vertices:    {len(spec.vertices)}")
    for v in spec.vertices:
        wait = "" if not v.retries or not v.retry_delay else f" {v.retry_delay:g}s apart" + \
            (f" x{v.retry_backoff:g}" if v.retry_backoff != 1 else "")
        extras = [f"timeout {v.timeout:g}s" if v.timeout else "", f"retries {v.retries}{wait}" if v.retries else "",
                  f"pool {v.pool}" if v.pool else "", f"cwd {v.cwd}" if v.cwd else "",
                  f"after {', '.join(preds[v.name])}" if preds[v.name] else ""]
        extra = ", ".join(x for x in extras if x)
        click.echo(f"  {v.name}" + (f"  ({extra})" if extra else "") + (f"  - {v.description}" if v.description else ""))
        for line in v.script.splitlines():
            click.echo(f"      | {line}")
        for key, value in v.env.items():
            click.echo(f"      env {key}={_shown_value(value)}")
        for input_name, schema in v.inputs.items():
            bits = [schema.get("type", "str")]
            if schema.get("required", True) and "default" not in schema:
                bits.append("required")
            if "default" in schema:
                bits.append(f"default {simplejson.dumps(schema['default'])}")
            if "choices" in schema:
                bits.append("one of " + ", ".join(schema["choices"]))
            for key in ("min", "max", "pattern"):
                if key in schema:
                    bits.append(f"{key} {schema[key]!r}")
            desc = f"  - {schema['description']}" if schema.get("description") else ""
            click.echo(f"      {{{input_name}}}: {', '.join(bits)}{desc}")
    click.echo(f"edges:       {len(spec.edges)}")
    for tail, head in spec.edges:
        click.echo(f"  {tail} -> {head}")
    if spec.pools:
        click.echo("pools:       " + ", ".join(f"{name} (size {size})" for name, size in spec.pools))


@graph.command("export")
@click.argument("name")
@_VERSION
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="yaml", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@pass_ctx
def graph_export(ctx: Context, name: str, version: int | None, fmt: str, output: str | None) -> None:
    """Print a version of a graph as a graph file that imports to the same graph."""
    from pipeline_engine import service

    text = service.export_graph(ctx.db, name, fmt, version=version)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


@graph.command("delete")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=1), metavar="N",
              help="Delete only this version (default: every version).")
@click.option("--with-runs", is_flag=True, help="Also delete the graph's finished runs (and their log files here).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, and delete nothing.")
@pass_ctx
def graph_delete(ctx: Context, name: str, version: int | None, with_runs: bool, dry_run: bool) -> None:
    """Delete a graph (every version, or one), its vertices and edges."""
    from pipeline_engine import service

    gone = service.delete_graph(ctx.db, name, version=version, with_runs=with_runs, dry_run=dry_run)
    target = f"graph '{name}'" + (f" version {version}" if version is not None else "")
    what = (f"{_n(len(gone.versions), 'version')}, {_n(gone.vertices, 'vertex')}, {_n(gone.edges, 'edge')},"
            f" {_n(len(gone.runs), 'run')}, {_n(gone.tracks, 'track')}")
    if dry_run:
        click.echo(f"{target} would be deleted: {what}; nothing deleted (dry run)")
        return
    _drop_logs(ctx, gone.runs)
    click.echo(f"{target} deleted: {what}")


# --- pools -----------------------------------------------------------------------------------

@cli.group()
def pool() -> None:
    """Concurrency pools: at most SIZE tracks of a pool's vertices run at once, across every
    worker and run."""


@pool.command("set", context_settings={"ignore_unknown_options": True})  # so that -1 is a size
@click.argument("name")
@click.argument("size", type=int)
@click.option("--description", help="What the pool guards (a database, an API quota...).")
@pass_ctx
def pool_set(ctx: Context, name: str, size: int, description: str | None) -> None:
    """Create the pool NAME or change its size. 0 holds its tracks pending."""
    from pipeline_engine import service

    if size < 0:
        raise click.BadParameter(f"the size of a pool must be 0 or more, got {size}", param_hint="'SIZE'")
    info = service.set_pool(ctx.db, name, size, description=description)
    click.echo(f"pool '{info.name}': size {info.size}, {info.running} running, {info.pending} pending")


@pool.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def pool_list(ctx: Context, as_json: bool) -> None:
    """List the pools with their running and pending tracks."""
    from pipeline_engine import service

    pools = service.list_pools(ctx.db)
    if as_json:
        _echo_json([p.to_dict() for p in pools])
    elif not pools:
        click.echo("no pools")
    else:
        _table(["NAME", "SIZE", "RUNNING", "PENDING", "DESCRIPTION"],
               [[p.name, str(p.size), str(p.running), str(p.pending), p.description] for p in pools])


@pool.command("delete")
@click.argument("name")
@pass_ctx
def pool_delete(ctx: Context, name: str) -> None:
    """Delete a pool that no vertex names."""
    from pipeline_engine import service

    service.delete_pool(ctx.db, name)
    click.echo(f"pool '{name}' deleted")


# --- runs ------------------------------------------------------------------------------------

def _ask(find_missing, parameters: list[str], no_input: bool) -> list[str]:
    """``parameters`` with answers, asked on the terminal, for every input ``find_missing``
    reports; unchanged with ``--no-input`` or when stdin is not a terminal (the service then
    says what is missing). Asks until nothing is missing: an answer given per vertex (a name
    declared with different types) leaves other vertices that declare the name unanswered."""
    from pipeline_engine import prompt

    if no_input or not sys.stdin.isatty():
        return parameters
    parameters = list(parameters)
    while items := find_missing(parameters):
        parameters += prompt.ask(items)
    return parameters


def _gather(parameters: tuple[str, ...], declared: set[str]) -> list[str]:
    """The -p items with their @FILE values read, then the PIPELINE_ENGINE_PARAM_* variables
    for the ``declared`` inputs that -p does not set."""
    from pipeline_engine import sources
    from pipeline_engine.settings import param_environ

    return sources.from_environ(sources.expand_files(parameters), param_environ(), declared)


def _ask_missing(ctx: Context, name: str, parameters: tuple[str, ...], no_input: bool,
                 version: int | None = None) -> list[str]:

    from pipeline_engine import service

    parameters = _gather(parameters, service.input_names(ctx.db, name, version=version))
    return _ask(lambda given: service.missing_inputs(ctx.db, name, given, version=version), parameters, no_input)


def _ask_secrets(ctx: Context, run_id: int, parameters: tuple[str, ...], no_input: bool) -> list[str]:
    """A run's secrets are never stored: whoever takes it over is asked again for those of the
    vertices that will run."""
    from pipeline_engine import service

    parameters = _gather(parameters, service.secret_names(ctx.db, run_id))
    return _ask(lambda given: service.missing_secrets(ctx.db, run_id, given), parameters, no_input)


_WORKERS = click.option("--workers", type=click.IntRange(min=1),
                        help="Threads running tracks at once (default 4, or $PIPELINE_ENGINE_CONCURRENCY).")
_GRACE = click.option("--grace", type=click.FloatRange(min=0),
                      help="Seconds running tracks get to finish after Ctrl-C or SIGTERM"
                           " (default 30, or $PIPELINE_ENGINE_GRACE).")
_NO_INPUT = click.option("--no-input", is_flag=True, help="Never prompt; a missing input is an error (exit 2).")
_PARAM = click.option("-p", "--param", "parameters", multiple=True, metavar="KEY=VALUE",
                      help="An input value: NAME=VALUE for every vertex declaring NAME, VERTEX.NAME=VALUE for one;"
                           " NAME=@FILE takes FILE's content (one trailing newline stripped), NAME=@@X the value @X."
                           " $PIPELINE_ENGINE_PARAM_NAME gives NAME when -p does not.")


def _execute(ctx: Context, run: service.RunStart, engine_name: str, workers: int | None, grace: float | None,
             new: bool = False, leftovers: list[tuple[int, int]] | None = None) -> None:
    """Execute a run in this process with live progress, then print the summary and exit:
    0 succeeded, 1 failed or cancelled, 130 stopped by Ctrl-C/SIGTERM before the end. A ``new``
    run's states are those ``run`` lists (no read of its tracks before the first one starts)."""
    from pipeline_engine import service
    from pipeline_engine.progress import Progress, elapsed
    from pipeline_engine.runner import Worker

    if new:
        states = {**dict.fromkeys(run.pending, "pending"), **dict.fromkeys(run.waiting, "waiting")}
    else:
        states = {t.vertex: t.state for t in service.show_run(ctx.db, run.id, output=False, reasons=False).tracks}
    progress = Progress(states).start()
    engine = Worker(ctx.db, concurrency=workers or ctx.settings.concurrency, name=engine_name,
                    grace=ctx.settings.grace if grace is None else grace, lease=ctx.settings.lease,
                    poll=ctx.settings.poll, on_event=progress, log_dir=ctx.log_dir, on_stop=progress.notice)
    engine.adopt(run, leftovers or ())
    engine.install_signal_handlers()
    try:
        state = engine.run(run.id)
    finally:
        progress.stop()
    try:
        failed = service.show_run(ctx.db, run.id, state="failed", limit=20, output=False)
    except DatabaseError as exc:
        if state != "running":
            raise
        # stopped by a signal while the database failed: no summary to read, the hint still holds
        click.echo(f"run {run.id} stopped before its end ({exc}): `{PROG} resume {run.id}` continues it", err=True)
        sys.exit(130)
    for track in failed.tracks:
        why = track.error or f"exit code {track.exit_code}"
        click.echo(f"  {track.vertex}: failed after {track.attempt} attempt(s): {why}"
                   f" ({PROG} logs {run.id} {track.vertex})", err=True)
    if failed.counts.get("failed", 0) > len(failed.tracks):
        click.echo(f"  ... and {failed.counts['failed'] - len(failed.tracks)} more"
                   f" ({PROG} runs show {run.id} --state failed)", err=True)
    took = elapsed(time.monotonic() - progress.started)
    click.echo(f"run {run.id} {state}: " + ", ".join(f"{n} {s}" for s, n in sorted(failed.counts.items()))
               + f" ({took} elapsed)")
    if state == "running":
        click.echo(f"run {run.id} stopped before its end: `{PROG} resume {run.id}` continues it,"
                   f" `{PROG} cancel {run.id}` ends it", err=True)
        sys.exit(130)
    sys.exit(0 if state == "succeeded" else 1)


def _tell_no_worker(ctx: Context, run_id: int) -> None:
    """A run left to the workers, when none is alive to take it, would look stuck: say so."""
    from pipeline_engine import service

    if not service.worker_alive(ctx.db):
        click.echo(f"run {run_id} queued; no worker is alive to take it: start one with {PROG} worker", err=True)


@cli.command("run")
@click.argument("name")
@_PARAM
@_WORKERS
@_NO_INPUT
@click.option("--name", "run_name", help="A name for this run.")
@click.option("--version", "version", type=click.IntRange(min=1), metavar="N",
              help="Run this sealed version (default: the newest sealed one).")
@click.option("--detach", is_flag=True, help="Only create the run and print its id; `pipeline-engine worker` "
                                             "processes execute it.")
@_GRACE
@pass_ctx
def run_cmd(ctx: Context, name: str, parameters: tuple[str, ...], workers: int | None, no_input: bool,
            run_name: str | None, version: int | None, detach: bool, grace: float | None) -> None:
    """Run a graph's newest sealed version (or --version N); exit 0 when every vertex
    succeeded, 1 when the run failed.

    Progress goes to stderr: a live status line on a terminal, one line per ended attempt
    elsewhere. Each vertex's full output goes to a log file under $PIPELINE_ENGINE_LOGS
    (default ~/.local/state/pipeline_engine/logs), one directory per database and run.
    Ctrl-C or SIGTERM stops claiming and lets running vertices finish (--grace); a second
    one terminates them. The run can then be resumed."""
    from pipeline_engine import service
    from pipeline_engine.runner import worker_name

    if not detach:
        ctx.ready_to_run()
    parameters = _ask_missing(ctx, name, parameters, no_input, version)
    engine_name = worker_name()
    run = service.start_run(ctx.db, name, list(parameters), name=run_name, workers=workers,
                            owner=engine_name, detach=detach, version=version)
    click.echo(f"run {run.id} of graph '{name}' {'created for the workers' if detach else 'started'}:"
               f" {_n(len(run.pending) + len(run.waiting), 'vertex')} (version {run.version})")
    if detach:
        _tell_no_worker(ctx, run.id)
        return
    _execute(ctx, run, engine_name, workers, grace, new=True)


@cli.command("resume")
@click.argument("run_id", metavar="RUN", type=int)
@_PARAM
@_WORKERS
@_NO_INPUT
@_GRACE
@pass_ctx
def resume_cmd(ctx: Context, run_id: int, parameters: tuple[str, ...], workers: int | None, no_input: bool,
               grace: float | None) -> None:
    """Adopt a running run whose engine died and execute the rest of it here. Its secret inputs
    (never stored) are asked for again; -p takes only those."""
    from pipeline_engine import service
    from pipeline_engine.runner import worker_name

    ctx.ready_to_run()
    parameters = _ask_secrets(ctx, run_id, parameters, no_input)
    run = service.load_run(ctx.db, run_id, parameters)  # checks the secrets before anything changes
    engine_name = worker_name()
    leftovers = service.resume_run(ctx.db, run_id, engine_name)
    click.echo(f"run {run_id} of graph '{run.graph}' resumed")
    _execute(ctx, service.load_run(ctx.db, run_id, parameters), engine_name, workers, grace, leftovers=leftovers)


@cli.command("retry")
@click.argument("run_id", metavar="RUN", type=int)
@_PARAM
@_WORKERS
@_NO_INPUT
@click.option("--detach", is_flag=True, help="Leave the tracks to `pipeline-engine worker` processes.")
@_GRACE
@pass_ctx
def retry_cmd(ctx: Context, run_id: int, parameters: tuple[str, ...], workers: int | None, no_input: bool,
              detach: bool, grace: float | None) -> None:
    """Start the failed, upstream_failed and cancelled vertices of a finished run again (a new
    attempt each); succeeded ones are kept. Exit 0 when the run then succeeded, 1 when not."""
    from pipeline_engine import service
    from pipeline_engine.runner import worker_name

    if not detach:
        ctx.ready_to_run()
    parameters = _ask_secrets(ctx, run_id, parameters, no_input)
    run = service.load_run(ctx.db, run_id, parameters)  # checks the secrets before anything changes
    engine_name = worker_name()
    again = service.retry_run(ctx.db, run_id, owner=engine_name, detach=detach)
    click.echo(f"run {run_id} of graph '{run.graph}' retried: {len(again)} vertices again ({', '.join(again)})")
    if detach:
        _tell_no_worker(ctx, run_id)
        return
    _execute(ctx, service.load_run(ctx.db, run_id, parameters), engine_name, workers, grace)


@cli.command("cancel")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds to wait for the workers to end the run's processes.")
@pass_ctx
def cancel_cmd(ctx: Context, run_id: int, wait: float) -> None:
    """Cancel a running run: its processes are terminated (killed after a grace period) by the
    workers running them; every unfinished vertex becomes cancelled."""
    from pipeline_engine import service

    counts = service.cancel_run(ctx.db, run_id, wait=wait)
    click.echo(f"run {run_id} cancelled: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


@cli.command("worker")
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Tracks run at once (default 4, or $PIPELINE_ENGINE_CONCURRENCY).")
@click.option("--name", "worker_name_", help="This worker's name (default host:pid:random); unique.")
@click.option("--lease", type=click.FloatRange(min=0.5),
              help="Seconds without a heartbeat after which other workers take this one's tracks back"
                   " (cut off from the database, it kills its running vertices shortly before; default 30,"
                   " or $PIPELINE_ENGINE_LEASE).")
@_GRACE
@click.option("--poll", type=click.FloatRange(min=0.01),
              help="Seconds between looks for new work when idle (default 0.2, or $PIPELINE_ENGINE_POLL).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), metavar="PORT",
              help="Serve this worker's figures for Prometheus on PORT (/metrics; address $PIPELINE_ENGINE_BIND,"
                   " default 127.0.0.1).")
@click.option("--scheduler", "with_scheduler", is_flag=True,
              help="Also take the schedules' decisions (as `pipeline-engine scheduler` does).")
@pass_ctx
def worker_cmd(ctx: Context, concurrency: int | None, worker_name_: str | None, lease: float | None,
               grace: float | None, poll: float | None, metrics_port: int | None, with_scheduler: bool) -> None:
    """Execute the tracks of every run nobody owns (`run --detach`, `retry --detach`) until
    stopped. Several workers, here or on other machines, share one database. Ctrl-C or SIGTERM
    stops claiming and lets running tracks finish (--grace); a second one terminates them."""
    from pipeline_engine.runner import Worker

    concurrency, lease = concurrency or ctx.settings.concurrency, lease or ctx.settings.lease
    grace = ctx.settings.grace if grace is None else grace
    poll = poll or ctx.settings.poll

    engine = Worker(ctx.db, concurrency=concurrency, name=worker_name_, lease=lease, grace=grace, poll=poll,
                    on_event=_show_ended, log_dir=ctx.log_dir,
                    on_stop=lambda message: click.echo(f"worker {engine.name} {message}", err=True))
    engine.install_signal_handlers()
    if metrics_port is not None:
        from pipeline_engine.metrics import serve_worker_metrics

        try:
            serve_worker_metrics(engine, ctx.settings.bind, metrics_port)
        except OSError as exc:
            raise click.UsageError(f"--metrics-port {metrics_port}: cannot listen on {ctx.settings.bind}:"
                                   f"{metrics_port}: {exc.strerror}") from None
        click.echo(f"worker {engine.name}: metrics at http://{ctx.settings.bind}:{metrics_port}/metrics", err=True)
    click.echo(f"worker {engine.name} started: concurrency {concurrency}, lease {lease:g} s", err=True)
    scheduler = _start_scheduler(ctx) if with_scheduler else None
    try:
        engine.serve()
    finally:
        if scheduler is not None:
            scheduler.stop()
    click.echo(f"worker {engine.name} stopped", err=True)


# --- schedules -------------------------------------------------------------------------------------

@cli.group()
def schedule() -> None:
    """Run graphs by themselves: a cron expression or an interval, in a time zone."""


def _key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{option} {pair!r}: give KEY=VALUE")
        out[key] = value
    return out


def _fire_line(f) -> str:
    return f"{f.local.isoformat()}  ({f.utc.isoformat().replace('+00:00', 'Z')})"


@schedule.command("add")
@click.argument("name")
@click.option("--graph", "graph_name", required=True, help="The graph it runs (its newest sealed version).")
@click.option("--cron", help='Five fields ("30 2 * * *") or @hourly, @daily, @weekly, @monthly, @yearly.')
@click.option("--every", help="A fixed interval in real time instead of cron: 30s, 15m, 1h30m, 1d.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="The IANA zone cron is read in.")
@click.option("-p", "--param", "parameters", multiple=True, metavar="KEY=VALUE",
              help="An input value (typed as for run); {fire_at}, {fire_date}, {fire_time} are filled in.")
@click.option("--catchup", type=click.Choice(["none", "latest", "all"]), default="latest", show_default=True,
              help="After downtime: none of the missed fire times, the latest, or the most recent --max-catchup.")
@click.option("--max-catchup", type=int, default=10, show_default=True,
              help="With --catchup all: at most this many missed fire times run (the most recent).")
@click.option("--overlap", type=click.Choice(["allow", "skip", "queue", "cancel"]), default="skip",
              show_default=True, help="When its previous run is still running at a fire time.")
@click.option("--start", metavar="ISO", help="The first fire time is at or after this (default now; without an"
                                             " offset, in --timezone). In the past: the times since are due.")
@click.option("--end", metavar="ISO", help="No fire time at or after this.")
@pass_ctx
def schedule_add(ctx: Context, name: str, graph_name: str, cron: str | None, every: str | None, tz: str,
                 parameters: tuple[str, ...], catchup: str, max_catchup: int, overlap: str, start: str | None,
                 end: str | None) -> None:
    """Make a schedule for a graph. Its inputs must all be given a value (or have defaults), and
    none may be a secret: a scheduler holds no secrets."""
    from pipeline_engine import service
    from pipeline_engine.schedules import spec_from

    spec = spec_from(name, graph_name, cron=cron, every=every, timezone=tz,
                     parameters=_key_values(parameters, "-p"), catchup=catchup, max_catchup=max_catchup,
                     overlap=overlap, start=start, end=end)
    info = service.add_schedule(ctx.db, spec)
    nxt = _when(info.next_fire_at) if info.next_fire_at else "never"
    click.echo(f"schedule '{info.name}' added for graph '{info.graph}': next fire time {nxt}")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def schedule_list(ctx: Context, as_json: bool) -> None:
    """List the schedules with their next and last fire times."""
    from pipeline_engine import service

    found = service.list_schedules(ctx.db)
    if as_json:
        _echo_json([x.to_dict() for x in found])
    elif not found:
        click.echo("no schedules")
    else:
        _table(["NAME", "GRAPH", "WHEN", "TIMEZONE", "NEXT", "LAST", "PAUSED"],
               [[x.name, x.graph, x.cron or f"every {x.every}", x.timezone, _when(x.next_fire_at),
                 _when(x.last_fire_at), "yes" if x.paused else ""] for x in found])


@schedule.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def schedule_show(ctx: Context, name: str, as_json: bool) -> None:
    """A schedule, its next fire times and its last decisions."""
    from pipeline_engine import service

    if as_json:
        _echo_json(service.schedule_detail(ctx.db, name))
        return
    info = service.show_schedule(ctx.db, name)
    upcoming = service.next_fire_times(ctx.db, name, 5)
    decided = service.schedule_history(ctx.db, name, 5)
    import simplejson

    for key, value in info.to_dict().items():
        shown = "-" if value is None else simplejson.dumps(value) if isinstance(value, dict) else value
        click.echo(f"{key + ':':14s}{shown}")
    click.echo("next fire times:" + ("" if upcoming else " none"))
    for f in upcoming:
        click.echo("  " + _fire_line(f))
    click.echo("last decisions:" + ("" if decided else " none"))
    for d in decided:
        click.echo(f"  {_when(d.fire_at)}  {d.decision}" + (f" run {d.run}" if d.run else "")
                   + (f": {d.reason}" if d.reason else ""))


@schedule.command("next")
@click.argument("name")
@click.option("--count", type=int, default=5, show_default=True, help="How many fire times.")
@click.option("--after", metavar="ISO", help="From this moment (default now; without an offset, in the"
                                             " schedule's zone).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def schedule_next(ctx: Context, name: str, count: int, after: str | None, as_json: bool) -> None:
    """The next fire times, in the schedule's zone and in UTC: what it will do when clocks change,
    before it does it."""
    from pipeline_engine import service
    from pipeline_engine.schedules import instant_of

    moment = instant_of(after, service.show_schedule(ctx.db, name).timezone, "--after") if after else None
    upcoming = service.next_fire_times(ctx.db, name, count, moment)
    if as_json:
        _echo_json([f.to_dict() for f in upcoming])
    else:
        for f in upcoming:
            click.echo(_fire_line(f))
        if not upcoming:
            click.echo("no more fire times")


@schedule.command("history")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def schedule_history_cmd(ctx: Context, name: str, limit: int, as_json: bool) -> None:
    """Every decision the schedulers took for the schedule's fire times, newest first: created
    (with the run), skipped, queued, missed, refused, and why."""
    from pipeline_engine import service

    decided = service.schedule_history(ctx.db, name, limit)
    if as_json:
        _echo_json([d.to_dict() for d in decided])
    elif not decided:
        click.echo("no decisions yet")
    else:
        _table(["FIRE TIME", "DECISION", "RUN", "DECIDED", "REASON"],
               [[_when(d.fire_at), d.decision, str(d.run or "-"), _when(d.decided_at), d.reason] for d in decided])


def _schedule_state(verb: str):
    @schedule.command(verb)
    @click.argument("name")
    @pass_ctx
    def command(ctx: Context, name: str) -> None:
        from pipeline_engine import service

        info = getattr(service, f"{verb}_schedule")(ctx.db, name)
        click.echo(f"schedule '{name}' {verb}d" + (f": next fire time {_when(info.next_fire_at)}"
                                                   if verb == "resume" and info.next_fire_at else ""))
    command.__doc__ = {"pause": "Stop deciding the schedule's fire times.",
                       "resume": "Decide the schedule's fire times again, from the next one (the times it was"
                                 " paused through are not caught up)."}[verb]
    return command


_schedule_state("pause")
_schedule_state("resume")


@schedule.command("delete")
@click.argument("name")
@pass_ctx
def schedule_delete(ctx: Context, name: str) -> None:
    """Delete a schedule and its history (the runs it made stay)."""
    from pipeline_engine import service

    service.delete_schedule(ctx.db, name)
    click.echo(f"schedule '{name}' deleted")


def _told(d) -> None:
    click.echo(f"schedule '{d.schedule}' {d.fire_at.isoformat()}: {d.decision}" + (f" run {d.run}" if d.run else "")
               + (f" ({d.reason})" if d.reason else ""), err=True)


def _start_scheduler(ctx: Context, tick: float = 1.0):
    """A scheduler in a thread of this process (``serve``, ``worker --scheduler``)."""
    import threading

    from pipeline_engine.runner import worker_name
    from pipeline_engine.scheduler import Scheduler

    engine = Scheduler(ctx.db, worker_name(), tick=tick, on_decision=_told,
                       grace=timedelta(seconds=ctx.settings.schedule_grace))
    threading.Thread(target=engine.run, name="scheduler", daemon=True).start()
    return engine


@cli.command("backfill")
@click.argument("graph_name", metavar="GRAPH")
@click.option("--from", "start", required=True, metavar="ISO", help="The first fire time is at or after this"
                                                                    " (without an offset: in the zone).")
@click.option("--to", "end", required=True, metavar="ISO", help="Fire times before this only.")
@click.option("--schedule", "schedule_name", help="The fire times, zone and parameters of this schedule.")
@click.option("--cron", help="Or the fire times of this cron expression.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="With --cron: its zone.")
@click.option("-p", "--param", "parameters", multiple=True, metavar="KEY=VALUE",
              help="An input value (over the schedule's); {fire_at}, {fire_date}, {fire_time} are filled in.")
@click.option("--max-active", type=int, default=1, show_default=True,
              help="At most this many of its runs at once: the rest are queued, and start as earlier ones end.")
@click.option("--dry-run", is_flag=True, help="List the fire times and what exists already; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def backfill_cmd(ctx: Context, graph_name: str, start: str, end: str, schedule_name: str | None, cron: str | None,
                 tz: str, parameters: tuple[str, ...], max_active: int, dry_run: bool, as_json: bool) -> None:
    """One run of GRAPH per fire time in [--from, --to), oldest first. Running it again makes no
    run twice. Queued runs are started by any scheduler (serve, worker --scheduler, scheduler)
    as earlier ones end; this command does it too until none is left queued (Ctrl-C leaves
    them to the schedulers)."""
    import time

    from pipeline_engine import service

    result = service.backfill(ctx.db, graph_name, start, end, schedule=schedule_name, cron=cron, timezone=tz,
                              parameters=_key_values(parameters, "-p"), max_active=max_active, dry_run=dry_run)
    if as_json:
        _echo_json(result.to_dict())
    else:
        for r in result.runs:
            what = (f"run {r.run} {r.state}" if r.created else f"exists: run {r.run} ({r.state})" if r.run
                    else "would be made")
            click.echo(f"{r.local.isoformat()}  {what}")
        made = sum(r.created for r in result.runs)
        click.echo(f"backfill of '{graph_name}': {len(result.runs)} fire time(s), "
                   + (f"{sum(r.run is None for r in result.runs)} to make (dry run: nothing written)" if dry_run
                      else f"{made} run(s) made, {len(result.runs) - made} there already"), err=True)
    queued = {r.run for r in result.runs if r.created and r.state == "queued"}
    while queued:
        queued -= set(service.promote_queued(ctx.db))
        queued = {r for r in queued if service.show_run(ctx.db, r, limit=0).state == "queued"}
        if queued:
            time.sleep(1.0)


@cli.command("scheduler")
@click.option("--tick", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between looks for due fire times.")
@click.option("--once", is_flag=True, help="Take every decision due now, then exit (systemd timers, tests).")
@click.option("--late-after", type=click.FloatRange(min=0), metavar="SECONDS",
              help="A fire time decided later than this after it is late: the catch-up policy decides"
                   " (default 60, or $PIPELINE_ENGINE_SCHEDULE_GRACE).")
@pass_ctx
def scheduler_cmd(ctx: Context, tick: float, once: bool, late_after: float | None) -> None:
    """Take the schedules' decisions as their fire times come, until stopped (Ctrl-C, SIGTERM).
    Run as many as you like, on any hosts: each fire time is decided exactly once."""
    import signal

    from pipeline_engine.runner import worker_name
    from pipeline_engine.scheduler import Scheduler

    grace = ctx.settings.schedule_grace if late_after is None else late_after
    engine = Scheduler(ctx.db, worker_name(), tick=tick, on_decision=_told, grace=timedelta(seconds=grace))
    if once:
        engine.look()
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: engine.stop())
    click.echo(f"scheduler {engine.name} started: a look every {tick:g} s", err=True)
    engine.run()
    click.echo(f"scheduler {engine.name} stopped", err=True)


@cli.group()
def token() -> None:
    """API tokens: who may call `serve`'s API, and with which role."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLE_NAMES), required=True,
              help="viewer reads; operator also starts, cancels and retries runs; editor also defines graphs"
                   " and pools; admin also manages tokens.")
@pass_ctx
def token_create(ctx: Context, name: str, role: str) -> None:
    """Make a token and print it, alone, on stdout: it is shown this once (only its hash is
    stored)."""
    from pipeline_engine import service

    info, secret = service.create_token(ctx.db, name, role)
    click.echo(secret)
    click.echo(f"token '{info.name}' created with role {info.role}: send it as 'Authorization: Bearer TOKEN'",
               err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def token_list(ctx: Context, as_json: bool) -> None:
    """List the tokens: name, role, when made, when last used (never the tokens themselves)."""
    from pipeline_engine import service

    found = service.list_tokens(ctx.db)
    if as_json:
        _echo_json([t.to_dict() for t in found])
        return
    _table(["NAME", "ROLE", "CREATED", "LAST USED"],
           [[t.name, t.role, _when(t.created_at), _when(t.last_used_at)] for t in found])


@token.command("revoke")
@click.argument("name")
@pass_ctx
def token_revoke(ctx: Context, name: str) -> None:
    """Revoke a token: requests that carry it are refused from now on."""
    from pipeline_engine import service

    service.revoke_token(ctx.db, name)
    click.echo(f"token '{name}' revoked")


def _show_ended(event) -> None:
    """A worker's line for each ended attempt (``worker``, ``serve``)."""
    if event.kind == "ended":
        took = f" in {event.duration:.2f} s" if event.duration is not None else ""
        why = f": {event.error}" if event.error else ""
        click.echo(f"run {event.run} {event.vertex}: {event.state}{took}{why}", err=True)


@cli.command("serve")
@click.option("--host", metavar="ADDRESS", help="Listen on this address (default 127.0.0.1; env PIPELINE_ENGINE_BIND).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Listen on this port (default 8080; env PIPELINE_ENGINE_PORT; 0: any free port, said at the start).")
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Threads of the worker the server runs (default 4; env PIPELINE_ENGINE_CONCURRENCY).")
@click.option("--no-worker", is_flag=True, help="Serve the API only; `pipeline-engine worker` processes run the runs.")
@click.option("--public-metrics", is_flag=True,
              help="Answer /metrics without a token (env PIPELINE_ENGINE_PUBLIC_METRICS).")
@click.option("--no-scheduler", is_flag=True, help="Take no schedule's decisions (`pipeline-engine scheduler`"
                                                   " processes do).")
@_GRACE
@pass_ctx
def serve_cmd(ctx: Context, host: str | None, port: int | None, concurrency: int | None, no_worker: bool,
              public_metrics: bool, no_scheduler: bool, grace: float | None) -> None:
    """Serve the HTTP API (docs at /api/docs), and run a worker and a scheduler in the same
    process. With no API token yet, it makes an admin token and prints it once. SIGTERM or
    Ctrl-C stops the server, then the worker: running tracks get --grace seconds; a second
    signal ends them."""
    from pipeline_engine.api.server import serve

    settings = ctx.settings
    worker = None
    if not no_worker:
        from pipeline_engine.runner import Worker

        ctx.ready_to_run()
        concurrency = concurrency or settings.concurrency
        worker = Worker(ctx.db, concurrency=concurrency, lease=settings.lease,
                        grace=settings.grace if grace is None else grace, poll=settings.poll, on_event=_show_ended,
                        log_dir=ctx.log_dir, on_stop=lambda message: click.echo(f"worker {worker.name} {message}",
                                                                                 err=True))
    ctx.db.ensure_schema()
    scheduler = None if no_scheduler else _start_scheduler(ctx)
    try:
        status = serve(ctx.db, host=host or settings.bind, port=settings.port if port is None else port,
                       body_limit=settings.body_limit, logs=settings.logs, worker=worker,
                       say=lambda text: click.echo(text, err=True),
                       public_metrics=public_metrics or settings.public_metrics)
    finally:
        if scheduler is not None:
            scheduler.stop()
    click.echo("server stopped", err=True)
    sys.exit(status)


@cli.command("audit")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many (the newest).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many of the newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def audit_cmd(ctx: Context, limit: int, offset: int, as_json: bool) -> None:
    """Who did what, newest first: every change made through the CLI, the API or Python (an
    API token's name, or cli:USER@HOST), with its target and time."""
    from pipeline_engine import service

    found = service.list_audit(ctx.db, limit=limit, offset=offset)
    if as_json:
        _echo_json([a.to_dict() for a in found])
        return
    _table(["WHEN", "WHO", "WHAT", "TARGET", "DETAIL"],
           [[_when(a.at), a.actor, a.action, a.target, _cut(a.detail) if a.detail else "-"] for a in found])


@cli.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def workers_cmd(ctx: Context, as_json: bool) -> None:
    """List live workers: name, host, pid, last heartbeat, tracks held."""
    from pipeline_engine import service

    found = service.list_workers(ctx.db)
    if as_json:
        _echo_json([w.to_dict() for w in found])
        return
    _table(["NAME", "HOST", "PID", "CONCURRENCY", "HEARTBEAT", "TRACKS"],
           [[w.name, w.host, str(w.pid), str(w.concurrency), _when(w.heartbeat_at), str(w.tracks)] for w in found])


@cli.command("prune")
@click.option("--older-than", "days", type=click.FloatRange(min=0), required=True, metavar="DAYS",
              help="Delete runs that finished more than DAYS days ago.")
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True,
              help="Runs deleted per transaction.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted, and delete nothing.")
@pass_ctx
def prune_cmd(ctx: Context, days: float, batch: int, dry_run: bool) -> None:
    """Delete finished runs older than DAYS days, with their tracks and their log files on this
    machine, in short transactions that never wait on running work."""
    from pipeline_engine import service

    runs, tracks = service.prune_runs(ctx.db, days, batch=batch, on_batch=lambda ids: _drop_logs(ctx, ids),
                                      dry_run=dry_run)
    if dry_run:
        click.echo(f"would prune {_n(runs, 'run')}, {_n(tracks, 'track')}; nothing deleted (dry run)")
    else:
        click.echo(f"pruned {_n(runs, 'run')}, {_n(tracks, 'track')}")


@cli.command("recover")
@pass_ctx
def recover_cmd(ctx: Context) -> None:
    """Take back now the running tracks of workers whose lease ran out (every worker also does
    this on its own every few seconds)."""
    from functools import partial

    from pipeline_engine import service
    from pipeline_engine.executors.local import kill_leftovers

    # this command runs on a worker's host: what dead workers of this host left is killed here
    n = service.recover(ctx.db, kill=partial(kill_leftovers, ctx.db.key))
    click.echo(f"{n} track(s) taken back")


@cli.group()
def runs() -> None:
    """Inspect runs."""


@runs.command("list")
@click.option("--graph", "graph_name", metavar="NAME", help="Only runs of this graph.")
@click.option("--state", type=click.Choice([str(x) for x in PipelineState]), help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (the newest).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many of the newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def runs_list(ctx: Context, graph_name: str | None, state: str | None, limit: int | None, offset: int,
              as_json: bool) -> None:
    """List runs, newest first, with how many of their vertices are done."""
    from pipeline_engine import service

    found = service.list_runs(ctx.db, graph=graph_name, state=state, limit=limit, offset=offset)
    if as_json:
        _echo_json([r.to_dict() for r in found])
        return
    finished = {str(x) for x in TRACK_FINISHED}
    _table(["ID", "GRAPH", "VERSION", "NAME", "STATE", "DONE", "STARTED", "FINISHED"],
           [[str(r.id), r.graph, str(r.version), r.name or "-", r.state,
             f"{sum(n for s, n in r.counts.items() if s in finished)}/{sum(r.counts.values())}",
             _when(r.started_at), _when(r.finished_at)] for r in found])
    waiting = [str(r.id) for r in found if r.for_workers]
    if waiting and not service.worker_alive(ctx.db):
        click.echo(f"run{'s' if len(waiting) > 1 else ''} {', '.join(waiting)}: {_NO_WORKER}")


_NO_WORKER = f"no worker is alive: start one with {PROG} worker"
_ERROR_WIDTH = 60


def _cut(text: str, width: int = _ERROR_WIDTH) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _shown_value(value) -> str:
    """A parameter's value as typed on a command line: quoted when it would not read as one word."""
    import simplejson

    text = value if isinstance(value, str) else simplejson.dumps(value)
    return text if text and all(c.isprintable() and not c.isspace() and c not in "\"'\\" for c in text) \
        else simplejson.dumps(text, ensure_ascii=False)


def _track_note(track: service.TrackInfo) -> str:
    """The ERROR column: why the last attempt ended, and when a retry that waits starts."""
    note = track.error or ""
    if track.retry_at is not None:
        note = f"retrying at {_when(track.retry_at)}" + (f": {note}" if note else
                                                          f": exit code {track.exit_code}" if track.exit_code else "")
    return _cut(note) if note else "-"


@runs.command("show")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--state", "track_state", type=click.Choice([str(x) for x in TrackState]),
              help="Only tracks in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many tracks (the counts by state always cover the whole run).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many tracks first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def runs_show(ctx: Context, run_id: int, track_state: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Show a run: its counts by state and a page of its vertices, with the worker running each."""
    from pipeline_engine import service

    info = service.show_run(ctx.db, run_id, limit=limit, offset=offset, state=track_state, output=False)
    if as_json:
        _echo_json(info.to_dict())
        return
    click.echo(f"run {info.id} of graph '{info.graph}' version {info.version}: {info.state}"
               f" (started {_when(info.started_at)}, finished {_when(info.finished_at)})")
    click.echo("parameters: " + (" ".join(f"{k}={_shown_value(v)}" for k, v in info.parameters.items()) or "none"))
    click.echo(f"{info.total} vertices: " + ", ".join(f"{n} {s}" for s, n in sorted(info.counts.items())))
    if info.for_workers and not info.worker_alive:
        click.echo(_NO_WORKER)
    pools = any(t.pool for t in info.tracks)
    _table(["VERTEX", "STATE", "ATTEMPT", "EXIT", "STARTED", "FINISHED", "WORKER"] + (["POOL"] if pools else [])
           + ["ERROR"],
           [[t.vertex, t.state, str(t.attempt), "-" if t.exit_code is None else str(t.exit_code),
             _when(t.started_at), _when(t.finished_at), t.worker or "-"] + ([t.pool or "-"] if pools else [])
            + [_track_note(t)]
            for t in info.tracks])
    shown = info.counts.get(track_state, 0) if track_state else info.total
    if offset or len(info.tracks) < shown:
        click.echo(f"(vertices {offset + 1}-{offset + len(info.tracks)} of {shown}; --limit and --offset page)")


@runs.command("attempts")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many attempts (the total always covers the whole run).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many attempts first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def runs_attempts(ctx: Context, run_id: int, limit: int, offset: int, as_json: bool) -> None:
    """Show every attempt of a run's vertices by start: retries, timeouts, lost leases and
    cancels included, and those that run now."""
    from pipeline_engine import service

    page = service.run_attempts(ctx.db, run_id, limit=limit, offset=offset)
    if as_json:
        _echo_json(page.to_dict())
        return
    _table(["VERTEX", "ATTEMPT", "OUTCOME", "EXIT", "STARTED", "FINISHED", "WORKER", "ERROR"],
           [[a.vertex, str(a.attempt), a.outcome, "-" if a.exit_code is None else str(a.exit_code),
             _when(a.started_at), _when(a.finished_at), a.worker or "-", _cut(a.error) if a.error else "-"]
            for a in page.attempts])
    if offset or len(page.attempts) < page.total:
        click.echo(f"(attempts {offset + 1}-{offset + len(page.attempts)} of {page.total}; --limit and --offset"
                   " page)")


_FOLLOW_POLL = 0.2  # seconds between looks at a followed log file and its track's state


@cli.command("logs")
@click.argument("run_id", metavar="RUN", type=int)
@click.argument("vertex")
@click.option("--tail", is_flag=True, help="Print the tails kept in the database even when the log file exists.")
@click.option("-f", "--follow", is_flag=True,
              help="Print new output as it arrives (like tail -f) until the vertex has ended, its retries too.")
@pass_ctx
def logs_cmd(ctx: Context, run_id: int, vertex: str, tail: bool, follow: bool) -> None:
    """Print the output of one vertex of a run: its full log file (every attempt, stdout and
    stderr as they came) when it is on this machine, else the tails kept in the database
    (stdout, then stderr on stderr). A vertex that printed nothing, has not started, or ended
    with an error (a timeout, a lost worker...) says so on stderr, after its output."""
    from pipeline_engine import service

    if follow and tail:
        raise click.UsageError("--follow prints the log file as it grows: leave out --tail")
    track = service.track_output(ctx.db, run_id, vertex)
    if follow:
        track, from_file = _follow(ctx, run_id, vertex, track)
    else:
        from_file = not tail and _print_file(_log_file(ctx, run_id, track))
    if not from_file:
        click.echo(track.stdout, nl=False)
        click.echo(track.stderr, nl=False, err=True)
    note = _logs_note(run_id, track, from_file, follow)
    if note:
        click.echo(note, err=True)


def _log_file(ctx: Context, run_id: int, track: service.TrackInfo) -> str | None:
    """The track's log file on this machine, if there is one. A track records its path when an
    attempt ends: while its first attempt runs, the file is where this machine's runs put it."""
    from pipeline_engine import logfiles

    return logfiles.find(ctx.settings.logs, ctx.db.key, run_id, track.vertex, track.log_path,
                         track.state in TRACK_FINISHED)


def _print_file(path: str | None) -> bool:
    """Copy the file at ``path`` to stdout; False when there is none."""
    if path is None:
        return False
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return True


def _follow(ctx: Context, run_id: int, vertex: str, track: service.TrackInfo) -> tuple[service.TrackInfo, bool]:
    """Copy the vertex's log file to stdout as it grows, until its track has ended (retries
    append to the same file). Returns the track as last read, and whether the file was here."""
    from pipeline_engine import service
    from pipeline_engine.settings import this_host

    out, f, said = sys.stdout.buffer, None, set()
    try:
        while True:
            # the state is read before the file: an attempt's bytes are all written before its end is
            ended = track.state in TRACK_FINISHED
            if f is None:
                path = _log_file(ctx, run_id, track)
                f = open(path, "rb") if path else None
            if f is not None:
                while chunk := f.read(65536):
                    out.write(chunk)
                out.flush()
            if ended:
                return track, f is not None
            who = f"vertex '{vertex}' of run {run_id}"
            if track.attempt == 0 and "start" not in said:
                said.add("start")
                click.echo(f"{who} has not started yet ({track.state}): its log follows when it starts", err=True)
            elif f is None and track.worker and track.worker.split(":")[0] != this_host() and "host" not in said:
                said.add("host")
                click.echo(f"{who} runs on {track.worker.split(':')[0]}: its log file is not on this machine;"
                           " the tails kept in the database follow when it ends", err=True)
            time.sleep(_FOLLOW_POLL)
            track = service.track_output(ctx.db, run_id, vertex)
    finally:
        if f is not None:
            f.close()


def _logs_note(run_id: int, track: service.TrackInfo, from_file: bool, follow: bool) -> str | None:
    """What ``logs`` says on stderr besides the output: a vertex that has not started, is still
    running, printed nothing in its last attempt, or ended with an engine error."""
    who = f"vertex '{track.vertex}' of run {run_id}"
    error = track.error if track.error and track.error != track.state else None
    why = f": {error}" if error else ""
    if track.attempt == 0:
        if track.state in (TrackState.WAITING, TrackState.PENDING):
            return f"{who} has not started yet ({track.state}){why}"
        return f"{who} never started ({track.state}){why}"
    if track.state == TrackState.RUNNING:
        return None if follow else (f"{who} is running (attempt {track.attempt}): "
                                    f"`{PROG} logs {run_id} {track.vertex} --follow` prints the rest as it comes")
    state = "failed, a retry is pending" if track.state == TrackState.PENDING else track.state
    what = f"{who} (attempt {track.attempt}, {state})"
    # the tails are the last attempt's; the log file holds every attempt, each after its header
    silent = not track.stdout and not track.stderr and (not from_file or _ends_with_header(track))
    if silent:
        return f"{what} printed nothing{why}"
    return f"{what}{why}" if error else None


def _ends_with_header(track: service.TrackInfo) -> bool:
    """Whether the log file ends with the header of the track's last attempt (it printed nothing)."""
    header = f"--- attempt {track.attempt} ---\n".encode()
    try:
        with open(track.log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(track.log_path) - len(header)))
            return f.read() == header
    except (OSError, TypeError):
        return True


# --- entry point ---------------------------------------------------------------------------

def _fail(message: str, code: int) -> None:
    for line in message.splitlines() or [""]:
        click.echo(f"{PROG}: error: {line}", err=True)
    sys.exit(code)


def _not_utf8(args: list[str]) -> str | None:
    """The problem with the first argument that is not UTF-8 (Python decodes such bytes to lone
    surrogates, which no database, file or process takes), named without its value (a secret?)."""
    for i, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            key, sep, _ = arg.partition("=")
            shown = f" ('{key}=...')" if sep and key.isascii() and key.isprintable() else ""
            return f"command-line argument {i}{shown} is not valid UTF-8 text: names, paths and values must be UTF-8"
    return None


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Errors a user can cause print one line per problem, never a traceback."""
    problem = _not_utf8(sys.argv[1:] if argv is None else list(argv))
    if problem:
        _fail(problem, 2)
    try:
        code = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint, 2)
    except click.exceptions.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code or 2)
    except click.exceptions.Abort:
        click.echo("", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except PipelineEngineError as exc:
        _fail(str(exc), exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
