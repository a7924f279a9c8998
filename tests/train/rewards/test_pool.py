"""The batch API: parallel, in order, and a verifier that hangs is killed at the timeout, scores 0, is counted,
and the pool goes on working."""

from train.rewards import RewardPool, score, score_batch

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
