"""The run summary a user sees at the end of a flow: a rich table of counts, reasons, shards and throughput."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from orchestration.display import display_cell, markdown_cell


def summary_table(stats: dict[str, Any], title: str = "curate") -> Table:
    """`title` is plain text (it may name the output folder): shown as it is, never read as markup. Stage names and
    reasons come from the ledger (a reason may carry an input's exception message): shown the same way."""
    status = stats["status"]
    table = Table(title=display_cell(f"{title}: {stats['inputs']} inputs", style="table.title"),
                  show_lines=False)
    table.add_column("status", style="bold")
    table.add_column("stage")
    table.add_column("reason")
    table.add_column("samples", justify="right")
    table.add_row("kept", "", "", f"{status['kept']}", style="green")
    for wanted in ("dropped", "error"):
        table.add_row(wanted, "", "", f"{status[wanted]}", style="yellow" if wanted == "dropped" else "red")
    for stage, reasons in stats["by_stage"].items():
        for reason, n in reasons.items():
            table.add_row("", display_cell(stage), display_cell(reason), str(n))
    generating = [st for st in stats.get("stages", []) if "generated" in st]
    if generating:
        table.add_section()
        for st in generating:
            kids = st["children"]
            table.add_row("generated", display_cell(st["stage"]), f"from {st['rows_in']} rows: kept {kids['kept']}, "
                          f"dropped {kids['dropped']}, error {kids['error']}", str(st["generated"]), style="cyan")
    shards = stats["shards"]
    table.add_section()
    table.add_row("shards", "", f"{shards['count']} tars, {shards['bytes'] / 1e6:.1f} MB", str(shards["samples"]))
    if stats.get("seconds"):
        table.add_row(
            "throughput", display_cell(stats.get("engine", "")), f"{stats['seconds']:.1f} s (engine start excluded)",
            f"{stats['throughput_per_s']:.0f}/s",
        )
    return table


def print_summary(stats: dict[str, Any], title: str = "curate", console: Console | None = None) -> None:
    (console or Console()).print(summary_table(stats, title))


def markdown_summary(stats: dict[str, Any]) -> str:
    """The same counts as a markdown table (for Prefect artifacts); stage names and reasons escaped for their cells."""
    lines = ["| status | stage | reason | samples |", "|---|---|---|---|"]
    for status in ("kept", "dropped", "error"):
        lines.append(f"| {status} | | | {stats['status'][status]} |")
    for stage, reasons in stats["by_stage"].items():
        for reason, n in reasons.items():
            lines.append(f"| | {markdown_cell(stage)} | {markdown_cell(reason)} | {n} |")
    for st in stats.get("stages", []):
        if "generated" in st:
            k = st["children"]
            lines.append(f"| generated | {markdown_cell(st['stage'])} | from {st['rows_in']} rows: kept {k['kept']}, "
                         f"dropped {k['dropped']}, error {k['error']} | {st['generated']} |")
    s = stats["shards"]
    lines.append(f"| shards | | {s['count']} tars, {s['bytes']} bytes | {s['samples']} |")
    return "\n".join(lines)
