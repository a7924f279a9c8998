"""Encoding and packing: packed = one-by-one losses on every attention backend, label masks, best-fit efficiency,
skipped and truncated samples, resumable loader state, no L x L tensor."""

import copy
import itertools
import json
import random

import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from model.attention import available_backends, use_default_attention, use_varlen_attention
from synth.toy_reasoning import ToyConfig, render_sample
from synth.toy_samples import mixed_raws, png, raw_from, two_image_raw
from train.checks import packed_vs_single
from train.config import DataConfig, ShardSource
from train.data.counters import SkipCounter
from train.data.encode import IGNORE, Encoder
from train.data.loader import BatchIterator, DataState
from train.data.pack import BestFitPacker, collate_rows
from train.data.shards import raw_stream
from train.loss import batch_token_losses


@pytest.mark.parametrize("backend", available_backends(torch.device("cpu")))
def test_packed_batch_gives_per_sample_losses_of_separate_runs(tiny, backend):
    model, proc = tiny
    model.eval()
    enc = Encoder(proc, model.config, "messages", SkipCounter(), max_len=256)
    samples = [enc(r) for r in mixed_raws(8)]
    assert all(s is not None for s in samples)
    assert samples[2].image_grid_thw.shape[0] == 2 and samples[3].pixel_values is None
    packed, single, rows = packed_vs_single(model, samples, 512, 2, proc.tokenizer.pad_token_id, backend)
    assert rows == 2
    torch.testing.assert_close(packed, single, atol=2e-5, rtol=2e-5)


def test_loss_on_every_assistant_turn_and_only_there(tiny):
    model, proc = tiny
    s = render_sample(random.Random(5), "colour", ToyConfig())
    tok = proc.tokenizer
    for target, expected in [("messages", s["messages"][1]["content"]), ("caption", s["caption"])]:
        e = Encoder(proc, model.config, target, SkipCounter())(raw_from(s))
        targets = e.labels[e.labels != IGNORE]
        assert tok.decode(targets) == expected + tok.eos_token
        assert torch.equal(targets, e.input_ids[-len(targets):])  # shifted: the answer is the tail
    turns = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
             {"role": "assistant", "content": "red"},
             {"role": "user", "content": [{"type": "text", "text": "And the count?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "two"}]}]
    raw = {"__key__": "mt", "png": png(s["image"]), "json": json.dumps({"messages": turns}).encode()}
    e = Encoder(proc, model.config, "messages", SkipCounter())(raw)
    # each assistant turn and the token that ends it (the next role token, or EOS)
    assert tok.decode(e.labels[e.labels != IGNORE]) == "red<|user|>two" + tok.eos_token


def test_over_long_samples_are_truncated_without_splitting_an_image(tiny):
    model, proc = tiny
    raw = two_image_raw(random.Random(3))
    c = SkipCounter()
    full = Encoder(proc, model.config, "messages", c)(raw)
    n_first = int(full.image_grid_thw[0].prod()) // 4
    # a cut inside the second image leaves it out whole, pixels and all
    e = Encoder(proc, model.config, "messages", c, max_len=n_first + 8)(raw)
    assert e is None and c.counts["no_target_tokens"] == 1 and c.notes["truncated"] == 1
    cut = len(full) - 3
    e = Encoder(proc, model.config, "messages", c, max_len=cut)(raw)
    assert len(e) == cut and c.notes["truncated"] == 2
    assert torch.equal(e.input_ids, full.input_ids[:cut]) and torch.equal(e.pixel_values, full.pixel_values)
    assert (e.labels != IGNORE).sum() == (full.labels != IGNORE).sum() - 3
    c2 = SkipCounter()
    assert Encoder(proc, model.config, "messages", c2, max_len=cut, over_long="drop")(raw) is None
    assert c2.counts["too_long"] == 1


def test_bad_samples_are_counted_and_skipped(tiny, tmp_path):
    import webdataset as wds

    model, proc = tiny
    good = mixed_raws(3)
    with wds.TarWriter(str(tmp_path / "bad-00000.tar")) as w:
        w.write({**good[0], "__key__": "good0"})
        w.write({"__key__": "nothing", "json": b"{}"})
        w.write({**good[1], "__key__": "brokenjson", "json": b"{not json"})
        w.write({**good[1], "__key__": "badimage", "png": b"\x89PNG not really"})
        w.write({**good[1], "__key__": "jsonlist", "json": b"[1, 2]"})
        w.write({**good[1], "__key__": "msgstring", "json": json.dumps({"messages": "hello"}).encode()})
        w.write({**good[1], "__key__": "thin", "png": png(Image.new("RGB", (3000, 10), "red"))})
        w.write({**good[4], "__key__": "good2"})
    (tmp_path / "trunc-00000.tar").write_bytes((tmp_path / "bad-00000.tar").read_bytes()[:1500])
    data = DataConfig(sources=[ShardSource(name="bad", urls=str(tmp_path / "*.tar"))], open_shards=1)
    c = SkipCounter()
    enc = Encoder(proc, model.config, "messages", c, 512)
    out = [enc(s) for s in itertools.islice(raw_stream(data, 0, 0, 0, c), 60)]
    assert sum(e is not None for e in out) > 0
    for reason in ("no_text", "bad_json_or_text", "bad_image", "json_not_object", "bad_messages", "bad_image_size"):
        assert c.counts[reason] > 0, (reason, c.counts)


def test_best_fit_packs_sft_and_caption_lengths_at_95_percent():
    rng = random.Random(0)

    class Fake:
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

    profiles = {"sft": (lambda: min(32768, int(rng.lognormvariate(7.1, 0.6))), 32768),
                "caption": (lambda: rng.randint(20, 120), 1024)}
    for name, (draw, seq_len) in profiles.items():
        packer = BestFitPacker(seq_len, 4, buffer_size=64)
        used = total = 0
        for _ in range(6000):
            packer.add(Fake(draw()))
            if packer.full():
                rows = packer.take_rows()
                used += sum(len(s) for r in rows for s, _ in r)
                total += seq_len * len(rows)
        assert used / total >= 0.95, (name, used / total)


def test_loader_resumes_exactly_with_another_worker_count(tiny, toy_shards):
    model, proc = tiny
    data = DataConfig(sources=[ShardSource(name="toy", urls=str(toy_shards / "*.tar"))], seq_len=256,
                      rows_per_batch=2, open_shards=2, streams=2, pack_buffer=16,
                      target="caption", samples_per_epoch=60)
    it = BatchIterator(data, proc, model.config, seed=3)
    full = [next(it) for _ in range(3)]
    saved = DataState.from_state_dict(it.state.state_dict())
    no_rng = DataState.from_state_dict(copy.deepcopy(saved.state_dict()))
    full += [next(it) for _ in range(8)]  # crosses the 30-sample epoch of each stream
    # saved states carry the packing buffer (raw samples) and where the stream stands: open shards, offsets, RNGs
    for st in saved.stream_states.values():
        assert st["buffer"] and st["position"] > 0
        slots = st["raw"]["sources"][0]["slots"]
        assert len(slots) == 2 and sum(read for _, read in slots) > 0
    resumed = BatchIterator(data.model_copy(update={"num_workers": 1}), proc, model.config, seed=3, state=saved)
    for a in full[3:]:
        b = next(resumed)
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["position_ids"], b["position_ids"])
    # the RNG states are part of the position: without them the resumed stream reads another order
    for st in no_rng.stream_states.values():
        st["raw"].pop("rng")
        for src in st["raw"]["sources"]:
            src.pop("rng")
    other = BatchIterator(data, proc, model.config, seed=3, state=no_rng)
    assert any(not torch.equal(a["input_ids"], next(other)["input_ids"]) for a in full[3:7])
    assert sum(b["real_tokens"] for b in full) / sum(b["input_ids"].numel() for b in full) > 0.8  # epoch tails included
    with pytest.raises(ValueError, match="divides 2"):
        DataState.resume([saved.state_dict()], rank=0, world=3, saved_world=1)


def test_a_16k_row_never_holds_an_l_by_l_tensor(tiny):
    model, proc = tiny
    enc = Encoder(proc, model.config, "messages", SkipCounter(), max_len=1024)
    samples = [s for s in (enc(r) for r in mixed_raws(120)) if s is not None]
    L = 16384
    packer = BestFitPacker(L, 1, buffer_size=len(samples))
    for s in samples:
        packer.add(s)
    batch = collate_rows([[s for s, _ in r] for r in packer.take_rows()], L, proc.tokenizer.pad_token_id)
    lengths = batch["sample_lengths"]

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else [out]:
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    use_varlen_attention(model, "sdpa")
    try:
        with torch.no_grad(), Largest():
            batch_token_losses(model, batch)
    finally:
        use_default_attention(model)
    heads = model.config.text_config.num_attention_heads
    # the largest tensor is an activation or one sample's scores: far below one L x L mask
    assert Largest.numel < L * L / 16
    assert max(lengths) ** 2 * heads < L * L / 16


def test_weighted_mix_follows_weights(tmp_path, toy_shards):
    from synth.toy_reasoning import write_shards

    write_shards(ToyConfig(samples=50, shard_size=50, seed=9), tmp_path / "b", name="other")
    data = DataConfig(sources=[ShardSource(name="a", urls=str(toy_shards / "*.tar"), weight=3.0),
                               ShardSource(name="b", urls=str(tmp_path / "b" / "*.tar"), weight=1.0)],
                      open_shards=2)
    got = [s["__source__"] for s in itertools.islice(raw_stream(data, 0, 0, 0, SkipCounter()), 2000)]
    assert 0.68 < got.count("a") / len(got) < 0.82
    # different logical streams read different sample orders
    s0 = [s["__key__"] for s in itertools.islice(raw_stream(data, 0, 0, 0, SkipCounter()), 30)]
    s1 = [s["__key__"] for s in itertools.islice(raw_stream(data, 0, 0, 1, SkipCounter()), 30)]
    assert s0 != s1
