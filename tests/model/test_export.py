"""The exported model: bf16 weights and the processor/tokenizer files transformers 4.5x, 5 and vLLM read."""

import json

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from model.build import build, save

TEXTS = ["a red circle at [10,20,300,400]", "How many blue squares are in the image?"] * 50


def test_export_is_bf16_and_loads_with_auto_classes(tmp_path):
    model, proc = build("tiny", TEXTS)
    out = save(model, proc, tmp_path / "hf")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "preprocessor_config.json", "chat_template.jinja", "chat_template.json"):
        assert (out / name).exists(), name
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" in tok_cfg
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == "Glm4vImageProcessor" and pre["merge_size"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["torch_dtype"] == "bfloat16" and cfg["text_config"]["rope_scaling"]["mrope_section"] == [2, 3, 3]

    again = AutoModelForImageTextToText.from_pretrained(out)
    p2 = AutoProcessor.from_pretrained(out)
    assert again.dtype == torch.bfloat16
    assert p2.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    prompt = p2.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = p2(text=[prompt], images=[Image.new("RGB", (112, 84), "red")], return_tensors="pt")
    with torch.no_grad():
        ref = model(**inputs).logits
        got = again(**{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}).logits
    # the same weights, rounded to bf16
    assert torch.allclose(got.float(), ref, atol=0.05, rtol=0.05)
