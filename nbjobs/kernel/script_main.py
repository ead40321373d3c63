"""Start a Python-script task: `python -c BOOTSTRAP script.py args...` behaves like `python script.py args...`,
with `databricks.sdk.runtime` giving nbjobs' dbutils in that process. Stdlib only."""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])  # for interpreters where nbjobs is not installed


def bootstrap_code() -> str:
    """The `-c` program that runs `main()` (finds nbjobs even when it is not installed)."""
    return ("import sys\n"
            "try:\n"
            "    import nbjobs.kernel.script_main as m\n"
            "except ImportError:\n"
            f"    sys.path.append({_ROOT!r})\n"
            "    import nbjobs.kernel.script_main as m\n"
            "m.main()\n")


def main() -> None:
    """Run `sys.argv[1]` as `__main__` with `sys.argv[2:]` as its arguments."""
    from .dbutils import install_runtime

    script = os.path.abspath(sys.argv[1])
    if not os.path.isfile(script):
        sys.stderr.write(f"{sys.executable}: can't open file {script!r}: [Errno 2] No such file or directory\n")
        sys.exit(2)
    sys.argv = [script, *sys.argv[2:]]
    sys.path[0] = os.path.dirname(script)
    install_runtime()
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:  # report it as `python script.py` would: the script's own frames
        tb = exc.__traceback__
        while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
            tb = tb.tb_next
        tb = tb or exc.__traceback__
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 1)
