"""`dbutils.widgets`: job parameters in a job, real ipywidgets controls outside one."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from .context import TaskContext

_MISSING = object()


class InputWidgetNotDefined(Exception):
    """`dbutils.widgets.get` of a name that has neither a job parameter nor a widget."""

    def __init__(self, name: str):
        super().__init__(f"InputWidgetNotDefined: No input widget named '{name}' is defined")
        self.name = name


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"Widget name must be a non-empty string, got {name!r}")
    return name


def _choices(kind: str, name: str, choices: Iterable[Any]) -> list[str]:
    if isinstance(choices, (str, bytes)) or choices is None:
        raise TypeError(f"choices of {kind} widget '{name}' must be a list of strings, got {choices!r}")
    out = [_text(c) for c in choices]
    if not out:
        raise ValueError(f"{kind.capitalize()} widget '{name}' needs at least one choice")
    return out


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(repr(i) for i in items)


def _multi_default(name: str, default: str, choices: list[str]) -> tuple[str, ...]:
    picked = (default,) if default in choices else tuple(v for v in default.split(",") if v != "")
    bad = [v for v in picked if v not in choices]
    if bad:
        raise ValueError(f"Default value {default!r} of multiselect widget '{name}' must be among the "
                         f"choices: {_quoted(choices)}")
    return picked


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


class WidgetsUtils:
    """Databricks `dbutils.widgets`. Values are always strings; a multiselect value is comma-joined."""

    def __init__(self, context: Callable[[], TaskContext | None]):
        self._context = context
        self._defaults: dict[str, str] = {}      # job mode (and no-ipywidgets fallback)
        self._controls: dict[str, tuple[str, Any]] = {}  # interactive: name -> (kind, ipywidgets control)

    # -- reading ---------------------------------------------------------------------------------
    def get(self, name: str) -> str:
        """The job-supplied value, else the widget's (current or default) value."""
        ctx = self._context()
        if ctx is not None and name in ctx.parameters:
            return ctx.parameters[name]
        if name in self._controls:
            kind, control = self._controls[name]
            return _control_value(kind, control)
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(name)

    def getArgument(self, name: str, optional: Any = _MISSING) -> str:  # noqa: N802 (Databricks name)
        """Deprecated Databricks form of `get`; returns `optional` when the widget is not defined."""
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            if optional is _MISSING:
                raise
            return optional

    def getAll(self) -> dict[str, str]:  # noqa: N802
        """All widget values and job parameters, by name."""
        values = dict(self._defaults)
        values.update({n: _control_value(k, c) for n, (k, c) in self._controls.items()})
        ctx = self._context()
        if ctx is not None:
            values.update(ctx.parameters)
        return values

    # -- declaring ------------------------------------------------------------------------------
    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:  # noqa: N803
        name = _check_name(name)
        self._declare("text", name, _text(defaultValue), None, label)

    def dropdown(self, name: str, defaultValue: str, choices: Iterable[str],  # noqa: N803
                 label: str | None = None) -> None:
        name, default = _check_name(name), _text(defaultValue)
        options = _choices("dropdown", name, choices)
        if default not in options:
            raise ValueError(f"Default value {default!r} of dropdown widget '{name}' must be one of the "
                             f"choices: {_quoted(options)}")
        self._declare("dropdown", name, default, options, label)

    def combobox(self, name: str, defaultValue: str, choices: Iterable[str],  # noqa: N803
                 label: str | None = None) -> None:
        name = _check_name(name)
        self._declare("combobox", name, _text(defaultValue), _choices("combobox", name, choices), label)

    def multiselect(self, name: str, defaultValue: str, choices: Iterable[str],  # noqa: N803
                    label: str | None = None) -> None:
        name, default = _check_name(name), _text(defaultValue)
        options = _choices("multiselect", name, choices)
        picked = _multi_default(name, default, options)
        self._declare("multiselect", name, ",".join(picked), options, label)

    def remove(self, name: str) -> None:
        """Remove a widget (its control is closed). A job parameter of that name stays readable."""
        found = self._defaults.pop(name, None) is not None
        entry = self._controls.pop(name, None)
        if entry is not None:
            entry[1].close()
            found = True
        if not found:
            raise InputWidgetNotDefined(name)

    def removeAll(self) -> None:  # noqa: N802
        for _, control in self._controls.values():
            control.close()
        self._controls.clear()
        self._defaults.clear()

    def __repr__(self) -> str:
        return "<dbutils.widgets: get, getArgument, getAll, text, dropdown, combobox, multiselect, remove, " \
               "removeAll>"

    # -- internals ------------------------------------------------------------------------------
    def _declare(self, kind: str, name: str, default: str, options: list[str] | None,
                 label: str | None) -> None:
        if self._context() is not None:  # in a job: no controls, the default is a fallback value
            self._defaults[name] = default
            return
        try:
            import ipywidgets
        except ImportError:  # pragma: no cover - ipywidgets is a dependency
            self._defaults[name] = default
            return
        description = label or name
        existing = self._controls.get(name)
        if existing is not None and existing[0] == kind:
            control = existing[1]
            _update_control(kind, control, default, options, description)
        else:
            if existing is not None:
                existing[1].close()
            control = _new_control(ipywidgets, kind, default, options, description)
            self._controls[name] = (kind, control)
        self._defaults.pop(name, None)
        if _in_ipython():
            from IPython.display import display
            display(control)


_STYLE = {"description_width": "initial"}


def _new_control(ipywidgets: Any, kind: str, default: str, options: list[str] | None, description: str) -> Any:
    if kind == "text":
        return ipywidgets.Text(value=default, description=description, style=_STYLE)
    if kind == "dropdown":
        return ipywidgets.Dropdown(options=options, value=default, description=description, style=_STYLE)
    if kind == "combobox":
        return ipywidgets.Combobox(options=options, value=default, ensure_option=False,
                                   description=description, style=_STYLE)
    picked = tuple(v for v in default.split(",") if v) if default not in (options or []) else (default,)
    return ipywidgets.SelectMultiple(options=options, value=picked, description=description, style=_STYLE)


def _update_control(kind: str, control: Any, default: str, options: list[str] | None, description: str) -> None:
    """Re-declared widget: keep the user's current value when it is still valid."""
    control.description = description
    if kind == "text":
        return
    current = control.value
    if list(control.options) != options:
        control.options = options  # resets the value; then restore it
        if kind == "dropdown":
            control.value = current if current in options else default
        elif kind == "multiselect":
            kept = tuple(v for v in current if v in options)
            control.value = kept or tuple(v for v in default.split(",") if v in options)
        elif kind == "combobox":
            control.value = current


def _control_value(kind: str, control: Any) -> str:
    value = control.value
    if kind == "multiselect":
        return ",".join(_text(v) for v in value)
    return _text(value)
