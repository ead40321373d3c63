"""`%load_ext nbjobs`: the `%%job` cell magic, the `%job` line magic and `dbutils` in the notebook.

Everything goes through a `JobsClient` (nbjobs.contract), as the CLI does: the workspace of
`$NBJOBS_HOME`, or the one set with `%job use PATH|URL` / `nbjobs.ui.use`. The arguments are parsed
by `nbjobs.cli_args`, as the CLI's are; outputs are a `JobPanel` or a rich table, errors a readable
message (never a traceback or a raw dict).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .cli_args import add_job_params, add_repair_flags, parse_key_values, parse_tags, repair_options

USAGE = """\
%%job [NAME] [--run] [--job-param NAME=VALUE]...   (cell: the job as YAML or JSON)
%job run NAME|ID [--job-param NAME=VALUE]...
%job repair RUN_ID [--rerun-tasks KEY ...] [--rerun-dependent-tasks] [--job-param NAME=VALUE]...
%job cancel RUN_ID
%job list [--tag KEY[=VALUE]]... [--name NAME]
%job runs [NAME|ID] [--limit N] [--active]
%job show RUN_ID
%job validate PATH
%job batch NOTEBOOK --grid NAME=V1,V2 [--grid ...] [--param NAME=VALUE]... [--concurrency N] [--name NAME]
%job use PATH|URL [--token TOKEN]      (the workspace folder or nbjobs server the magics and panels use)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # never SystemExit in a kernel
        raise UsageError(f"{self.prog}: {message}\n\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        raise UsageError(message or USAGE)


def _cell_parser() -> _Parser:
    p = _Parser(prog="%%job", add_help=False)
    p.add_argument("name", nargs="?", help="job name (overrides the body's name:)")
    p.add_argument("--run", action="store_true", help="run the job after registering it")
    add_job_params(p)
    return p


def _line_parser() -> _Parser:
    p = _Parser(prog="%job", add_help=False)
    sub = p.add_subparsers(dest="verb", parser_class=_Parser)
    r = sub.add_parser("run", add_help=False)
    r.add_argument("job")
    add_job_params(r)
    rp = sub.add_parser("repair", add_help=False)
    rp.add_argument("run_id", type=int)
    add_repair_flags(rp, require_choice=False, latest=False)  # the panel passes the latest repair id
    c = sub.add_parser("cancel", add_help=False)
    c.add_argument("run_id", type=int)
    ls = sub.add_parser("list", add_help=False)
    ls.add_argument("--tag", action="append", default=[], metavar="KEY[=VALUE]")
    ls.add_argument("--name")
    rs = sub.add_parser("runs", add_help=False)
    rs.add_argument("job", nargs="?")
    rs.add_argument("--limit", type=int, default=25)
    rs.add_argument("--active", action="store_true")
    s = sub.add_parser("show", add_help=False)
    s.add_argument("run_id", type=int)
    v = sub.add_parser("validate", add_help=False)
    v.add_argument("path")
    b = sub.add_parser("batch", add_help=False)
    b.add_argument("notebook")
    b.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2")
    b.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    b.add_argument("--concurrency", type=int, default=1)
    b.add_argument("--name")
    u = sub.add_parser("use", add_help=False)
    u.add_argument("target")
    u.add_argument("--token")
    sub.add_parser("help", add_help=False)
    return p


# -- output ----------------------------------------------------------------------------------------
def show_message(text: str, kind: str = "info") -> None:
    from IPython.display import display

    from .ui.details import message_html
    display({"text/html": f'<div class="nbjobs-magic-message">{message_html(text, kind)}</div>',
             "text/plain": text}, raw=True)


def show_problems(problems: list, source: str | None = None) -> None:
    from IPython.display import display

    from .ui.details import esc, problems_html, problems_text
    head = f'<div style="font-size:12px;margin-bottom:2px"><code>{esc(source)}</code></div>' if source else ""
    text = problems_text(problems)
    display({"text/html": head + problems_html(problems), "text/plain": f"{source}: {text}" if source else text},
            raw=True)


def show_table(renderable: Any) -> None:
    """A rich table as notebook output (HTML, with a text/plain twin)."""
    from rich.console import Console
    Console(force_jupyter=True, width=160, color_system=None).print(renderable)


def _params(items: list[str]) -> dict[str, str]:
    return parse_key_values(items, flag="--job-param")


def _resolve_job(client: Any, ref: str) -> int:
    """A job id from an id or a job name."""
    from .errors import ResourceDoesNotExist
    if ref.isdigit():
        client.get_job(int(ref))
        return int(ref)
    jobs = client.list_jobs(name=ref)
    if not jobs:
        names = sorted({j["settings"].get("name", "") for j in client.list_jobs()})
        known = ", ".join(repr(n) for n in names) or "none yet"
        raise ResourceDoesNotExist(f"No job named {ref!r} (jobs: {known}). Register it with %%job or "
                                   f"nbjobs run, or give its id.")
    return int(jobs[0]["job_id"])


@magics_class
class JobMagics(Magics):
    """%%job and %job."""

    @property
    def client(self) -> Any:
        from .ui.client import default_client
        return default_client()

    @line_cell_magic
    def job(self, line: str, cell: str | None = None) -> Any:
        """Build, run and inspect nbjobs jobs; `%job help` lists the verbs."""
        from .errors import JobDefinitionError, NbjobsError
        try:
            if cell is not None:
                return self._cell(line, cell)
            return self._line(line)
        except JobDefinitionError as exc:
            show_problems(exc.problems, getattr(exc, "source", None))
        except (NbjobsError, ValueError, FileNotFoundError, NotImplementedError) as exc:
            show_message(f"Error: {exc}", "error")
        return None

    # -- %%job ----------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str) -> Any:
        import yaml

        from .spec import validate_job_settings
        from .ui import JobPanel
        args = _cell_parser().parse_args(shlex.split(line))
        params = _params(args.job_param)
        try:
            data = yaml.safe_load(cell) if cell.strip() else None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            show_message(f"The %%job cell is not valid YAML or JSON{at}: {getattr(exc, 'problem', None) or exc}",
                         "error")
            return None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            show_message("The %%job cell must hold a job: a map with name: and tasks: (YAML or JSON).", "error")
            return None
        if args.name:
            data["name"] = args.name
        base_dir = Path.cwd()
        problems = validate_job_settings(data, base_dir=base_dir)
        if problems:
            show_problems(problems, f"job '{data.get('name') or 'Untitled'}'")
            return None
        panel = JobPanel(data, client=self.client, base_dir=base_dir)
        panel.save()
        if args.run:
            try:
                panel.run(params)
            except Exception as exc:  # the job is registered; say why it did not start
                panel.status(f"Error: {exc}", "error")
        return panel

    # -- %job -----------------------------------------------------------------------------------
    def _line(self, line: str) -> Any:
        args = _line_parser().parse_args(shlex.split(line))
        verb = args.verb
        if verb in (None, "help"):
            show_message(USAGE)
            return None
        return getattr(self, f"_{verb}")(args)

    def _run(self, args) -> Any:
        from .ui import JobPanel
        params = _params(args.job_param)
        panel = JobPanel(_resolve_job(self.client, args.job), client=self.client)
        panel.run(params)
        return panel

    def _repair(self, args) -> Any:
        from .ui import JobPanel
        options = repair_options(args)
        panel = JobPanel.for_run(args.run_id, client=self.client)
        panel.repair(args.run_id, tasks=options["rerun_tasks"], rerun_dependents=options["rerun_dependent_tasks"],
                     params=options["job_parameters"])
        return panel

    def _cancel(self, args) -> None:
        from .tables import run_table
        self.client.cancel_run(args.run_id)
        show_table(run_table(self.client.wait(args.run_id, timeout=10)))

    def _list(self, args) -> None:
        from .tables import jobs_table
        show_table(jobs_table(self.client.list_jobs(name=args.name, tags=parse_tags(args.tag), expand_tasks=True)))

    def _runs(self, args) -> None:
        from .tables import runs_table
        job_id = _resolve_job(self.client, args.job) if args.job else None
        show_table(runs_table(self.client.list_runs(job_id=job_id, active_only=args.active, limit=args.limit)))

    def _show(self, args) -> Any:
        from .ui import JobPanel
        return JobPanel.for_run(args.run_id, client=self.client)

    def _validate(self, args) -> None:
        from .spec import load_job
        loaded = load_job(args.path)
        n = len(loaded.settings.tasks)
        show_message(f"OK: job '{loaded.settings.name or 'Untitled'}' ({n} task{'s' if n != 1 else ''}) "
                     f"in {args.path} is valid.", "ok")

    def _batch(self, args) -> Any:
        from .batch import batch_settings, parse_grid
        from .ui import JobPanel
        settings = batch_settings(args.notebook, parse_grid(args.grid),
                                  params=parse_key_values(args.param, flag="--param"),
                                  concurrency=args.concurrency, name=args.name)
        panel = JobPanel(settings, client=self.client, base_dir=Path(args.notebook).expanduser().resolve().parent)
        panel.run()
        return panel

    def _use(self, args) -> None:
        from .ui.client import use
        if "://" in args.target:
            from .client import connect
            client = connect(args.target, args.token)
        else:
            from .service import Workspace
            client = Workspace(args.target)
        client.list_jobs()  # fail now if the server cannot be reached (or the folder is not a workspace)
        use(client)
        show_message(f"Using {args.target} for %job, %%job and new panels.", "ok")


def load_ipython_extension(ip: Any) -> None:
    """Register the magics and make `dbutils` available (interactive widgets outside a job)."""
    ip.register_magics(JobMagics)
    from .kernel import dbutils
    if "dbutils" not in ip.user_ns:
        ip.user_ns["dbutils"] = dbutils
