"""`vlmdata reward`: score one answer with a domain's verifier (the same code and timeout as training), to debug it."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape

TRUTH_HELP = """Ground truth. math: LaTeX or plain (\\frac{1}{2}, (0,1], 2\\sqrt{3}); physics/chemistry: a quantity
with units (3e8 m/s, 9.81 m/s^2) or a formula; chart/numeric: a number, a year or text; choice: B, "B. Paris",
"A, C" or {"answer":"B","options":[...]}; text: the expected text; ocr: the text in the image; counting: an
integer; grounding: [[x1,y1,x2,y2],...] in 0-1000; gui: {"action":"click","box":[x1,y1,x2,y2]} (or "text",
"direction"); format: verifiable or open."""
TRUTH_HELP = escape(TRUTH_HELP)  # the help is rendered as rich markup: keep the brackets of the box lists


def _show(text: str | None) -> str:
    """Input text as one escaped line (control characters and newlines visible, never interpreted)."""
    return "-" if text is None else json.dumps(text, ensure_ascii=False)


def reward(
    domain: Annotated[str, typer.Option(help="Verifier domain (math, physics, chemistry, chart, numeric, choice, "
                                             "text, ocr, grounding, gui, counting, format, a plug-in's name) or "
                                             "module:Class.")],
    answer: Annotated[str, typer.Option(help="The response: full <think>…</think><answer>…</answer> with one "
                                             "<|begin_of_box|>…<|end_of_box|>, or a bare answer; - reads stdin.")],
    truth: Annotated[str, typer.Option(help=TRUTH_HELP)],
    explain: Annotated[bool, typer.Option("--explain", help="Also print what was extracted and compared.")] = False,
    timeout: Annotated[float, typer.Option(help="Hard timeout in seconds (a timeout scores 0).", min=0.001)] = 10.0,
    config: Annotated[str | None, typer.Option(help="Verifier options as JSON, e.g. '{\"iou_threshold\": 0.7}'.")] = None,
) -> None:
    """Score ANSWER against TRUTH with DOMAIN's verifier; the score, in [0, 1], is the last line printed."""
    from train.rewards.base import verifier_class
    from train.rewards.pool import RewardPool

    if answer == "-":
        answer = sys.stdin.read()
    try:
        cls = verifier_class(domain)
        options = json.loads(config) if config else {}
        cls.Config(**options)
    except (ValueError, TypeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    with RewardPool(workers=1, timeout_s=timeout, chunk_size=1, configs={domain: options},
                    domains=[domain]) as pool:
        verdict = pool.score([(domain, answer, truth)])[0]
    if explain:
        typer.echo(f"verifier:  {domain} ({cls.__module__}.{cls.__name__})")
        typer.echo(f"extracted: {_show(verdict.extracted)}")
        typer.echo(f"compared:  {_show(verdict.compared)}")
        typer.echo(f"reason:    {_show(verdict.reason)}")
    typer.echo(f"{verdict.score:.6g}")
