"""GUI grounding data (GLM-4.1V report): web pages rendered in headless Chromium (`gui_screenshot`, one child per
viewport with every visible element and its box) → referring-expression QA pairs checked by PP-OCR (`gui_qa`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "synth" / "gui.yaml"
DEFAULT_INPUT = "/usr/share/doc/python3.11/html"  # Debian's python3-doc: real pages no one here wrote
HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def run(output: str, input: str | None = None, count: int | None = None, config: str | None = None,
        engine: Any = None, overrides: dict[str, Any] | None = None) -> Any:
    """`vlmdata synth gui`: the recipe (configs/synth/gui.yaml unless `config`) on a folder of HTML pages or a URL
    list (default: python3-doc); `count` takes the first N pages of a folder. `engine`: default the local engine."""
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec

    sets = dict(overrides or {})
    if count is not None:
        sets["reader.limit"] = count  # the first N pages (sorted paths) of a folder or URL list
    spec = load_spec(config or RECIPE, sets)
    source = input or DEFAULT_INPUT
    if engine is None:
        from pipelines.engines.local import LocalEngine

        engine = LocalEngine()
    return run_pipeline(spec, [source], output, engine)
