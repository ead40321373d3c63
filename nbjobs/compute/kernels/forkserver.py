"""A kernel fork server: one process that has imported ipykernel forks a fresh kernel per request.

Run as a script with the kernelspec's own interpreter and environment (stdlib only here, so it works
in interpreters where nbjobs is not installed)::

    <python> forkserver.py

Each kernel is a new process (its own memory, globals, imports, cwd), but it skips the ~0.2-0.4 CPU-s
of importing IPython/ipykernel/debugpy, which the server did once. That import cost, not the kernel's
own setup, is what limits how many fresh kernels per second a machine can start.

Protocol: JSON lines. Requests on stdin, replies on the file descriptor named by argv[1].
    {"id": 1, "argv": ["-f", "/tmp/kernel-x.json", ...], "cwd": "/x", "env": {"K": "V"}}
        -> {"id": 1, "pid": 1234}          (or {"id": 1, "error": "..."})
    {"id": 2, "kill": [1234, ...]}         -> {"id": 2, "ok": true}   (SIGKILL their process groups)
    {"id": 3, "ping": true}                -> {"id": 3, "ok": true, "threads": 1}
and unprompted {"exit": 1234, "status": -9} when a kernel ended (reaped here).
stdin closing (the nbjobs process ended or shut the pool down) kills every kernel it forked.

Safety: the server never starts a thread, an event loop or a ZMQ context, so forking it is safe; a
child reseeds `random`, resets signal handlers, starts its own session (process group) and then
runs ipykernel exactly as ``python -m ipykernel_launcher`` would.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading

PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
    "ipykernel.comm", "IPython.core.interactiveshell", "IPython.core.debugger", "IPython.core.completer",
    "IPython.core.magics", "IPython.display", "comm", "jupyter_client.session",
)
SOFT_PRELOAD = ("nbjobs.kernel", "matplotlib_inline.backend_inline")  # nice to have, never required


def _preload() -> list[str]:
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    loaded = []
    for name in SOFT_PRELOAD:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:
            pass
    return loaded


def _child(request: dict, protocol_fds: tuple[int, ...]) -> None:
    """In the forked child: become a kernel. Never returns."""
    code = 1
    try:
        os.setsid()
        for fd in protocol_fds:
            if fd > 2:
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.update(request.get("env") or {})
        parent = str(os.getppid())
        os.environ["JPY_PARENT_PID"] = parent
        if request.get("cwd"):
            os.chdir(request["cwd"])
        import random
        random.seed()
        _name_process(b"nbjobs-kernel")
        # the trait's default was read from the environment at import time, here: pass it explicitly
        # (the kernel then exits when this server dies, and prints no "--existing" banner)
        sys.argv = ["ipykernel_launcher", *request["argv"], f"--IPKernelApp.parent_handle={parent}"]
        from ipykernel import kernelapp
        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _name_process(name: bytes) -> None:
    """Best effort: the name `ps -o comm` / `top` show (the command line stays the server's)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def main() -> int:
    """`python forkserver.py REPLY_FD`: requests on stdin."""
    reply_fd = int(sys.argv[1])
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this folder is not the kernel's import path (as ipykernel_launcher drops cwd)
    os.dup2(2, 1)  # anything printed to stdout (here or by kernels at fd level) goes to stderr
    return serve(0, reply_fd)


def prefork() -> tuple[int, int, int] | None:
    """Fork a fork server from this process now, while it has one thread (a Dask worker at start-up,
    whose code the multiprocessing fork server imported: the kernel server then imports nothing).

    Returns (pid, request fd to write, reply fd to read), or None when this process has threads.
    """
    if threading.active_count() != 1 or not hasattr(os, "fork"):
        return None
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server: keep only stdio and its two pipe ends
        code = 1
        try:
            os.setsid()
            keep = {0, 1, 2, request_r, reply_w}
            for fd in _open_fds():
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(2, 1)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            code = serve(request_r, reply_w)
        finally:
            os._exit(code)
    os.close(request_r)
    os.close(reply_w)
    return pid, request_w, reply_r


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - no /proc
        import resource
        return list(range(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 4096)))


def serve(request_fd: int, reply_fd: int) -> int:
    """Preload ipykernel, then fork a kernel per request read from `request_fd` (until it closes)."""
    children: set[int] = set()

    def send(message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(reply_fd, data):]

    _name_process(b"nbjobs-forksrv")
    try:
        preloaded = _preload()
        if threading.active_count() != 1:
            raise RuntimeError(f"importing ipykernel started {threading.active_count() - 1} thread(s); "
                               "forking is not safe")
        send({"ready": True, "pid": os.getpid(), "preloaded": preloaded})
    except BaseException as exc:  # the caller falls back to ordinary kernel launches
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1

    buffer = b""
    try:
        while True:
            readable, _, _ = select.select([request_fd], [], [], 0.05)
            while children:  # reap ended kernels
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.discard(pid)
                send({"exit": pid, "status": os.waitstatus_to_exitcode(status)})
            if not readable:
                continue
            chunk = os.read(request_fd, 65536)
            if not chunk:
                break  # our parent closed the pipe (or died)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                request = json.loads(line)
                rid = request.get("id")
                if "kill" in request:
                    for pid in request["kill"]:
                        if pid in children:
                            _kill(pid)
                    send({"id": rid, "ok": True})
                elif "ping" in request:
                    send({"id": rid, "ok": True, "threads": threading.active_count()})
                elif "argv" in request:
                    try:
                        pid = os.fork()
                    except OSError as exc:
                        send({"id": rid, "error": f"fork failed: {exc}"})
                        continue
                    if pid == 0:
                        _child(request, (request_fd, reply_fd))
                    children.add(pid)
                    send({"id": rid, "pid": pid})
    finally:
        for pid in list(children):
            _kill(pid)
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
