"""Synthetic OCR data, the three sources of the GLM-4.1V report as generating operators: rendered documents
(`ocr_render`), natural-scene text read by PP-OCR (`ocr_scene`) and academic pages printed by Chromium
(`ocr_academic`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "synth"
VERBS = ("ocr-render", "ocr-scene", "ocr-academic")
# What a verb reads when no --input is given: bundled or Debian-shipped real inputs.
SCENE_DEFAULT_INPUT = "/usr/share/doc/python3.11/html/_images"  # python3-doc's figures and screenshots


def inputs_for(verb: str, count: int | None, input: str | None) -> list[str]:
    """The inputs of a verb: --input when given, else `count:N` seeds (ocr-scene: python3-doc's images)."""
    if input:
        return [input]
    if verb == "ocr-scene":
        return [SCENE_DEFAULT_INPUT]
    return [f"count:{count or 10}"]


def reader_overrides(verb: str, count: int | None, input: str | None) -> dict[str, Any]:
    """Recipe overrides a verb's inputs need: --count with an input reads its first N samples; python3-doc's
    figures (ocr-scene's default input) have no captions; ocr-academic reads its input as text (.md and .tex)."""
    sets: dict[str, Any] = {}
    if verb == "ocr-scene" and not input:
        sets["reader.options"] = {"captions": False}
    if count is not None and (input or verb == "ocr-scene"):
        sets["reader.limit"] = count
    if verb == "ocr-academic" and input and not input.startswith("count:"):
        sets["reader.format"] = "text"  # .tex sources: auto-detection takes only .txt/.md/.rst for text
    return sets


def run(verb: str, output: str, count: int | None = None, input: str | None = None, config: str | None = None,
        engine: Any = None, overrides: dict[str, Any] | None = None) -> Any:
    """`vlmdata synth VERB`: the verb's recipe (configs/synth/VERB.yaml unless --config) on its inputs, through
    `pipelines.run.run_pipeline`. `engine`: an engine object (default: the local engine)."""
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec

    if verb not in VERBS:
        raise ValueError(f"unknown synth verb {verb!r}; known: {', '.join(VERBS)}")
    spec = load_spec(config or RECIPES / f"{verb}.yaml", {**reader_overrides(verb, count, input), **(overrides or {})})
    if engine is None:
        from pipelines.engines.local import LocalEngine

        engine = LocalEngine()
    return run_pipeline(spec, inputs_for(verb, count, input), output, engine)
