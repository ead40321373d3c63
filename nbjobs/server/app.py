"""`nbjobs serve`: the Jobs API on a plain tornado server, with bearer-token auth."""
from __future__ import annotations

import asyncio
import hmac
import json
import ipaddress
import logging
import os
import secrets
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ..service import Workspace
from ..services.host import ServiceHost, report, selection_from_env
from .handlers import API_ROUTE, WELL_KNOWN_ROUTE, JobsApiMixin, ServerState, WellKnownMixin, log_request

TOKEN_FILE = "server-token"
TOKEN_ENV = "NBJOBS_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SERVICES_ROUTE = r"/api/(2\.[012])/nbjobs/services"  # the service host's health (not a Jobs API endpoint)

log = logging.getLogger("nbjobs.server")


class JobsHandler(JobsApiMixin, tornado.web.RequestHandler):
    """The Jobs API behind `Authorization: Bearer <token>` (also `token <token>`, or `?token=`)."""

    def prepare(self) -> None:
        if not self._authorized():
            self.send_api_error(self.unauthenticated())

    def _authorized(self) -> bool:
        expected = (self.state.token or "").encode()
        if not expected:
            return True
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        given = value.strip() if scheme.lower() in ("bearer", "token") else ""
        if not given:
            given = self.get_query_argument("token", "")  # for a browser; redacted in the log
        return bool(given) and hmac.compare_digest(given.encode(), expected)

    async def get(self, version: str, endpoint: str) -> None:
        await self.serve_api("GET", version, endpoint)

    async def post(self, version: str, endpoint: str) -> None:
        await self.serve_api("POST", version, endpoint)


class ServicesHandler(JobsHandler):
    """GET: this server's service host (live health), every host of the workspace and the leases."""

    def initialize(self, state: ServerState, services: ServiceHost | None = None) -> None:  # type: ignore[override]
        super().initialize(state)
        self.services = services

    async def get(self, version: str) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self.state.executor, report, self.state.workspace.store, self.services)
        self.send_json(200, json.loads(json.dumps(body, default=str)))  # a plug-in's health may hold any value

    async def post(self, version: str) -> None:  # type: ignore[override]
        self.send_json(405, {"error_code": "BAD_REQUEST", "message": "use GET"})


class WellKnownHandler(WellKnownMixin, tornado.web.RequestHandler):
    pass


class NotFoundHandler(tornado.web.RequestHandler):
    """Anything else: a Jobs-API-shaped 404 (never an HTML page)."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish({"error_code": "ENDPOINT_NOT_FOUND",
                     "message": f"No API found for '{self.request.method} {self.request.path}'"})


def make_app(state: ServerState, services: ServiceHost | None = None) -> tornado.web.Application:
    return tornado.web.Application(
        [(API_ROUTE, JobsHandler, {"state": state}), (WELL_KNOWN_ROUTE, WellKnownHandler),
         (SERVICES_ROUTE, ServicesHandler, {"state": state, "services": services})],
        default_handler_class=NotFoundHandler, log_function=log_request, compress_response=True)


def start_services(workspace: Workspace, services: Any = None, **options: Any) -> ServiceHost | None:
    """The workspace's service host, started (None when `services` is False or selects none).

    `services`: None or True: `$NBJOBS_SERVICES` (default: every available service); a list: those."""
    selection = selection_from_env() if services is None or services is True else (
        [] if services is False else list(services))
    if selection == []:
        return None
    return ServiceHost(selection, workspace=workspace, **options).start()


# -- tokens -------------------------------------------------------------------------------------------

def token_path(home: str | os.PathLike) -> Path:
    return Path(home) / TOKEN_FILE


def read_token(home: str | os.PathLike) -> str | None:
    """The token `nbjobs serve` generated for this workspace, if any."""
    try:
        return token_path(home).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def load_or_create_token(home: str | os.PathLike) -> tuple[str, bool]:
    """The workspace's server token, generated (and saved, readable by its owner only) on first use."""
    existing = read_token(home)
    if existing:
        return existing, False
    token = "nbj-" + secrets.token_urlsafe(24)
    path = token_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, True


# -- running --------------------------------------------------------------------------------------------

class ServerThread:
    """The server on its own thread and event loop (tests, notebooks). `stop()` ends it.

    Given a `home`, it opens (and closes) its own Workspace; given a `workspace`, it uses that one.
    It hosts the workspace's services (`services`: see `start_services`; `service_options`: ServiceHost's).
    """

    def __init__(self, *, home: str | os.PathLike | None = None, workspace: Workspace | None = None,
                 host: str = DEFAULT_HOST, port: int = 0, token: str | None = None,
                 root: str | os.PathLike | None = None, services: Any = None,
                 service_options: dict[str, Any] | None = None):
        self._own = workspace is None
        self.workspace = workspace if workspace is not None else Workspace(home)
        if token is None:
            token, _ = load_or_create_token(self.workspace.home)
        self.token = token
        self.root = Path(root if root is not None else os.getcwd()).resolve()
        self.state = ServerState(self.workspace, self.root, token=token)
        self.workspace.engine  # the run engine starts now, not inside a request thread  # noqa: B018
        self.sockets = bind_sockets(port, address=host)
        try:
            self.services = start_services(self.workspace, services, **(service_options or {}))
        except BaseException:
            for sock in self.sockets:
                sock.close()
            raise
        self.port = self.sockets[0].getsockname()[1]
        self.host = host
        self.url = f"http://{_url_host(host)}:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="nbjobs-server", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._server = HTTPServer(make_app(self.state, self.services))
        self._server.add_sockets(self.sockets)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, server = self._loop, self._server
        self._loop = None

        async def shutdown() -> None:
            if server is not None:
                server.stop()
                await server.close_all_connections()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        except Exception:  # pragma: no cover - best effort
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        if self.services is not None:
            self.services.stop()
        self.state.close()
        if self._own:
            self.workspace.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(*, home: str | os.PathLike | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, root: str | os.PathLike | None = None, echo=print) -> int:
    """Run the server in this process until SIGINT/SIGTERM (the `nbjobs serve` command)."""
    logging.basicConfig(level=logging.INFO, format="[nbjobs %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    workspace = Workspace(home)
    created = False
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None:
        token, created = load_or_create_token(workspace.home)
    root_path = Path(root if root is not None else os.getcwd()).resolve()
    try:
        sockets = bind_sockets(port, address=host)
    except OSError as exc:
        workspace.close()
        raise SystemExit(f"nbjobs serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    actual = sockets[0].getsockname()[1]
    state = ServerState(workspace, root_path, token=token)
    workspace.engine  # noqa: B018
    url = f"http://{_url_host(host)}:{actual}"
    echo(f"nbjobs server: {url}")
    echo(f"  workspace {workspace.home}; job files are read under {root_path}")
    if created:
        echo(f"  token (new, saved to {token_path(workspace.home)}): {token}")
    elif token == read_token(workspace.home):
        echo(f"  token: in {token_path(workspace.home)}")
    else:
        echo("  token: the one you gave")
    echo(f'  SDK: WorkspaceClient(host="{url}", token=..., auth_type="pat")')
    if not _is_loopback(host):
        echo(f"  warning: {host} is reachable from other machines; anyone with the token can run code here")
    try:
        services = start_services(workspace)
    except Exception as exc:  # an unknown name in $NBJOBS_SERVICES, a service that cannot be created
        workspace.close()
        raise SystemExit(f"nbjobs serve: cannot start the services: {exc}") from None
    if services is not None:
        echo(f"  services: {', '.join(services.services) or 'none'} (GET /api/2.2/nbjobs/services)")

    async def main() -> None:
        server = HTTPServer(make_app(state, services))
        server.add_sockets(sockets)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread / Windows
                pass
        await stop.wait()
        server.stop()
        await server.close_all_connections()

    try:
        asyncio.run(main())
    finally:
        echo("nbjobs server: stopping (active runs are canceled)")
        if services is not None:
            services.stop()
        state.close()
        workspace.close()
    return 0


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1" if host != "::" else "[::1]"
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            return False
