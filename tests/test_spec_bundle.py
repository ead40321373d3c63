"""Bundles: databricks.yml with include, variables, targets; paths relative to the declaring file."""
from __future__ import annotations

import getpass
import textwrap
from pathlib import Path

import pytest

from nbjobs.spec import JobDefinitionError, load_job

pytestmark = pytest.mark.pure

FIXTURES = Path(__file__).parent / "fixtures" / "spec"
BUNDLE = FIXTURES / "bundle"
SRC = BUNDLE / "src"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "databricks.yml"


def error(path, **kw) -> str:
    with pytest.raises(JobDefinitionError) as info:
        load_job(path, **kw)
    return str(info.value)


def test_default_target_with_include_and_variables():
    loaded = load_job(BUNDLE / "databricks.yml")
    s = loaded.settings
    assert (loaded.resource_key, loaded.target, loaded.source_path) == ("pipeline", "dev", BUNDLE / "databricks.yml")
    assert s.name == "shop-pipeline-dev"  # ${bundle.name}-pipeline-${bundle.target}
    assert [t.task_key for t in s.tasks] == ["ingest", "transform", "fan_out"]
    ingest, transform, fan_out = s.tasks
    # paths are relative to resources/pipeline.job.yml, the file that declares the tasks
    assert ingest.notebook_task.notebook_path == str(SRC / "ingest.ipynb")  # extension fallback
    assert transform.spark_python_task.python_file == str(SRC / "transform.py")
    assert transform.libraries == [{"requirements": str(BUNDLE / "requirements.txt")}]
    assert fan_out.for_each_task.task.notebook_task.notebook_path == str(SRC / "per_table.ipynb")
    # variables: the dev target's shorthand beats the default; a whole-value ${var.x} keeps its type
    assert ingest.notebook_task.base_parameters == {
        "catalog": "dev_cat", "table": "dev_cat.raw.orders", "owner": getpass.getuser(), "root": str(BUNDLE)}
    assert ingest.max_retries == 1
    # {{...}} references are left for run time
    assert transform.spark_python_task.parameters == [
        "--catalog", "dev_cat", "--run-date", "{{job.parameters.run_date}}"]
    assert fan_out.for_each_task.task.notebook_task.base_parameters == {"table": "{{input}}"}
    # bundles turn queueing on; Databricks-only fields are kept
    assert s.queue.enabled is True
    dumped = s.to_dict()
    assert dumped["permissions"] == [{"level": "CAN_VIEW", "group_name": "users"}]
    assert dumped["job_clusters"][0]["new_cluster"]["num_workers"] == 2


def test_second_target_merges_tasks_by_key_and_parameters_by_name():
    loaded = load_job(BUNDLE / "databricks.yml", target="prod")
    s = loaded.settings
    assert loaded.target == "prod" and s.name == "shop-pipeline-prod"
    assert [t.task_key for t in s.tasks] == ["ingest", "transform", "fan_out", "publish"]
    ingest = s.tasks[0]
    assert ingest.max_retries == 3  # the target's field merged into the base task
    assert ingest.job_cluster_key == "main"  # base fields kept
    # the override's path is relative to databricks.yml, where it is declared
    assert ingest.notebook_task.notebook_path == str(SRC / "prod_ingest.ipynb")
    assert ingest.notebook_task.base_parameters["catalog"] == "prod_cat"
    assert s.task("publish").notebook_task.notebook_path == str(SRC / "publish.ipynb")
    assert [(p.name, p.default) for p in s.parameters] == [
        ("env", "production"), ("run_date", "{{job.trigger.time.iso_date}}")]


def test_var_beats_environment_beats_target(monkeypatch):
    monkeypatch.setenv("BUNDLE_VAR_catalog", "env_cat")
    monkeypatch.setenv("BUNDLE_VAR_schema", "env_schema")
    params = load_job(BUNDLE, variables={"catalog": "cli_cat"}).settings.tasks[0].notebook_task.base_parameters
    assert params["catalog"] == "cli_cat"
    assert params["table"] == "cli_cat.env_schema.orders"
    monkeypatch.delenv("BUNDLE_VAR_catalog")
    assert load_job(BUNDLE, target="prod").settings.tasks[0].notebook_task.base_parameters["table"] == \
        "prod_cat.env_schema.orders"


def test_resource_file_loads_through_its_bundle():
    loaded = load_job(BUNDLE / "resources" / "pipeline.job.yml")
    assert loaded.resource_key == "pipeline" and loaded.target == "dev"
    assert loaded.settings.tasks[0].notebook_task.base_parameters["catalog"] == "dev_cat"
    assert loaded.source_path == BUNDLE / "resources" / "pipeline.job.yml"


def test_several_jobs_need_job():
    path = FIXTURES / "multi" / "databricks.yml"
    assert error(path) == (
        f"{path}: invalid job definition, 1 problem:\n"
        "  - resources.jobs: the bundle has 2 jobs; say which one to load. "
        "Fix: choose one with --job (job= in Python): alpha_job (Alpha), beta_job (Beta).")
    assert load_job(path, job="beta_job").settings.name == "Beta"
    by_name = load_job(path, job="Alpha")
    assert by_name.resource_key == "alpha_job"
    assert by_name.settings.tasks[0].notebook_task.notebook_path == str(FIXTURES / "multi" / "nb.ipynb")
    assert "the bundle has no job 'alpha' (did you mean 'alpha_job'?). Fix: use one of: alpha_job (Alpha), " \
           "beta_job (Beta)." in error(path, job="alpha")


def test_unknown_target_lists_the_targets():
    assert "targets: unknown target 'staging'. Fix: use one of the bundle's targets: dev, prod." in \
        error(BUNDLE, target="staging")


def test_variable_without_value(tmp_path: Path):
    path = write(tmp_path, {"databricks.yml": """
        bundle: {name: b}
        variables:
          warehouse: {description: no default}
        resources:
          jobs:
            j:
              tasks: [{task_key: a, notebook_task: {notebook_path: "${var.warehouse}"}}]
        """})
    assert "variables.warehouse: the variable 'warehouse' has no value. Fix: give it a default, a value in the " \
           "target, --var warehouse=value or the environment variable BUNDLE_VAR_warehouse." in error(path)


def test_unknown_variable_reference(tmp_path: Path):
    (tmp_path / "nb.ipynb").write_text("{}")
    path = write(tmp_path, {"databricks.yml": """
        bundle: {name: b}
        variables: {catalog: {default: c}}
        resources:
          jobs:
            j:
              tasks:
                - task_key: a
                  notebook_task: {notebook_path: nb, base_parameters: {x: "${var.catalgo}", y: "${var.nope}"}}
        """})
    text = error(path)
    assert "resources.jobs.j.tasks[0] (a).notebook_task.base_parameters.x: unknown variable ${var.catalgo} " \
           "(did you mean 'catalog'?). Fix: declare 'catalgo' under variables: in databricks.yml, or fix the name." \
           in text
    assert "base_parameters.y: unknown variable ${var.nope}" in text


def test_target_variable_must_be_declared(tmp_path: Path):
    path = write(tmp_path, {"databricks.yml": """
        bundle: {name: b}
        targets:
          dev: {default: true, variables: {catalog: x}}
        resources: {jobs: {j: {tasks: [{task_key: a, notebook_task: {notebook_path: nb}}]}}}
        """})
    assert "targets.dev.variables.catalog: the variable 'catalog' is not declared at the top level. " \
           "Fix: declare it under variables: in databricks.yml (catalog: {default: ...})." in error(path)


def test_undeclared_cli_variable(tmp_path: Path):
    path = write(tmp_path, {"databricks.yml": """
        variables: {a: {default: "1"}}
        resources: {jobs: {j: {tasks: [{task_key: a, notebook_task: {notebook_path: nb}}]}}}
        """})
    assert "--var b: no variable 'b' is declared in the bundle" in error(path, variables={"b": "2"})


def test_problems_in_a_bundle_job_name_its_resource_path(tmp_path: Path):
    path = write(tmp_path, {"databricks.yml": """
        resources:
          jobs:
            j:
              tasks:
                - {task_key: a, run_if: SOMETIMES, notebook_task: {notebook_path: nb}}
        """})
    text = error(path)
    assert "resources.jobs.j.tasks[0] (a).run_if: 'SOMETIMES' is not a run_if value" in text
    assert f"resources.jobs.j.tasks[0] (a).notebook_task.notebook_path: notebook not found: {tmp_path}/nb " in text


def test_include_rules(tmp_path: Path):
    for name in ("a.ipynb", "jobs/b.ipynb"):
        write(tmp_path, {name: "{}"})
    write(tmp_path, {
        "databricks.yml": """
            bundle: {name: inc}
            include: [jobs/*.yml, missing.yml]
            """,
        "jobs/one.yml": """
            include: [other.yml]
            variables: {v: {default: from_include}}
            resources:
              jobs:
                one: {tasks: [{task_key: a, notebook_task: {notebook_path: b, base_parameters: {v: "${var.v}"}}}]}
            """,
        "jobs/two.yml": """
            resources:
              jobs:
                one: {tasks: [{task_key: b, notebook_task: {notebook_path: ../a}}]}
            """,
    })
    text = error(tmp_path)
    assert "include: no file matches 'missing.yml'" in text
    assert "jobs/one.yml: include: include is only read from databricks.yml." in text
    assert "resources.jobs.one: the job 'one' is defined in both jobs/one.yml and jobs/two.yml." in text

    write(tmp_path, {"databricks.yml": "include: [jobs/one.yml]\n", "jobs/one.yml": """
        variables: {v: {default: from_include}}
        resources:
          jobs:
            one: {tasks: [{task_key: a, notebook_task: {notebook_path: b, base_parameters: {v: "${var.v}"}}}]}
        """})
    task = load_job(tmp_path).settings.tasks[0]
    assert task.notebook_task.notebook_path == str(tmp_path / "jobs" / "b.ipynb")
    assert task.notebook_task.base_parameters == {"v": "from_include"}


def test_target_choice_rules(tmp_path: Path):
    write(tmp_path, {"nb.ipynb": "{}", "databricks.yml": """
        bundle: {name: t}
        targets: {a: {}, b: {}}
        resources: {jobs: {j: {name: "${bundle.name}/${bundle.target}/${bundle.environment}",
                               tasks: [{task_key: a, notebook_task: {notebook_path: nb}}]}}}
        """})
    assert "targets: the bundle has 2 targets and none is the default. " \
           "Fix: choose one with --target (target= in Python): a, b." in error(tmp_path)
    assert load_job(tmp_path, target="b").settings.name == "t/b/b"
    write(tmp_path, {"databricks.yml": """
        bundle: {name: t}
        resources: {jobs: {j: {name: "${bundle.target}", tasks: [{task_key: a, notebook_task: {notebook_path: nb}}]}}}
        """})
    loaded = load_job(tmp_path)
    assert loaded.target == "default" and loaded.settings.name == "default"


def test_interpolation_details(tmp_path: Path):
    write(tmp_path, {"nb.ipynb": "{}", "databricks.yml": """
        bundle: {name: i, git: {branch: main}}
        workspace: {host: https://example.com}
        variables:
          base: {default: "${bundle.name}-base"}
          derived: {default: "${var.base}-x"}
          cfg: {type: complex, default: {workers: 2, tags: [a]}}
          lookup_var: {lookup: {cluster: my-cluster}}
        resources:
          jobs:
            j:
              name: "${var.derived}"
              queue: {enabled: false}
              tags: {branch: "${bundle.git.branch}", host: "${workspace.host}", cfg: "cfg=${var.cfg}",
                     n: "${var.cfg.workers}", deploy: "${resources.jobs.other.id}"}
              job_clusters: [{job_cluster_key: c, new_cluster: "${var.cfg}"}]
              tasks: [{task_key: a, notebook_task: {notebook_path: nb}}]
        """})
    s = load_job(tmp_path).settings
    assert s.name == "i-base-x"
    assert s.queue.enabled is False  # an explicit queue setting is kept
    assert s.tags == {"branch": "main", "host": "https://example.com", "cfg": 'cfg={"workers": 2, "tags": ["a"]}',
                      "n": "2", "deploy": "${resources.jobs.other.id}"}  # deploy-time values are left as written
    assert s.job_clusters[0].new_cluster == {"workers": 2, "tags": ["a"]}  # a whole ${var.x} keeps its type
    write(tmp_path, {"databricks.yml": """
        variables:
          lookup_var: {lookup: {cluster: my-cluster}}
        resources:
          jobs:
            j:
              tasks: [{task_key: a, existing_cluster_id: "${var.lookup_var}", notebook_task: {notebook_path: nb}}]
        """})
    assert "resources.jobs.j.tasks[0] (a).existing_cluster_id: the variable 'lookup_var' is a lookup, which nbjobs " \
           "cannot resolve locally. Fix: give it a value: --var lookup_var=value" in error(tmp_path)
    assert load_job(tmp_path, variables={"lookup_var": "c-1"}).settings.tasks[0].existing_cluster_id == "c-1"


def test_git_source_keeps_paths_as_written(tmp_path: Path):
    write(tmp_path, {"databricks.yml": """
        resources:
          jobs:
            j:
              git_source: {git_url: "https://example.com/r.git", git_provider: gitHub, git_branch: main}
              tasks: [{task_key: a, notebook_task: {notebook_path: src/nb}}]
        """})
    assert load_job(tmp_path).settings.tasks[0].notebook_task.notebook_path == "src/nb"
