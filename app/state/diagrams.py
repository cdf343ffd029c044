"""Diagrams of the machines, built once per machine from the same definition that fires them:
Mermaid via `transitions`' GraphMachine, and a self-contained SVG (no Graphviz binary needed)."""

from __future__ import annotations

from functools import lru_cache
from html import escape

from transitions.extensions import GraphMachine

from app.state.registry import WORKFLOWS


class _Probe:
    def __init__(self, state: str) -> None:
        self.state = state


@lru_cache(maxsize=64)
def mermaid(name: str) -> str:
    workflow = WORKFLOWS[name]
    graph = GraphMachine(
        model=None,
        states=workflow.states,
        initial=workflow.initial,
        auto_transitions=False,
        graph_engine="mermaid",
        title=name,
        show_conditions=False,
        transitions=[{"trigger": r.action, "source": list(r.source), "dest": r.dest} for r in workflow.rules],
    )
    probe = _Probe(workflow.initial)
    graph.add_model(probe)
    try:
        return probe.get_graph().draw(None)  # type: ignore[attr-defined]  # added to the model by transitions at run time
    finally:
        graph.remove_model(probe)


@lru_cache(maxsize=64)
def svg(name: str) -> str:
    workflow = WORKFLOWS[name]
    depth = {workflow.initial: 0}
    frontier = [workflow.initial]
    while frontier:
        nxt = []
        for state in frontier:
            for r in workflow.rules:
                if state in r.source and r.dest and r.dest not in depth:
                    depth[r.dest] = depth[state] + 1
                    nxt.append(r.dest)
        frontier = nxt
    for state in workflow.states:
        depth.setdefault(state, max(depth.values()) + 1)
    columns: dict[int, list[str]] = {}
    for state in workflow.states:
        columns.setdefault(depth[state], []).append(state)
    box_w, box_h, gap_x, gap_y, pad = 170, 36, 90, 40, 30
    pos = {}
    for col, states in columns.items():
        for row, state in enumerate(states):
            pos[state] = (pad + col * (box_w + gap_x), pad + 20 + row * (box_h + gap_y))
    width = pad * 2 + (max(columns) + 1) * (box_w + gap_x)
    height = pad * 2 + 20 + max(len(s) for s in columns.values()) * (box_h + gap_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
        f'<text x="{pad}" y="{pad}" font-size="15" font-weight="bold">{escape(name)}</text>',
    ]
    labels: dict[tuple[str, str], list[str]] = {}
    for r in workflow.rules:
        for source in r.source:
            labels.setdefault((source, r.dest or source), [])
            if r.action not in labels[(source, r.dest or source)]:
                labels[(source, r.dest or source)].append(r.action)
    for (source, dest), actions in labels.items():
        x1, y1 = pos[source]
        x2, y2 = pos[dest]
        text = escape(", ".join(actions))
        if source == dest:
            cx, cy = x1 + box_w / 2, y1
            parts.append(
                f'<path d="M{cx - 20},{cy} C{cx - 30},{cy - 30} {cx + 30},{cy - 30} {cx + 20},{cy}" '
                f'fill="none" stroke="#555" marker-end="url(#arrow)"/>'
                f'<text x="{cx}" y="{cy - 26}" text-anchor="middle" fill="#333">{text}</text>'
            )
            continue
        sx, sy = x1 + box_w, y1 + box_h / 2
        ex, ey = x2, y2 + box_h / 2
        if x2 <= x1:
            sx, ex = x1, x2 + box_w
        parts.append(
            f'<line x1="{sx}" y1="{sy}" x2="{ex}" y2="{ey}" stroke="#555" marker-end="url(#arrow)"/>'
            f'<text x="{(sx + ex) / 2}" y="{(sy + ey) / 2 - 4}" text-anchor="middle" fill="#333">{text}</text>'
        )
    for state, (x, y) in pos.items():
        fill = "#e8f0fe" if state == workflow.initial else ("#eee" if state in workflow.final_states else "#fff")
        parts.append(
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="{fill}" stroke="#333"/>'
            f'<text x="{x + box_w / 2}" y="{y + box_h / 2 + 4}" text-anchor="middle">{escape(state)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
