import math
import random

import pyarrow as pa

from filters.concept_balance import ConceptBalance, keep_probability
from filters.concepts import ConceptMatcher, load_entries, normalize
from pipelines.operator import apply_map
from pipelines.plan import _Decision
from pipelines.schema import record_schema

SCHEMA = record_schema(ConceptBalance.adds)


def test_wordnet_metadata_has_multiword_lemmas_and_synonyms():
    entries = load_entries("/usr/share/wordnet")
    assert len(entries) > 80_000
    assert {"hot dog", "dog", "domestic dog", "canis familiaris", "ice cream"} <= set(entries)


def test_matching_is_whole_word_on_the_normalised_padded_caption():
    m = ConceptMatcher(["dog", "hot dog", "ice cream", "cat"])
    assert normalize("A Hot-Dog, with ICE  cream!") == " a hot dog with ice cream "
    assert m.match("A Hot-Dog, with ICE  cream!") == ["dog", "hot dog", "ice cream"]
    assert m.match("concatenate the dogma") == []


def _batch(rows):
    return pa.RecordBatch.from_pylist(
        [{"key": k, "image": b"x", "text": "t", "source": k, "dataset": "d", "meta": "{}", "part": 0, "ord": i,
          "keep": True, "error": False, "concepts": c} for i, (k, c) in enumerate(rows)],
        schema=SCHEMA,
    )


def _decide(op, rows, counts):
    return apply_map(_Decision(op, counts), _batch(rows), SCHEMA).to_pylist()


def test_tail_entries_are_always_kept_and_unmatched_follow_the_policy():
    counts = {"tail": 5, "head": 10_000}
    rows = [(f"k{i}", ["tail", "head"]) for i in range(200)] + [("none", [])]
    out = _decide(ConceptBalance(t=10, wordnet_dir=None), rows, counts)
    assert all(r["keep"] for r in out[:200])
    assert not out[200]["keep"] and out[200]["reason"] == "no_concept"
    kept = _decide(ConceptBalance(t=10, wordnet_dir=None, unmatched="keep"), [("none", [])], counts)
    assert kept[0]["keep"]


def test_head_samples_are_kept_at_one_minus_the_product_within_binomial_error():
    t = 50
    counts = {"a": 1_000, "b": 400, "c": 5_000}
    n = 40_000
    rng = random.Random(3)
    combos = [["a"], ["b"], ["a", "b"], ["a", "b", "c"]]
    rows = [(f"key-{i}", combos[rng.randrange(len(combos))]) for i in range(n)]
    out = _decide(ConceptBalance(t=t, seed=7, wordnet_dir=None), rows, counts)
    for combo in combos:
        got = [r["keep"] for r, (_, c) in zip(out, rows, strict=True) if c == combo]
        p = keep_probability(combo, counts, t)
        sigma = math.sqrt(p * (1 - p) / len(got))
        assert abs(sum(got) / len(got) - p) < 4 * sigma, (combo, sum(got) / len(got), p)
    again = _decide(ConceptBalance(t=t, seed=7, wordnet_dir=None), rows, counts)
    assert [r["keep"] for r in again] == [r["keep"] for r in out]  # seeded per key: a rerun keeps the same
    other = _decide(ConceptBalance(t=t, seed=8, wordnet_dir=None), rows, counts)
    assert [r["keep"] for r in other] != [r["keep"] for r in out]
    dropped = [r for r in out if not r["keep"]]
    assert dropped and all(r["reason"].startswith("concept_head:p=") and r["stage"] == "concept_balance" for r in dropped)
