"""What the crop search costs: near_dedup with (b) `crops: true` against (a) plain pHash, on the demo's stamps.

Map: the per-row hashing (and thumbnail) over --n rows from image bytes. Reduce: the whole dedup reduce in one
process (buckets, candidate pairs, verification) over the distinct stamps. The map runs (a) and (b) batch by batch,
alternating (and which goes first), so both see the same load on a shared machine; of --rounds rounds the best of
each counts, and each round's own b/a is printed too. The map is timed in wall seconds and in CPU-seconds of this
process (on a shared, loaded machine the CPU figure is the reliable one). Prints rates and b/a (target >= 0.8 on
the map side).

    .venv/bin/python benchmarks/near_dedup.py            # needs data/demo (make demo builds it)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402

from filters.dedup_near import NearDedup  # noqa: E402
from pipelines.global_stage import dedup_in_process, reduce_rows, reduce_schema  # noqa: E402
from pipelines.schema import record_schema  # noqa: E402


def batches(images: list[bytes], op: NearDedup, batch_size: int = 64) -> list[pa.RecordBatch]:
    schema = record_schema(op.adds)
    out = []
    for start in range(0, len(images), batch_size):
        rows = [{"key": f"{i:08d}", "image": data, "text": "t", "source": str(i), "dataset": "d", "meta": "{}",
                 "part": 0, "ord": i, "keep": True, "error": False}
                for i, data in enumerate(images[start:start + batch_size], start)]
        out.append(pa.RecordBatch.from_pylist(rows, schema=schema))
    return out


def run_map(op: NearDedup, inputs: list[pa.RecordBatch]) -> tuple[float, float, list[pa.RecordBatch]]:
    """(wall seconds, CPU seconds, mapped batches)."""
    start, cpu = time.perf_counter(), time.process_time()
    mapped = [op(b) for b in inputs]
    return time.perf_counter() - start, time.process_time() - cpu, mapped


def run_maps(ops: dict[str, NearDedup], inputs: dict[str, list[pa.RecordBatch]]) -> dict[str, tuple[float, float]]:
    """Every op over its batches, interleaved batch by batch (first one op, then the other, in turn):
    name → (wall seconds, CPU seconds)."""
    totals = {name: [0.0, 0.0] for name in ops}
    names = list(ops)
    for i in range(len(next(iter(inputs.values())))):
        for name in names if i % 2 == 0 else names[::-1]:
            start, cpu = time.perf_counter(), time.process_time()
            ops[name](inputs[name][i])
            totals[name][0] += time.perf_counter() - start
            totals[name][1] += time.process_time() - cpu
    return {name: (wall, cpu) for name, (wall, cpu) in totals.items()}


def run_reduce(op: NearDedup, mapped: list[pa.RecordBatch]) -> tuple[float, int]:
    keys = [reduce_rows(b, op, reduce_schema(op, b.schema)) for b in mapped]
    start = time.perf_counter()
    losers = dedup_in_process(op, None, keys)
    return time.perf_counter() - start, len(losers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="data/demo/clean", help="Folder of PNG/JPEG images (the distinct set).")
    parser.add_argument("--n", type=int, default=2000, help="Rows hashed in the map measurement (images repeat).")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        raise SystemExit(f"no images under {args.images}: run `make demo` first or pass --images")
    distinct = [p.read_bytes() for p in files]
    repeated = [distinct[i % len(distinct)] for i in range(args.n)]
    ops = {"a": NearDedup(), "b": NearDedup(crops=True)}
    best_map = {k: float("inf") for k in ops}
    best_cpu = {k: float("inf") for k in ops}
    best_reduce = {k: float("inf") for k in ops}
    dropped, rounds = {}, []
    inputs = {name: batches(repeated, op) for name, op in ops.items()}
    for _ in range(args.rounds):
        timed = run_maps(ops, inputs)
        rounds.append((timed["a"][0] / timed["b"][0], timed["a"][1] / timed["b"][1]))
        for name, (seconds, cpu) in timed.items():
            best_map[name], best_cpu[name] = min(best_map[name], seconds), min(best_cpu[name], cpu)
        for name, op in ops.items():
            _, _, mapped = run_map(op, batches(distinct, op))
            seconds, dropped[name] = run_reduce(op, mapped)
            best_reduce[name] = min(best_reduce[name], seconds)
    rate = {k: args.n / v for k, v in best_map.items()}
    per_cpu = {k: args.n / v for k, v in best_cpu.items()}
    print(f"{len(distinct)} distinct images from {args.images}; map over {args.n} rows, best of {args.rounds} rounds")
    for key, name in (("a", "plain pHash map"), ("b", "crops map      ")):
        print(f"({key}) {name} {rate[key]:7.1f} rows/s wall, {per_cpu[key]:7.1f} rows per CPU-second; reduce over "
              f"{len(distinct)} rows {best_reduce[key]:.2f} s, {dropped[key]} dropped")
    print("map b/a per round (wall, CPU): " + ", ".join(f"{w:.2f} {c:.2f}" for w, c in rounds))
    print(f"map b/a {rate['b'] / rate['a']:.2f} wall, {per_cpu['b'] / per_cpu['a']:.2f} CPU  (target >= 0.8)")


if __name__ == "__main__":
    main()
