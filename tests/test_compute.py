"""Compute mapping: environments, per-task kernels, the workspace config, and the errors a user sees."""
from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from nbjobs.spec import JobDefinitionError

from nbjobs.compute.config import ConfigError, load_compute_config
from nbjobs.compute.environments import unsatisfied

from conftest import task_states, write_notebook, write_script

pytestmark = pytest.mark.timeout(120)


def make_wheel(folder: Path, name: str = "nbjobs_envtest", version: str = "0.1") -> Path:
    """A tiny pure-Python wheel, built by hand (no network, no build backend)."""
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                                  "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def output_text(row: dict) -> str:
    nb = json.loads(Path(row["output_path"]).read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.kernels
def test_an_environment_with_dependencies_is_installed_once_and_only_its_tasks_see_it(workspace, tmp_path):
    wheel = make_wheel(tmp_path)
    probe = "try:\n    import nbjobs_envtest\n    print('found', nbjobs_envtest.VERSION)\nexcept ImportError:\n    print('missing')"
    write_notebook(tmp_path / "probe.ipynb", probe)
    write_script(tmp_path / "probe.py", probe + "\n")
    job_id = workspace.create_job({
        "name": "envs",
        "environments": [{"environment_key": "extra", "spec": {"client": "2", "dependencies": [str(wheel)]}},
                         {"environment_key": "have", "spec": {"dependencies": ["nbformat>=4", "papermill"]}}],
        "tasks": [
            {"task_key": "with_env", "environment_key": "extra", "notebook_task": {"notebook_path": "probe.ipynb"}},
            {"task_key": "script_env", "environment_key": "extra", "spark_python_task": {"python_file": "probe.py"}},
            {"task_key": "satisfied", "environment_key": "have", "notebook_task": {"notebook_path": "probe.ipynb"}},
            {"task_key": "plain", "notebook_task": {"notebook_path": "probe.ipynb"}}]}, base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert set(task_states(run).values()) == {"SUCCESS"}, run
    rows = {r["task_key"]: r for r in workspace.task_runs(run["run_id"])}
    assert "found 0.1" in output_text(rows["with_env"])
    assert Path(rows["script_env"]["logs_path"]).read_text() == "found 0.1\n"
    assert "missing" in output_text(rows["satisfied"])          # nothing to install: the default kernel
    assert "missing" in output_text(rows["plain"])
    installed = list((workspace.home / "envs").glob("extra-*/site/nbjobs_envtest"))
    assert len(installed) == 1
    assert {r["compute"] for r in rows.values()} == {"local"}


@pytest.mark.pure
def test_unsatisfied_lists_what_this_interpreter_lacks():
    assert unsatisfied(["nbformat>=4", "papermill", "# a comment", "nbformat<1", "no-such-dist-xyz",
                        "./wheels/x.whl", "pkg @ https://example.com/x.whl"]) == [
        "nbformat<1", "no-such-dist-xyz", "./wheels/x.whl", "pkg @ https://example.com/x.whl"]


@pytest.mark.kernels
def test_an_environment_naming_a_kernelspec_or_a_virtualenv(workspace, tmp_path):
    write_notebook(tmp_path / "nb.ipynb", "print('ran')")
    job_id = workspace.create_job({
        "name": "named",
        "environments": [{"environment_key": "k", "spec": {"kernel_name": "python3"}},
                         {"environment_key": "v", "spec": {"virtualenv": str(tmp_path / "no-venv")}}],
        "tasks": [{"task_key": "k", "environment_key": "k", "notebook_task": {"notebook_path": "nb.ipynb"}},
                  {"task_key": "v", "environment_key": "v", "notebook_task": {"notebook_path": "nb.ipynb"}}]},
        base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert task_states(run) == {"k": "SUCCESS", "v": "FAILED"}
    output = workspace.get_run_output(run["tasks"][1]["run_id"])
    assert output["error"] == (f"task 'v': environment 'v': spec.virtualenv {tmp_path / 'no-venv'} has no "
                               f"interpreter at {tmp_path / 'no-venv' / 'bin' / 'python'}")


@pytest.mark.pure
def test_undefined_compute_keys_are_refused_when_the_job_is_created(workspace, tmp_path):
    write_notebook(tmp_path / "nb.ipynb", "1")
    nb = {"notebook_path": "nb.ipynb"}
    with pytest.raises(JobDefinitionError) as err:
        workspace.create_job({
            "name": "bad-keys",
            "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"num_workers": 1}}],
            "tasks": [{"task_key": "cluster", "job_cluster_key": "nope", "notebook_task": nb},
                      {"task_key": "env", "environment_key": "missing", "notebook_task": nb}]}, base_dir=tmp_path)
    assert [str(p).split(". Fix:")[0] for p in err.value.problems] == [
        "tasks[0] (cluster).job_cluster_key: 'nope' names no job cluster of this job; defined: etl",
        "tasks[1] (env).environment_key: 'missing' names no environment of this job; the job has no environments"]
    assert workspace.list_jobs() == []  # nothing half-written


@pytest.mark.pure
def test_compute_that_cannot_be_used_fails_the_task_with_the_reason(workspace, tmp_path):
    write_notebook(tmp_path / "nb.ipynb", "1")
    job_id = workspace.create_job({
        "name": "bad-compute",
        "tasks": [{"task_key": "existing", "existing_cluster_id": "0123-prod",
                   "notebook_task": {"notebook_path": "nb.ipynb"}}]}, base_dir=tmp_path)
    run = workspace.run_now(job_id)
    assert set(task_states(run).values()) == {"FAILED"}
    errors = {t["task_key"]: workspace.get_run_output(t["run_id"])["error"] for t in run["tasks"]}
    assert errors == {
        "existing": "task 'existing': existing_cluster_id '0123-prod' is neither a Dask scheduler address "
                    f"(tcp://host:port) nor a cluster named under compute.clusters in {workspace.home / 'config.yml'}"}
    computes = {r["task_key"]: r["compute"] for r in workspace.task_runs(run["run_id"])}
    assert computes == {"existing": "dask existing_cluster:0123-prod"}


@pytest.mark.pure
def test_the_workspace_config_compute_section(tmp_path):
    assert load_compute_config(tmp_path).clusters == {}
    (tmp_path / "config.yml").write_text(
        "compute:\n  kernel_pool_size: 3\n  clusters:\n    analytics: tcp://10.0.0.5:8786\n"
        "  instance_pools:\n    small: {min_idle_instances: 4}\n")
    config = load_compute_config(tmp_path)
    assert config.kernel_pool_size == 3
    assert config.clusters == {"analytics": "tcp://10.0.0.5:8786"}
    assert config.pool_size_for("small") == 4 and config.pool_size_for("other") is None
    (tmp_path / "config.yml").write_text("compute:\n  clusters:\n    analytics: 10.0.0.5\n")
    with pytest.raises(ConfigError) as err:
        load_compute_config(tmp_path)
    assert str(err.value) == (f"{tmp_path / 'config.yml'}: compute.clusters.analytics must be a Dask scheduler "
                              "address such as tcp://host:8786, got '10.0.0.5'")
    (tmp_path / "config.yml").write_text("compute:\n  kernel_pool_size: many\n")
    with pytest.raises(ConfigError, match="compute.kernel_pool_size must be a whole number >= 0, got 'many'"):
        load_compute_config(tmp_path)


@pytest.mark.pure
def test_the_config_names_the_backend_of_clusters(tmp_path):
    config = load_compute_config(tmp_path)
    assert config.cluster_backend == "dask" and config.named_cluster("x") is None
    (tmp_path / "config.yml").write_text(
        "compute:\n  cluster_backend: local\n  clusters:\n    analytics: tcp://10.0.0.5:8786\n"
        "    sandbox: {backend: toy}\n    gpu: {backend: mine, address: 'mine://gpu-1'}\n"
        "  mine: {zone: b}\n")
    config = load_compute_config(tmp_path)
    assert config.cluster_backend == "local"
    assert config.named_cluster("analytics") == (None, "tcp://10.0.0.5:8786")
    assert config.named_cluster("sandbox") == ("toy", None)
    assert config.named_cluster("gpu") == ("mine", "mine://gpu-1")
    assert config.options_for("mine") == {"zone": "b"} and config.options_for("dask") == {}
    from nbjobs.compute.registry import backend_for_address
    assert backend_for_address("tcp://10.0.0.5:8786", "local") == "dask"
    assert backend_for_address("mine://gpu-1", "local") == "local"
    (tmp_path / "config.yml").write_text("compute:\n  cluster_backend: [dask]\n")
    with pytest.raises(ConfigError, match=r"compute.cluster_backend must be a compute backend's name, got \['dask'\]"):
        load_compute_config(tmp_path)
    (tmp_path / "config.yml").write_text("compute:\n  dask: 2\n")
    with pytest.raises(ConfigError, match=r"compute.dask \(the dask backend's options\) must be a mapping"):
        load_compute_config(tmp_path)
