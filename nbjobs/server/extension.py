"""The Jobs API inside Jupyter Server: the same endpoints, behind Jupyter's own auth (its token).

Enabled on install (`jupyter_server_config.d/nbjobs.json`). The workspace is `$NBJOBS_HOME`, else
`<root_dir>/.nbjobs` (then exported as `$NBJOBS_HOME` to the server's kernels and terminals); job
files are read under Jupyter's `root_dir`. Runs execute in the Jupyter server process, so they
outlive a closed notebook or a restarted kernel.
"""
from __future__ import annotations

import asyncio
import atexit
import json
import os
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..services.host import report
from .app import SERVICES_ROUTE, start_services
from .handlers import API_ROUTE, WELL_KNOWN_ROUTE, JobsApiMixin, ServerState, WellKnownMixin

try:  # jupyter_server >= 2.13
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # pragma: no cover
    def allow_unauthenticated(method):  # type: ignore[no-redef]
        return method

STATE_KEY = "nbjobs_state"
SERVICES_KEY = "nbjobs_services"


class JupyterJobsHandler(JobsApiMixin, APIHandler):
    """Jobs API endpoints; Jupyter authenticates (`Authorization: token|Bearer <jupyter token>`)."""

    @web.authenticated
    async def get(self, version: str, endpoint: str) -> None:
        await self.serve_api("GET", version, endpoint)

    @web.authenticated
    async def post(self, version: str, endpoint: str) -> None:
        await self.serve_api("POST", version, endpoint)

    def get_login_url(self) -> str:  # an API: 401, never a redirect to the login page
        raise web.HTTPError(403)


class JupyterServicesHandler(APIHandler):
    """GET: this server's service host (live health), every host of the workspace and the leases."""

    def initialize(self, state: Any, services: Any) -> None:
        self.state, self.services = state, services

    @web.authenticated
    async def get(self, version: str) -> None:
        body = await asyncio.get_running_loop().run_in_executor(
            self.state.executor, report, self.state.workspace.store, self.services)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))


class JupyterWellKnownHandler(WellKnownMixin, JupyterHandler):
    @allow_unauthenticated
    def get(self) -> None:
        super().get()

    def check_xsrf_cookie(self) -> None:  # GET only
        return None


def workspace_home(serverapp: Any) -> Path:
    env = os.environ.get("NBJOBS_HOME")
    if env:
        return Path(env)
    return Path(serverapp.root_dir) / ".nbjobs"


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from ..service import Workspace

    home = workspace_home(serverapp).resolve()
    root = Path(serverapp.root_dir).resolve()
    # Kernels and terminals started by this server inherit it: the panel, the magics and the CLI
    # there use this same workspace store, whatever folder a notebook is in.
    os.environ.setdefault("NBJOBS_HOME", str(home))
    workspace = Workspace(home)
    workspace.engine  # noqa: B018 - the run engine lives in the server process
    state = ServerState(workspace, root, auth_hint="the Jupyter server's token")
    web_app = serverapp.web_app
    web_app.settings[STATE_KEY] = state
    services = None
    try:  # the workspace's services live in the server process too; they never stop Jupyter from starting
        services = start_services(workspace)
    except Exception as exc:  # noqa: BLE001
        serverapp.log.error("nbjobs: the services did not start: %s: %s", type(exc).__name__, exc)
    web_app.settings[SERVICES_KEY] = services
    # jupyter_server 2 calls no unload hook of a plain extension module (only ExtensionApp.stop_extension),
    # so the services stop (and release their leases) when the server process exits normally.
    atexit.register(_stop_services, web_app.settings)
    base = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", [
        (url_path_join(base, API_ROUTE), JupyterJobsHandler, {"state": state}),
        (url_path_join(base, WELL_KNOWN_ROUTE), JupyterWellKnownHandler),
        (url_path_join(base, SERVICES_ROUTE), JupyterServicesHandler, {"state": state, "services": services}),
    ])
    serverapp.log.info("nbjobs: Jobs API at %sapi/2.2/jobs/ (workspace %s, job files under %s)",
                       base, workspace.home, root)


def _stop_services(settings: dict) -> None:
    services = settings.pop(SERVICES_KEY, None)
    if services is not None:
        services.stop()


def _unload_jupyter_server_extension(serverapp: Any) -> None:
    _stop_services(serverapp.web_app.settings)
    state = serverapp.web_app.settings.pop(STATE_KEY, None)
    if state is not None:
        state.close()
        state.workspace.close()
