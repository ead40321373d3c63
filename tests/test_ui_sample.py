"""The tour `sample_notebooks/build_a_job.ipynb` runs top to bottom in a real kernel (on a copy)."""
from __future__ import annotations

import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = [pytest.mark.timeout(240), pytest.mark.kernels]


def _text(cell) -> str:
    return "".join(str(o.get("text") or o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))


def test_the_tour_runs_unattended(tmp_path, monkeypatch):
    folder = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_notebooks", folder,
                    ignore=shutil.ignore_patterns("warehouse", ".nbjobs", ".ipynb_checkpoints"))
    monkeypatch.setenv("NBJOBS_HOME", str(tmp_path / "home"))
    nb = nbformat.read(folder / "build_a_job.ipynb", as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=dict(os.environ))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    texts = [_text(c) for c in code]
    assert "notebook_path" in texts[1]  # the problem a task without a notebook has
    assert "problems: []" in texts[2]
    assert "'gold': 'failed'" in texts[4] and "'alert': 'succeeded'" in texts[4]
    assert texts[5].startswith("('SUCCESS'") and "'gold': 'succeeded'" in texts[5]
    assert "restaurant-pipeline" in texts[8] and "SUCCESS" in texts[8]
    assert "('0', '')" in texts[-1]
