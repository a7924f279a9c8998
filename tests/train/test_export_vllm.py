"""The bf16 export carries what vLLM's GLM-4.1V loader reads (vllm/model_executor/models/glm4_1v.py and glm4.py,
checked by reading their source; vLLM itself cannot be installed on this CPU machine): weight names under the three
prefixes its WeightsMapper maps, q/k/v biases announced by text_config.attention_bias (vLLM builds them only then,
default False), GLM's partial rotary factor and mrope sections, no tied embeddings, and the processor files."""

import json

from safetensors import safe_open

from model.build import save

VLLM_PREFIXES = ("lm_head.", "model.language_model.", "model.visual.")  # Glm4vForConditionalGeneration.hf_to_vllm_mapper


def test_export_has_what_vllms_glm4v_loader_reads(tiny, tmp_path):
    model, proc = tiny
    path = save(model, proc, tmp_path / "hf")
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        dtypes = {f.get_tensor(k).dtype for k in keys[:5]}
    assert keys and all(k.startswith(VLLM_PREFIXES) for k in keys)
    assert {str(d) for d in dtypes} == {"torch.bfloat16"}
    cfg = json.loads((path / "config.json").read_text())
    text, vision = cfg["text_config"], cfg["vision_config"]
    assert cfg["architectures"] == ["Glm4vForConditionalGeneration"] and cfg["model_type"] == "glm4v"
    has_qkv_bias = any(k.endswith("self_attn.q_proj.bias") for k in keys)
    assert has_qkv_bias and text["attention_bias"] is True  # else vLLM drops the biases
    assert not any(k.startswith("model.visual.") and k.endswith("attn.qkv.bias") for k in keys)  # vLLM ViT: no bias
    assert cfg["tie_word_embeddings"] is False and "lm_head.weight" in keys
    assert text["partial_rotary_factor"] == 0.5 and text["rope_parameters"]["partial_rotary_factor"] == 0.5
    assert text["rope_scaling"]["mrope_section"] == text["rope_parameters"]["mrope_section"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]  # vLLM: head_dim or hidden / heads
    assert 2 * sum(text["rope_scaling"]["mrope_section"]) == head_dim * text["partial_rotary_factor"]
    assert vision["out_hidden_size"] == text["hidden_size"]
    for key in ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id"):
        assert isinstance(cfg[key], int)
    pre = json.loads((path / "preprocessor_config.json").read_text())
    assert pre["merge_size"] == vision["spatial_merge_size"] and pre["patch_size"] == vision["patch_size"]
    tok = json.loads((path / "tokenizer_config.json").read_text())
    assert tok["extra_special_tokens"]["image_token"] == "<|image|>" and "chat_template" in tok
