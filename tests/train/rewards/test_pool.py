"""The batch API: parallel, in order, and a verifier that hangs is killed at the timeout, scores 0, is counted,
and the pool goes on working."""

from tests.train.rewards.conftest import full
from train.rewards import RewardPool, score, score_batch
from train.rewards.pool import _SHOWN

SLEEPER = "tests.train.rewards.plugins:Sleeper"


def test_batch_matches_in_process_scores(pool):
    items = [("math", r"\frac{1}{2}", "0.5"), ("counting", "3", "4"), ("ocr", "Hello wrld", "Hello world"),
             ("choice", "B", "B. Paris"), ("grounding", "[[0,0,100,100]]", "[[0,0,100,100]]")] * 30
    got = pool.score(items)
    assert [v.score for v in got] == [score(*it).score for it in items]
    assert got.stats.items == len(items) and got.stats.timeouts == 0 and got.stats.errors == 0


def test_hanging_verifier_is_killed_counted_and_the_pool_goes_on(pool):
    before = pool.stats.timeouts
    items = [(SLEEPER, "a", "a")] * 40 + [(SLEEPER, "hang", "a")] + [(SLEEPER, "b", "a")] * 40
    got = pool.score(items)
    assert got[40].score == 0.0 and got[40].reason == "timeout"
    assert [v.score for v in got[:40]] == [1.0] * 40 and [v.score for v in got[41:]] == [0.0] * 40
    assert got.stats.timeouts == 1 and pool.stats.timeouts == before + 1 and got.stats.split_chunks == 1
    # the stuck worker was replaced: the same pool scores the next batch in full
    again = pool.score([("counting", "7", "7")] * 200 + [(SLEEPER, "hang", "x")] * 2)
    assert [v.score for v in again[:200]] == [1.0] * 200
    assert again.stats.timeouts == 2


def test_errors_score_zero_and_are_counted(pool):
    got = pool.score([(SLEEPER, "raise", "a"), ("no-such-domain", "1", "1"), ("counting", "1", "1")])
    assert [v.score for v in got] == [0.0, 0.0, 1.0]
    assert got[0].reason.startswith("error:RuntimeError") and got[1].reason.startswith("error:ValueError")
    assert got.stats.errors == 2


def test_score_batch_one_off_with_its_own_timeout():
    got = score_batch([(SLEEPER, "hang", "a"), (SLEEPER, "a", "a")], timeout_s=0.5, workers=1)
    assert [v.reason for v in got] == ["timeout", "match"]
    assert got.stats.timeouts == 1


def test_configs_reach_the_workers():
    item = ("grounding", "[[100,100,200,200]]", "[100,100,160,200]")
    with RewardPool(workers=1, timeout_s=2, configs={"grounding": {"iou_threshold": 0.7}}) as strict:
        assert strict.score([item])[0].score == 0.0
    with RewardPool(workers=1, timeout_s=2) as default:
        assert default.score([item])[0].score == 1.0


def test_ocr_verdicts_through_the_pool_equal_in_process_ones_field_by_field(pool):
    # enough items for several chunks; text that is not ASCII, has NULs, a lone surrogate, long lines
    texts = ["Hello world", "naïve café ﬁne", "東京都 渋谷区 1-2-3", "emoji 🙂 ok", "nul\x00inside", "lone \ud800 half",
             "tab\tand\nnewline", "x" * 400, "", "Invoice 2024-113 or 2024-118"]
    items = []
    for i in range(600):
        truth = texts[i % len(texts)] or "blank"
        answer = texts[(i * 7) % len(texts)] if i % 3 else truth.upper()
        items.append(("ocr", full(answer) if i % 2 else answer, truth))
    got = pool.score(items)

    def shown(text: str | None) -> str | None:  # the pool sends back at most _SHOWN characters of each text
        return text if text is None or len(text) <= _SHOWN else text[:_SHOWN] + "…"

    want = [(v.score, shown(v.extracted), shown(v.compared), v.reason) for v in (score(*it) for it in items)]
    assert [tuple(v) for v in got] == want
    assert len({v.reason for v in got}) > 3 and got.stats.errors == 0


def test_a_verifier_returning_odd_types_fails_its_item_only(pool):
    odd = "tests.train.rewards.test_pool_chunks:OddTypes"
    items = [(odd, "fine", "fine"), (odd, "unhashable", "x"), (odd, "long", "x"), (odd, "fine", "other")] * 20
    got = pool.score(items)
    assert [v.reason for v in got[:4]] == ["match", got[1].reason, "match", "mismatch"]
    assert got[1].score == 0.0 and got[1].reason.startswith("error:TypeError")
    assert got[2].extracted.endswith("…") and len(got[2].extracted) < 400
    assert list(got[4:]) == list(got[:4]) * 19 and got.stats.errors == 20
