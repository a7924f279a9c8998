"""The `vlmdata` command line: one verb per job (demo, curate, ops, …), each documented in `--help`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestration.display import display_cell, display_text
from orchestration.synth_cli import Prefect  # the --prefect/--no-prefect option of every flow verb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Prefect's telemetry heartbeat races its temporary server's SQLite start-up ("database is locked" traceback on the
# first screen of `make demo`); no telemetry can leave this machine anyway.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's default 20 s for its temporary server to come up is too short on a loaded 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

app = typer.Typer(
    name="vlmdata",
    help="Build vision-language pretraining data the GLM-4.1V-Thinking way, and train on it.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(emoji=False)  # paths, keys and reasons are printed (escaped, display_text): no :emoji: codes
REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "curate" / "demo.yaml"
BASE_CONFIG = REPO / "configs" / "curate" / "base.yaml"
CLIP_RECIPE = REPO / "configs" / "clip" / "demo_train.yaml"
DEMO_CLIP = Path("models/clip-demo")


def _parse_sets(values: list[str]) -> dict[str, Any]:
    out = {}
    for item in values:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE, e.g. engine.master=local[4]")
        key, _, raw = item.partition("=")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _run_curate(config: Path, inputs: list[str], output: str, overrides: dict[str, Any],
                verb: str | None = None, prefect: bool | None = None) -> dict[str, Any]:
    """Run the curate flow (or, with `verb`, the synth flow) with every check up front and one readable message on
    failure. `prefect`: run it as a Prefect flow; None (default): when a Prefect server is configured
    (PREFECT_API_URL), else as plain calls (nothing to start: Prefect's temporary server costs 20-45 s here)."""
    from orchestration.report import print_summary
    from orchestration.runlog import failure_message, run_log
    from orchestration.steps import prefect_configured, run_without_prefect
    from pipelines.output import OutputError, OutputLayout
    from pipelines.readers.base import InputError, check_inputs
    from pipelines.spec import SpecError, load_spec

    try:
        # Fail fast, before a flow run or an engine starts, on what can be checked cheaply.
        spec = load_spec(config, overrides)
        check_inputs(inputs, spec.reader)
        spec.preflight()
        layout = OutputLayout(output)
        layout.check_safe(inputs)
        with layout.lock(), run_log(output) as log:  # the lock is held here: a second run is refused up front
            try:
                if not (prefect_configured() if prefect is None else prefect):
                    report = run_without_prefect(spec, inputs, output, lock=False)
                else:  # Prefect is imported only for a flow run (2.4 s)
                    from orchestration.flows import curate, synth

                    if verb is None:
                        report = curate(str(config), inputs, output, overrides, lock=False)
                    else:
                        report = synth(verb, str(config), inputs, output, overrides, lock=False)
            except (InputError, SpecError, OutputError):
                raise
            except Exception as exc:  # noqa: BLE001 - one readable message; the traceback is in OUT/run.log
                console.print(f"[red]error:[/red] {display_text(failure_message(exc, log))}", soft_wrap=True,
                              highlight=False)
                raise typer.Exit(1) from None
    except (InputError, SpecError, OutputError) as exc:
        # A recipe's validation error has several lines; a path is one line (a line feed in it shown as \n).
        console.print(f"[red]error:[/red] {display_text(exc, multiline=isinstance(exc, SpecError))}",
                      soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    print_summary(report["stats"], title=f"{verb or 'curate'} → {output}", console=console)
    unreadable = report["stats"].get("unreadable_inputs") or []
    if unreadable:
        console.print(f"[red]error:[/red] {len(unreadable)} input(s) could not be read at all: "
                      f"{', '.join(display_text(u) for u in unreadable[:5])} (see ledger.parquet, stage 'read')",
                      highlight=False)
        raise typer.Exit(1)
    return report


@app.command()
def curate(
    input: Annotated[list[str], typer.Option("--input", "-i", help="Folder of images+.txt, WebDataset .tar(s), or .parquet; repeatable.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder: shards/, index.json, stats.json, ledger.parquet.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline recipe (YAML); the default needs no model weights.")] = BASE_CONFIG,
    master: Annotated[str | None, typer.Option(help="Spark master (local[N], spark://host:port, …); default from config.")] = None,
    engine: Annotated[str | None, typer.Option(help="spark, beam or local (in-process pool, no JVM); default from config.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a config field: --set shards.max_samples=500.")] = [],  # noqa: B006
    prefect: Prefect = None,
) -> None:
    """Run the curate flow (Prefect) on any input: decode → heuristics → dedup → WebDataset shards + ledger."""
    overrides = _parse_sets(set_)
    if master:
        overrides["engine.master"] = master
    if engine:
        overrides["engine.name"] = engine
    _run_curate(config, input, output, overrides, prefect=prefect)


@app.command()
def demo(
    output: Annotated[str, typer.Option("--output", "-o", help="Where the demo's shards, stats and ledger go.")] = "out/demo",
    data: Annotated[str, typer.Option(help="Where the demo corpus is built (reused when present).")] = "data/demo",
    master: Annotated[str | None, typer.Option(help="Spark master; default from the demo recipe (local[2]).")] = None,
    prefect: Prefect = None,
) -> None:
    """Build the demo corpus (tuxpaint stamps + injected faults) and curate it; check every fault landed in the ledger."""
    import pyarrow.parquet as pq

    from pipelines.spec import load_spec
    from synth.demo_corpus import (
        MAX_DISTINCT_DROPPED,
        build_demo_corpus,
        check_faults,
        distinct_dropped,
        fault_rates,
    )

    manifest = build_demo_corpus(data)
    console.print(
        f"demo corpus: {manifest.clean_samples} tuxpaint stamps + {len(manifest.faults)} injected faults under "
        f"{display_text(data)}/corpus"
    )
    overrides = {"engine.master": master} if master else {}
    if not (DEMO_CLIP / "threshold.json").exists():  # written last: a training cut short is redone
        # The CLIP filter is trained once, on the curated clean stamps, with open_clip's own trainer.
        from train.clip import ClipTrainConfig, train_clip

        console.print("training the demo's CLIP filter (once): curate the clean stamps, then open_clip_train")
        # Every clean stamp that passes the rule-based stages: the filter must know the corpus it will filter,
        # so concept balancing (a random subsample) is left out here.
        stages = [s.model_dump() for s in load_spec(BASE_CONFIG).stages if s.op != "concept_balance"]
        _run_curate(BASE_CONFIG, [f"{data}/clean"], f"{output}-clean", {**overrides, "stages": stages}, prefect=prefect)
        cfg = ClipTrainConfig.from_yaml(
            CLIP_RECIPE, shards=str(Path(f"{output}-clean").resolve() / "shards" / "*.tar"), output=DEMO_CLIP.resolve()
        )
        metrics = train_clip(cfg, log=lambda line: console.print(display_text(line)))
        console.print(f"CLIP filter: threshold {metrics['threshold']}, metrics in "
                      f"{display_text(DEMO_CLIP / 'metrics.json')}")
    _run_curate(DEMO_CONFIG, [f"{data}/corpus"], output, overrides, prefect=prefect)
    rows = pq.read_table(Path(output) / "ledger.parquet").to_pylist()
    stages = [s.op for s in load_spec(DEMO_CONFIG).stages]
    problems = check_faults(manifest, rows, f"{data}/corpus", stages)
    table = Table(title="injected faults → ledger")
    for col in ("fault", "caught", "stage", "status", "reason"):
        table.add_column(col)
    rates = fault_rates(manifest, rows, f"{data}/corpus", stages)
    for kind, (caught, total) in rates.items():
        fault = next(f for f in manifest.faults if f.kind == kind)
        table.add_row(*(display_cell(v) for v in (kind, f"{caught}/{total}", fault.stage, fault.status, fault.reason)))
    console.print(table)
    spared, distinct = distinct_dropped(manifest, rows, f"{data}/corpus")
    console.print(f"distinct stamps dropped as near-duplicates: {len(spared)}/{distinct} "
                  f"({len(spared) / max(distinct, 1):.2%}, at most {MAX_DISTINCT_DROPPED:.0%}): "
                  f"{', '.join(display_text(s) for s in sorted(spared))}")
    if len(spared) > MAX_DISTINCT_DROPPED * distinct:
        problems.append(f"{len(spared)} distinct stamps dropped as near-duplicates, more than {MAX_DISTINCT_DROPPED:.0%}")
    if problems:
        for p in problems:
            console.print(f"[red]fault not caught as expected:[/red] {display_text(p)}")
        raise typer.Exit(1)
    console.print(f"[green]all {len(manifest.faults)} injected faults are in the ledger under the right stage and reason[/green]")


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="Deployments and their cron schedules (YAML).")] = REPO / "configs" / "serve.yaml",
    limit: Annotated[int | None, typer.Option(help="Run at most this many flow runs at once.")] = None,
) -> None:
    """Register the project's flows as Prefect deployments with cron schedules and run them as they come due.

    Scheduled and triggered runs appear in the Prefect UI (`prefect server start`, then http://127.0.0.1:4200,
    with PREFECT_API_URL=http://127.0.0.1:4200/api set for this command). Trigger one now with
    `prefect deployment run curate/NAME`. Stop with Ctrl-C.
    """
    from orchestration.deployments import load_serve_config, serve_deployments

    try:
        spec = load_serve_config(config)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {display_text(exc, multiline=True)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    for d in spec.deployments:
        console.print(f"deployment [bold]{display_text(f'{d.flow}/{d.name}')}[/bold]: "
                      f"{display_text(d.cron or 'on demand')} ({display_text(d.timezone)})")
    serve_deployments(spec, limit=limit)


@app.command()
def ops() -> None:
    """List the registered operators and their config fields (what a recipe's `stages:` may use)."""
    from pipelines.operator import operator_classes
    from pipelines.readers.base import sources

    for name, cls in sorted(operator_classes().items()):
        adds = cls.adds if isinstance(cls.adds, tuple) else cls(cls.Config()).adds if _default_ok(cls) else ()
        title = (f"{name}  [{cls.family}]  ({cls.__module__}.{cls.__name__})\n"
                 f"reads: {', '.join(cls.reads) or '-'}   adds: {', '.join(f'{f.name}: {f.type}' for f in adds) or '-'}")
        console.print(_fields_table(title, "field", cls.Config))
    for name, source in sorted(sources().items()):
        columns = ", ".join(f"{f.name}: {f.type}" for f in source.columns) or "-"
        title = f"source {name}  ({type(source).__module__})\ncolumns: {columns}"
        console.print(_fields_table(title, "reader.options field", source.Options))


def _fields_table(title: str, first: str, model: type) -> Table:
    """A pydantic config's fields as a table: name, default, description."""
    table = Table(title=Text(title, style="table.title"), title_justify="left")  # text (lines kept), never markup
    for column in (first, "default", "description"):
        table.add_column(column)
    for field, info in model.model_fields.items():
        table.add_row(Text(field), Text(repr(info.default)), Text(info.description or ""))
    return table


def _default_ok(cls: type) -> bool:
    try:
        cls.Config()
    except Exception:  # noqa: BLE001 - a config with required fields: no default instance to ask
        return False
    return True


from orchestration.lineage import lineage as _lineage  # noqa: E402
from orchestration.synth_cli import app as _synth_app  # noqa: E402

app.add_typer(_synth_app, name="synth")

app.command(name="lineage")(_lineage)

from orchestration.stats_cli import stats as _stats  # noqa: E402

app.command(name="stats")(_stats)

from orchestration import train_verbs as _train_verbs  # noqa: E402,F401 - adds `train toy` and `train rlcs`
from train.cli import app as _train_app  # noqa: E402

app.add_typer(_train_app, name="train")

from orchestration.serve_model_cli import serve_model as _serve_model  # noqa: E402

app.command(name="serve-model")(_serve_model)

from orchestration.reward_cli import reward as _reward  # noqa: E402

app.command(name="reward")(_reward)

from orchestration.export import export as _export  # noqa: E402

app.command(name="export")(_export)

if __name__ == "__main__":
    app()
