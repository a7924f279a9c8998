"""Natural-image grounding: noun phrases from captions (WordNet tagger + NLTK chunker), a tiny randomly initialised
OWLv2 (seeded, saved to a temp folder: no weights can be fetched) through the real transformers pipeline, NMS,
the ≥ 2 boxes rule, and messages in both directions."""

from __future__ import annotations

import gzip
import io
import os

import pyarrow as pa
import pytest
from PIL import Image

from pipelines.formats import box_from_1000, extract_boxed, parse_boxes
from pipelines.operator import apply_generator
from pipelines.schema import record_schema
from pipelines.spec import SpecError
from synth.grounding.detect import GroundingDetect
from synth.grounding.phrases import noun_phrases


def build_tiny_owlv2(folder: str, seed: int = 0) -> str:
    """A 2-layer OWLv2 with CLIP's real BPE tokenizer (its vocabulary ships inside open_clip's wheel)."""
    import open_clip
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    bpe = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    merges = [m for m in gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])
    torch.manual_seed(seed)
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=16),
        projection_dim=32)
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                   tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    return build_tiny_owlv2(str(tmp_path_factory.mktemp("owlv2")))


def _jpeg(color, size=(160, 120)) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, color)
    for x in range(0, size[0], 20):  # some structure for the patches
        im.paste((255 - color[0], color[1], 255 - color[2]), (x, 0, x + 10, size[1] // 2))
    im.save(buf, "JPEG")
    return buf.getvalue()


def test_noun_phrases_of_captions():
    assert noun_phrases("A dog runs on the beach with a red ball") == ["dog", "beach", "red ball"]
    assert noun_phrases("two cats sitting on a wooden bench in the park") == ["two cats", "wooden bench", "park"]
    assert noun_phrases("Stock photo of a young woman holding an umbrella") == ["young woman", "umbrella"]
    assert noun_phrases("") == [] and noun_phrases("very quickly") == []


def test_missing_model_stops_before_the_run_naming_it(tmp_path):
    with pytest.raises(ValueError, match="no-such-org/no-such-detector"):
        GroundingDetect(model="no-such-org/no-such-detector")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: g\nstages:\n  - op: grounding_detect\n    model: /nowhere/detector\n")
    from pipelines.spec import load_spec

    with pytest.raises((SpecError, ValueError), match="/nowhere/detector"):
        load_spec(recipe)


def _rows(n_captions):
    captions = ["A dog runs on the beach with a red ball", "two cats sitting on a wooden bench in the park",
                "very quickly", "a man riding a horse"][:n_captions]
    colors = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (120, 120, 30)]
    return [{"key": f"k{i}", "parent": None, "image": _jpeg(colors[i]), "text": c, "source": f"img{i}.jpg",
             "dataset": "t", "meta": None, "keep": True, "error": False} for i, c in enumerate(captions)]


def test_detector_boxes_messages_and_the_two_box_rule(tiny_detector):
    # Threshold 0: every query patch passes, so NMS and the caps decide (a random detector scores ~uniformly).
    op = GroundingDetect(model=tiny_detector, score_threshold=0.0, nms_iou=0.3, max_boxes_per_phrase=3,
                         min_box_side=1.0, max_box_area=1.0)
    op.setup()
    schema = record_schema(op.adds)
    out = apply_generator(op, pa.RecordBatch.from_pylist(_rows(3), schema=schema), schema).to_pylist()
    parents = {r["key"]: r for r in out if r["parent"] is None}
    assert parents["k2"]["reason"] == "no_noun_phrases"
    children = [r for r in out if r["parent"] is not None]
    assert len(children) == 2 and all(c["keep"] for c in children)
    for child in children:
        assert child["phrases"] == noun_phrases(parents[child["parent"]]["text"])
        assert len(child["boxes"]) >= 2
        assert {b["label"] for b in child["boxes"]} <= set(child["phrases"])
        for phrase in set(b["label"] for b in child["boxes"]):
            assert sum(b["label"] == phrase for b in child["boxes"]) <= 3
        w, h = child["width"], child["height"]
        assert (w, h) == (160, 120)
        for b in child["boxes"]:
            x1, y1, x2, y2 = b["box"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and b["score"] >= 0
        msgs = child["messages"]
        assert msgs[0]["content"][0]["type"] == "image"
        assert all(p["type"] == "text" for m in msgs[1:] for p in m["content"])
        # phrase → boxes: every box of the phrase, in 0-1000, in the answer
        by_phrase = {}
        for b in child["boxes"]:
            by_phrase.setdefault(b["label"], []).append(b["box"])
        rec = [(q, a) for q, a in zip(msgs[0::2], msgs[1::2], strict=True)
               if "[" not in q["content"][-1]["text"]]
        assert len(rec) == len(by_phrase)
        for q, a in rec:
            phrase = next(p for p in by_phrase if p in q["content"][-1]["text"])
            got = parse_boxes(extract_boxed(a["content"][0]["text"]))
            assert len(got) == len(by_phrase[phrase])
            for norm, px in zip(got, by_phrase[phrase], strict=True):
                assert box_from_1000(norm, w, h) == pytest.approx(px, abs=w / 1000 + 0.01)
        # box → phrase
        reg = [(q, a) for q, a in zip(msgs[0::2], msgs[1::2], strict=True) if "[" in q["content"][-1]["text"]]
        assert len(reg) == 2
        for _q, a in reg:
            assert extract_boxed(a["content"][0]["text"]) in child["phrases"]


def test_images_with_fewer_than_two_boxes_are_dropped(tiny_detector):
    op = GroundingDetect(model=tiny_detector, score_threshold=0.0, max_boxes_per_phrase=1, min_box_side=1.0,
                         max_box_area=1.0)
    op.setup()
    # One phrase, at most one box: never two.
    [children] = op.generate_batch([{**_rows(4)[3], "text": "a horse"}])
    assert children.reason.startswith("fewer_than_2_boxes")
    # Threshold above any sigmoid score: nothing at all.
    strict = GroundingDetect(model=tiny_detector, score_threshold=1.0)
    strict.setup()
    [dropped] = strict.generate_batch([_rows(1)[0]])
    assert dropped.reason == "fewer_than_2_boxes:0"


def build_tiny_grounding_dino(folder: str, seed: int = 0) -> str:
    """A 1-encoder/2-decoder-layer Grounding DINO (Swin backbone, BERT text tower) with a word-level vocabulary."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "dog", "red", "ball", "beach", "two", "cats",
             "wooden", "bench", "park", "man", "horse"]
    torch.manual_seed(seed)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                   image_size=64, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=37, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=37, decoder_ffn_dim=37, num_queries=20, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32, use_timm_backbone=False, use_pretrained_backbone=False)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
                           tokenizer=BertTokenizer(vocab={w: i for i, w in enumerate(words)})).save_pretrained(folder)
    return folder


def test_grounding_dino_boxes_are_labelled_with_caption_phrases(tmp_path):
    model = build_tiny_grounding_dino(str(tmp_path / "gdino"))
    op = GroundingDetect(model=model, score_threshold=0.0, nms_iou=0.3, max_boxes_per_phrase=2, min_box_side=1.0,
                         max_box_area=1.0)
    op.setup()
    assert op.kind == "grounding-dino"
    [children] = op.generate_batch([_rows(1)[0]])
    [child] = children
    phrases = ["dog", "beach", "red ball"]
    assert child["phrases"] == phrases
    assert len(child["boxes"]) >= 2 and {b["label"] for b in child["boxes"]} <= set(phrases)
    for b in child["boxes"]:
        x1, y1, x2, y2 = b["box"]
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120 and 0 <= b["score"] <= 1
