"""`databricks.sdk.runtime` inside an nbjobs task: `from databricks.sdk.runtime import dbutils` gives nbjobs' dbutils.

The real module builds a `RemoteDbUtils` that needs workspace credentials. A task's kernel or script
process installs this module under that name before user code runs (`install`); nothing changes in
any other Python process. Like the SDK's fallback outside a Databricks runtime, `spark`, `sc`,
`sqlContext`, `sql`, `table` and `udf` are None. Stdlib only; `dbutils` is the shim `install` is given
(`nbjobs.kernel.dbutils.install_runtime`).
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Optional

NAME = "databricks.sdk.runtime"
is_local_implementation = True

dbutils: Any = None  # nbjobs' dbutils, set by install()

spark: Any = None
sc: Any = None
sqlContext: Any = None  # noqa: N816
sql: Any = None
table: Any = None
udf: Any = None
init_runtime_native_auth = None
init_runtime_native_unified = None


def init_runtime_repl_auth():
    return None, None


def init_runtime_legacy_auth():
    return None, None


def display(input: Any = None, *args: Any, **kwargs: Any) -> None:  # noqa: A002 (Databricks' name)
    """Show a value in the notebook (IPython's display)."""
    from IPython import display as ipy_display
    return ipy_display.display(input, *args, **kwargs)


def displayHTML(html: str) -> None:  # noqa: N802 (Databricks' name)
    """Show raw HTML in the notebook."""
    from IPython import display as ipy_display
    return ipy_display.display_html(html, raw=True)


def getArgument(name: str, defaultValue: Optional[str] = None) -> str:  # noqa: N802,N803
    """The widget value `name` (Databricks' legacy `getArgument`)."""
    if defaultValue is None:
        return dbutils.widgets.getArgument(name)
    return dbutils.widgets.getArgument(name, defaultValue)


__all__ = ["display", "displayHTML", "dbutils", "table", "sql", "udf", "getArgument", "sc", "sqlContext",
           "spark"]

_saved: list[Any] = []


def install(shim: Any) -> ModuleType:
    """Make `databricks.sdk.runtime` this module in this process, with `shim` as its `dbutils`
    (idempotent); returns it."""
    global dbutils
    dbutils = shim
    module = sys.modules[__name__]
    current = sys.modules.get(NAME)
    if current is not module:
        _saved.append(current)
        sys.modules[NAME] = module
        parent = sys.modules.get("databricks.sdk")
        if parent is not None:
            setattr(parent, "runtime", module)
    return module


def uninstall() -> None:
    """Undo `install` (the previous module, if any, comes back)."""
    if sys.modules.get(NAME) is not sys.modules[__name__] or not _saved:
        return
    previous = _saved.pop()
    if previous is None:
        sys.modules.pop(NAME, None)
    else:
        sys.modules[NAME] = previous
    parent = sys.modules.get("databricks.sdk")
    if parent is not None:
        if previous is None:
            if getattr(parent, "runtime", None) is sys.modules[__name__]:
                delattr(parent, "runtime")
        else:
            setattr(parent, "runtime", previous)
