"""The warm kernel pool: fresh, pre-started kernels, one pool per kernelspec + environment.

Every notebook task gets a kernel nobody used before; kernels are never reused. What makes that cheap
is doing the expensive parts ahead of time and off the task's path:

- kernels are started ahead (a pool of `size` ready kernels per `KernelKey`, refilled in the
  background as soon as one is taken) and killed in the background after use;
- readiness is "kernel_info reply received and the matching IOPub idle seen" — no fixed waits;
- ipykernel kernels are forked from a fork server (`forkserver.py`) that imported ipykernel once,
  so a new kernel costs its own setup, not another ~0.3 CPU-s of imports; other kernelspecs (and
  ipykernel when forking is unavailable) are launched as ordinary processes;
- local kernels use the ipc transport (no TCP port races between processes); starts are retried.

All kernel I/O happens on one background thread with its own asyncio loop (`PoolManager`), so callers
on any loop (the runner, `asyncio.run` in tests, a Dask worker thread) use it the same way and never
block on it. One manager per process: `pool_manager()`; `shutdown_pools()` (also at exit and from
`Workspace.close()`) kills every kernel it started.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import functools
import json
import logging
import os
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from .._proc import pid_alive

log = logging.getLogger("nbjobs.compute")
T = TypeVar("T")

START_TIMEOUT = 60.0       # seconds for one kernel to become ready
START_ATTEMPTS = 3         # kernel start failures are retried
HISTORY_ARG = "--HistoryManager.hist_file=:memory:"
_FORKSERVER = str(Path(__file__).with_name("forkserver.py"))


def default_pool_size() -> int:
    """Warm kernels per kernelspec/environment: $NBJOBS_KERNEL_POOL_SIZE, else the number of cores."""
    value = os.environ.get("NBJOBS_KERNEL_POOL_SIZE")
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise ValueError(f"NBJOBS_KERNEL_POOL_SIZE={value!r} is not a whole number") from None
    return max(1, os.cpu_count() or 1)


def idle_seconds() -> float:
    """A pool unused this long is emptied (its kernels and fork server stop): $NBJOBS_KERNEL_POOL_IDLE, 600."""
    try:
        return float(os.environ.get("NBJOBS_KERNEL_POOL_IDLE") or 600)
    except ValueError:
        return 600.0


def fork_enabled() -> bool:
    """Fork ipykernel kernels from a fork server (POSIX). NBJOBS_KERNEL_LAUNCH=spawn turns it off."""
    return os.name == "posix" and hasattr(os, "fork") and \
        os.environ.get("NBJOBS_KERNEL_LAUNCH", "fork").lower() != "spawn"


def skip_slow_imports() -> None:
    """Keep jsonschema from importing `rfc3987_syntax` in this process, unless something already did.

    nbformat imports jsonschema, whose format checkers import `rfc3987_syntax` when it is installed
    (jupyter-events pulls it in); that module builds a Lark grammar at import: ~2 CPU-s, 10x the rest
    of nbformat, paid by every process that runs notebooks (the CLI, each Dask worker). It only serves
    the "iri"/"iri-reference" formats, which notebook validation does not use. NBJOBS_KEEP_IRI_FORMAT=1
    keeps it.
    """
    if os.environ.get("NBJOBS_KEEP_IRI_FORMAT") == "1" or "jsonschema" in sys.modules:
        return
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # -> ImportError, skipped


class KernelStartError(RuntimeError):
    """A kernel could not be started (after retries)."""


@dataclass(frozen=True)
class KernelKey:
    """What a pooled kernel is fixed to at start: its kernelspec and its environment."""

    kernel_name: str = "python3"
    env: tuple[tuple[str, str], ...] = ()       # extra environment variables (an environment's)
    kernel_dirs: tuple[str, ...] = ()           # extra kernelspec folders (kernelspecs nbjobs made)

    @property
    def label(self) -> str:
        return self.kernel_name + (" +env" if self.env else "")


# -- kernelspecs -----------------------------------------------------------------------------------

@dataclass
class _Spec:
    argv: list[str]
    env: dict[str, str]
    language: str
    resource_dir: str
    ipykernel: bool
    forkable: bool


_spec_cache: dict[KernelKey, _Spec] = {}
_spec_lock = threading.Lock()


def resolve_spec(key: KernelKey) -> _Spec:
    """The kernelspec of `key` (raises jupyter_client's NoSuchKernel, with its message)."""
    with _spec_lock:
        if key in _spec_cache:
            return _spec_cache[key]
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    if key.kernel_dirs:
        manager.kernel_dirs = [*key.kernel_dirs, *manager.kernel_dirs]
    spec = manager.get_kernel_spec(key.kernel_name)
    argv = list(spec.argv)
    env = {k: string.Template(str(v)).safe_substitute(os.environ) for k, v in (spec.env or {}).items()}
    env.update(dict(key.env))
    ipykernel = any("ipykernel" in a for a in argv)
    forkable = (len(argv) >= 3 and argv[1] == "-m" and argv[2] in ("ipykernel_launcher", "ipykernel")
                and "python" in Path(argv[0]).name.lower())
    if argv and argv[0] in ("python", "python3") and forkable:
        argv[0] = sys.executable  # what jupyter_client does for the native kernel
    resolved = _Spec(argv=argv, env=env, language=spec.language or "python",
                     resource_dir=spec.resource_dir or "", ipykernel=ipykernel, forkable=forkable)
    with _spec_lock:
        _spec_cache[key] = resolved
    return resolved


def _connection_file(transport: str) -> tuple[str, dict]:
    from jupyter_client.connect import write_connection_file

    name = f"nbjobs-{uuid.uuid4().hex[:16]}"
    folder = tempfile.gettempdir()
    ip = os.path.join(folder, name) if transport == "ipc" else "127.0.0.1"
    path, info = write_connection_file(os.path.join(folder, f"{name}.json"), ip=ip, transport=transport,
                                       key=uuid.uuid4().hex.encode())
    return path, dict(info)


def _remove_connection_files(path: str, info: dict) -> None:
    for p in [path] + ([f"{info['ip']}-{info[k]}" for k in
                        ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
                       if info.get("transport") == "ipc" else []):
        try:
            os.unlink(p)
        except OSError:
            pass


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


# -- processes ---------------------------------------------------------------------------------------

class _ForkServer:
    """One `forkserver.py` process per forkable kernelspec+environment (on the manager's loop)."""

    def __init__(self, spec: _Spec, loop: asyncio.AbstractEventLoop):
        self.spec = spec
        self.loop = loop
        self.proc: subprocess.Popen | None = None
        self._rfd: int | None = None
        self._buffer = b""
        self._next = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._exits: dict[int, asyncio.Future] = {}
        self.children: set[int] = set()
        self.broken: str | None = None
        self._ready: asyncio.Future | None = None

    async def start(self, preforked: tuple[int, int, int] | None = None) -> None:
        if preforked is not None:  # a server this process forked at start-up (a Dask worker's)
            pid, wfd, rfd = preforked
            self.proc = _Adopted(pid, wfd)
        else:
            rfd, wfd = os.pipe()
            env = dict(os.environ)
            env.update(self.spec.env)
            env.pop("JPY_PARENT_PID", None)
            env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's "frozen modules" note at preload
            try:
                self.proc = subprocess.Popen([self.spec.argv[0], _FORKSERVER, str(wfd)], stdin=subprocess.PIPE,
                                             pass_fds=(wfd,), env=env, start_new_session=True, close_fds=True)
            finally:
                os.close(wfd)
        self._rfd = rfd
        os.set_blocking(rfd, False)
        self._ready = self.loop.create_future()
        self.loop.add_reader(rfd, self._on_readable)
        try:
            first = await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except asyncio.TimeoutError:
            self.close()
            raise KernelStartError("the kernel fork server did not start in time") from None
        except BaseException:  # cancelled while starting (the pool shuts down): do not leak the process
            self.close()
            raise
        if not first.get("ready"):
            self.close()
            raise KernelStartError(f"the kernel fork server could not preload ipykernel: {first.get('error')}")

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._rfd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lost("the kernel fork server exited")
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "ready" in message and self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
            elif "exit" in message:
                pid = message["exit"]
                self.children.discard(pid)
                fut = self._exits.pop(pid, None)
                if fut is None:
                    fut = self._exits[pid] = self.loop.create_future()  # noted before anyone waits
                if not fut.done():
                    fut.set_result(message.get("status"))
            elif message.get("id") in self._pending:
                fut = self._pending.pop(message["id"])
                if not fut.done():
                    fut.set_result(message)

    def _lost(self, why: str) -> None:
        self.broken = why
        if self._rfd is not None:
            try:
                self.loop.remove_reader(self._rfd)
                os.close(self._rfd)
            except (OSError, ValueError):
                pass
            self._rfd = None
        for fut in [*self._pending.values(), *( [self._ready] if self._ready else [])]:
            if not fut.done():
                fut.set_exception(KernelStartError(why))
        self._pending.clear()
        for pid in list(self.children):
            _killpg(pid)
        for fut in self._exits.values():
            if not fut.done():
                fut.set_result(None)

    async def _request(self, message: dict) -> dict:
        if self.broken or self.proc is None or self.proc.stdin is None:
            raise KernelStartError(self.broken or "the kernel fork server is not running")
        self._next += 1
        message["id"] = self._next
        fut = self.loop.create_future()
        self._pending[self._next] = fut
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self._pending.pop(self._next, None)
            self._lost(f"the kernel fork server is gone ({exc})")
            raise KernelStartError(self.broken) from None
        return await asyncio.wait_for(fut, START_TIMEOUT)

    async def fork(self, argv: list[str], cwd: str | None, env: dict[str, str]) -> int:
        reply = await self._request({"argv": argv, "cwd": cwd, "env": env})
        if "error" in reply:
            raise KernelStartError(reply["error"])
        pid = reply["pid"]
        self.children.add(pid)
        return pid

    def alive(self, pid: int) -> bool:
        fut = self._exits.get(pid)
        if fut is not None and fut.done():
            return False
        return pid in self.children and pid_alive(pid)

    async def wait_exit(self, pid: int, timeout: float) -> None:
        if pid not in self.children and pid not in self._exits:
            return
        fut = self._exits.setdefault(pid, self.loop.create_future())
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            pass
        self._exits.pop(pid, None)

    def kill_all(self) -> None:
        for pid in list(self.children):
            _killpg(pid)

    def close(self, wait: float = 0.5) -> None:
        """Kill the server's kernels and the server: closing its stdin makes it kill and reap its
        kernels and exit; after `wait` seconds it is killed. Either way it is reaped here (no zombies,
        also where PID 1 reaps nothing, as in many containers)."""
        self.kill_all()
        proc = self.proc
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
            deadline = time.monotonic() + wait
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
                deadline = time.monotonic() + 1.0
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
        if self._rfd is not None:
            self._lost("closed")


class _Adopted:
    """A fork server forked by this process (not a Popen): the parts of Popen `_ForkServer` uses."""

    def __init__(self, pid: int, request_fd: int):
        self.pid = pid
        self.stdin = os.fdopen(request_fd, "wb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


_preforked: tuple[int, int, int] | None = None  # set in Dask workers at start-up (dask_preload)


def _take_preforked(spec: _Spec) -> tuple[int, int, int] | None:
    """The fork server this process forked at start-up, for a kernelspec of this very interpreter."""
    global _preforked
    if _preforked is None or spec.env or os.path.realpath(spec.argv[0]) != os.path.realpath(sys.executable):
        return None
    taken, _preforked = _preforked, None
    return taken


class KernelProcess:
    """A started kernel: a forked child of a fork server, or an ordinary child process."""

    def __init__(self, pid: int, server: _ForkServer | None = None, popen: subprocess.Popen | None = None):
        self.pid = pid
        self.server = server
        self.popen = popen

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.server.alive(self.pid) if self.server else pid_alive(self.pid)

    def exit_status(self) -> int | None:
        if self.popen is not None:
            return self.popen.poll()
        return None

    def kill(self) -> None:
        """SIGKILL the kernel's process group (thread-safe, idempotent)."""
        _killpg(self.pid)

    async def wait(self, timeout: float = 5.0) -> None:
        if self.server is not None:
            await self.server.wait_exit(self.pid, timeout)
            return
        deadline = time.monotonic() + timeout
        while self.popen is not None and self.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


@functools.lru_cache(maxsize=None)
def _client_class() -> type:
    from jupyter_client.asynchronous import AsyncKernelClient

    class PooledKernelClient(AsyncKernelClient):
        """A client whose `is_alive` asks the pool (there is no KernelManager behind it)."""

        _nbjobs_process: Any = None

        async def _nbjobs_is_alive(self) -> bool:
            process = self._nbjobs_process
            return process.alive() if process is not None else True

        is_alive = _nbjobs_is_alive

    return PooledKernelClient


@dataclass(eq=False)
class PooledKernel:
    """A ready kernel taken from a pool: its process, a connected client, its language_info."""

    key: KernelKey
    process: KernelProcess
    client: Any
    connection_file: str
    connection_info: dict
    language_info: dict
    kernel_name: str
    boot_seconds: float = 0.0
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.killed = True
        self.process.kill()

    async def dispose(self) -> None:
        """Kill, disconnect and remove the connection files (in the background, after use)."""
        if not self.killed:
            self.kill()
        try:
            self.client.stop_channels()
        except Exception:  # pragma: no cover - best effort
            pass
        await self.process.wait(5.0)
        _remove_connection_files(self.connection_file, self.connection_info)


# -- the pool -----------------------------------------------------------------------------------------

class KernelPool:
    """Ready kernels of one `KernelKey`; lives on the manager's loop."""

    def __init__(self, manager: PoolManager, key: KernelKey, size: int):
        self.manager = manager
        self.key = key
        self.size = size
        self.ready: collections.deque[PooledKernel] = collections.deque()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.starting = 0
        self.busy: set[PooledKernel] = set()
        self.closed = False
        self.failure: BaseException | None = None
        self.started = 0
        self.spec: _Spec | None = None
        self.server: _ForkServer | None = None
        self._server_lock = asyncio.Lock()
        self._fork_failed = False
        self._boots: set[asyncio.Task] = set()
        self.last_used = time.monotonic()

    # sizing and refill
    def resize(self, size: int) -> None:
        self.size = max(0, size)
        self._top_up()

    def _top_up(self) -> None:
        if self.closed or self.failure is not None:
            return
        want = self.size + len([w for w in self.waiters if not w.done()])
        need = want - len(self.ready) - self.starting
        limit = max(self.size, len(self.waiters), 1)  # parallel boots: more only slows each one
        need = min(need, limit - self.starting)
        for _ in range(max(0, need)):
            self.starting += 1
            task = self.manager.loop.create_task(self._boot())
            self._boots.add(task)
            task.add_done_callback(self._boots.discard)

    async def acquire(self) -> PooledKernel:
        if self.closed:
            raise KernelStartError("the kernel pool is shut down")
        self.failure = None  # a new request: try again after an earlier failure
        self.last_used = time.monotonic()
        while self.ready:
            kernel = self.ready.popleft()
            if kernel.process.alive():
                self.busy.add(kernel)
                self._top_up()
                return kernel
            self.manager.dispose(kernel)
        fut = self.manager.loop.create_future()
        self.waiters.append(fut)
        self._top_up()
        try:
            kernel = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._offer(fut.result())  # handed over as we were cancelled: keep it for the next one
            raise
        finally:
            try:
                self.waiters.remove(fut)
            except ValueError:
                pass
        self.busy.add(kernel)
        self._top_up()
        return kernel

    def release(self, kernel: PooledKernel) -> None:
        """A used kernel: never reused; killed and cleaned up in the background."""
        self.busy.discard(kernel)
        self.manager.dispose(kernel)

    def _offer(self, kernel: PooledKernel) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(kernel)
                return
        if self.closed:
            self.manager.dispose(kernel)
        else:
            self.ready.append(kernel)

    async def _boot(self) -> None:
        try:
            kernel = await self._start_with_retries()
        except asyncio.CancelledError:
            self.starting -= 1
            raise
        except BaseException as exc:
            self.starting -= 1
            self.failure = exc
            waiters = [w for w in self.waiters if not w.done()]
            if waiters:  # the oldest waiter learns why; a later acquire tries again
                waiters[0].set_exception(exc)
            return
        self.starting -= 1
        self.started += 1
        self._offer(kernel)

    async def _start_with_retries(self) -> PooledKernel:
        from jupyter_client.kernelspec import NoSuchKernel

        last: BaseException | None = None
        for attempt in range(START_ATTEMPTS):
            try:
                return await self._start()
            except (NoSuchKernel, FileNotFoundError, PermissionError):
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a port clash, a kernel that died while starting, ...
                last = exc
                log.debug("kernel start attempt %d failed: %s", attempt + 1, exc)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise KernelStartError(f"could not start kernel '{self.key.kernel_name}' "
                               f"({START_ATTEMPTS} attempts): {last}") from last

    async def _fork_server(self) -> _ForkServer | None:
        if self._fork_failed or not fork_enabled() or not self.spec.forkable:
            return None
        async with self._server_lock:
            if self.server is not None and not self.server.broken:
                return self.server
            server = _ForkServer(self.spec, self.manager.loop)
            try:
                await server.start(_take_preforked(self.spec))
            except KernelStartError as exc:
                log.warning("nbjobs: forking kernels is unavailable, starting them normally: %s", exc)
                self._fork_failed = True
                return None
            self.server = server
            return server

    async def _start(self) -> PooledKernel:
        if self.spec is None:
            self.spec = resolve_spec(self.key)  # a few small files; on this loop (no import races)
        spec = self.spec
        began = time.monotonic()
        transport = "ipc" if (os.name == "posix" and spec.ipykernel) else "tcp"
        path, info = _connection_file(transport)
        args = [a.replace("{connection_file}", path).replace("{resource_dir}", spec.resource_dir)
                .replace("{prefix}", sys.prefix) for a in spec.argv]
        if spec.ipykernel:
            args.append(HISTORY_ARG)
        try:
            server = await self._fork_server()
            if server is not None:
                pid = await server.fork(args[3:], None, {})
                process = KernelProcess(pid, server=server)
            else:
                env = dict(os.environ)
                env.update(spec.env)
                env["JPY_PARENT_PID"] = str(os.getpid())  # the kernel exits if nbjobs dies
                popen = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                         close_fds=True)
                process = KernelProcess(popen.pid, popen=popen)
        except BaseException:
            _remove_connection_files(path, info)
            raise
        client = _client_class()(context=self.manager.zmq_context, connection_file=path)
        client.load_connection_file()
        client._nbjobs_process = process
        kernel = PooledKernel(self.key, process, client, path, info, {}, self.key.kernel_name)
        self.manager.track(kernel)
        try:
            client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
            kernel.language_info = await _wait_ready(client, process, START_TIMEOUT)
            if spec.ipykernel:  # a fresh IPython's first cell costs ~20 ms of one-time setup: pay it here
                await _run_silently(client, process, "pass", START_TIMEOUT)
        except BaseException:
            self.manager.dispose(kernel)
            raise
        kernel.boot_seconds = time.monotonic() - began
        return kernel

    async def close(self) -> None:
        """Kill the idle and starting kernels; busy ones are killed when released."""
        self.closed = True
        for task in list(self._boots):
            task.cancel()
        while self.ready:
            self.manager.dispose(self.ready.popleft())
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(KernelStartError("the kernel pool is shut down"))
        if self._boots:
            await asyncio.gather(*self._boots, return_exceptions=True)


async def _wait_ready(client: Any, process: KernelProcess, timeout: float) -> dict:
    """Ready = a kernel_info reply and the IOPub `idle` of that same request (so IOPub is connected)."""
    deadline = time.monotonic() + timeout
    while True:
        msg_id = client.kernel_info()
        reply = None
        while reply is None:
            if not process.alive():
                status = process.exit_status()
                raise KernelStartError(f"the kernel exited while starting"
                                       f"{f' (exit code {status})' if status is not None else ''}")
            if time.monotonic() > deadline:
                raise KernelStartError(f"the kernel did not answer within {timeout:g} s")
            try:
                msg = await client.get_shell_msg(timeout=0.25)
            except Exception:  # queue.Empty
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        iopub_deadline = time.monotonic() + 0.5
        while time.monotonic() < iopub_deadline:
            try:
                msg = await client.get_iopub_msg(timeout=max(0.01, iopub_deadline - time.monotonic()))
            except Exception:
                break
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"):
                return reply["content"].get("language_info") or {}
        # the SUB socket joined after that `idle` was published: ask again


async def _run_silently(client: Any, process: KernelProcess, code: str, timeout: float) -> None:
    """Execute `code` silently (no output, no history, no execution count) and wait until it is done."""
    msg_id = client.execute(code, silent=True, store_history=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise KernelStartError("the kernel exited while starting")
        try:
            msg = await client.get_iopub_msg(timeout=0.25)
        except Exception:  # queue.Empty
            continue
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"):
            return
    raise KernelStartError(f"the kernel did not finish its warm-up within {timeout:g} s")


# -- the manager ---------------------------------------------------------------------------------------

class ExecutionHandle:
    """One execution on a pooled kernel; lets any thread kill it (cancel, timeout, remote kill)."""

    def __init__(self, execution_id: str | None = None):
        self.execution_id = execution_id or uuid.uuid4().hex
        self.kernel: PooledKernel | None = None
        self.killed = False
        self.finished: concurrent.futures.Future = concurrent.futures.Future()
        self.on_kill: list[Callable[[], None]] = []   # e.g. stop a script's subprocess

    def kill(self) -> None:
        self.killed = True
        kernel = self.kernel
        if kernel is not None:
            kernel.kill()
        for callback in list(self.on_kill):
            try:
                callback()
            except Exception:  # pragma: no cover - best effort
                pass

    def attach(self, kernel: PooledKernel) -> None:
        self.kernel = kernel
        if self.killed:
            kernel.kill()


class PoolManager:
    """The process's kernel pools and the background loop thread they live on."""

    def __init__(self, size: int | None = None):
        skip_slow_imports()
        self.size = default_pool_size() if size is None else size
        self.sizes: dict[KernelKey, int] = {}
        self.pools: dict[KernelKey, KernelPool] = {}
        self.kernels: "weakref.WeakSet[PooledKernel]" = weakref.WeakSet()
        self.executions: dict[str, ExecutionHandle] = {}
        self.killed_executions: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.closing = False
        self._disposals: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

        def main() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            ready.set()
            try:
                self.loop.run_forever()
            finally:
                self.loop.close()

        self.thread = threading.Thread(target=main, name="nbjobs-kernels", daemon=True)
        self.thread.start()
        ready.wait()
        import zmq
        import zmq.asyncio

        self.zmq_context = zmq.asyncio.Context()
        self.zmq_context.setsockopt(zmq.RECONNECT_IVL, 10)  # a kernel binds ~0.1 s after we connect
        self.zmq_context.setsockopt(zmq.LINGER, 0)

    # -- called from any thread
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future:
        """Run a coroutine on the pool loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the pool loop and wait for it (blocking; not from the pool loop)."""
        return self.submit(coro).result(timeout)

    def set_size(self, size: int, key: KernelKey | None = None) -> None:
        """Warm pool size: for one key, or the default for all."""
        def apply() -> None:
            if key is None:
                self.size = size
                for k, pool in self.pools.items():
                    if k not in self.sizes:
                        pool.resize(size)
            else:
                self.sizes[key] = size
                if key in self.pools:
                    self.pools[key].resize(size)
        self.loop.call_soon_threadsafe(apply)

    def prestart(self, keys: list[KernelKey]) -> None:
        """Start filling the pools of `keys` now (returns at once)."""
        def apply() -> None:
            for key in keys:
                self.pool(key)._top_up()
        self.loop.call_soon_threadsafe(apply)

    async def warm(self, keys: list[KernelKey]) -> None:
        """On the pool loop: start filling the pools of `keys`, then import the executor's modules
        while those kernels boot in their own processes."""
        for key in keys:
            self.pool(key)._top_up()
        await asyncio.sleep(0.01)
        from .notebook_exec import warm_imports
        warm_imports()

    def kill_execution(self, execution_id: str) -> bool:
        """Kill the kernel of an execution (also one not started yet: it will not start)."""
        self.killed_executions[execution_id] = None
        while len(self.killed_executions) > 10000:
            self.killed_executions.popitem(last=False)
        handle = self.executions.get(execution_id)
        if handle is not None:
            handle.kill()
            return True
        return False

    def stats(self) -> dict[str, Any]:
        """Live kernel pids by state, for tests and diagnostics."""
        return self.run(self._stats(), 30)

    async def _stats(self) -> dict[str, Any]:
        ready = [k.pid for p in list(self.pools.values()) for k in list(p.ready)]
        busy = [k.pid for p in list(self.pools.values()) for k in list(p.busy)]
        live = [k.pid for k in list(self.kernels) if k.process.alive()]
        servers = [p.server.proc.pid for p in list(self.pools.values())
                   if p.server is not None and p.server.proc is not None and p.server.proc.poll() is None]
        return {"ready": ready, "busy": busy, "live": live, "servers": servers,
                "starting": sum(p.starting for p in list(self.pools.values())),
                "disposing": len(self._disposals)}

    # -- on the pool loop
    def pool(self, key: KernelKey) -> KernelPool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = KernelPool(self, key, self.sizes.get(key, self.size))
        pool.last_used = time.monotonic()
        if self._reaper is None:
            self._reaper = self.loop.create_task(self._reap_idle())
        return pool

    async def _reap_idle(self) -> None:
        """Empty pools nobody used for `idle_seconds()` (a long-lived server keeps no idle kernels)."""
        while True:
            limit = idle_seconds()
            await asyncio.sleep(max(0.05, min(30.0, limit / 4)))
            now = time.monotonic()
            for key, pool in list(self.pools.items()):
                if now - pool.last_used >= limit and not pool.busy and not pool.waiters:
                    del self.pools[key]
                    await pool.close()
                    if pool.server is not None:
                        pool.server.close()

    async def acquire(self, key: KernelKey) -> PooledKernel:
        return await self.pool(key).acquire()

    def release(self, kernel: PooledKernel) -> None:
        pool = self.pools.get(kernel.key)
        if pool is not None:
            pool.release(kernel)
        else:
            self.dispose(kernel)

    def track(self, kernel: PooledKernel) -> None:
        self.kernels.add(kernel)

    def dispose(self, kernel: PooledKernel) -> None:
        kernel.kill()  # at once; the rest (disconnect, reap, files) in the background
        task = self.loop.create_task(kernel.dispose())
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def drain(self) -> None:
        """Wait until every used kernel has been killed and reaped."""
        while self._disposals:
            await asyncio.gather(*list(self._disposals), return_exceptions=True)

    async def _close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in list(self.pools.values()):
            await pool.close()
        for pool in list(self.pools.values()):
            for kernel in list(pool.busy):
                self.dispose(kernel)
        await self.drain()
        for pool in list(self.pools.values()):
            if pool.server is not None:
                pool.server.close()
        for kernel in list(self.kernels):
            kernel.kill()
        try:
            self.zmq_context.destroy(linger=0)
        except Exception:  # pragma: no cover
            pass

    def shutdown(self, timeout: float = 30.0) -> None:
        """Kill every kernel and the fork servers, stop the loop thread (blocking)."""
        if self.closing:
            return
        self.closing = True
        if threading.current_thread() is self.thread:  # pragma: no cover - never from the pool loop
            raise RuntimeError("shutdown() must not be called from the kernel pool's own thread")
        try:
            self.run(self._close(), timeout)
        except Exception as exc:  # pragma: no cover
            log.warning("nbjobs: kernel pool shutdown: %s", exc)
            self.kill_now()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)

    def kill_now(self) -> None:
        """At interpreter exit: SIGKILL everything without the loop."""
        for kernel in list(self.kernels):
            kernel.kill()
        for pool in list(self.pools.values()):
            if pool.server is not None:
                pool.server.close(wait=0.3)


_manager: PoolManager | None = None
_manager_lock = threading.Lock()


def pool_manager(create: bool = True) -> PoolManager | None:
    """The process's pool manager (started on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None and create:
            _manager = PoolManager()
        return _manager


def shutdown_pools() -> None:
    """Kill every pooled kernel of this process (a later use starts a new pool)."""
    global _manager
    with _manager_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.shutdown()


@atexit.register
def _at_exit() -> None:
    manager = _manager
    if manager is not None:
        manager.kill_now()
