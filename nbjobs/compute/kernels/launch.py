"""Starting one kernel and knowing when it is ready; `PooledKernel`, a ready kernel and its client.

Ready = a kernel_info reply received and the IOPub `idle` of that same request seen (so IOPub is
connected): no fixed waits. Local ipykernel kernels use the ipc transport (no TCP port races).
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .process import ForkServer, KernelProcess, connection_file, remove_connection_files
from .spec import HISTORY_ARG, START_TIMEOUT, KernelKey, KernelStartError, LaunchSpec


class KernelHost(Protocol):
    """What starting a kernel needs from the pool manager."""

    zmq_context: Any

    def track(self, kernel: PooledKernel) -> None: ...

    def dispose(self, kernel: PooledKernel) -> None: ...


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
        remove_connection_files(self.connection_file, self.connection_info)


async def start_kernel(key: KernelKey, spec: LaunchSpec, server: ForkServer | None,
                       host: KernelHost) -> PooledKernel:
    """Start a kernel of `spec` (forked from `server` when given) and wait until it is ready."""
    transport = "ipc" if (os.name == "posix" and spec.ipykernel) else "tcp"
    path, info = connection_file(transport)
    args = [a.replace("{connection_file}", path).replace("{resource_dir}", spec.resource_dir)
            .replace("{prefix}", sys.prefix) for a in spec.argv]
    if spec.ipykernel:
        args.append(HISTORY_ARG)
    try:
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
        remove_connection_files(path, info)
        raise
    client = _client_class()(context=host.zmq_context, connection_file=path)
    client.load_connection_file()
    client._nbjobs_process = process
    kernel = PooledKernel(key, process, client, path, info, {}, key.kernel_name)
    host.track(kernel)
    try:
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        kernel.language_info = await _wait_ready(client, process, START_TIMEOUT)
        if spec.ipykernel:  # a fresh IPython's first cell costs ~20 ms of one-time setup: pay it here
            await _run_silently(client, process, "pass", START_TIMEOUT)
    except BaseException:
        host.dispose(kernel)
        raise
    return kernel


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
