"""One contract for every compute backend (LocalBackend, DaskBackend on a real LocalCluster), and
backends found by name: the built-in table, the entry-point group, a toy backend serving a cluster."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import psutil
import pytest

from nbjobs.compute import registry
from nbjobs.compute.base import ComputeError, NotebookRequest, ScriptRequest, TaskOutput, WorkUnit
from nbjobs.compute.dask_backend import DaskBackend
from nbjobs.compute.local import LocalBackend, with_parameters
from nbjobs.compute.run import RunCompute
from nbjobs.kernel.context import TaskContext

from conftest import task_states, wait_for, write_notebook, write_script

pytestmark = pytest.mark.timeout(240)


def context(run_dir: Path, task_key: str = "t") -> TaskContext:
    return TaskContext(job_id=1, job_name="contract", run_id=10, task_key=task_key, task_run_id=11,
                       attempt_number=0, parameters={}, upstream_values={}, task_keys=[task_key],
                       upstream_tasks=[], run_dir=str(run_dir), notebook_path=None)


def notebook_unit(path: Path, run_dir: Path, parameters: dict | None = None) -> NotebookRequest:
    parameters = parameters or {}
    return NotebookRequest(notebook_path=path, parameters=parameters, workdir=path.parent,
                           context=with_parameters(context(run_dir), path, parameters))


def script_unit(path: Path, run_dir: Path, args: list[str] | None = None) -> ScriptRequest:
    return ScriptRequest(python_file=path, args=list(args or []), context=context(run_dir), workdir=path.parent)


@dataclass
class SqlUnit(WorkUnit):
    """A kind of work no backend here runs."""

    kind: ClassVar[str] = "sql"

    query: str
    context: TaskContext


@pytest.fixture(scope="module")
def dask_address():
    """One real LocalCluster (one worker process, its own warm kernel pool) for the module."""
    import distributed  # a test dependency (nbjobs[dask]): never skipped
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=None,
                                  processes=True, silence_logs=50) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.kernels), pytest.param("dask", marks=pytest.mark.dask)])
def new_backend(request):
    """A factory of started-per-test backends of each implementation."""
    if request.param == "local":
        return lambda: LocalBackend(label="local")
    address = request.getfixturevalue("dask_address")
    return lambda: DaskBackend(address=address, label="dask contract")


def on_backend(new_backend, body):
    """Start a fresh backend, run `body(backend)` on it, close it (one event loop per test)."""
    async def main():
        backend = new_backend()
        await backend.start()
        try:
            return await body(backend)
        finally:
            await backend.close()
    return asyncio.run(main())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class TestComputeBackendContract:
    def test_a_notebook_unit_runs_with_its_parameters_values_and_exit_value(self, new_backend, tmp_path):
        nb = write_notebook(tmp_path / "nb.ipynb", ("n = '1'", ["parameters"]),
                            "from nbjobs.kernel import dbutils\n"
                            "dbutils.jobs.taskValues.set('rows', int(n) * 10)\n"
                            "dbutils.notebook.exit(f'done {n}')")
        out = on_backend(new_backend, lambda b: b.run(notebook_unit(nb, tmp_path / "run", {"n": "4"})))
        assert isinstance(out, TaskOutput) and out.ok, out.error
        assert (out.exit_value, out.values) == ("done 4", {"rows": 40})
        assert out.output_path == tmp_path / "run" / "notebook.ipynb" and out.output_path.exists()
        assert out.compute.startswith(new_backend().label)

    def test_a_script_unit_runs_with_its_arguments_and_logs(self, new_backend, tmp_path):
        script = write_script(tmp_path / "job.py", """
            import sys
            from nbjobs.kernel import dbutils
            print("args", sys.argv[1:])
            dbutils.jobs.taskValues.set("count", len(sys.argv) - 1)
            """)
        out = on_backend(new_backend, lambda b: b.run(script_unit(script, tmp_path / "run", ["a", "b"])))
        assert out.ok, out.error
        assert out.values == {"count": 2}
        assert "args ['a', 'b']" in out.logs_path.read_text()
        assert out.compute.startswith(new_backend().label)

    def test_a_failing_unit_is_an_output_with_its_error(self, new_backend, tmp_path):
        nb = write_notebook(tmp_path / "bad.ipynb", "raise ValueError('boom in the notebook')")
        script = write_script(tmp_path / "bad.py", "raise SystemExit(3)")

        async def both(backend):
            return await asyncio.gather(backend.run(notebook_unit(nb, tmp_path / "nb")),
                                        backend.run(script_unit(script, tmp_path / "py")))

        notebook, scripted = on_backend(new_backend, both)
        assert not notebook.ok and "ValueError: boom in the notebook" in notebook.error
        assert notebook.output_path is not None and notebook.output_path.exists()  # kept on failure
        assert not scripted.ok and scripted.error.startswith("bad.py exited with code 3")

    @pytest.mark.parametrize("kind", ["notebook", "script"])
    def test_cancelling_a_unit_kills_its_work(self, new_backend, tmp_path, kind):
        pid_file = tmp_path / "work.pid"
        code = (f"import os, pathlib, time\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
                "time.sleep(120)")
        if kind == "notebook":
            unit = notebook_unit(write_notebook(tmp_path / "sleep.ipynb", code), tmp_path / "run")
        else:
            unit = script_unit(write_script(tmp_path / "sleep.py", code), tmp_path / "run")

        async def cancel(backend):
            task = asyncio.ensure_future(backend.run(unit))
            deadline = time.monotonic() + 60
            while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not task.done(), task.result()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return int(pid_file.read_text())

        pid = on_backend(new_backend, cancel)
        wait_for(lambda: gone(pid), timeout=30, what=f"the cancelled {kind}'s process to be killed")

    def test_a_unit_of_a_kind_it_cannot_run_is_a_compute_error(self, new_backend, tmp_path):
        unit = SqlUnit(query="select 1", context=context(tmp_path / "run"))
        with pytest.raises(ComputeError, match=r"compute backend '(local|dask)' \((local|dask contract)\) "
                                               r"cannot run a sql unit \(SqlUnit\)"):
            on_backend(new_backend, lambda b: b.run(unit))


# -- backends by name ----------------------------------------------------------------------------------

TOY_MODULE = '''
from nbjobs.compute.base import ComputeBackend, NotebookRequest, TaskOutput

RUNS = []


class ToyBackend(ComputeBackend):
    name = "toy"
    address_hint = "a toy address (toy://name)"

    def __init__(self, label, address=None):
        self.label = label
        self.address = address
        self.started = self.closed = False

    @classmethod
    def existing_cluster(cls, address, config, *, label):
        return cls(label, address)

    @classmethod
    def new_cluster(cls, spec, config, *, label):
        return cls(label, spec.get("num_workers"))

    async def start(self):
        self.started = True

    async def run(self, unit):
        if not isinstance(unit, NotebookRequest):
            raise self.cannot_run(unit)
        RUNS.append((self.label, unit.notebook_path.name, self.address))
        return TaskOutput(exit_value=f"toy ran {unit.notebook_path.name}", compute=self.label)

    async def close(self):
        self.closed = True
'''


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """A distribution on sys.path declaring `toy` in the nbjobs.compute_backends entry-point group."""
    site = tmp_path / "site"
    (site / "nbjobs_toy_backend-1.0.dist-info").mkdir(parents=True)
    (site / "nbjobs_toy_backend.py").write_text(TOY_MODULE)
    (site / "nbjobs_toy_backend-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nbjobs-toy-backend\nVersion: 1.0\n")
    (site / "nbjobs_toy_backend-1.0.dist-info" / "entry_points.txt").write_text(
        "[nbjobs.compute_backends]\ntoy = nbjobs_toy_backend:ToyBackend\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_loaded", {})  # this test's lookups only
    yield
    import sys
    sys.modules.pop("nbjobs_toy_backend", None)


def settings(*tasks, job_clusters=()) -> SimpleNamespace:
    return SimpleNamespace(tasks=list(tasks), job_clusters=list(job_clusters), environments=[])


def task(key: str, **compute) -> SimpleNamespace:
    fields = dict(task_key=key, job_cluster_key=None, existing_cluster_id=None, new_cluster=None,
                  environment_key=None, for_each_task=None, notebook_task=SimpleNamespace(notebook_path="nb.ipynb"))
    return SimpleNamespace(**{**fields, **compute})


@pytest.mark.pure
def test_the_built_in_backends_are_found_by_name(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", {})
    assert registry.backend_class("local") is LocalBackend
    assert registry.backend_class("dask") is DaskBackend
    assert {"local", "dask"} <= set(registry.backend_names())
    with pytest.raises(ComputeError, match=r"no compute backend named 'nope' \(known: .*dask.*local.*\); a "
                                           r"package adds one under the entry-point group "
                                           r"'nbjobs.compute_backends'"):
        registry.backend_class("nope")


@pytest.mark.pure
def test_an_engine_that_is_not_installed_says_which_extra_to_install(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", {})
    registry.register_backend("dask", "nbjobs_no_such_engine:DaskBackend")
    try:
        with pytest.raises(ComputeError) as err:
            registry.backend_class("dask")
    finally:
        registry.unregister_backend("dask")
    assert str(err.value) == ("compute backend 'dask' cannot be loaded from nbjobs_no_such_engine:DaskBackend: "
                              "No module named 'nbjobs_no_such_engine'. Install it with: pip install 'nbjobs[dask]'")


@pytest.mark.pure
def test_a_backend_declared_by_an_entry_point_serves_a_named_cluster_and_job_clusters(toy_package, tmp_path):
    assert "toy" in registry.backend_names()
    (tmp_path / "config.yml").write_text("compute:\n  cluster_backend: toy\n  clusters:\n"
                                         "    sandbox: {backend: toy, address: 'toy://sandbox'}\n")
    compute = RunCompute(settings(task("a", existing_cluster_id="sandbox"), task("b", job_cluster_key="etl"),
                                  job_clusters=[SimpleNamespace(job_cluster_key="etl",
                                                                new_cluster={"num_workers": 3})]),
                         home=tmp_path)

    async def main():
        named = await compute.target(task("a", existing_cluster_id="sandbox"))
        job = await compute.target(task("b", job_cluster_key="etl"))
        unknown = None
        try:
            await compute.target(task("c", existing_cluster_id="elsewhere"))
        except ComputeError as exc:
            unknown = str(exc)
        await compute.close()
        return named, job, unknown

    named, job, unknown = asyncio.run(main())
    assert type(named.backend).__module__ == "nbjobs_toy_backend"
    assert (named.label, named.backend.address, named.backend.started) == \
        ("toy existing_cluster:sandbox (toy://sandbox)", "toy://sandbox", True)
    assert (job.label, job.backend.address, job.backend.closed) == ("toy job_cluster:etl", 3, True)
    assert named.backend.closed  # at run end (for an existing cluster: disconnect, it stays up)
    assert unknown == ("existing_cluster_id 'elsewhere' is neither a toy address (toy://name) nor a cluster "
                       f"named under compute.clusters in {tmp_path / 'config.yml'}")
    assert compute.describe(task("d", new_cluster={"num_workers": 1})) == "toy new_cluster:d"


@pytest.mark.kernels
def test_a_job_runs_its_task_on_a_backend_named_in_the_config(toy_package, workspace, tmp_path):
    (workspace.home / "config.yml").write_text("compute:\n  clusters:\n    sandbox: {backend: toy}\n")
    write_notebook(tmp_path / "nb.ipynb", "raise RuntimeError('the toy backend does not execute notebooks')")
    job_id = workspace.create_job({"name": "toy", "tasks": [
        {"task_key": "t", "existing_cluster_id": "sandbox", "notebook_task": {"notebook_path": "nb.ipynb"}}]},
        base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"t": "SUCCESS"}
    assert workspace.get_run_output(run["tasks"][0]["run_id"])["notebook_output"]["result"] == "toy ran nb.ipynb"
    assert [r["compute"] for r in workspace.task_runs(run["run_id"])] == ["toy existing_cluster:sandbox"]
    import nbjobs_toy_backend
    assert nbjobs_toy_backend.RUNS == [("toy existing_cluster:sandbox", "nb.ipynb", None)]


@pytest.mark.kernels
def test_cluster_backend_local_runs_job_clusters_on_the_local_pool(workspace, tmp_path):
    (workspace.home / "config.yml").write_text("compute:\n  cluster_backend: local\n")
    write_notebook(tmp_path / "nb.ipynb", "import os\nprint(os.getpid())")
    job_id = workspace.create_job({
        "name": "no-dask", "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"num_workers": 2}}],
        "tasks": [{"task_key": "t", "job_cluster_key": "etl", "notebook_task": {"notebook_path": "nb.ipynb"}}]},
        base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"t": "SUCCESS"}
    assert [r["compute"] for r in workspace.task_runs(run["run_id"])] == ["local job_cluster:etl"]
