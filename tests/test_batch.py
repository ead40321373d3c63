"""Parameterised notebook batches: the CLI table and the Python API, and repairing a batch."""
from __future__ import annotations

import json

import nbformat
import pytest

from nbjobs.batch import batch_settings, combinations, parse_grid, run_batch
from nbjobs.cli import main
from conftest import write_notebook, write_script

pytestmark = pytest.mark.timeout(120)


@pytest.mark.kernels
def test_cli_batch_runs_the_product_of_the_grids_and_prints_a_table(workspace, tmp_path, capsys):
    write_notebook(tmp_path / "report.ipynb",
                   ('region = "all"\nyear = "2000"\nmode = "x"', ["parameters"]),
                   """
                   print(f"report {region} {year} {mode}")
                   if (region, year) == ("south", "2025"):
                       raise ValueError("no data for south 2025")
                   """)
    code = main(["--home", str(workspace.home), "batch", str(tmp_path / "report.ipynb"),
                 "--grid", "region=north,south", "--grid", "year=2024,2025", "--param", "mode=full",
                 "--concurrency", "2"])
    captured = capsys.readouterr()
    assert code == 1, captured.err  # one combination failed
    table = captured.out
    lines = [line for line in table.splitlines() if line.startswith(("│ north", "│ south"))]
    assert len(lines) == 4
    assert all(state in line for line, state in zip(lines, ["SUCCESS", "SUCCESS", "SUCCESS", "FAILED"]))
    assert "no data for south 2025" in table
    assert "3 of 4 succeeded; rerun the failed ones with: nbjobs runs repair" in table.replace("\n", " ")

    run = workspace.list_runs()[0]
    loop = workspace.get_run(run["run_id"])["tasks"][0]
    iterations = workspace.get_run(loop["run_id"])["iterations"]
    texts = []
    for it in iterations:
        nb = nbformat.read(it["run_page_url"].removeprefix("file://"), as_version=4)
        texts.append("".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])))
    assert [t.split("\n")[0] for t in texts] == ["report north 2024 full", "report north 2025 full",
                                                  "report south 2024 full", "report south 2025 full"]


@pytest.mark.kernels
def test_python_batch_of_a_script_and_a_repair_of_its_failed_combination(workspace, tmp_path):
    script = write_script(tmp_path / "fit.py", """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--alpha"); p.add_argument("--seed"); p.add_argument("--data")
        a = p.parse_args()
        print("fit", a.alpha, a.seed, a.data)
        if a.alpha == "0.5" and a.seed == "2":
            raise SystemExit("diverged")
    """)
    result = run_batch(script, {"alpha": [0.1, 0.5], "seed": [1, 2]}, params={"data": "train.csv"},
                       concurrency=3, workspace=workspace)
    assert not result.ok
    assert [(r.parameters, r.state) for r in result.rows] == [
        ({"alpha": "0.1", "seed": "1"}, "SUCCESS"), ({"alpha": "0.1", "seed": "2"}, "SUCCESS"),
        ({"alpha": "0.5", "seed": "1"}, "SUCCESS"), ({"alpha": "0.5", "seed": "2"}, "FAILED")]
    assert "fit 0.1 1 train.csv" in open(result.rows[0].output_path).read()
    assert "diverged" in result.rows[3].error

    script.write_text(script.read_text().replace('raise SystemExit("diverged")', 'print("converged")'))
    repaired = workspace.repair_run(result.run_id, rerun_all_failed_tasks=True)
    assert repaired["state"]["result_state"] == "SUCCESS"
    loop = repaired["tasks"][0]
    stats = loop["for_each_task"]["stats"]["task_run_stats"]
    assert stats["succeeded_iterations"] == 4
    iterations = workspace.get_run(loop["run_id"])["iterations"]
    assert [i["run_id"] for i in iterations[:3]] == [r.task_run_id for r in result.rows[:3]]  # kept
    assert iterations[3]["run_id"] != result.rows[3].task_run_id
    # the same notebook's batches share one job
    again = run_batch(script, {"alpha": [0.1]}, params={"seed": 1, "data": "x"}, workspace=workspace)
    assert again.ok and again.job_id == result.job_id


@pytest.mark.pure
def test_batch_input_errors():
    assert parse_grid(["a=1,2", "b=x", "a=3"]) == {"a": ["1", "2", "3"], "b": ["x"]}
    with pytest.raises(ValueError, match=r"--grid 'region': expected NAME=V1,V2"):
        parse_grid(["region"])
    with pytest.raises(ValueError, match="a batch needs at least one grid"):
        combinations({})
    with pytest.raises(ValueError, match="the grids make 10,000 combinations; the limit is 5,000 iterations"):
        combinations({"a": range(100), "b": range(100)})
    with pytest.raises(ValueError, match="mode is both a grid and a fixed parameter"):
        batch_settings("nb.ipynb", {"mode": ["a"]}, params={"mode": "b"})
    settings = batch_settings("my-nb.ipynb", {"my-param": ["a"]})
    nested = settings["tasks"][0]["for_each_task"]["task"]
    assert nested["notebook_task"]["base_parameters"] == {"my-param": "{{input.`my-param`}}"}
    assert json.loads(settings["tasks"][0]["for_each_task"]["inputs"]) == [{"my-param": "a"}]
