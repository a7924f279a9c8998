"""Reward verifiers: verifications per second per core for each domain, plain in-process (no pool, no timeout)
against the batch API (`RewardPool`: worker processes, chunks, hard per-call timeout), measured in the same run
on the same varied items (no two alike, so no parser cache flatters either side). Target: batch/plain >= 0.8.

Both sides produce the same thing, the list of verdicts of the items (plain: `[verifier.score(a, t) for ...]`),
so both pay for keeping them (the garbage collector's passes over what survives).

"Per core" is per CPU-second: items / CPU time of every process that worked. The batch API: this process, whose
threads pickle and unpickle, plus every worker, read from /proc. Plain is measured twice on the same items: in
this process alone (x1), and in as many forked processes as the pool has workers, each scoring its share
in-process (xN): the pool keeps N cores busy at once, and a core shares its caches, memory bandwidth and clock
with the others (on this machine two busy processes cost ~5-10% more CPU per item than one alone), so the ratio
is taken against xN, plain with the same cores busy; the ratio against x1 is printed beside it.

Each round scores one fresh list of items on every side, in a rotating order, after a full garbage collection,
so neither side inherits the other's garbage; the figures are medians over rounds, the ratio the median of the
rounds' ratios (min-max beside it). The wall ratio, (batch items/s / workers) / (plain x1 items/s), only means
something on an idle machine with a core per worker plus one for the caller."""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from pipelines.formats import build_answer
from train.rewards.base import get_verifier
from train.rewards.pool import RewardPool

TICKS = os.sysconf("SC_CLK_TCK")
Gen = Callable[[random.Random], tuple[str, str]]
WORDS = "alpha beta gamma delta river stone cloud paper orange window garden silver market engine".split()


def _maybe_full(r: random.Random, final: str) -> str:
    return build_answer("So the answer is ", think="Working: " + " ".join(r.choices(WORDS, k=40)), boxed=final) \
        if r.random() < 0.5 else final


def _math(r: random.Random) -> tuple[str, str]:
    a, b = r.randint(1, 999), r.randint(1, 999)
    answer = rf"\frac{{{a}}}{{{b}}}" if r.random() < 0.5 else f"{a / b:.10f}"
    return _maybe_full(r, answer), f"{a}/{b}" if r.random() < 0.8 else f"{a + 1}/{b}"


def _physics(r: random.Random) -> tuple[str, str]:
    v = r.randint(1, 99999) / 100
    return _maybe_full(r, rf"{v}\,\mathrm{{km/s}}"), f"{v * 1000:.10g} m/s"


def _chemistry(r: random.Random) -> tuple[str, str]:
    c = r.randint(1, 9999) / 1000
    return _maybe_full(r, f"{c} mol/L"), f"{c * 1000:.10g} mmol/L"


def _chart(r: random.Random) -> tuple[str, str]:
    if r.random() < 0.2:
        y = r.randint(1950, 2030)
        return _maybe_full(r, str(y)), str(y + r.choice([0, 0, 1]))
    v = r.randint(1, 10**6) / 100
    return _maybe_full(r, f"{v * r.choice([1, 1.01, 1.1]):,.2f}"), f"{v}"


def _choice(r: random.Random) -> tuple[str, str]:
    opts = r.sample(WORDS, 4)
    k = r.randrange(4)
    answer = r.choice(["ABCD"[k], f"({'ABCD'[k]})", opts[k], f"{'ABCD'[r.randrange(4)]}. {opts[k]}"])
    return _maybe_full(r, answer), json.dumps({"answer": "ABCD"[k], "options": opts})


def _text(r: random.Random) -> tuple[str, str]:
    truth = " ".join(r.sample(WORDS, 3))
    return _maybe_full(r, truth.title() + "." if r.random() < 0.7 else " ".join(r.sample(WORDS, 3))), truth


def _ocr(r: random.Random) -> tuple[str, str]:
    truth = " ".join(r.choices(WORDS, k=20))
    chars = list(truth)
    for _ in range(r.randint(0, 6)):
        chars[r.randrange(len(chars))] = r.choice("abcdefghijklmnopqrstuvwxyz")
    return _maybe_full(r, "".join(chars)), truth


def _box(r: random.Random) -> list[int]:
    x, y = r.randint(0, 800), r.randint(0, 800)
    return [x, y, x + r.randint(20, 199), y + r.randint(20, 199)]


def _grounding(r: random.Random) -> tuple[str, str]:
    true = [_box(r) for _ in range(r.randint(1, 3))]
    pred = [[v + r.randint(-15, 15) for v in b] for b in true]
    return _maybe_full(r, json.dumps(pred)), json.dumps(true)


def _gui(r: random.Random) -> tuple[str, str]:
    box = _box(r)
    pred = [v + r.randint(-20, 20) for v in box]
    return _maybe_full(r, f"click({pred})"), json.dumps({"action": "click", "box": box})


def _counting(r: random.Random) -> tuple[str, str]:
    n = r.randint(0, 50)
    return _maybe_full(r, str(n + r.choice([0, 0, 1]))), str(n)


def _format(r: random.Random) -> tuple[str, str]:
    think = ". ".join(" ".join(r.choices(WORDS, k=12)) for _ in range(8))
    return build_answer("Therefore ", think=think, boxed=str(r.randint(0, 99))), "verifiable"


DOMAINS: dict[str, Gen] = {"math": _math, "physics": _physics, "chemistry": _chemistry, "chart": _chart,
                           "choice": _choice, "text": _text, "ocr": _ocr, "grounding": _grounding, "gui": _gui,
                           "counting": _counting, "format": _format}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's live child processes, from /proc."""
    total = 0
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def plain_rate(domain: str, items: list[tuple[str, str]]) -> tuple[float, float]:
    """(items per CPU-second, items per wall second) scoring in this process, keeping the verdicts."""
    verifier = get_verifier(domain)
    t, c = time.perf_counter(), time.process_time()
    out = [verifier.score(answer, truth) for answer, truth in items]
    cpu, wall = time.process_time() - c, time.perf_counter() - t
    assert len(out) == len(items)
    return len(items) / cpu, len(items) / wall


def _plain_share(domain: str, items: list[tuple[str, str]], warmup: int, conn: Connection) -> None:
    """In a forked child: score its share in-process after a few untimed items (a forked child's first touches
    of inherited pages copy them; the pool's workers are past that), send back the CPU seconds taken."""
    verifier = get_verifier(domain)
    for answer, truth in items[:warmup]:
        verifier.score(answer, truth)
    c = time.process_time()
    out = [verifier.score(answer, truth) for answer, truth in items]
    conn.send(time.process_time() - c)
    assert len(out) == len(items)


def plain_parallel_rate(domain: str, items: list[tuple[str, str]], procs: int) -> float:
    """Items per CPU-second scoring in-process in `procs` forked processes at once, each keeping its verdicts."""
    ctx = multiprocessing.get_context("fork")  # the items and warm verifiers are inherited, not sent
    shares = [items[i * len(items) // procs:(i + 1) * len(items) // procs] for i in range(procs)]
    pipes = [ctx.Pipe(duplex=False) for _ in shares]
    children = [ctx.Process(target=_plain_share, args=(domain, share, min(200, len(share)), w))
                for share, (_, w) in zip(shares, pipes, strict=True)]
    for child in children:
        child.start()
    cpu = sum(r.recv() for r, _ in pipes)
    for child in children:
        child.join()
    return len(items) / cpu


def pool_rate(pool: RewardPool, domain: str, items: list[tuple[str, str]]) -> tuple[float, float]:
    """(items per CPU-second of caller + workers, items per wall second per worker) through the batch API."""
    batch = [(domain, a, t) for a, t in items]
    t, c, w = time.perf_counter(), time.process_time(), _children_cpu()
    out = pool.score(batch)
    wall, cpu = time.perf_counter() - t, time.process_time() - c + _children_cpu() - w
    assert out.stats.timeouts == 0 and out.stats.errors == 0, out.stats
    return len(items) / cpu, len(items) / wall / pool.workers


SIDES = ["x1", "xN", "batch"]


def _measure(side: str, pool: RewardPool, domain: str, items: list[tuple[str, str]]) -> tuple[float, float]:
    """(items per CPU-second, items per wall second or 0) of one side on `items`."""
    if side == "x1":
        return plain_rate(domain, items)
    if side == "xN":
        return plain_parallel_rate(domain, items, pool.workers), 0.0
    return pool_rate(pool, domain, items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="Target CPU-seconds per worker of each timed side per round.")
    ap.add_argument("--rounds", type=int, default=7, help="Rounds per domain (medians reported).")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--domains", nargs="*", default=list(DOMAINS))
    args = ap.parse_args()

    r = random.Random(0)
    n_w = args.workers
    print(f"cores={os.cpu_count()} workers={n_w} timeout={args.timeout}s rounds={args.rounds} "
          f"load={os.getloadavg()[0]:.1f} (per core = per CPU-second; medians of rounds)")
    print(f"{'domain':<10} {'plain x1/s':>11} {f'plain x{n_w}/s':>11} {'batch/s':>9} {'ratio':>6} {'(min-max)':>11} "
          f"{'vs x1':>6} {'wall ratio':>10} {'items/task':>10}")
    ratios = []
    with RewardPool(workers=n_w, timeout_s=args.timeout) as pool:
        for domain in args.domains:
            gen = DOMAINS[domain]
            probe = plain_rate(domain, [gen(r) for _ in range(20)])[0]
            m = max(50 * n_w, int(probe * args.seconds * n_w))  # about `seconds` of work per worker
            pool.score([(domain, *gen(r)) for _ in range(m // 4)])  # warm: workers up, the domain's cost known
            sides: dict[str, list[float]] = {"x1": [], "xN": [], "batch": [], "wall_batch": [], "wall_x1": []}
            round_ratios = []
            for k in range(args.rounds):
                items = [gen(r) for _ in range(m)]
                for side in SIDES[k % 3:] + SIDES[:k % 3]:
                    gc.collect()
                    cpu, wall = _measure(side, pool, domain, items)
                    sides[side].append(cpu)
                    if wall:
                        sides["wall_" + side].append(wall)
                round_ratios.append(sides["batch"][-1] / sides["xN"][-1])
            med = {name: statistics.median(v) for name, v in sides.items()}
            ratio = statistics.median(round_ratios)
            ratios.append(ratio)
            per_task = pool._chunk_len(domain, m)  # what the pool sends per task now
            spread = f"{min(round_ratios):.2f}-{max(round_ratios):.2f}"
            print(f"{domain:<10} {med['x1']:>11.0f} {med['xN']:>11.0f} {med['batch']:>9.0f} {ratio:>6.2f} "
                  f"{spread:>11} {med['batch'] / med['x1']:>6.2f} {med['wall_batch'] / med['wall_x1']:>10.2f} "
                  f"{per_task:>10}", flush=True)
    print(f"{'all':<10} {'':>11} {'':>11} {'':>9} {statistics.geometric_mean(ratios):>6.2f}  "
          f"(geometric mean of batch/plain x{n_w}; target >= 0.8) load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
