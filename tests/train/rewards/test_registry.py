"""New domains register like operators: by import path, or by an entry point of an installed distribution."""

import sys

import pytest

from train.rewards import score, verifier_classes
from train.rewards.base import BUILTINS, verifier_class

PLUGIN = "tests.train.rewards.plugins:Palindrome"


def test_builtins_are_registered():
    classes = verifier_classes()
    assert set(BUILTINS) <= set(classes)
    for name in BUILTINS:
        assert verifier_class(name) is classes[name]


def test_import_path(pool):
    assert score(PLUGIN, "abba", "abba").score == 1.0
    assert [v.score for v in pool.score([(PLUGIN, "abba", "abba"), (PLUGIN, "abc", "abc")])] == [1.0, 0.0]


def test_entry_point_plugin(tmp_path, monkeypatch):
    """A separate distribution (dist-info with entry_points.txt, on sys.path) adds the domain `palindrome`."""
    (tmp_path / "rewardplug.py").write_text(
        "from tests.train.rewards.plugins import Palindrome\n\nclass Plug(Palindrome):\n    name = 'palindrome'\n")
    info = tmp_path / "rewardplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rewardplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vlmdata.verifiers]\npalindrome = rewardplug:Plug\n")
    with pytest.raises(ValueError, match="unknown verifier domain 'palindrome'"):
        verifier_class("palindrome")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "palindrome" in verifier_classes()
    assert score("palindrome", "<think>t</think><answer><|begin_of_box|>abba<|end_of_box|></answer>", "abba").score == 1.0
    assert score("palindrome", "abc", "abc").reason == "mismatch"
    monkeypatch.delitem(sys.modules, "rewardplug", raising=False)


def test_unknown_and_wrong_paths():
    with pytest.raises(ValueError, match="known domains"):
        verifier_class("astrology")
    with pytest.raises(ValueError, match="not a Verifier subclass"):
        verifier_class("tests.train.rewards.conftest:full")
