"""Engine overhead: the same operators on the same images (a) in-process over Arrow batches, (b) Spark local,
(c) Beam DirectRunner. Prints rates and the ratios b/a and c/a (target ≥ 0.6), engine start reported apart.

    .venv/bin/python benchmarks/engine_overhead.py [--n 5000] [--side 256]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curate_throughput import make_images, spec_for  # noqa: E402

from pipelines.engines.beam import BeamEngine  # noqa: E402
from pipelines.engines.spark import SparkEngine  # noqa: E402
from pipelines.global_stage import dedup_in_process  # noqa: E402
from pipelines.run import plan, run_pipeline  # noqa: E402


class InProcess:
    """The baseline: the same pass runner, called directly in this process, one part after another."""

    name = "in-process"

    def run_pass(self, runner, parts, k):
        return [runner.run(k, p) for p in parts]

    def reduce(self, runner, parts, k):
        op = runner.group(k)
        losers = dedup_in_process(op, None, [b for p in parts for b in runner.read_keys(k, p.id)])
        by_part: dict = {}
        for key, (part, survivor) in losers.items():
            by_part.setdefault(part, []).append((key, survivor))
        for part, pairs in by_part.items():
            runner.write_losers(k, part, pairs)
        return len(losers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--side", type=int, default=256)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlmdata-engines-"))
    try:
        make_images(work / "in", args.n, args.side)
        spec = spec_for()
        parts, _ = plan(spec, [str(work / "in")])
        starts = {}
        t = time.perf_counter()
        spark = SparkEngine(spec.engine)
        spark.session  # noqa: B018
        starts["spark"] = time.perf_counter() - t
        beam = BeamEngine(spec.engine.model_copy(update={"name": "beam"}))
        make_images(work / "warm", 8, 64, seed=1)
        for engine in (spark, beam):  # first start of workers, excluded from the rates
            t = time.perf_counter()
            run_pipeline(spec, [str(work / "warm")], str(work / f"warm-{engine.name}"), engine)
            starts[engine.name + " (first run, 8 images)"] = time.perf_counter() - t
        rates = {}
        outputs = {}
        for engine in (InProcess(), spark, beam):
            out = work / f"out-{engine.name}"
            report = run_pipeline(spec, [str(work / "in")], str(out), engine)
            rates[engine.name] = report.stats["inputs"] / report.seconds
            outputs[engine.name] = sorted((p.name, p.read_bytes()) for p in (out / "shards").iterdir())
        a = rates["in-process"]
        print(f"{args.n} JPEGs of {args.side} px, {len(parts)} parts; stages decode, heuristics, exact_dedup, write")
        for name, rate in rates.items():
            print(f"  {name:11s}: {rate:8.1f} images/s   ratio to in-process {rate / a:.2f}")
        print(f"  b/a (spark) = {rates['spark'] / a:.2f}, c/a (beam) = {rates['beam'] / a:.2f}   (target >= 0.6)")
        print("  engine start, excluded: " + ", ".join(f"{k} {v:.1f} s" for k, v in starts.items()))
        same = outputs["in-process"] == outputs["spark"] == outputs["beam"]
        print(f"  identical shards on all three: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
