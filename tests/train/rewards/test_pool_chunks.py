"""Chunked scoring keeps every item under its own hard timeout: a chunk that hangs or kills its worker is split at
the item in progress (read from the progress its worker shares), so only that item scores 0, it is not re-run once
it has had its full timeout, and the items around it are scored (those already scored, once more)."""

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from train.rewards.base import Verdict, Verifier, VerifierConfig
from train.rewards.pool import RewardPool

DOMAIN = "tests.train.rewards.test_pool_chunks:Recorder"


class Recorder(Verifier):
    """Exact match that logs each call (one line per call, appended: atomic across processes); the answer
    `hang` hangs, `sleep:S` sleeps S seconds first, `die` ends its worker process abruptly."""

    name = "recorder"

    class Config(VerifierConfig):
        log: str = ""

    def compare(self, final: str, truth: str) -> Verdict:
        with open(self.config.log, "a") as f:
            f.write(truth + "\n")
        if final == "hang":
            while True:
                time.sleep(0.05)
        if final == "die":
            os._exit(3)
        if final.startswith("sleep:"):
            time.sleep(float(final[6:]))
            final = truth
        return Verdict(float(final == truth), final, truth, "match" if final == truth else "mismatch")


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "calls.log"


def _pool(log: Path, timeout_s: float) -> RewardPool:
    # one worker and a fresh pool: chunks of ceil(n / 2) items, in order
    return RewardPool(workers=1, timeout_s=timeout_s, configs={DOMAIN: {"log": str(log)}}, domains=[])


def _calls(log: Path) -> Counter:
    return Counter(log.read_text().split())


def test_a_hang_mid_chunk_scores_only_that_item_and_is_not_rerun(log):
    answers = ["t0", "t1", "t2", "hang", "t4", "bad", "t6", "t7", "t8", "t9", "t10", "t11"]
    items = [(DOMAIN, a, f"t{i}") for i, a in enumerate(answers)]
    with _pool(log, timeout_s=0.5) as pool:
        got = pool.score(items)
        assert [v.reason for v in got] == ["match"] * 3 + ["timeout", "match", "mismatch"] + ["match"] * 6
        assert [v.score for v in got] == [1.0] * 3 + [0.0, 1.0, 0.0] + [1.0] * 6
        assert got.stats.timeouts == 1 and got.stats.split_chunks == 1 and got.stats.errors == 0
        calls = _calls(log)
        # first chunk t0..t5: t0-t2 scored, lost with the killed worker and scored again; t3 had its full timeout
        assert [calls[f"t{i}"] for i in range(12)] == [2, 2, 2, 1] + [1] * 8
        # the replaced worker scores the next batch in full
        again = pool.score([(DOMAIN, f"u{i}", f"u{i}") for i in range(10)])
        assert [v.score for v in again] == [1.0] * 10 and again.stats.timeouts == 0
        assert pool.stats.timeouts == 1 and pool.stats.items == 22


def test_two_hangs_in_one_chunk_are_two_timeouts_and_the_rest_is_scored(log):
    answers = ["t0", "hang", "t2", "t3", "hang", "t5", "t6", "t7", "t8", "t9"]
    with _pool(log, timeout_s=0.5) as pool:
        got = pool.score([(DOMAIN, a, f"t{i}") for i, a in enumerate(answers)])
    assert [v.reason == "timeout" for v in got] == [a == "hang" for a in answers]
    assert [v.score for v in got] == [0.0 if a == "hang" else 1.0 for a in answers]
    assert got.stats.timeouts == 2 and got.stats.split_chunks == 2
    calls = _calls(log)
    assert calls["t1"] == 1 and calls["t4"] == 1  # neither hang re-run
    assert all(calls[f"t{i}"] <= 2 for i in range(10))


def test_an_item_that_kills_its_worker_is_an_error_the_others_are_scored(log):
    answers = ["t0", "t1", "t2", "die", "t4", "t5", "t6", "t7"]
    with _pool(log, timeout_s=2.0) as pool:
        got = pool.score([(DOMAIN, a, f"t{i}") for i, a in enumerate(answers)])
        assert [v.score for v in got] == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        assert got[3].reason.startswith("error:worker_died")
        assert got.stats.errors == 1 and got.stats.timeouts == 0 and got.stats.split_chunks == 1
        calls = _calls(log)
        assert calls["t3"] == 2  # killed its worker in the chunk and once more alone
        assert [calls[f"t{i}"] for i in (4, 5, 6, 7)] == [1, 1, 1, 1]
        assert pool.score([(DOMAIN, "x", "x")])[0].score == 1.0


def test_slow_items_that_overrun_the_chunk_deadline_together_are_not_timeouts(log):
    # each item takes 0.6 s, under its own 1 s timeout; four in one chunk overrun the chunk's 2 s deadline, so the
    # one in progress then had less than its timeout: it is re-run alone, not scored as a timeout
    items = [(DOMAIN, "sleep:0.6", f"s{i}") for i in range(4)] + [(DOMAIN, f"t{i}", f"t{i}") for i in range(4)]
    with _pool(log, timeout_s=1.0) as pool:
        got = pool.score(items)
    assert [v.score for v in got] == [1.0] * 8
    assert got.stats.timeouts == 0 and got.stats.split_chunks == 1


def test_batches_from_several_threads_at_once(pool):
    def run(tag: str, out: dict) -> None:
        batch = [("counting", str(i % 7), str(i % 5)) for i in range(300)]
        batch[150] = ("tests.train.rewards.plugins:Sleeper", "hang", "x")
        out[tag] = pool.score(batch)

    results: dict = {}
    threads = [threading.Thread(target=run, args=(t, results)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        assert [v.score for v in got[:150]] == [float(i % 7 == i % 5) for i in range(150)]
        assert got[150].reason == "timeout" and got.stats.timeouts == 1
        assert [v.score for v in got[151:]] == [float(i % 7 == i % 5) for i in range(151, 300)]


def test_a_mixed_batch_is_scored_by_domain_and_put_back_in_order(log):
    items = []
    for i in range(24):
        if i % 3 == 0:
            items.append((DOMAIN, "hang" if i == 9 else f"r{i}", f"r{i}"))
        else:
            items.append(("counting", str(i), str(i if i % 2 else i + 1)))
    with _pool(log, timeout_s=0.5) as pool:
        got = pool.score(items)
    want = [0.0 if i == 9 else 1.0 if i % 3 == 0 else float(i % 2 == 1) for i in range(24)]
    assert [v.score for v in got] == want
    assert got[9].reason == "timeout" and got.stats.timeouts == 1
    assert [v.extracted for v in got if v.reason != "timeout"] == [
        f"r{i}" if i % 3 == 0 else str(i) for i in range(24) if i != 9]
    assert got.stats.by_domain == {DOMAIN: 8, "counting": 16}


def test_progress_reaches_workers_started_by_forkserver(log):
    # RLCS and distillation start their pools with forkserver: the shared progress array must reach those workers
    # too (were it not shared, the hang would be found only by re-running its chunk item by item)
    items = [(DOMAIN, "hang" if i == 2 else f"t{i}", f"t{i}") for i in range(8)]
    # domains: a fresh worker imports this module (and pytest) before its first task, not under the timeout
    with RewardPool(workers=1, timeout_s=0.5, configs={DOMAIN: {"log": str(log)}}, domains=[DOMAIN],
                    context="forkserver") as pool:
        got = pool.score(items)
    assert [v.reason for v in got] == ["match", "match", "timeout"] + ["match"] * 5
    assert _calls(log)["t2"] == 1 and got.stats.split_chunks == 1


class OddTypes(Verifier):
    """A plug-in that returns what a `Verdict` does not promise: an int score, an extracted text too long to send
    back whole, and (for `unhashable`) a list as its reason."""

    name = "odd_types"

    def compare(self, final: str, truth: str) -> Verdict:
        if final == "unhashable":
            return Verdict(1, final, truth, ["not", "a", "str"])  # type: ignore[arg-type]
        if final == "long":
            return Verdict(1, "y" * 1000, truth, "match")
        return Verdict(int(final == truth), final, truth, "match" if final == truth else "mismatch")
