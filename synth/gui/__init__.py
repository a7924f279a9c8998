"""GUI grounding data (GLM-4.1V report): web pages rendered in headless Chromium (`gui_screenshot`, one child per
viewport with every visible element and its box) → referring-expression QA pairs checked by PP-OCR (`gui_qa`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "synth" / "gui.yaml"
DEFAULT_INPUT = "/usr/share/doc/python3.11/html"  # Debian's python3-doc: real pages no one here wrote
HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def first_pages(folder: str, count: int, output: str) -> str:
    """A URL list of the first `count` pages of `folder` (sorted paths), written inside the output folder."""
    pages = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in HTML_SUFFIXES and p.is_file())
    if not pages:
        raise FileNotFoundError(f"no .html pages under {folder}")
    listing = Path(output) / "inputs" / "pages.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(p.resolve().as_uri() + "\n" for p in pages[:count]), encoding="utf-8")
    return str(listing)


def run(output: str, input: str | None = None, count: int | None = None, config: str | None = None,
        engine: Any = None, overrides: dict[str, Any] | None = None) -> Any:
    """`vlmdata synth gui`: the recipe (configs/synth/gui.yaml unless `config`) on a folder of HTML pages or a URL
    list (default: python3-doc); `count` takes the first N pages of a folder. `engine`: default the local engine."""
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec

    spec = load_spec(config or RECIPE, overrides)
    source = input or DEFAULT_INPUT
    if count is not None and Path(source).is_dir():
        source = first_pages(source, count, output)
    if engine is None:
        from pipelines.engines.local import LocalEngine

        engine = LocalEngine()
    return run_pipeline(spec, [source], output, engine)
