"""The warm kernel pool: refill, background kill, retries, per-task kernels; no kernel left behind."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from nbjobs.compute.kernels import KernelKey, pool_manager, shutdown_pools
from nbjobs.kernel.context import TaskContext
from nbjobs.tasks.notebook import run_notebook_task

from conftest import wait_for, task_states, write_notebook

pytestmark = [pytest.mark.timeout(120), pytest.mark.kernels]




def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kernel_processes() -> list[psutil.Process]:
    """Pooled kernels and fork servers under this process."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.cmdline())
            if "forkserver.py" in cmd or "ipykernel" in cmd or proc.name().startswith("nbjobs-"):
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def context(run_dir: Path, key: str = "t") -> TaskContext:
    return TaskContext(job_id=1, job_name="pool", run_id=1, task_key=key, task_run_id=1, run_dir=str(run_dir))


def test_the_pool_refills_in_the_background_and_never_reuses_a_kernel(tmp_path):
    manager = pool_manager()
    manager.prestart([KernelKey("python3")])
    ready = wait_for(lambda: len(manager.stats()["ready"]) >= manager.size and manager.stats()["ready"],
                     what="a full pool")
    nb = write_notebook(tmp_path / "pid.ipynb", "import os\nprint(os.getpid())")
    pids = []
    for i in range(3):
        out = asyncio.run(run_notebook_task(nb, {}, context(tmp_path / f"r{i}"), tmp_path))
        assert out.error is None and out.compute == "local"
        text = json.loads(out.output_path.read_text())["cells"][1]["outputs"][0]["text"]
        pids.append(int("".join(text).strip()))
    assert len(set(pids)) == 3                                   # a fresh kernel each time
    assert pids[0] in ready                                      # ...taken ready from the pool
    for pid in pids:
        wait_for(lambda pid=pid: gone(pid), what=f"kernel {pid} killed after use")
    refilled = wait_for(lambda: len(manager.stats()["ready"]) >= manager.size and manager.stats()["ready"],
                        what="the pool refilled")
    assert not set(refilled) & set(pids)


def test_no_kernel_is_left_after_a_failure_a_timeout_or_a_cancel(workspace, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    record = f"import os\nopen(os.path.join({str(pid_dir)!r}, str(os.getpid())), 'w').close()"
    write_notebook(tmp_path / "fail.ipynb", record, "raise ValueError('planned failure')")
    write_notebook(tmp_path / "slow.ipynb", record, "import time\ntime.sleep(60)")
    job_id = workspace.create_job({"name": "stops", "tasks": [
        {"task_key": "fail", "notebook_task": {"notebook_path": "fail.ipynb"}},
        {"task_key": "slow", "timeout_seconds": 2, "notebook_task": {"notebook_path": "slow.ipynb"}}]},
        base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"fail": "FAILED", "slow": "TIMEDOUT"}

    async def cancelled():  # a caller cancelling the executor (what run cancel does)
        task = asyncio.ensure_future(run_notebook_task(tmp_path / "slow.ipynb", {}, context(tmp_path / "c"),
                                                       tmp_path))
        wait = time.monotonic() + 30
        while len(os.listdir(pid_dir)) < 3 and time.monotonic() < wait:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    pids = [int(p) for p in os.listdir(pid_dir)]
    assert len(pids) == 3
    for pid in pids:
        wait_for(lambda pid=pid: gone(pid), what=f"kernel {pid} killed")
    assert (tmp_path / "c" / "notebook.ipynb").exists()        # what ran is kept, also when cancelled

    stats = pool_manager().stats()
    ours = set(stats["live"]) | set(stats["servers"]) | {p.pid for p in kernel_processes()
                                                         if p.name().startswith("nbjobs-")}
    assert stats["servers"] and ours
    shutdown_pools()                                            # also what Workspace.close() does
    wait_for(lambda: all(gone(pid) for pid in ours), timeout=30, what="no pooled kernel or fork server left")
    assert not [p for p in kernel_processes() if p.name().startswith("nbjobs-")]


def test_kernel_start_failures_are_retried_and_a_task_can_choose_its_kernel(workspace, tmp_path, monkeypatch):
    """A kernelspec whose first start fails (exit 1): the pool retries; `notebook_task.kernel_name`
    picks it over the notebook's own kernelspec. Not an ipykernel launcher: started as a process (tcp)."""
    counter = tmp_path / "starts"
    launcher = tmp_path / "flaky_kernel.py"
    launcher.write_text(
        "import sys, pathlib\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "starts = int(counter.read_text()) if counter.exists() else 0\n"
        "counter.write_text(str(starts + 1))\n"
        "if starts == 0:\n"
        "    sys.exit(1)  # the first start fails\n"
        "from ipykernel.kernelapp import launch_new_instance\n"
        "launch_new_instance(argv=['-f', sys.argv[1]])\n")
    spec = tmp_path / "jupyter" / "kernels" / "nbjobs-flaky"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(launcher), "{connection_file}"], "display_name": "flaky",
        "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("NBJOBS_KERNEL_POOL_SIZE", "1")
    shutdown_pools()  # the next pool reads the size
    write_notebook(tmp_path / "which.ipynb", "import sys\nprint(sys.argv[0])")
    job_id = workspace.create_job({"name": "flaky", "tasks": [
        {"task_key": "flaky", "notebook_task": {"notebook_path": "which.ipynb", "kernel_name": "nbjobs-flaky"}},
        {"task_key": "default", "notebook_task": {"notebook_path": "which.ipynb"}}]}, base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"flaky": "SUCCESS", "default": "SUCCESS"}
    rows = {r["task_key"]: r for r in workspace.task_runs(run["run_id"])}
    flaky = json.loads(Path(rows["flaky"]["output_path"]).read_text())
    assert "flaky_kernel.py" in "".join(flaky["cells"][1]["outputs"][0]["text"])
    assert flaky["metadata"]["papermill"]["input_path"].endswith("which.ipynb")
    assert int(counter.read_text()) >= 2                        # failed once, then started
    default = json.loads(Path(rows["default"]["output_path"]).read_text())
    assert "flaky_kernel.py" not in "".join(default["cells"][1]["outputs"][0]["text"])


def test_an_idle_pool_is_emptied(tmp_path, monkeypatch):
    monkeypatch.setenv("NBJOBS_KERNEL_POOL_IDLE", "1")
    shutdown_pools()
    nb = write_notebook(tmp_path / "one.ipynb", "1")
    out = asyncio.run(run_notebook_task(nb, {}, context(tmp_path / "r"), tmp_path))
    assert out.error is None
    manager = pool_manager()
    wait_for(lambda: not (lambda s: s["live"] or s["servers"])(manager.stats()), what="the idle pool emptied")
    out = asyncio.run(run_notebook_task(nb, {}, context(tmp_path / "r2"), tmp_path))  # and it comes back
    assert out.error is None
    shutdown_pools()


def test_prestarting_kernels_does_not_slow_commands_that_run_nothing(tmp_path):
    """`nbjobs validate` and `jobs list` start no pool (the pool starts when a run starts)."""
    import subprocess
    job = tmp_path / "job.json"
    write_notebook(tmp_path / "a.ipynb", "1")
    job.write_text(json.dumps({"name": "x", "tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "a.ipynb"}}]}))
    code = ("import sys, runpy\n"
            "from nbjobs.cli import main\n"
            f"assert main(['--home', {str(tmp_path / 'home')!r}, 'validate', {str(job)!r}]) == 0\n"
            f"assert main(['--home', {str(tmp_path / 'home')!r}, 'jobs', 'list']) == 0\n"
            "assert 'nbjobs.compute.kernels' not in sys.modules, 'the kernel pool was imported'\n"
            "assert 'papermill' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
