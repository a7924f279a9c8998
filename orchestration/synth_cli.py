"""`vlmdata synth VERB`: the generating recipes (synthetic OCR, GUI and natural grounding, recaptioning, distillation),
as a Prefect flow (`--prefect`, or by default when a server is configured) or as plain calls, like `vlmdata curate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Generate training data: synthetic OCR, GUI and natural-image grounding.", no_args_is_help=True)

Config = Annotated[Path | None, typer.Option("--config", "-c", help="Recipe (YAML); default: the verb's bundled recipe.")]
Output = Annotated[str, typer.Option("--output", "-o", help="Output folder: shards/, stats.json, ledger.parquet.")]
Count = Annotated[int | None, typer.Option("--count", "-n", help="Samples to make (seeds), or the first N inputs.")]
Engine = Annotated[str | None, typer.Option(help="local, spark or beam; default from the recipe.")]
Sets = Annotated[list[str], typer.Option("--set", help="Override a recipe field: --set stages.0.min_score=0.8.")]
Prefect = Annotated[bool | None, typer.Option(
    "--prefect/--no-prefect",
    help="Run as a Prefect flow (shown in the UI). Default: when a server is configured (PREFECT_API_URL).")]


def _go(verb: str, recipe: Path, inputs: list[str], output: str, engine: str | None, sets: list[str],
        extra: dict[str, Any], prefect: bool | None = None) -> None:
    from orchestration.cli import _parse_sets, _run_curate

    overrides = {**extra, **_parse_sets(sets)}
    if engine:
        overrides["engine.name"] = engine
    _run_curate(recipe, inputs, output, overrides, verb=verb, prefect=prefect)


def _ocr(verb: str, config: Path | None, output: str, count: int | None, input: str | None, engine: str | None,
         sets: list[str], prefect: bool | None) -> None:
    from synth import ocr

    _go(verb, config or ocr.RECIPES / f"{verb}.yaml", ocr.inputs_for(verb, count, input), output, engine, sets,
        ocr.reader_overrides(verb, count, input), prefect)


@app.command("ocr-render")
def ocr_render(output: Output, config: Config = None, count: Count = None,
               input: Annotated[str | None, typer.Option(help="Text corpus or curated shards; default: seeds.")] = None,
               engine: Engine = None, set_: Sets = [], prefect: Prefect = None) -> None:  # noqa: B006
    """Rendered documents: real text over varied fonts, layouts and backgrounds, read back by PP-OCR."""
    _ocr("ocr-render", config, output, count, input, engine, set_, prefect)


@app.command("ocr-scene")
def ocr_scene(output: Output, config: Config = None, count: Count = None,
              input: Annotated[str | None, typer.Option(help="Images or curated shards; default: python3-doc figures.")] = None,
              engine: Engine = None, set_: Sets = [], prefect: Prefect = None) -> None:  # noqa: B006
    """Natural-scene text: PP-OCR over images; an image is kept when a detection passes the threshold."""
    _ocr("ocr-scene", config, output, count, input, engine, set_, prefect)


@app.command("ocr-academic")
def ocr_academic(output: Output, config: Config = None, count: Count = None,
                 input: Annotated[str | None, typer.Option(help="Folder (or file) of .md/.tex, one document per file; "
                                                                 "default: the bundled demo sources.")] = None,
                 engine: Engine = None, set_: Sets = [], prefect: Prefect = None) -> None:  # noqa: B006
    """Academic pages: Markdown/LaTeX rendered with KaTeX, printed by Chromium, paired with their markup."""
    _ocr("ocr-academic", config, output, count, input, engine, set_, prefect)


@app.command("gui")
def gui(output: Output, config: Config = None, count: Count = None,
        input: Annotated[str | None, typer.Option(help="Folder of HTML pages or a file of URLs; default: python3-doc.")] = None,
        engine: Engine = None, set_: Sets = [], prefect: Prefect = None) -> None:  # noqa: B006
    """GUI grounding: pages rendered in Chromium at several viewports, visible DOM elements, referring-expression QA."""
    from synth import gui as g

    extra = {"reader.limit": count} if count is not None else {}
    _go("gui", config or g.RECIPE, [input or g.DEFAULT_INPUT], output, engine, set_, extra, prefect)


@app.command("grounding")
def grounding(input: Annotated[str, typer.Option(help="Curated shards or an image folder with captions.")],
              output: Output, config: Config = None, count: Count = None, engine: Engine = None,
              set_: Sets = [], prefect: Prefect = None) -> None:  # noqa: B006
    """Natural-image grounding: noun phrases of captions, an open-vocabulary detector, images with ≥ 2 boxes."""
    from synth import grounding as gr

    extra = {"reader.limit": count} if count is not None else {}
    _go("grounding", config or gr.RECIPE, [input], output, engine, set_, extra, prefect)


Teacher = Annotated[str, typer.Option(help="OpenAI-compatible base URL ending in /v1, or inproc:PATH_OR_PRESET.")]
ModelName = Annotated[str | None, typer.Option("--model", help="Model name sent to the server; default: the one it serves.")]


@app.command("recaption")
def recaption(input: Annotated[str, typer.Option(help="Curated shards (or an image folder with captions).")],
              teacher: Teacher, output: Output, model: ModelName = None, config: Config = None, count: Count = None,
              engine: Engine = None, set_: Sets = [], prefect: Prefect = None) -> None:  # noqa: B006
    """Factual recaptioning: the teacher rewrites captions from image + original; checked rewrites are mixed in."""
    from rich.console import Console

    from orchestration.display import visible
    from synth import recaption as rc
    from synth.distill import teacher_overrides

    recipe = config or rc.RECIPE
    extra = teacher_overrides(recipe, "recaption", teacher, model)
    if count is not None:
        extra["reader.limit"] = count
    _go("recaption", recipe, [input], output, engine, set_, extra, prefect)
    report = rc.summarize(output)
    # Fallback reasons come from the ledger (input text): control characters shown, no markup, no emoji codes.
    Console().print(visible(f"recaptions accepted: {report['accepted']}/{report['samples']}; fallbacks by reason: "
                            f"{report['fallback']}; text is {report['text_is']}"),
                    highlight=False, markup=False, emoji=False)


@app.command("distill")
def distill(prompts: Annotated[str, typer.Option(help="Prompt set: JSONL/Parquet (id, images, question, answer, domain).")],
            teacher: Teacher, output: Output, model: ModelName = None,
            k: Annotated[int | None, typer.Option("--k", help="Samples per prompt; default from the recipe.")] = None,
            config: Config = None, count: Count = None, engine: Engine = None, set_: Sets = [],  # noqa: B006
            prefect: Prefect = None) -> None:
    """Long-CoT distillation: k teacher samples per prompt, checked and verified; SFT shards, pass@k tiers and the
    RL prompt set (OUT/rl_prompts.parquet)."""
    from rich.console import Console

    from orchestration.display import visible
    from synth import distill as ds
    from synth.distill.rlset import RL_FILE

    recipe = config or ds.RECIPE
    extra = ds.teacher_overrides(recipe, "distill", teacher, model, k=k)
    if count is not None:
        extra["reader.limit"] = count
    stale = Path(output) / RL_FILE
    if stale.is_file() and (Path(output) / ".vlmdata-output").is_file():
        stale.unlink()  # a failed run must not leave the previous run's RL set behind
    _go("distill", recipe, [prompts], output, engine, set_, extra, prefect)
    report = ds.finish(output, recipe, {**extra, **_sets(set_)})
    for line in ds.summary_lines(report)[:2]:
        Console().print(visible(line), highlight=False, markup=False, emoji=False)


def _sets(sets: list[str]) -> dict[str, Any]:
    from orchestration.cli import _parse_sets

    return _parse_sets(sets)
