"""Kernel processes: connection files, the fork server client, and a started kernel's process.

ipykernel kernels are forked from a fork server (`forkserver.py`, one per forkable kernelspec and
environment) that imported ipykernel once; other kernels are ordinary child processes.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ..._proc import pid_alive
from .spec import START_TIMEOUT, KernelStartError, LaunchSpec

FORKSERVER_SCRIPT = str(Path(__file__).with_name("forkserver.py"))


def connection_file(transport: str) -> tuple[str, dict]:
    """A new connection file (ipc sockets in the temp folder, or tcp on 127.0.0.1): its path and info."""
    from jupyter_client.connect import write_connection_file

    name = f"nbjobs-{uuid.uuid4().hex[:16]}"
    folder = tempfile.gettempdir()
    ip = os.path.join(folder, name) if transport == "ipc" else "127.0.0.1"
    path, info = write_connection_file(os.path.join(folder, f"{name}.json"), ip=ip, transport=transport,
                                      key=uuid.uuid4().hex.encode())
    return path, dict(info)


def remove_connection_files(path: str, info: dict) -> None:
    for p in [path] + ([f"{info['ip']}-{info[k]}" for k in
                        ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
                       if info.get("transport") == "ipc" else []):
        try:
            os.unlink(p)
        except OSError:
            pass


def killpg(pid: int) -> None:
    """SIGKILL the process group of `pid` (else the process itself); never raises."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


class ForkServer:
    """One `forkserver.py` process per forkable kernelspec+environment (on the manager's loop)."""

    def __init__(self, spec: LaunchSpec, loop: asyncio.AbstractEventLoop):
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
            self.proc = AdoptedServer(pid, wfd)
        else:
            rfd, wfd = os.pipe()
            env = dict(os.environ)
            env.update(self.spec.env)
            env.pop("JPY_PARENT_PID", None)
            env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's "frozen modules" note at preload
            try:
                self.proc = subprocess.Popen([self.spec.argv[0], FORKSERVER_SCRIPT, str(wfd)],
                                             stdin=subprocess.PIPE, pass_fds=(wfd,), env=env,
                                             start_new_session=True, close_fds=True)
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
            killpg(pid)
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
            killpg(pid)

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


class AdoptedServer:
    """A fork server forked by this process (not a Popen): the parts of Popen `ForkServer` uses."""

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


def set_preforked(server: tuple[int, int, int] | None) -> None:
    """A fork server this process forked at start-up: (pid, request fd, reply fd), adopted by the first pool."""
    global _preforked
    _preforked = server


def take_preforked(spec: LaunchSpec) -> tuple[int, int, int] | None:
    """The fork server this process forked at start-up, for a kernelspec of this very interpreter."""
    global _preforked
    if _preforked is None or spec.env or os.path.realpath(spec.argv[0]) != os.path.realpath(sys.executable):
        return None
    taken, _preforked = _preforked, None
    return taken


class KernelProcess:
    """A started kernel: a forked child of a fork server, or an ordinary child process."""

    def __init__(self, pid: int, server: ForkServer | None = None, popen: subprocess.Popen | None = None):
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
        killpg(self.pid)

    async def wait(self, timeout: float = 5.0) -> None:
        if self.server is not None:
            await self.server.wait_exit(self.pid, timeout)
            return
        deadline = time.monotonic() + timeout
        while self.popen is not None and self.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

