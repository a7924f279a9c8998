"""The summary in the terminal: rich tables for shards, problems, kept/dropped/error, distributions, tasks, concepts.
Every name, source, reason, task and concept comes from the shards (input text): shown through `display_cell`."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestration.display import display_cell as cell
from pipelines.stats import ValueHistogram

SPARK_CHARS = "▁▂▃▄▅▆▇█"
SPARK_BINS = 12


def num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.4g}"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def sparkline(hist: dict[str, Any]) -> str:
    _, counts = ValueHistogram(hist).bins(SPARK_BINS)
    top = max(counts, default=0)
    if not top:
        return ""
    return "".join(" " if c == 0 else SPARK_CHARS[min(len(SPARK_CHARS) - 1, c * len(SPARK_CHARS) // (top + 1))]
                   for c in counts)


def shards_table(data: dict[str, Any], max_rows: int) -> Table:
    totals = data["totals"]
    table = Table(title=f"{totals['shards']} shards", title_justify="left")
    for col, justify in (("shard", "left"), ("samples", "right"), ("payload", "right"), ("file", "right"),
                         ("stats from", "left"), ("status", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    rows = data["shards"]
    for row in rows[:max_rows]:
        style = {"truncated": "yellow", "unreadable": "red"}.get(row["status"])
        error = row["error"] or ""
        status = error if error.startswith(row["status"]) else f"{row['status']}: {error}" if error else row["status"]
        status = status if len(status) <= 90 else status[:89] + "…"
        table.add_row(cell(row["name"]), num(row["nsamples"]), human_bytes(row["bytes"]),
                      human_bytes(row["filesize"]), cell(row["source"]), cell(status), style=style)
    if len(rows) > max_rows:
        table.add_row(f"… {len(rows) - max_rows} more (--json or --html lists all)", "", "", "", "", "")
    table.add_section()
    table.add_row("total", num(totals["samples"]), human_bytes(totals["bytes"]), human_bytes(totals["filesize"]),
                  f"{totals['from_sidecar']} sidecar, {totals['scanned']} scanned", "", style="bold")
    return table


def problems_table(data: dict[str, Any]) -> Table:
    table = Table(title="broken input (reported, the rest summarised)", title_justify="left", title_style="red")
    table.add_column("problem", style="red")
    table.add_column("count", justify="right")
    table.add_column("example")
    examples: dict[str, str] = {}
    for ex in data["problem_examples"]:
        examples.setdefault(ex["problem"], f"{ex['key']}: {ex['detail']}"[:100])
    for problem, count in data["problems"].items():
        table.add_row(cell(problem), num(count), cell(examples.get(problem, "")))
    return table


def run_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"how the flow got here: {num(run['inputs'])} inputs", title_justify="left")
    for col in ("status", "stage", "reason"):
        table.add_column(col)
    table.add_column("samples", justify="right")
    styles = {"kept": "green", "dropped": "yellow", "error": "red"}
    for status, n in run["status"].items():
        table.add_row(cell(status), "", "", num(n), style=styles.get(status))
    for stage, reasons in run["by_stage"].items():
        for reason, n in reasons.items():
            table.add_row("", cell(stage), cell(reason), num(n))
    return table


def distributions_table(data: dict[str, Any]) -> Table:
    table = Table(title="distributions (quantiles ±5%)", title_justify="left")
    table.add_column("field", no_wrap=True)
    for col in ("n", "min", "p10", "p50", "mean", "p90", "max"):
        table.add_column(col, justify="right")
    table.add_column("histogram", no_wrap=True)
    for group in ("sizes", "scores"):
        if group == "scores" and data["scores"]:
            table.add_section()
        for name, h in data[group].items():
            table.add_row(cell(name), num(h["n"]), num(h["min"]), num(h["p10"]), num(h["p50"]), num(h["mean"]),
                          num(h["p90"]), num(h["max"]), sparkline(h))
    return table


def tasks_table(data: dict[str, Any]) -> Table:
    total = sum(data["tasks"].values()) or 1
    table = Table(title="task mix", title_justify="left")
    table.add_column("task")
    table.add_column("samples", justify="right")
    table.add_column("share", justify="right")
    for task, n in data["tasks"].items():
        table.add_row(cell(task), num(n), f"{100 * n / total:.1f}%")
    return table


def concepts_table(concepts: dict[str, Any]) -> Table:
    table = Table(
        title=f"top concepts: {concepts['distinct_before']} before balancing, {concepts['distinct_after']} after",
        title_justify="left",
    )
    for col, justify in (("#", "right"), ("before", "left"), ("n", "right"), ("after", "left"), ("n ", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i, (b, a) in enumerate(zip_longest(concepts["before"], concepts["after"]), start=1):
        table.add_row(str(i), cell(b[0]) if b else "", num(b[1]) if b else "", cell(a[0]) if a else "",
                      num(a[1]) if a else "")
    return table


def print_summary(data: dict[str, Any], console: Console, max_shard_rows: int = 50) -> None:
    console.print(shards_table(data, max_shard_rows))
    if data["problems"]:
        console.print(problems_table(data))
    run = data.get("run")
    if run:
        console.print(run_table(run))
    if data["sizes"] or data["scores"]:
        console.print(distributions_table(data))
    if data["tasks"]:
        console.print(tasks_table(data))
    if run and run.get("concepts"):
        console.print(concepts_table(run["concepts"]))
