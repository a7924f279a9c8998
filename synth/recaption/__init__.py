"""Factual recaptioning (GLM-4.1V report): a teacher rewrites captions from the image and the original, checked
for lost facts, language, loops, length and (optionally) CLIP score; originals and rewrites mixed at a ratio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "synth" / "recaption.yaml"


def summarize(output: str) -> dict[str, Any]:
    """Counts over the kept samples of a recaption run (read by the project's codec): accepted recaptions, the
    fallback reasons (reason prefix before the first ':'), and how many samples carry which caption as `text`;
    also written into OUT/stats.json under `recaption`."""
    from collections import Counter

    from pipelines import storage
    from pipelines.codec import decode_sample, tarfile_samples
    from synth.distill.rlset import add_to_stats

    shards = sorted(storage.join(output, "shards", n) for n in storage.listdir(storage.join(output, "shards"))
                    if n.endswith(".tar"))
    reasons: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    accepted = samples = 0
    for sample in tarfile_samples(shards):
        meta = decode_sample(sample).get("json") or {}
        samples += 1
        if meta.get("recaption_ok"):
            accepted += 1
        else:
            reasons[str(meta.get("recaption_reason") or "unknown").split(":", 1)[0]] += 1
        sources[str(meta.get("caption_source"))] += 1
    report = {"samples": samples, "accepted": accepted, "fallback": dict(sorted(reasons.items())),
              "text_is": dict(sorted(sources.items()))}
    add_to_stats(output, "recaption", report)
    return report


def run(input: str, output: str, teacher: str | None = None, model: str | None = None, config: str | None = None,
        engine: Any = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`vlmdata synth recaption` without Prefect: the recipe on curated shards, then the fallback counts."""
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec
    from synth.distill import teacher_overrides

    recipe = config or RECIPE
    spec = load_spec(recipe, {**teacher_overrides(recipe, "recaption", teacher, model), **(overrides or {})})
    if engine is None:
        from pipelines.engines.local import LocalEngine

        engine = LocalEngine(spec.engine)
    run_pipeline(spec, [input], output, engine)
    return summarize(output)
