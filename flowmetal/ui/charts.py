"""Inline SVG charts drawn on the server: an indicator's values over the last
evaluations against its pass and warning targets."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .html import Html, h, join

WIDTH, HEIGHT = 520, 170
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 26


@dataclass(frozen=True)
class Point:
    """One evaluation of an indicator: its label, value (None: no value), status
    (pass, warning, fail, info), and its pass and warning target values (None: none)."""

    label: str
    value: float | None
    status: str
    pass_target: float | None
    warning_target: float | None


def indicator_points(items: list[dict], metric: str) -> list[Point]:
    """The points of ``metric`` in kept evaluations (``evaluation_to_json`` shapes,
    oldest first)."""
    out = []
    for item in items:
        found = None
        for result in item["evaluation"].get("indicatorResults") or []:
            if (result.get("value") or {}).get("metric") == metric:
                found = result
        if found is None:
            continue
        value = found["value"].get("value")
        out.append(Point(f"#{item['id']}", _number(value) if found["value"].get("success",
                                                                                True) else None,
                         str(found.get("status") or "info"),
                         _target(found.get("passTargets")),
                         _target(found.get("warningTargets"))))
    return out


def _number(value: object) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


def _target(targets: list | None) -> float | None:
    """The value of the first target that has one (a criterion like ``<=600`` or
    ``<+10%``, worked out against the compared value)."""
    for target in targets or []:
        value = _number(target.get("targetValue"))
        if value is not None:
            return value
    return None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def indicator_chart(title: str, points: list[Point]) -> Html:
    """The SVG chart of one indicator's points: its values as a line with a dot per
    evaluation in the colour of its status, and its pass and warning targets as a dash
    at each evaluation (each target worked out for its evaluation)."""
    numbers = [v for p in points for v in (p.value, p.pass_target, p.warning_target)
               if v is not None]
    if not numbers:
        return h('<p class="note">{} has no values yet.</p>', title)
    low, high = min(numbers), max(numbers)
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(1, len(points) - 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(points) > 1 else inner_w / 2)

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * inner_h

    def line(values: list[float | None], cls: str) -> Html:
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None)
        if not pts:
            return Html("")
        return h('<polyline class="{}" points="{}"/>', cls, pts)

    def marks(values: list[float | None], cls: str) -> Html:
        # A dash at each evaluation's own target: Keptn gives an indicator's warning
        # targets only when it did not pass, and a relative target moves.
        half = min(10.0, max(3.0, step / 3))
        return join(h('<line class="{}" x1="{}" y1="{}" x2="{}" y2="{}"/>', cls,
                      f"{x(i) - half:.1f}", f"{y(v):.1f}", f"{x(i) + half:.1f}", f"{y(v):.1f}")
                    for i, v in enumerate(values) if v is not None)

    parts = [
        h('<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>', LEFT, TOP, LEFT,
          TOP + inner_h),
        h('<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>', LEFT, TOP + inner_h,
          WIDTH - RIGHT, TOP + inner_h),
        h('<text class="tick" x="{}" y="{}">{}</text>', 4, TOP + 4, _fmt(high)),
        h('<text class="tick" x="{}" y="{}">{}</text>', 4, TOP + inner_h, _fmt(low)),
        marks([p.pass_target for p in points], "target pass-target"),
        marks([p.warning_target for p in points], "target warning-target"),
        line([p.value for p in points], "values"),
    ]
    for i, p in enumerate(points):
        if i == 0 or i == len(points) - 1 or len(points) <= 12:
            parts.append(h('<text class="tick" x="{}" y="{}">{}</text>', f"{x(i) - 8:.1f}",
                           HEIGHT - 8, p.label))
        if p.value is None:
            continue
        tip = f"{p.label}: {_fmt(p.value)} ({p.status})"
        if p.pass_target is not None:
            tip += f", pass target {_fmt(p.pass_target)}"
        if p.warning_target is not None:
            tip += f", warning target {_fmt(p.warning_target)}"
        parts.append(h('<circle class="dot status-{}" cx="{}" cy="{}" r="4"><title>{}</title>'
                       '</circle>', p.status, f"{x(i):.1f}", f"{y(p.value):.1f}", tip))
    return h('<svg class="chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}">'
             '<title>{}</title>{}</svg>', WIDTH, HEIGHT, WIDTH, HEIGHT, title, join(parts))
