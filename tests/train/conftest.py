"""Shared toy shards and a tiny processor for the training tests."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from model.build import build  # noqa: E402
from synth.toy_reasoning import ToyConfig, generate, write_shards  # noqa: E402


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    write_shards(ToyConfig(samples=300, shard_size=100, seed=1), out)
    return out


@pytest.fixture(scope="session")
def tiny(toy_shards):
    """(model, processor) with a BPE trained on the toy texts."""
    samples = list(generate(ToyConfig(samples=300, seed=1)))
    texts = [s["caption"] for s in samples] + [s["messages"][1]["content"] for s in samples]
    return build("tiny", texts)
