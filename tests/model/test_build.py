"""The GLM-4.1V presets, the offline tokenizer/processor, and save/load round trips."""

import torch
from PIL import Image
from transformers import AutoProcessor, Glm4vForConditionalGeneration

from model import tokens
from model.build import build, load, num_parameters, save
from model.config import load_preset, preset_names

TEXTS = ["a red circle at [10,20,300,400]", "<think>3 + 4 = 7.</think><answer><|begin_of_box|>7<|end_of_box|></answer>",
         "How many blue squares are in the image?"] * 50


def test_presets_are_consistent():
    assert {"tiny", "small", "glm-4.1v-9b"} <= set(preset_names())
    for name in preset_names():
        cfg = load_preset(name)
        head_dim = cfg.text.hidden_size // cfg.text.num_attention_heads
        assert 2 * sum(cfg.text.mrope_section) == head_dim * cfg.text.partial_rotary_factor, name
        assert cfg.text.num_attention_heads % cfg.text.num_key_value_heads == 0


def test_tokenizer_keeps_glm_special_tokens_whole():
    _, proc = build("tiny", TEXTS)
    tok = proc.tokenizer
    for t in tokens.SPECIAL_TOKENS:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert ids == [tok.convert_tokens_to_ids(t)], t
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}],
        add_generation_prompt=True, tokenize=False)
    assert text == "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>Q?<|assistant|>\n"


def test_tiny_forward_backward_and_roundtrip(tmp_path):
    model, proc = build("tiny", TEXTS)
    assert 0.5e6 < num_parameters(model) < 5e6
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = proc(text=[prompt], images=[Image.new("RGB", (112, 84), "red")], return_tensors="pt")
    # 112x84 -> 8x6 patches of 14 px -> 2x2 merge -> 12 image tokens
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 12
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    save(model, proc, tmp_path / "m", dtype=torch.float32)  # exact round trip (the default export is bf16)
    again, proc2 = load(tmp_path / "m")
    assert isinstance(again, Glm4vForConditionalGeneration)
    with torch.no_grad():
        a = model(**inputs).logits
        b = again(**inputs).logits
    torch.testing.assert_close(a, b)
    # Plain transformers entry points read the folder too (what vLLM relies on).
    assert AutoProcessor.from_pretrained(tmp_path / "m").tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    assert (tmp_path / "m" / "model.safetensors").exists() and (tmp_path / "m" / "chat_template.jinja").exists()


def test_same_seed_same_weights():
    a, _ = build("tiny", TEXTS)
    b, _ = build("tiny", TEXTS)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_build_gives_the_presets_seeded_weights_whatever_the_global_rng():
    """`build` initialises like a training run of the preset (`seeded_init` from the preset's seed): weights that do
    not depend on the caller's RNG (which is left as it was), transformers' distributions, and the rotary tables
    transformers computes itself."""
    _, proc = build("tiny", TEXTS)
    torch.manual_seed(1)
    a, _ = build("tiny", processor=proc)
    torch.manual_seed(2)
    rng = torch.random.get_rng_state()
    b, _ = build("tiny", processor=proc)
    assert torch.equal(torch.random.get_rng_state(), rng)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    std = a.config.text_config.initializer_range
    params = {n: p.detach() for n, p in a.named_parameters()}
    q_proj = next(p for n, p in params.items() if n.endswith("self_attn.q_proj.weight"))
    assert abs(float(q_proj.std()) - std) < 0.2 * std
    norms = [p for n, p in params.items() if n.endswith("layernorm.weight")]
    biases = [p for n, p in params.items() if n.endswith("proj.bias")]
    assert norms and all(torch.equal(p, torch.ones_like(p)) for p in norms)
    assert biases and all(torch.equal(p, torch.zeros_like(p)) for p in biases)
    plain = Glm4vForConditionalGeneration(a.config)  # transformers' own construction, for its buffers
    plain_buffers = dict(plain.named_buffers())
    assert plain_buffers and dict(a.named_buffers()).keys() == plain_buffers.keys()
    for n, buf in a.named_buffers():
        torch.testing.assert_close(buf, plain_buffers[n], msg=n)
