"""The DAG drawn by ipycytoscape (dagre, top-down), coloured by task state.

Each cytoscape node has `id` = task_key and carries its state twice: as `data.state` and as a
class `state-<state>` (the colour comes from the class). Browser tests read both from the
cytoscape instance cytoscape.js keeps on its container element (`element._cyreg.cy`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import ipywidgets as widgets

from .states import NO_RUN, STATES, legend_html

GRAPH_CLASS = "nbjobs-graph"
_CSS = f"""<style>
.{GRAPH_CLASS} {{ height: 440px !important; width: 100% !important; min-width: 320px;
  border: 1px solid #e0e0e0; border-radius: 4px; background: #fff; resize: vertical; }}
</style>"""


@dataclass(frozen=True)
class GraphTask:
    """What the graph needs of a task: key, kind and dependencies ((upstream, outcome or None), ...)."""
    key: str
    kind: str = "notebook"
    depends_on: tuple[tuple[str, str | None], ...] = ()
    disabled: bool = False


@dataclass
class _Shown:
    structure: tuple = ()
    states: dict[str, str] = field(default_factory=dict)
    progress: dict[str, str | None] = field(default_factory=dict)
    problems: frozenset = frozenset()
    selected: str | None = None


def _style() -> list[dict]:
    style = [
        {"selector": "node", "style": {
            "label": "data(label)", "text-valign": "center", "text-halign": "center", "text-wrap": "wrap",
            "shape": "round-rectangle", "width": "data(w)", "height": "data(h)", "font-size": 12,
            "font-family": "Helvetica, Arial, sans-serif", "background-color": "#ffffff",
            "border-width": 2, "border-color": "#90a4ae", "color": "#263238"}},
        {"selector": "node.kind-condition", "style": {"shape": "diamond"}},
        {"selector": "node.kind-for_each", "style": {"border-style": "double", "border-width": 5}},
        {"selector": "node.kind-python", "style": {"shape": "rectangle"}},
        {"selector": "node.kind-run_job", "style": {"shape": "cut-rectangle"}},
        {"selector": "node.task-disabled", "style": {"opacity": 0.6}},
    ]
    for name, _label, fill, border, text in STATES:
        style.append({"selector": f"node.state-{name}",
                      "style": {"background-color": fill, "border-color": border, "color": text}})
    style += [
        {"selector": "node.state-running", "style": {"border-width": 3, "border-style": "dashed"}},
        {"selector": "node.state-excluded", "style": {"border-style": "dotted"}},
        {"selector": "node.has-problem", "style": {"border-color": "#d50000", "border-width": 3,
                                                   "border-style": "dashed"}},
        {"selector": "node.selected-task", "style": {"underlay-color": "#1e88e5", "underlay-padding": 5,
                                                     "underlay-opacity": 0.25}},
        {"selector": "edge", "style": {
            "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2, "line-color": "#b0bec5",
            "target-arrow-color": "#b0bec5", "arrow-scale": 1.1}},
        {"selector": "edge[label]", "style": {
            "label": "data(label)", "font-size": 11, "text-background-color": "#ffffff",
            "text-background-opacity": 1, "text-background-padding": 2}},
        {"selector": "edge.outcome-true", "style": {"line-color": "#43a047", "target-arrow-color": "#43a047",
                                                    "color": "#2e7d32"}},
        {"selector": "edge.outcome-false", "style": {"line-color": "#e53935", "target-arrow-color": "#e53935",
                                                     "color": "#c62828"}},
    ]
    return style


class DagGraph(widgets.VBox):
    """The job's DAG with a state legend. Thread-safe: runs update it from a background thread."""

    def __init__(self, on_node_click: Callable[[str], None] | None = None, **kwargs):
        try:
            import ipycytoscape
        except ImportError as exc:  # pragma: no cover - part of the ui extra
            raise ImportError("the nbjobs panel draws its graph with ipycytoscape: "
                              "pip install 'nbjobs[ui]' (or ipycytoscape==1.3.3)") from exc

        self._cy_mod = ipycytoscape
        self.cyto = ipycytoscape.CytoscapeWidget()
        self.cyto.add_class(GRAPH_CLASS)
        self.cyto.min_zoom = 0.2
        self.cyto.max_zoom = 1.5
        self.cyto.wheel_sensitivity = 0.3
        self.cyto.set_style(_style())
        self.cyto.set_layout(name="dagre", rankDir="TB", nodeSep=24, rankSep=46, padding=16, fit=True,
                             animate=False)
        self.cyto.on("node", "click", self._clicked)
        self.legend = widgets.HTML(legend_html())
        self.caption = widgets.HTML("")
        self.caption.add_class("nbjobs-graph-caption")
        super().__init__([widgets.HTML(_CSS), self.caption, self.cyto, self.legend], **kwargs)
        self.add_class("nbjobs-dag")
        self._on_click = on_node_click
        self._lock = threading.RLock()
        self._nodes: dict[str, object] = {}
        self._retired: list = []
        self._shown = _Shown()

    # -- public -------------------------------------------------------------------------------
    def show(self, tasks: Iterable[GraphTask], *, states: Mapping[str, str] | None = None,
             progress: Mapping[str, str | None] | None = None, problems: Iterable[str] = (),
             selected: str | None = None, caption: str | None = None) -> None:
        """Draw `tasks` (re-laid out only when the structure changed) with states and marks."""
        tasks = list(tasks)
        structure = tuple(tasks)
        states = dict(states or {})
        progress = dict(progress or {})
        problems = frozenset(problems)
        with self._lock:
            if caption is not None and self.caption.value != caption:
                self.caption.value = caption
            if structure != self._shown.structure:
                self._rebuild(tasks, states, progress, problems, selected)
            else:
                for task in tasks:
                    self._update_node(task, states, progress, problems, selected)
            self._shown = _Shown(structure, states, progress, problems, selected)

    @property
    def states(self) -> dict[str, str]:
        """{task_key: state} as drawn (NO_RUN for tasks without one)."""
        with self._lock:
            return {k: self._shown.states.get(k, NO_RUN) for k in self._nodes}

    def node(self, key: str):
        """The ipycytoscape Node of a task (tests read its classes and data)."""
        return self._nodes[key]

    @property
    def edges(self) -> list[dict]:
        return [dict(e.data) for e in self.cyto.graph.edges]

    def click(self, key: str) -> None:
        """What a click on the node does (for tests and keyboard users)."""
        self._clicked({"data": {"id": key}})

    # -- internals ----------------------------------------------------------------------------
    def _clicked(self, target: dict) -> None:
        key = (target.get("data") or {}).get("id")
        if key is not None and self._on_click is not None:
            self._on_click(key)

    def _node_look(self, task: GraphTask, states, progress, problems, selected) -> tuple[dict, str]:
        state = states.get(task.key, NO_RUN)
        label = task.key
        extra = progress.get(task.key)
        if extra:
            label += f"\n{extra}"
        lines = label.split("\n")
        width = max(84, 7.4 * max(len(s) for s in lines) + 26)
        if task.kind == "condition":
            width += 34
        height = 34 + 15 * (len(lines) - 1) + (12 if task.kind == "condition" else 0)
        data = {"id": task.key, "label": label, "kind": task.kind, "state": state, "w": width, "h": height}
        classes = [f"kind-{task.kind}", f"state-{state}"]
        if task.disabled:
            classes.append("task-disabled")
        if task.key in problems:
            classes.append("has-problem")
        if task.key == selected:
            classes.append("selected-task")
        return data, " ".join(classes)

    def _update_node(self, task: GraphTask, states, progress, problems, selected) -> None:
        node = self._nodes.get(task.key)
        if node is None:
            return
        data, classes = self._node_look(task, states, progress, problems, selected)
        if dict(node.data) != data:
            node.data = data
        if node.classes != classes:
            node.classes = classes

    def _rebuild(self, tasks: list[GraphTask], states, progress, problems, selected) -> None:
        cy = self._cy_mod
        keys = {t.key for t in tasks}
        nodes = {}
        for task in tasks:
            data, classes = self._node_look(task, states, progress, problems, selected)
            nodes[task.key] = cy.Node(data=data, classes=classes, grabbable=True)
        edges = []
        for task in tasks:
            for upstream, outcome in task.depends_on:
                if upstream not in keys or upstream == task.key:
                    continue
                data = {"id": f"{upstream}->{task.key}", "source": upstream, "target": task.key}
                classes = "directed"
                if outcome is not None:
                    data["label"] = str(outcome)
                    classes += f" outcome-{outcome}"
                edges.append(cy.Edge(data=data, classes=classes))
        old = list(self.cyto.graph.nodes) + list(self.cyto.graph.edges)
        # Two messages: the browser removes the old elements a moment after it adds new ones in
        # one update (ipywidgets' ViewList), which would clash on the ids (= task keys) kept.
        if old:
            with self.cyto.graph.hold_sync():
                self.cyto.graph.edges = []
                self.cyto.graph.nodes = []
        with self.cyto.graph.hold_sync():
            self.cyto.graph.nodes = list(nodes.values())
            self.cyto.graph.edges = edges
        self._nodes = nodes
        # The browser removes the old elements' views; close their models one rebuild later.
        for widget in self._retired:
            widget.close()
        self._retired = old
