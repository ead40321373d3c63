"""Job environments (`environments[].spec`) mapped to kernels: what a task with `environment_key` runs in.

    environments:
      - environment_key: etl
        spec:
          dependencies: ["pandas>=2", "./wheels/mylib-1.0-py3-none-any.whl"]   # Databricks' field
      - environment_key: legacy
        spec: {virtualenv: /opt/venvs/legacy}      # nbjobs: an existing virtualenv (with ipykernel)
      - environment_key: r
        spec: {kernel_name: ir}                    # nbjobs: an installed kernelspec

- `dependencies` already satisfied by this interpreter: the default kernel (nothing to install).
  Otherwise they are installed once with pip into `<NBJOBS_HOME>/envs/<key>-<hash>/site`, and the
  kernel (and a script's interpreter) gets that folder first on PYTHONPATH.
- `virtualenv`: a kernelspec nbjobs writes for that interpreter (`python -m ipykernel_launcher`).
- `kernel_name` (or `kernelspec`): that kernelspec.
Databricks-only fields (`client`, `environment_version`, `base_environment`, `java_dependencies`)
are accepted and ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .base import ComputeError, KernelChoice

_lock = threading.Lock()


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def unsatisfied(dependencies: list[str]) -> list[str]:
    """The requirement lines this interpreter does not satisfy (paths, URLs and options count as unmet)."""
    try:
        from importlib import metadata
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # pragma: no cover - packaging ships with pip's usual companions
        return list(dependencies)
    missing = []
    for line in dependencies:
        text = str(line).strip()
        if not text or text.startswith("#"):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            missing.append(text)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        if req.url:
            missing.append(text)
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def resolve_environment(key: str, spec: dict | None, *, envs_dir: Path, notebook: bool = True) -> KernelChoice:
    """The kernel (`notebook`) or interpreter (a script) for environment `key` (blocking: may run pip once)."""
    spec = dict(spec or {})
    name = spec.get("kernel_name") or spec.get("kernelspec")
    if name:
        if not isinstance(name, str):
            raise ComputeError(f"environment '{key}': spec.kernel_name must be a kernelspec name")
        return KernelChoice(kernel_name=name, environment_key=key)
    venv = spec.get("virtualenv")
    if venv:
        return _virtualenv(key, Path(str(venv)).expanduser(), envs_dir, notebook)
    dependencies = spec.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ComputeError(f"environment '{key}': spec.dependencies must be a list of pip requirement lines")
    missing = unsatisfied(dependencies)
    if not missing:
        return KernelChoice(environment_key=key)
    site = _install(key, dependencies, envs_dir)
    path = os.pathsep.join([str(site), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])])
    return KernelChoice(env={"PYTHONPATH": path}, environment_key=key)


def _install(key: str, dependencies: list[str], envs_dir: Path) -> Path:
    folder = envs_dir / f"{key}-{_digest(sorted(dependencies), sys.version_info[:2], sys.executable)}"
    site = folder / "site"
    done = folder / ".complete"
    if done.exists():
        return site
    folder.mkdir(parents=True, exist_ok=True)
    with _lock, open(folder / ".lock", "w") as lock_file:
        try:
            import fcntl
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # another nbjobs process may be installing it
        except ImportError:  # pragma: no cover - Windows
            pass
        if done.exists():
            return site
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-input", "--target", str(site), *dependencies]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ComputeError(f"environment '{key}': pip could not install {', '.join(dependencies)}: {tail}")
        (folder / "requirements.txt").write_text("\n".join(dependencies) + "\n")
        done.write_text("ok\n")
    return site


def _virtualenv(key: str, venv: Path, envs_dir: Path, notebook: bool) -> KernelChoice:
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        raise ComputeError(f"environment '{key}': spec.virtualenv {venv} has no interpreter at {python}")
    if not notebook:
        return KernelChoice(python=str(python), environment_key=key)
    kernel_name = f"nbjobs-venv-{_digest(str(python))}"
    kernels = envs_dir / "kernels"
    spec_dir = kernels / kernel_name
    if not (spec_dir / "kernel.json").exists():
        check = subprocess.run([str(python), "-c", "import ipykernel"], capture_output=True, text=True)
        if check.returncode != 0:
            raise ComputeError(f"environment '{key}': the virtualenv {venv} cannot run notebooks: ipykernel is "
                               f"not installed there (run: {python} -m pip install ipykernel)")
        spec_dir.mkdir(parents=True, exist_ok=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"nbjobs environment {key}", "language": "python",
            "metadata": {"nbjobs": {"virtualenv": str(venv)}}}, indent=1))
    return KernelChoice(kernel_name=kernel_name, kernel_dirs=[str(kernels)], python=str(python),
                        environment_key=key)
