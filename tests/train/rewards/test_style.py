"""format: the report's style rules."""

from pipelines.formats import build_answer
from train.rewards import score

GOOD = build_answer("So the answer is ", think="Two plus three is five.", boxed="5")


def test_verifiable_needs_exactly_one_box():
    assert score("format", GOOD, "verifiable").score == 1.0
    assert score("format", build_answer("Five.", think="t"), "verifiable").reason == "no_box"
    two = "<think>t</think><answer><|begin_of_box|>5<|end_of_box|><|begin_of_box|>6<|end_of_box|></answer>"
    assert score("format", two, "verifiable").reason == "several_boxes"


def test_open_task_has_no_box():
    assert score("format", build_answer("A cat on a mat.", think="I see a cat."), "open").score == 1.0
    assert score("format", GOOD, "open").reason == "box_in_open_task"


def test_malformed_tags():
    for bad in ("<think>t<answer>x</answer>", "<think>a</think><think>b</think><answer>x</answer>",
                "<think>t</think><answer>x</answer></answer>", "<answer><|begin_of_box|>5</answer>"):
        v = score("format", bad, "verifiable")
        assert v.score == 0.0 and "malformed" in v.reason or "unbalanced" in v.reason or "repeated" in v.reason, v


def test_mixed_language_run():
    mixed = build_answer("所以 the 答案 is 五 because 我们 add 二 and 三 together 得到 five", think="t", boxed="5")
    assert "mixed_language" in score("format", mixed, "verifiable").reason
    quoted = build_answer("答案是五，我们用 Python 计算了二加三的结果，这是一个简单的加法问题。", think="t", boxed="5")
    assert score("format", quoted, "verifiable").score == 1.0


def test_repeated_blocks():
    loop = "Let me check the sum again. " * 5
    assert "repeated_block" in score("format", build_answer("", think=loop, boxed="5"), "verifiable").reason
    twice = "Let me check the sum again. " * 2
    assert score("format", build_answer("", think=twice, boxed="5"), "verifiable").score == 1.0
