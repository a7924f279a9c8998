"""The summary's figures as PNG data URIs (matplotlib, no pyplot state): distributions, task mix, reasons, concepts."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure

from pipelines.stats import ValueHistogram

FIG_SIZE = (4.6, 2.8)
DPI = 90
BINS = 30
COLOR = "#3b6ea8"
MAX_BARS = 25


def _plain_text(draw: Callable[..., str]) -> Callable[..., str]:
    """Field names, tasks and labels come from the data: drawn as plain text, never as mathtext (`$x$` would be
    parsed, and raise on anything that is not valid TeX). Texts read the setting when they are made."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with rc_context({"text.parse_math": False, "text.usetex": False}):
            return draw(*args, **kwargs)

    return wrapper


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@_plain_text
def histogram_png(name: str, hist: dict[str, Any]) -> str:
    h = ValueHistogram(hist)
    edges, counts = h.bins(BINS)
    fig = Figure(figsize=FIG_SIZE)
    ax = fig.add_subplot()
    widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=COLOR, edgecolor="white", linewidth=0.4)
    if h.min is not None and h.min > 0 and h.max / h.min > 100:  # type: ignore[operator]
        ax.set_xscale("log")
    ax.set_title(f"{name}  (n={h.n:,}, mean={h.mean:.4g})", fontsize=9)
    ax.set_ylabel("samples", fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)


@_plain_text
def bars_png(title: str, items: list[tuple[str, float]], colors: list[str] | None = None) -> str:
    items = items[:MAX_BARS]
    fig = Figure(figsize=(FIG_SIZE[0], max(1.6, 0.22 * len(items) + 0.8)))
    ax = fig.add_subplot()
    labels = [label[:40] for label, _ in items][::-1]
    values = [v for _, v in items][::-1]
    ax.barh(range(len(items)), values, color=(colors or [COLOR] * len(items))[::-1])
    ax.set_yticks(range(len(items)), labels, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=6)
    return _png(fig)


def figures(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, data URI) for every figure the summary supports; fields absent from the data give no figure."""
    out: list[tuple[str, str]] = []
    for group in ("sizes", "scores"):
        for name, hist in data[group].items():
            if hist["n"]:
                out.append((name, histogram_png(name, hist)))
    if data["tasks"]:
        out.append(("task mix", bars_png("task mix", list(data["tasks"].items()))))
    rows = data["shards"]
    if rows:
        out.append(("samples per shard", bars_png("samples per shard", [(r["name"], r["nsamples"]) for r in rows])
                    if len(rows) <= MAX_BARS else
                    histogram_png("samples per shard", _hist([r["nsamples"] for r in rows]))))
    run = data.get("run")
    if run:
        palette = {"kept": "#3a9a5b", "dropped": "#d69a2d", "error": "#c0453a"}
        items = list(run["status"].items())
        out.append(("kept / dropped / error", bars_png("kept / dropped / error", items,
                                                       [palette.get(k, COLOR) for k, _ in items])))
        reasons = sorted(((f"{stage}: {reason}", n) for stage, rs in run["by_stage"].items() for reason, n in rs.items()),
                         key=lambda kv: -kv[1])
        if reasons:
            out.append(("dropped and errors by stage and reason", bars_png("by stage and reason", reasons)))
        concepts = run.get("concepts")
        if concepts:
            for when in ("before", "after"):
                if concepts[when]:
                    title = f"top concepts {when} balancing"
                    out.append((title, bars_png(title, [tuple(c) for c in concepts[when]])))
    return out


def _hist(values: list[float]) -> dict[str, Any]:
    h = ValueHistogram()
    for v in values:
        h.add(v)
    return h.to_dict()
