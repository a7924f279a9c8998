"""The toy reasoning world: verifiable answers that agree with what is drawn, shards that read back."""

import json
import random
import tarfile

import webdataset as wds

from pipelines.formats import extract_boxed as extract_answer
from synth.toy_reasoning import TASKS, ToyConfig, answer_space, render_sample, write_shards


def test_answers_are_boxed_once_and_consistent_with_the_scene():
    for difficulty in (1, 2, 3):
        cfg = ToyConfig(difficulty=difficulty)
        rng = random.Random(difficulty)
        for _ in range(40):
            for task in TASKS:
                s = render_sample(rng, task, cfg)
                content = s["messages"][1]["content"]
                assert content.startswith("<think>") and content.endswith("</answer>")
                assert content.count("<|begin_of_box|>") == 1
                assert extract_answer(content) == s["answer"]
                for x1, y1, x2, y2 in s["boxes"]:
                    assert 0 <= x1 < x2 <= cfg.image_size and 0 <= y1 < y2 <= cfg.image_size
                q = s["messages"][0]["content"][1]["text"]
                if task == "count":
                    assert 1 <= int(s["answer"]) <= answer_space("count", difficulty)
                    assert len(s["boxes"]) >= int(s["answer"])
                if task == "arithmetic":
                    expr = s["caption"].split("expression ")[1].split(" written")[0]
                    assert eval(expr) == int(s["answer"])  # noqa: S307 - our own rendered digits
                if task == "position":
                    (ax, ay, _, _), (bx, by, _, _) = s["boxes"][:2]
                    expected = ("right" if ax > bx else "left") if abs(ax - bx) >= abs(ay - by) else (
                        "below" if ay > by else "above")
                    assert s["answer"] == expected, q
                if task == "colour":
                    assert s["answer"] in s["caption"]


def test_difficulty_knob_grows_scenes_and_answer_spaces():
    rng = random.Random(0)
    easy = [render_sample(rng, "count", ToyConfig(difficulty=1)) for _ in range(50)]
    hard = [render_sample(rng, "count", ToyConfig(difficulty=3)) for _ in range(50)]
    assert max(len(s["boxes"]) for s in easy) < max(len(s["boxes"]) for s in hard)
    assert answer_space("arithmetic", 1) < answer_space("arithmetic", 3)


def test_shards_read_back_with_index(tmp_path):
    paths = write_shards(ToyConfig(samples=25, shard_size=10, seed=3), tmp_path)
    assert [p.name for p in paths] == ["toy-00000.tar", "toy-00001.tar", "toy-00002.tar"]
    index = json.loads((tmp_path / "index.json").read_text())
    assert [s["nsamples"] for s in index["shardlist"]] == [10, 10, 5]
    assert [s["filesize"] for s in index["shardlist"]] == [p.stat().st_size for p in paths]
    assert not list(tmp_path.glob("*.tmp"))
    with tarfile.open(paths[0]) as tf:
        names = tf.getnames()
    assert {n.rsplit(".", 1)[1] for n in names} == {"png", "txt", "json"}
    samples = list(wds.WebDataset([str(p) for p in paths], shardshuffle=False).decode("pil"))
    assert len(samples) == 25 and len({s["__key__"] for s in samples}) == 25
    assert samples[0]["png"].size == (112, 112)
    assert samples[0]["json"]["messages"][0]["content"][0] == {"type": "image"}
