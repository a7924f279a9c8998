"""`vlmdata stats`: summarise any WebDataset shards (ours or not) in the terminal, as JSON, or as an HTML report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestration.display import display_text
from orchestration.shardstats.config import InspectConfig

_DEFAULTS = {name: f.default for name, f in InspectConfig.model_fields.items()}


def stats(
    inputs: Annotated[list[str], typer.Argument(
        help="Output folders, shard folders, .tar files, globs, brace patterns (shards/{00000..00009}.tar), "
             "wids index.json, or fsspec URLs (file://, http://).", show_default=False, metavar="SHARDS")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes reading shards (default: all cores).")] = None,
    rescan: Annotated[bool, typer.Option(help="Read every tar even where a NAME.stats.json sidecar exists.")] = False,
    browse_per_shard: Annotated[int, typer.Option(help="HTML: samples shown per browsed shard.")] = _DEFAULTS["browse_per_shard"],
    browse_max: Annotated[int, typer.Option(help="HTML: samples shown in all (counts are always complete).")] = _DEFAULTS["browse_max"],
    top_concepts: Annotated[int, typer.Option(help="Concepts listed before/after balancing.")] = _DEFAULTS["top_concepts"],
) -> None:
    """Summarise shards: samples and bytes per shard, kept/dropped/error by stage, size and score distributions,
    task mix, top concepts, broken input. Uses per-shard sidecar stats where present, else scans in parallel."""
    from orchestration.shardstats.sources import SourceError
    from orchestration.shardstats.summary import summarise
    from orchestration.shardstats.tables import print_summary

    console = Console(stderr=as_json, emoji=False)  # input paths in messages: escaped (display_text), no :emoji:
    options = {"use_sidecars": not rescan, "browse_per_shard": browse_per_shard, "browse_max": browse_max,
               "top_concepts": top_concepts}
    if workers:
        options["workers"] = workers
    cfg = InspectConfig(**options)
    # No auto-refresh: its thread would be running when the scan pool forks.
    progress = Progress(TextColumn("reading shards"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True, auto_refresh=False,
                        disable=not sys.stderr.isatty())
    bar = progress.add_task("shards", total=None)

    def advance(_: object) -> None:
        progress.advance(bar)
        progress.refresh()

    try:
        with progress:
            report = summarise(inputs, cfg, browse=html is not None, on_shard=advance)
    except SourceError as exc:
        console.print(f"[red]error:[/red] {display_text(exc)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report.data, indent=1))
    else:
        print_summary(report.data, console, cfg.max_shard_rows)
    if html is not None:
        from orchestration.shardstats.html_report import write_html

        write_html(report, html, cfg)
        console.print(f"report: {display_text(html)} ({html.stat().st_size / 1e6:.1f} MB, "
                      f"{len(report.samples)} samples browsable)")
