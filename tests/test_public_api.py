import pytest
"""The public surface: a sorted __all__ whose every name resolves, and a cheap `from nbjobs import dbutils`."""
import subprocess
import sys

import nbjobs


@pytest.mark.pure
def test_all_is_sorted_and_every_name_resolves():
    assert nbjobs.__all__ == sorted(nbjobs.__all__)
    for name in nbjobs.__all__:
        assert getattr(nbjobs, name) is not None, name


@pytest.mark.pure
def test_unknown_attribute_is_an_attribute_error():
    try:
        nbjobs.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def loaded_by(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after `statement`."""
    code = f"import sys; {statement}; print([m for m in {modules!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return eval(out)


@pytest.mark.kernels
def test_importing_dbutils_does_not_load_the_orchestrator():
    assert loaded_by("from nbjobs import dbutils", ("sqlalchemy", "pydantic", "papermill", "nbjobs.runner")) == []


@pytest.mark.pure
def test_gc_pause_nests_and_restores_the_collector():
    import gc
    import threading

    from nbjobs._gc import gc_paused

    seen = []

    @gc_paused
    def inner():
        seen.append(gc.isenabled())

    @gc_paused
    def outer():
        inner()
        seen.append(gc.isenabled())
        t = threading.Thread(target=inner)
        t.start()
        t.join()

    assert gc.isenabled()
    outer()
    assert seen == [False, False, False] and gc.isenabled()

    @gc_paused
    def fails():
        raise ValueError("boom")

    try:
        fails()
    except ValueError:
        pass
    assert gc.isenabled()  # restored after an exception too


@pytest.mark.kernels
def test_importing_the_http_client_loads_neither_the_store_nor_the_runner():
    assert loaded_by("import nbjobs.client", ("sqlalchemy", "nbjobs.runner", "nbjobs.store", "nbjobs.service")) == []
