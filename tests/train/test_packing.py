"""Encoding and packing: per-sample equivalence of packed batches, label masks, resumable positions."""

import io
import itertools
import json

import torch

from synth.toy_reasoning import ToyConfig, render_sample
from train.config import DataConfig, ShardSource
from train.data.counters import SkipCounter
from train.data.encode import IGNORE, Encoder
from train.data.pack import pack
from train.data.shards import raw_stream
from train.loss import forward_logits, per_sample_losses, token_losses


def raw_from(sample: dict, size: int | None = None) -> dict:
    img = sample["image"] if size is None else sample["image"].resize((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"__key__": "k", "png": buf.getvalue(), "txt": sample["caption"].encode(),
            "json": json.dumps({"messages": sample["messages"]}).encode()}


def mixed_raws(n: int) -> list[dict]:
    """Samples with different image sizes (grids) and tasks."""
    import random

    rng = random.Random(0)
    tasks = ["count", "colour", "position", "arithmetic"]
    return [raw_from(render_sample(rng, tasks[i % 4], ToyConfig(image_size=112)), size=[112, 56, 84, 140][i % 4])
            for i in range(n)]


def test_packed_batch_gives_per_sample_losses_of_separate_runs(tiny):
    model, proc = tiny
    model.eval()
    enc = Encoder(proc, model.config, "messages", SkipCounter(), max_len=256)
    samples = [enc(r) for r in mixed_raws(10)]
    batch = next(pack(enumerate(samples), seq_len=256, rows_per_batch=2, pad_id=proc.tokenizer.pad_token_id))
    n = batch["num_samples"]
    assert n >= 4 and batch["image_grid_thw"].shape[0] == n
    with torch.no_grad():
        packed = per_sample_losses(token_losses(forward_logits(model, batch), batch["labels"]), batch["labels"],
                                   batch["sample_index"], n)
        single = []
        for s in samples[:n]:
            # the model computes its own 3D positions and causal mask for an unpacked sample
            out = model(input_ids=s.input_ids[None], pixel_values=s.pixel_values, image_grid_thw=s.image_grid_thw,
                        mm_token_type_ids=s.mm_token_type_ids[None])
            single.append(token_losses(out.logits, s.labels[None]).sum() / (s.labels != IGNORE).sum())
    torch.testing.assert_close(packed, torch.stack(single), atol=1e-5, rtol=1e-5)


def test_loss_is_only_on_the_answer(tiny):
    model, proc = tiny
    import random

    s = render_sample(random.Random(5), "colour", ToyConfig())
    for target, expected in [("messages", s["messages"][1]["content"]), ("caption", s["caption"])]:
        e = Encoder(proc, model.config, target, SkipCounter())(raw_from(s))
        targets = e.labels[e.labels != IGNORE]
        assert proc.tokenizer.decode(targets) == expected + proc.tokenizer.eos_token
        # shifted: the label at t is the token at t+1, and the answer is the tail of the sequence
        assert torch.equal(targets, e.input_ids[-len(targets):])


def test_resume_from_reproduces_the_following_batches(tiny, toy_shards):
    model, proc = tiny
    data = DataConfig(sources=[ShardSource(name="toy", urls=str(toy_shards / "*.tar"))], shuffle_buffer=50,
                      shuffle_initial=10)

    def batches(skip: int):
        c = SkipCounter()
        enc = Encoder(proc, model.config, "caption", c, 200)
        raw = raw_stream(data, seed=3, epoch=0, rank=0, worker=0, counter=c)
        return pack(((i, enc(s)) for i, s in enumerate(raw) if i >= skip), 200, 2, proc.tokenizer.pad_token_id)

    full = list(itertools.islice(batches(0), 5))
    resumed = list(itertools.islice(batches(full[2]["resume_from"]), 2))
    for a, b in zip(full[3:], resumed, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["position_ids"], b["position_ids"])
    eff = sum(b["real_tokens"] for b in full) / sum(b["input_ids"].numel() for b in full)
    assert eff > 0.8
    # packed text positions restart at 0 for every sample (this is what isolates samples in attention)
    b = full[0]
    starts = (b["position_ids"][0] == 0).sum()
    assert starts >= b["num_samples"]


def test_bad_samples_are_counted_and_skipped(tiny, tmp_path):
    import webdataset as wds

    model, proc = tiny
    good = mixed_raws(3)
    with wds.TarWriter(str(tmp_path / "bad-00000.tar")) as w:
        w.write({**good[0], "__key__": "good0"})
        w.write({"__key__": "noimage", "txt": b"a caption", "json": b"{}"})
        w.write({**good[1], "__key__": "brokenjson", "json": b"{not json"})
        w.write({**good[1], "__key__": "badimage", "png": b"\x89PNG not really"})
        w.write({**good[2], "__key__": "good2"})
    (tmp_path / "trunc-00000.tar").write_bytes((tmp_path / "bad-00000.tar").read_bytes()[:1500])
    data = DataConfig(sources=[ShardSource(name="bad", urls=str(tmp_path / "*.tar"))], shuffle_buffer=1,
                      shuffle_initial=1)
    c = SkipCounter()
    enc = Encoder(proc, model.config, "messages", c, 512)
    out = [enc(s) for s in itertools.islice(raw_stream(data, 0, 0, 0, 0, c), 40)]
    assert sum(e is not None for e in out) > 0
    assert c.counts["no_image"] > 0 and c.counts["bad_json_or_text"] > 0 and c.counts["bad_image"] > 0


def test_weighted_mix_follows_weights(tmp_path, toy_shards):
    from synth.toy_reasoning import write_shards

    write_shards(ToyConfig(samples=50, shard_size=50, seed=9), tmp_path / "b", name="other")
    data = DataConfig(sources=[ShardSource(name="a", urls=str(toy_shards / "*.tar"), weight=3.0),
                               ShardSource(name="b", urls=str(tmp_path / "b" / "*.tar"), weight=1.0)],
                      shuffle_buffer=10, shuffle_initial=5)
    got = [s["__source__"] for s in itertools.islice(raw_stream(data, 0, 0, 0, 0, SkipCounter()), 2000)]
    assert 0.68 < got.count("a") / len(got) < 0.82
    # different workers (and ranks) read different sample orders
    w0 = [s["__key__"] for s in itertools.islice(raw_stream(data, 0, 0, 0, 0, SkipCounter()), 30)]
    w1 = [s["__key__"] for s in itertools.islice(raw_stream(data, 0, 0, 0, 1, SkipCounter()), 30)]
    r1 = [s["__key__"] for s in itertools.islice(raw_stream(data, 0, 0, 1, 0, SkipCounter()), 30)]
    assert w0 != w1 and w0 != r1
