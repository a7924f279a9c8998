"""Concept matching speed: captions/s of one core against the full WordNet 3.0 metadata (target ≥ 50,000/s).

The baseline measured in the same run is a plain `str.lower().split()` over the same captions, so the ratio says
what whole-word Aho-Corasick matching costs on top of merely tokenising.

    .venv/bin/python benchmarks/concept_matching.py [--n 200000]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from filters.concepts import ConceptMatcher, load_entries
from synth.demo_corpus import STAMPS_DIR, parse_description


def captions(n: int) -> list[str]:
    """Real captions (the tuxpaint descriptions in English), repeated and shuffled to `n`."""
    base = [parse_description(p.read_text(encoding="utf-8", errors="replace"))[0]
            for p in sorted(Path(STAMPS_DIR).rglob("*.txt"))]
    base = [c for c in base if c]
    rng = random.Random(0)
    return [rng.choice(base) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    start = time.perf_counter()
    entries = load_entries("/usr/share/wordnet")
    matcher = ConceptMatcher(entries)
    build = time.perf_counter() - start
    texts = captions(args.n)
    start = time.perf_counter()
    for t in texts:
        t.lower().split()
    base = time.perf_counter() - start
    start = time.perf_counter()
    matched = sum(len(matcher.match(t)) for t in texts)
    took = time.perf_counter() - start
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"metadata: {matcher.size} WordNet entries, automaton built in {build:.1f} s")
    print(f"{args.n} captions, {mean_chars:.0f} chars mean, {matched / args.n:.1f} entries matched per caption")
    print(f"(a) lower().split() baseline: {args.n / base:10.0f} captions/s")
    print(f"(b) concept matching, 1 core: {args.n / took:10.0f} captions/s   (target >= 50,000)")
    print(f"ratio b/a = {base / took:.2f}")


if __name__ == "__main__":
    main()
