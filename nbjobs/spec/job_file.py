"""Load a job file: a JobSettings document (JSON or YAML, a jobs/get dump, a jobs/create body) or one job
of a Databricks Asset Bundle (databricks.yml)."""
from __future__ import annotations

import os
from pathlib import Path

from .bundle import load_bundle
from .load import BUNDLE_FILES, LoadedJob, is_bundle, job_settings_of, parse_job_settings, read_document
from .models import as_text
from ..errors import JobDefinitionError, Problem


def load_job(path: str | os.PathLike, *, job: str | None = None, target: str | None = None,
             variables: dict[str, str] | None = None) -> LoadedJob:
    """Load and validate a job file; raises JobDefinitionError listing every problem.

    ``path``: a .json/.yml/.yaml JobSettings file, a jobs/get dump, a jobs/create body, a bundle
    ``databricks.yml`` (or a bundle folder, or a bundle resource file). ``job``, ``target`` and
    ``variables`` (``--var`` values) apply to bundles.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if path.is_dir():
        found = [path / n for n in BUNDLE_FILES if (path / n).is_file()]
        if not found:
            raise JobDefinitionError([Problem("", f"{path} is a folder without a databricks.yml",
                                              "give the path of a job file or of a bundle folder")])
        path = found[0]
    data = read_document(path)
    if is_bundle(path, data):
        return load_bundle(path, data, job=job, target=target, variables=variables)
    settings = job_settings_of(data, path)
    if job is not None and as_text(settings.get("name")) != job:
        raise JobDefinitionError([Problem("name", f"{path.name} holds the job "
                                          f"'{settings.get('name', 'Untitled')}', not '{job}'",
                                          "leave out the job name, or give the right file")], source=path)
    return LoadedJob(parse_job_settings(settings, base_dir=path.parent, source=path), path)
