"""The service host (nbjobs.services): lifecycle, crash and restart with backoff, isolation of a blocking
or raising service, the once-per-workspace lease (two real processes, kill -9 of the holder), the
`recovery` service, entry points, the CLI verbs, and hosting by `nbjobs serve` and the Jupyter extension."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import requests

from nbjobs.cli import main
from nbjobs.services import LoopService, Service, ServiceHost, registry
from nbjobs.services.recovery import RecoveryService
from nbjobs.store import Store
from conftest import ROOT, stop_process, wait_for, write_script

pytestmark = [pytest.mark.timeout(120), pytest.mark.server]

FAST = dict(lease_ttl=1.0, backoff=(0.05, 0.4), stop_timeout=2.0, tick=0.05)


class Ticker(Service):
    """Beats every 20 ms until stopped."""

    name = "ticker"

    def __init__(self, name: str = "ticker", once: bool = False):
        super().__init__()
        self.name, self.once_per_workspace = name, once  # type: ignore[misc]
        self.starts = 0
        self._stop: asyncio.Event | None = None

    async def start(self, context) -> None:
        self.starts += 1
        self._stop = asyncio.Event()
        while not self._stop.is_set():
            self.beat()
            try:
                await asyncio.wait_for(self._stop.wait(), 0.02)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        self._stop.set()


class Crashy(Service):
    """Raises on its first `crashes` starts, then runs until stopped."""

    name = "crashy"

    def __init__(self, crashes: int):
        super().__init__()
        self.crashes, self.start_times = crashes, []
        self._stop: asyncio.Event | None = None

    async def start(self, context) -> None:
        self.start_times.append(time.monotonic())
        if len(self.start_times) <= self.crashes:
            raise RuntimeError(f"boom {len(self.start_times)}")
        self._stop = asyncio.Event()
        self.beat()
        await self._stop.wait()

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()


class Blocker(Service):
    """Blocks its thread (time.sleep in a coroutine) and ignores stop: it delays nobody else."""

    name = "blocker"

    async def start(self, context) -> None:
        time.sleep(1.5)

    async def stop(self) -> None:
        raise RuntimeError("cannot stop")


def _state(host: ServiceHost, name: str) -> str:
    return host.health()["services"][name]["state"]


def test_host_starts_reports_health_and_stops(tmp_path):
    ticker = Ticker()
    host = ServiceHost([ticker], home=tmp_path, **FAST).start()
    try:
        wait_for(lambda: _state(host, "ticker") == "running" and ticker.last_beat, 10, "the ticker to run")
        health = host.health()
        assert health["holder"] == host.holder and health["pid"] == os.getpid()
        report = health["services"]["ticker"]
        assert report["restarts"] == 0 and report["last_error"] is None and "lease" not in report
        beat = ticker.last_beat
        wait_for(lambda: ticker.last_beat > beat, 5, "another beat")
        store = Store(tmp_path)
        rows = wait_for(lambda: [h for h in store.service_hosts() if h["holder"] == host.holder
                                 and h["health"].get("services", {}).get("ticker", {}).get("state") == "running"],
                        10, "the host's heartbeat row")
        assert rows[0]["alive"] and rows[0]["pid"] == os.getpid()
    finally:
        host.stop()
    assert ticker.state == "stopped" and ticker.starts == 1
    assert store.service_hosts() == []  # removed on stop
    store.close()


def test_a_crashing_service_is_restarted_with_backoff_and_others_keep_running(tmp_path):
    crashy, ticker = Crashy(crashes=3), Ticker()
    host = ServiceHost([crashy, ticker], home=tmp_path, **FAST).start()
    try:
        wait_for(lambda: len(crashy.start_times) == 4 and _state(host, "crashy") == "running", 20,
                 "the fourth start")
        report = host.health()["services"]["crashy"]
        assert report["restarts"] == 3 and report["last_error"] == "RuntimeError: boom 3"
        gaps = [b - a for a, b in zip(crashy.start_times, crashy.start_times[1:])]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # exponential: 0.05, 0.1, 0.2 s
        assert ticker.starts == 1 and _state(host, "ticker") == "running"  # untouched by the crash loop
    finally:
        host.stop()
    assert crashy.state == ticker.state == "stopped"


def test_a_blocking_and_a_raising_service_do_not_stop_the_others(tmp_path):
    class Raiser(Service):
        name = "raiser"

        async def start(self, context) -> None:
            raise ValueError("always")

    ticker = Ticker()
    host = ServiceHost([Blocker(), Raiser(), ticker], home=tmp_path, lease_ttl=1.0, backoff=(0.05, 0.1),
                       stop_timeout=0.2, tick=0.05).start()
    try:
        wait_for(lambda: host.health()["services"]["raiser"]["restarts"] >= 3, 10, "the raiser to crash-loop")
        beat = ticker.last_beat
        wait_for(lambda: ticker.last_beat > beat, 2, "the ticker to beat while the blocker blocks")
        assert _state(host, "ticker") == "running"
        assert host.health()["services"]["raiser"]["last_error"] == "ValueError: always"
    finally:
        started = time.monotonic()
        host.stop()
        took = time.monotonic() - started
    assert took < 1.4  # stop() does not wait for the blocked thread
    health = host.health()["services"]
    assert health["blocker"]["state"] == "stuck" and "did not stop within" in health["blocker"]["last_error"]
    assert health["ticker"]["state"] == "stopped" and health["raiser"]["state"] == "stopped"
    time.sleep(1.5)  # the blocked thread ends on its own


def test_host_runs_on_a_given_event_loop(tmp_path):
    ticker = Ticker()

    async def scenario() -> None:
        host = ServiceHost([ticker], home=tmp_path, **FAST)
        task = asyncio.ensure_future(host.run())
        while ticker.last_beat is None:
            await asyncio.sleep(0.02)
        host.request_stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert ticker.state == "stopped" and ticker.starts == 1


def test_lease_store_acquire_renew_release_and_takeover(tmp_path):
    store = Store(tmp_path)
    assert store.acquire_lease("x", "a", 300, pid=1, host="h")
    assert not store.acquire_lease("x", "b", 300)  # a holds it
    assert store.renew_lease("x", "a", 300) and not store.renew_lease("x", "b", 300)
    first = store.leases()[0]
    assert (first["name"], first["holder"], first["pid"], first["host"], first["expired"]) == ("x", "a", 1, "h", False)
    time.sleep(0.35)
    assert store.leases()[0]["expired"]
    assert store.acquire_lease("x", "b", 300)  # expired: b takes over
    assert not store.renew_lease("x", "a", 300)  # a learns it lost the lease
    store.release_lease("x", "a")  # not a's: nothing happens
    assert store.leases()[0]["holder"] == "b"
    store.release_lease("x", "b")
    assert store.leases() == [] and store.acquire_lease("x", "a", 300)
    store.close()


def test_a_once_per_workspace_service_waits_for_its_lease(tmp_path):
    store = Store(tmp_path)
    assert store.acquire_lease("single", "someone-else", 1500)
    single = Ticker("single", once=True)
    host = ServiceHost([single], home=tmp_path, **FAST).start()
    try:
        wait_for(lambda: _state(host, "single") == "standby", 5, "standby")
        time.sleep(0.5)
        assert single.starts == 0 and host.health()["services"]["single"]["lease"] == "not held"
        wait_for(lambda: _state(host, "single") == "running", 10, "the takeover after expiry")
        assert store.leases()[0]["holder"] == host.holder
        # Another holder steals the lease (as after a long pause of this host): the service stops at once.
        store.release_lease("single", host.holder)
        assert store.acquire_lease("single", "thief", 60_000)
        wait_for(lambda: _state(host, "single") == "standby", 5, "the stop after losing the lease")
    finally:
        host.stop()
    assert single.starts == 1
    assert store.leases()[0]["holder"] == "thief"  # not released: it was not this host's
    store.close()


TOY = """
import asyncio, os
from nbjobs.services import Service

class PidService(Service):
    name = "pidfile"
    once_per_workspace = True

    async def start(self, context):
        self._stop = asyncio.Event()
        with open(os.environ["TOY_PIDS"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        while not self._stop.is_set():
            self.beat()
            try:
                await asyncio.wait_for(self._stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    async def stop(self):
        self._stop.set()
"""


def _pids(path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_two_processes_run_a_once_per_workspace_service_once_and_take_over_after_kill_9(tmp_path):
    write_script(tmp_path / "mods" / "toysvc.py", TOY)
    home, pids = tmp_path / "home", tmp_path / "pids.txt"
    env = dict(os.environ, TOY_PIDS=str(pids),
               PYTHONPATH=os.pathsep.join([str(tmp_path / "mods"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "nbjobs", "--home", str(home), "services", "run", "--only", "toysvc:PidService",
               "--lease-ttl", "1.5"]
    logs = [open(tmp_path / f"host{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen(command, env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=log)
             for log in logs]
    try:
        wait_for(lambda: (home / "nbjobs.db").exists(), 30, "the workspace")
        store = Store(home)
        by_pid = {p.pid: p for p in procs}
        wait_for(lambda: {h["pid"] for h in store.service_hosts() if h["alive"]} == set(by_pid), 90,
                 "both hosts to beat")  # two interpreters starting on a busy 2-core machine
        holder = wait_for(lambda: _pids(pids), 30, "the service to start")[0]
        time.sleep(3.5)  # more than two lease periods: the other host keeps waiting
        assert _pids(pids) == [holder]
        lease = store.leases()[0]
        assert (lease["name"], lease["pid"]) == ("pidfile", holder)
        standby = next(h for h in store.service_hosts() if h["pid"] != holder)
        assert standby["health"]["services"]["pidfile"]["state"] == "standby"

        killed = time.monotonic()
        os.kill(holder, signal.SIGKILL)
        by_pid[holder].wait(10)
        other = next(pid for pid in by_pid if pid != holder)
        wait_for(lambda: _pids(pids) == [holder, other], 15, "the other process to take over")
        assert time.monotonic() - killed < 8  # the lease period (1.5 s), a heartbeat, a busy machine's slack
        assert store.leases()[0]["pid"] == other
        proc = by_pid[other]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert store.leases() == []  # released on a clean stop
        store.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for log in logs:
            log.close()


def _orphan_run(home) -> int:
    """A RUNNING run whose process (a real one, now exited) is gone."""
    code = ("import sys\nfrom nbjobs.store import Store\n"
            f"s = Store({str(home)!r})\n"
            "r, ids = s.create_run(job_id=None, settings={}, job_parameters=[], run_name='r',"
            " tasks=[('a', {})], life_cycle_state='RUNNING')\n"
            "s.update_task_run(ids['a'], life_cycle_state='RUNNING')\nprint(r)\n")
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def test_recovery_ends_an_orphaned_run_without_anyone_asking(tmp_path):
    run_id = _orphan_run(tmp_path)
    store = Store(tmp_path)
    live, _ = store.create_run(job_id=None, settings={}, job_parameters=[], run_name="live", tasks=[],
                               life_cycle_state="RUNNING")  # this process: alive, left alone
    assert store.get_run(run_id)["life_cycle_state"] == "RUNNING"
    recovery = RecoveryService(interval=0.1)
    host = ServiceHost([recovery], home=tmp_path, **FAST).start()
    try:
        wait_for(lambda: store.get_run(run_id)["life_cycle_state"] == "INTERNAL_ERROR", 15, "the recovery")
        run = store.get_run(run_id)
        assert run["result_state"] == "FAILED" and "ended before the run finished" in run["state_message"]
        assert [t["life_cycle_state"] for t in store.task_runs(run_id)] == ["INTERNAL_ERROR"]
        assert run_id in host.health()["services"]["recovery"]["recovered_runs"]
        assert store.leases()[0]["name"] == "recovery"
        time.sleep(0.3)
        assert store.get_run(live)["life_cycle_state"] == "RUNNING"
    finally:
        host.stop()
        store.close()


def test_registry_entry_points_and_a_broken_one(monkeypatch):
    class EP(SimpleNamespace):
        def load(self):
            return self.loader()

    def broken():
        raise ImportError("no module named missing_pkg")

    eps = {"toy": EP(value="toys:Ticker", loader=lambda: Ticker), "bad": EP(value="missing_pkg:X", loader=broken),
           "recovery": EP(value="other:Recovery", loader=lambda: Ticker)}
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    with pytest.warns(RuntimeWarning) as caught:
        found = registry.available()
    messages = " | ".join(str(w.message) for w in caught)
    assert "'bad'" in messages and "failed to load" in messages and "no module named missing_pkg" in messages
    assert "is a built-in service" in messages
    assert found["recovery"] is RecoveryService and found["toy"] is Ticker and found["bad"] is None
    with pytest.warns(RuntimeWarning):
        services = registry.create_all()
    assert sorted(s.name for s in services) == ["continuous", "file_arrival", "recovery", "scheduler", "ticker"]
    with pytest.warns(RuntimeWarning), pytest.raises(registry.UnknownService, match="failed to load"):
        registry.create("bad")
    with pytest.warns(RuntimeWarning), pytest.raises(registry.UnknownService, match="no service named 'nope'"):
        registry.create("nope")


def test_loop_service_records_errors_and_goes_on(tmp_path):
    class Flaky(LoopService):
        name = "flaky"
        interval = 0.02
        calls = 0

        async def run_once(self) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk hiccup")

    flaky = Flaky()
    with ServiceHost([flaky], home=tmp_path, **FAST):
        wait_for(lambda: flaky.calls >= 3 and flaky.last_beat, 10, "more loops")
    assert flaky.last_error == "OSError: disk hiccup" and flaky.restarts == 0


def test_cli_services_list_status_and_run_errors(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["--home", str(home), "services", "list"]) == 0
    assert "recovery" in capsys.readouterr().out
    assert main(["--home", str(home), "services", "status"]) == 1
    assert "no workspace at" in capsys.readouterr().err
    assert main(["--home", str(home), "services", "run", "--only", "nope"]) == 2
    assert "no service named 'nope'" in capsys.readouterr().err
    with ServiceHost([RecoveryService(interval=0.1)], home=home, **FAST) as host:
        store = Store(home)
        wait_for(lambda: store.leases() and [h for h in store.service_hosts()
                                             if h["health"]["services"]["recovery"]["state"] == "running"],
                 10, "the lease and the heartbeat")
        store.close()
        assert main(["--home", str(home), "services", "status"]) == 0
        out = capsys.readouterr().out
        assert host.holder in out and "recovery" in out and "lease held" in out and "expires in" in out
        assert main(["--home", str(home), "services", "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["leases"][0]["holder"] == host.holder
        assert status["hosts"][0]["health"]["services"]["recovery"]["state"] == "running"


def test_nbjobs_serve_hosts_the_services(tmp_path):
    home, root = tmp_path / "served", tmp_path / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NBJOBS_TOKEN", "NBJOBS_HOST", "NBJOBS_SERVICES")}
    env["NBJOBS_LEASE_TTL"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "--home", str(home), "serve", "--port", "0",
                             "--root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=str(ROOT))
    try:
        lines = []
        while not lines or "services:" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1], "".join(lines)
        assert "recovery" in lines[-1]
        url = lines[0].split("nbjobs server: ")[1].strip()
        token = (home / "server-token").read_text().strip()
        store = Store(home)
        wait_for(lambda: {"recovery", "scheduler"} <= {lease["name"] for lease in store.leases()}, 15,
                 "the recovery and scheduler leases")
        assert all(lease["pid"] == proc.pid for lease in store.leases())
        r = requests.get(f"{url}/api/2.2/nbjobs/services", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["host"]["pid"] == proc.pid and body["leases"][0]["holder"] == body["host"]["holder"]
        wait_for(lambda: requests.get(f"{url}/api/2.2/nbjobs/services", headers={"Authorization": f"Bearer {token}"},
                                      timeout=10).json()["host"]["services"]["recovery"]["state"] == "running",
                 10, "recovery running")
        assert requests.get(f"{url}/api/2.2/nbjobs/services", timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert store.leases() == [] and store.service_hosts() == []  # stopped with the server
    store.close()


def test_server_thread_hosts_the_services(tmp_path):
    from nbjobs.server import ServerThread
    srv = ServerThread(home=tmp_path / "home", root=tmp_path, token="t", service_options=FAST)
    try:
        assert srv.services is not None and "recovery" in srv.services.services
        wait_for(lambda: srv.services.holds("recovery"), 10, "the recovery lease")
        assert srv.workspace.store.leases()[0]["holder"] == srv.services.holder
    finally:
        srv.stop()
    store = Store(tmp_path / "home")
    assert store.leases() == []
    store.close()
    none = ServerThread(home=tmp_path / "home2", root=tmp_path, token="t", services=False)
    try:
        assert none.services is None
    finally:
        none.stop()


def test_the_jupyter_extension_hosts_the_services(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root, token = tmp_path / "root", "jupyter-services-token"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBJOBS_", "JUPYTER_"))}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), NBJOBS_LEASE_TTL="1")
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root))
    url, auth = f"http://127.0.0.1:{port}/api/2.2/nbjobs/services", {"Authorization": f"token {token}"}
    try:
        def answer():
            assert proc.poll() is None, (tmp_path / "jupyter.log").read_text()
            try:
                r = requests.get(url, headers=auth, timeout=2)
            except requests.ConnectionError:
                return None
            return r if r.status_code == 200 and r.json()["leases"] else None

        body = wait_for(answer, 60, "the extension's services").json()
        assert body["host"]["pid"] == proc.pid and "recovery" in {lease["name"] for lease in body["leases"]}
        assert body["home"] == str((root / ".nbjobs").resolve())
        assert requests.get(url, timeout=10).status_code in (401, 403)
    finally:
        stop_process(proc)
        log.close()
    store = Store(root / ".nbjobs")
    assert store.leases() == []  # released when Jupyter unloaded the extension
    store.close()
