"""Engine overhead: the same operators on the same images (a) in-process over Arrow batches (the plain loop: the
pass runner called part after part in this process), (b) Spark local, (c) Beam DirectRunner, (d) the local engine (a
process pool over parts). Prints rates and ratios to (a): targets local ≥ 0.9, Spark and Beam ≥ 0.8; engine start is
reported apart, and the load average at the start and the end (other work on the cores moves the ratios).

    .venv/bin/python benchmarks/engine_overhead.py [--n 5000] [--side 256] [--engines spark,beam,local]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curate_throughput import make_images, spec_for  # noqa: E402

from pipelines.engines.beam import BeamEngine  # noqa: E402
from pipelines.engines.local import LocalEngine  # noqa: E402
from pipelines.engines.spark import SparkEngine  # noqa: E402
from pipelines.run import plan, run_pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--engines", default="spark,beam,local", help="engines to compare with the in-process loop")
    args = ap.parse_args()
    chosen = [e for e in args.engines.split(",") if e]
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="vlmdata-engines-"))
    try:
        make_images(work / "in", args.n, args.side)
        spec = spec_for()
        parts, _ = plan(spec, [str(work / "in")])
        starts = {}
        engines = []
        if "spark" in chosen:
            t = time.perf_counter()
            spark = SparkEngine(spec.engine)
            spark.session  # noqa: B018
            starts["spark"] = time.perf_counter() - t
            engines.append(spark)
        if "beam" in chosen:
            engines.append(BeamEngine(spec.engine.model_copy(update={"name": "beam"})))
        if "local" in chosen:
            engines.append(LocalEngine(spec.engine.model_copy(update={"name": "local"})))
        plain = LocalEngine(spec.engine.model_copy(update={"name": "local", "workers": 0}))
        plain.name = "in-process"
        make_images(work / "warm", 8, 64, seed=1)
        for engine in engines:  # first start of workers, excluded from the rates
            t = time.perf_counter()
            run_pipeline(spec, [str(work / "warm")], str(work / f"warm-{engine.name}"), engine, close=False)
            starts[engine.name + " (first run, 8 images)"] = time.perf_counter() - t
        rates = {}
        outputs = {}
        for engine in (plain, *engines):
            out = work / f"out-{engine.name}"
            report = run_pipeline(spec, [str(work / "in")], str(out), engine)
            rates[engine.name] = report.stats["inputs"] / report.seconds
            outputs[engine.name] = sorted((p.name, p.read_bytes()) for p in (out / "shards").iterdir())
        a = rates["in-process"]
        print(f"{args.n} JPEGs of {args.side} px, {len(parts)} parts; stages decode, heuristics, exact_dedup, write")
        for name, rate in rates.items():
            print(f"  {name:11s}: {rate:8.1f} images/s   ratio to in-process {rate / a:.2f}")
        targets = {"spark": 0.8, "beam": 0.8, "local": 0.9}
        print("  " + "; ".join(f"{e.name}/a = {rates[e.name] / a:.2f} (target >= {targets[e.name]})" for e in engines))
        print("  engine start, excluded: " + ", ".join(f"{k} {v:.1f} s" for k, v in starts.items()))
        same = all(outputs[e.name] == outputs["in-process"] for e in engines)
        print(f"  identical shards on all engines: {same}")
        print("  load average (1, 5, 15 min) at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} {:.2f}".format(
            *load_start, *os.getloadavg()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
