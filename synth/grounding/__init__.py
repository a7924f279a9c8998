"""Natural-image grounding data (GLM-4.1V report): caption noun phrases located by an open-vocabulary detector
(`grounding_detect`); images with at least two boxes become phrase ↔ box samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "synth" / "grounding.yaml"


def run(input: str, output: str, config: str | None = None, engine: Any = None,
        overrides: dict[str, Any] | None = None) -> Any:
    """`vlmdata synth grounding`: the recipe (configs/synth/grounding.yaml unless `config`) on curated shards or
    image folders with captions. A detector model that is not available offline stops here, naming it."""
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec

    spec = load_spec(config or RECIPE, overrides)
    if engine is None:
        from pipelines.engines.local import LocalEngine

        engine = LocalEngine()
    return run_pipeline(spec, [input], output, engine)
