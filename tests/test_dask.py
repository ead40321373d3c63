"""The Dask backend on real LocalClusters bound to 127.0.0.1: job clusters, an existing cluster, a lost
worker, a timeout that kills the kernel on the worker, and the message when `distributed` is missing."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import wait_for, task_states, write_notebook, write_script

pytestmark = [pytest.mark.timeout(180), pytest.mark.dask]


def spawned_workers() -> set[int]:
    """Dask worker processes under this process (and theirs): spawned, or forked by the
    multiprocessing fork server that preloads nbjobs.compute.dask_preload."""
    out = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            command = " ".join(proc.cmdline())
            forked = "nbjobs.compute.dask_preload" in command and proc.ppid() != os.getpid()
            if ("spawn_main" in command or forked) and proc.status() != psutil.STATUS_ZOMBIE:
                out.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def listening(address: str) -> bool:
    """Whether something accepts connections at `tcp://host:port`."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False




def test_a_job_cluster_runs_notebooks_and_scripts_with_task_values_and_a_failure(workspace, tmp_path):
    before = spawned_workers()
    write_notebook(tmp_path / "produce.ipynb", ("n = 1", ["parameters"]),
                   "import os\ndbutils.jobs.taskValues.set('rows', int(n) * 10)\nprint('pid', os.getpid())")
    write_notebook(tmp_path / "consume.ipynb",
                   "rows = dbutils.jobs.taskValues.get('produce', 'rows')\nprint('rows', rows)\n"
                   "dbutils.notebook.exit(f'got {rows}')")
    write_notebook(tmp_path / "fail.ipynb", "print('about to fail')", "raise ValueError('boom on a worker')")
    write_script(tmp_path / "script.py", """
        import sys
        from nbjobs.kernel import dbutils
        print("args", sys.argv[1:], "rows", dbutils.jobs.taskValues.get("produce", "rows"))
        dbutils.jobs.taskValues.set("script", "ok")
        """)
    on = {"job_cluster_key": "etl"}
    job_id = workspace.create_job({
        "name": "on-dask",
        "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"num_workers": 2, "spark_version": "x"}}],
        "tasks": [
            {"task_key": "produce", **on, "notebook_task": {"notebook_path": "produce.ipynb",
                                                             "base_parameters": {"n": "4"}}},
            {"task_key": "consume", **on, "depends_on": [{"task_key": "produce"}],
             "notebook_task": {"notebook_path": "consume.ipynb"}},
            {"task_key": "fail", **on, "notebook_task": {"notebook_path": "fail.ipynb"}},
            {"task_key": "script", **on, "depends_on": [{"task_key": "produce"}],
             "spark_python_task": {"python_file": "script.py", "parameters": ["a", "b"]}},
            {"task_key": "local", "depends_on": [{"task_key": "produce"}],
             "notebook_task": {"notebook_path": "consume.ipynb"}}]}, base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"produce": "SUCCESS", "consume": "SUCCESS", "fail": "FAILED",
                                "script": "SUCCESS", "local": "SUCCESS"}
    rows = {r["task_key"]: r for r in workspace.task_runs(run["run_id"])}
    for key in ("produce", "consume", "fail", "script"):
        assert rows[key]["compute"].startswith("dask job_cluster:etl worker tcp://127.0.0.1:"), rows[key]["compute"]
    assert rows["local"]["compute"] == "local"
    assert rows["consume"]["exit_value"] == "got 40" and rows["local"]["exit_value"] == "got 40"
    assert workspace.store.task_values(run["run_id"])["script"] == {"script": "ok"}
    assert rows["fail"]["error"] == "ValueError: boom on a worker (in cell 2)"
    failed = json.loads(Path(rows["fail"]["output_path"]).read_text())   # shipped back from the worker
    assert failed["cells"][0]["metadata"]["tags"] == ["papermill-error-cell-tag"]
    assert Path(rows["script"]["logs_path"]).read_text() == "args ['a', 'b'] rows 40\n"
    produced = json.loads(Path(rows["produce"]["output_path"]).read_text())
    assert produced["metadata"]["papermill"]["parameters"] == {"n": "4"}
    cluster = next(t["cluster_instance"]["cluster_id"] for t in run["tasks"] if t["task_key"] == "produce")
    assert cluster == rows["produce"]["compute"]  # runs/get names the compute that ran each task
    assert next(t for t in run["tasks"] if t["task_key"] == "local")["cluster_instance"] == {"cluster_id": "local"}
    wait_for(lambda: spawned_workers() <= before, what="the job cluster's workers to stop")


def test_a_job_cluster_closes_when_its_last_task_finishes_not_at_the_end_of_the_run(workspace, tmp_path):
    """`first` is used by one task only: its workers stop while `second`'s task still runs."""
    write_notebook(tmp_path / "quick.ipynb", "print('quick')")
    write_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(6)")
    job_id = workspace.create_job({
        "name": "two-clusters",
        "job_clusters": [{"job_cluster_key": "first", "new_cluster": {"num_workers": 1}},
                         {"job_cluster_key": "second", "new_cluster": {"num_workers": 1}}],
        "tasks": [
            {"task_key": "on_first", "job_cluster_key": "first", "notebook_task": {"notebook_path": "quick.ipynb"}},
            {"task_key": "on_second", "job_cluster_key": "second", "depends_on": [{"task_key": "on_first"}],
             "notebook_task": {"notebook_path": "slow.ipynb"}}]}, base_dir=tmp_path)
    seen: dict[str, float] = {}

    def watch_first_worker(address: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and listening(address):
            time.sleep(0.1)
        seen["first closed"] = time.monotonic()

    def on_event(event) -> None:
        if event.kind == "task_end" and event.task_key == "on_first":
            address = event.row["compute"].rsplit(" worker ", 1)[1]
            assert listening(address)
            threading.Thread(target=watch_first_worker, args=(address,), daemon=True).start()
        if event.kind == "task_end" and event.task_key == "on_second":
            seen["second ended"] = time.monotonic()
            seen["second still up"] = listening(event.row["compute"].rsplit(" worker ", 1)[1])

    run = workspace.run_now(job_id, on_event=on_event)
    assert task_states(run) == {"on_first": "SUCCESS", "on_second": "SUCCESS"}
    wait_for(lambda: "first closed" in seen, what="the first cluster's worker to stop")
    assert seen["first closed"] < seen["second ended"], seen  # closed while on_second still ran
    assert seen["second still up"] is True  # ...and `second` stayed up for it until the run ended


def test_an_existing_cluster_a_lost_worker_is_retried_and_a_timeout_kills_the_kernel_there(workspace, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=None,
                      processes=True, silence_logs=50) as cluster:
        marker = tmp_path / "killed-once"
        pid_file = tmp_path / "sleeper.pid"
        write_notebook(tmp_path / "lose.ipynb", f"""
            import os, signal, pathlib, psutil
            marker = pathlib.Path({str(marker)!r})
            if not marker.exists():
                marker.write_text("x")
                worker = psutil.Process(os.getppid()).ppid()   # kernel -> fork server -> Dask worker
                os.kill(worker, signal.SIGKILL)
                import time; time.sleep(30)
            print("second attempt")
            """)
        write_notebook(tmp_path / "sleep.ipynb", f"""
            import os, pathlib, time
            pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
            time.sleep(60)
            """)
        (workspace.home / "config.yml").write_text(f"compute:\n  clusters:\n    shared: {cluster.scheduler_address}\n")
        job_id = workspace.create_job({"name": "existing", "tasks": [
            {"task_key": "lose", "existing_cluster_id": "shared", "max_retries": 1,
             "notebook_task": {"notebook_path": "lose.ipynb"}},
            {"task_key": "sleep", "existing_cluster_id": cluster.scheduler_address, "timeout_seconds": 4,
             "depends_on": [{"task_key": "lose"}],
             "notebook_task": {"notebook_path": "sleep.ipynb"}}]}, base_dir=tmp_path)
        run = workspace.run_now(job_id)
        assert task_states(run) == {"lose": "SUCCESS", "sleep": "TIMEDOUT"}
        lose = next(t for t in run["tasks"] if t["task_key"] == "lose")
        assert lose["attempt_number"] == 1
        first = [r for r in workspace.store.task_runs(run["run_id"], latest_only=False) if r["task_key"] == "lose"][0]
        assert first["result_state"] == "FAILED"
        assert "was lost mid-task" in first["error"] and "was not re-run elsewhere" in first["error"]
        rows = {r["task_key"]: r for r in workspace.task_runs(run["run_id"])}
        assert rows["lose"]["compute"].startswith(f"dask existing_cluster:shared ({cluster.scheduler_address}) worker")
        sleeper = int(pid_file.read_text())
        wait_for(lambda: not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == "zombie",
                 what="the timed-out kernel on the worker to be killed")
        assert cluster.scheduler_address  # the existing cluster is left running
        assert len(cluster.workers) == 1


def test_a_clear_message_when_distributed_is_missing(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", "1")
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("distributed", "dask"):
                    raise ImportError(f"No module named {{name!r}}")
        sys.meta_path.insert(0, Block())
        from nbjobs.service import Workspace
        ws = Workspace({str(tmp_path / 'home')!r})
        job = ws.create_job({{"name": "needs-dask",
                              "job_clusters": [{{"job_cluster_key": "c", "new_cluster": {{"num_workers": 2}}}}],
                              "tasks": [{{"task_key": "t", "job_cluster_key": "c",
                                          "notebook_task": {{"notebook_path": "nb.ipynb"}}}}]}},
                            base_dir=__import__("pathlib").Path({str(tmp_path)!r}))
        run = ws.run_now(job)
        print(run["state"]["result_state"])
        print(ws.get_run_output(run["tasks"][0]["run_id"])["error"])
        ws.close()
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    state, error = done.stdout.strip().splitlines()
    assert state == "FAILED"
    assert error == ("task 't': Compute 'dask job_cluster:c' needs the optional package 'distributed' "
                     "(No module named 'distributed'). Install it with: pip install 'nbjobs[dask]'")


def test_a_repair_starts_only_the_job_clusters_of_the_tasks_it_reruns(workspace, tmp_path):
    """The cluster task succeeded; repairing the failed local task starts no Dask workers."""
    write_notebook(tmp_path / "quick.ipynb", "print('quick')")
    write_notebook(tmp_path / "flaky.ipynb", ("fail = 'yes'", ["parameters"]),
                   "import time\ntime.sleep(3)\nassert fail != 'yes', 'failing on purpose'")
    job_id = workspace.create_job({
        "name": "repair-local-only",
        "parameters": [{"name": "fail", "default": "yes"}],
        "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"num_workers": 1}}],
        "tasks": [
            {"task_key": "on_cluster", "job_cluster_key": "etl", "notebook_task": {"notebook_path": "quick.ipynb"}},
            {"task_key": "local", "notebook_task": {"notebook_path": "flaky.ipynb"}}]}, base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"on_cluster": "SUCCESS", "local": "FAILED"}
    before = spawned_workers()
    during: list[set[int]] = []

    def on_event(event) -> None:
        if event.kind == "task_end" and event.task_key == "local":
            during.append(spawned_workers() - before)  # 3 s in: a pre-started cluster would be up

    repaired = workspace.repair_run(run["run_id"], rerun_all_failed_tasks=True, job_parameters={"fail": "no"},
                                    on_event=on_event)
    assert task_states(repaired) == {"on_cluster": "SUCCESS", "local": "SUCCESS"}
    assert during == [set()]
