"""Databricks source-format notebooks (`.py` files exported from a Databricks workspace).

A source notebook starts with `# Databricks notebook source`; cells are separated by
`# COMMAND ----------`; a cell whose lines all start with `# MAGIC` holds a magic command
(`%md`, `%sql`, `%sh`, `%pip`, `%run`, ...) and `# DBTITLE 1,Title` names a cell. `read_notebook`
turns such a file into an nbformat v4 notebook that papermill can execute. A `.py` file without the
header is read as one code cell. Stdlib + nbformat only.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

HEADER = "# Databricks notebook source"
SEPARATOR = re.compile(r"^# COMMAND -+[ \t]*$", re.MULTILINE)
_MAGIC = re.compile(r"^# MAGIC ?")
_TITLE = re.compile(r"^# DBTITLE \d+,(.*)$")
_KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
_OTHER_HEADERS = {"-- Databricks notebook source": "SQL", "// Databricks notebook source": "Scala"}


def is_source_notebook(text: str) -> bool:
    """Whether `text` is a Python notebook in Databricks source format."""
    return text.lstrip("\ufeff").startswith(HEADER)


def read_notebook(path: str | os.PathLike) -> Any:
    """The notebook at `path`: `.ipynb` as is, `.py` (Databricks source format or plain) converted."""
    import nbformat

    path = Path(path)
    if path.suffix.lower() == ".ipynb":
        return nbformat.read(str(path), as_version=4)
    return from_source(path.read_text(encoding="utf-8"), base_dir=path.parent)


def from_source(text: str, *, base_dir: Path | None = None) -> Any:
    """An nbformat v4 notebook from the text of a `.py` notebook."""
    import nbformat

    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    for header, language in _OTHER_HEADERS.items():
        if text.startswith(header):
            raise ValueError(f"this is a Databricks {language} notebook; nbjobs runs Python notebooks only")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(_KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    if not is_source_notebook(text):
        nb.cells.append(nbformat.v4.new_code_cell(text.strip("\n")))
        return nb
    body = text.split("\n", 1)[1] if "\n" in text else ""
    for chunk in SEPARATOR.split(body):
        cell = _cell(chunk, base_dir)
        if cell is not None:
            nb.cells.append(cell)
    return nb


def _cell(chunk: str, base_dir: Path | None) -> Any:
    import nbformat

    lines = chunk.strip("\n").split("\n")
    title = None
    if lines and _TITLE.match(lines[0]):
        title = _TITLE.match(lines[0]).group(1).strip()
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not any(line.strip() for line in lines):
        return None
    if all(_MAGIC.match(line) or not line.strip() for line in lines) and any(_MAGIC.match(line) for line in lines):
        cell = _magic_cell([_MAGIC.sub("", line, count=1) for line in lines], base_dir)
    else:
        cell = nbformat.v4.new_code_cell("\n".join(lines).rstrip())
    if title:
        cell.metadata["title"] = title
    return cell


def _magic_cell(lines: list[str], base_dir: Path | None) -> Any:
    """A `# MAGIC` cell: `%md` becomes markdown, `%python` plain code, other magics IPython's own."""
    import nbformat

    while lines and not lines[0].strip():
        lines.pop(0)
    first = lines[0].strip() if lines else ""
    match = re.match(r"%(\w+)\s*(.*)", first)
    if not match:
        return nbformat.v4.new_code_cell("\n".join(lines).rstrip())
    magic, rest = match.group(1).lower(), match.group(2)
    tail = lines[1:]
    if magic in ("md", "md-sandbox"):
        return nbformat.v4.new_markdown_cell("\n".join(([rest] if rest else []) + tail).strip("\n"))
    if magic == "python":
        return nbformat.v4.new_code_cell("\n".join(([rest] if rest else []) + tail).strip("\n"))
    if magic == "run":
        target = _run_target(rest.strip(), base_dir)
        return nbformat.v4.new_code_cell(f"%run -i {target}")
    if magic in ("pip", "conda"):
        return nbformat.v4.new_code_cell("\n".join([first] + tail).rstrip())
    if magic in ("sh", "sql", "scala", "r", "fs"):
        # IPython's %%sh runs shell cells; %%sql needs a SQL magic (e.g. jupysql) in the kernel.
        return nbformat.v4.new_code_cell("\n".join([f"%%{magic} {rest}".rstrip()] + tail).rstrip())
    return nbformat.v4.new_code_cell("\n".join(lines).rstrip())


def _run_target(target: str, base_dir: Path | None) -> str:
    """`%run ./other`: the notebook file it names (`.py` or `.ipynb`), relative to the notebook's folder."""
    target = target.strip().strip("\"'")
    if base_dir is not None and target and not Path(target).suffix:
        for suffix in (".py", ".ipynb"):
            candidate = (base_dir / target).with_name(Path(target).name + suffix)
            if candidate.is_file():
                return f'"{target}{suffix}"'
    return f'"{target}"'
