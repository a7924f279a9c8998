"""`vlmdata lineage OUT KEY`: the chain from the input to a sample (source, each stage, each generating step)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestration.display import display_cell, display_text

MAX_HOPS = 64  # generations are a handful deep; a longer chain means a corrupt ledger (a cycle)


def chain(ledger: str | Path, key: str) -> list[dict[str, Any]]:
    """Ledger rows from the source row down to `key` (the row of `key` last); reads only the rows it needs."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    data = ds.dataset(str(ledger), format="parquet")
    rows: list[dict[str, Any]] = []
    current: str | None = key
    while current is not None and len(rows) < MAX_HOPS:
        found = data.to_table(filter=pc.field("key") == current).to_pylist()
        if not found:
            if not rows:
                raise KeyError(key)
            break
        rows.append(found[0])
        current = found[0].get("parent")
    return rows[::-1]


def children(ledger: str | Path, key: str) -> list[dict[str, Any]]:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    data = ds.dataset(str(ledger), format="parquet")
    if "parent" not in data.schema.names:
        return []
    return data.to_table(filter=pc.field("parent") == key).to_pylist()


def lineage(
    output: Annotated[Path, typer.Argument(help="A curate or synth output folder (holds ledger.parquet).")],
    key: Annotated[str, typer.Argument(help="A sample's key (its `__key__` in the shards, or any ledger key).")],
) -> None:
    """Print where a sample comes from: its input, every stage that judged it, every generating step."""
    # Keys, paths, stages, reasons and sources are input text: escaped (display_text, display_cell), no emoji codes.
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal:  # piped or captured: keep keys and reasons on one line
        console = Console(highlight=False, emoji=False, width=200)
    ledger = output / "ledger.parquet" if output.is_dir() else output
    if not ledger.exists():
        console.print(f"[red]error:[/red] {display_text(ledger)}: no ledger here "
                      "(is this a curate/synth output folder?)")
        raise typer.Exit(2)
    try:
        rows = chain(ledger, key)
    except KeyError:
        console.print(f"[red]error:[/red] no row with key {display_text(key)} in {display_text(ledger)}")
        raise typer.Exit(1) from None
    table = Table(title=display_cell(f"lineage of {key}", style="table.title"), title_justify="left")
    table.add_column("step")
    table.add_column("key", no_wrap=True, min_width=24)
    for column in ("made by", "status", "stage", "reason"):
        table.add_column(column)
    table.add_column("source", overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(str(i), *(display_cell(v) for v in (row["key"], row.get("origin") or "source", row["status"],
                                                          row.get("stage") or "", row.get("reason") or "",
                                                          row.get("source") or "")))
    console.print(table)
    kids = children(ledger, key)
    if kids:
        kept = sum(1 for k in kids if k["status"] == "kept")
        console.print(f"{len(kids)} rows generated from it ({kept} kept): "
                      + ", ".join(display_text(k["key"]) for k in kids[:10]) + (" …" if len(kids) > 10 else ""))
