"""MFU as torchtitan counts it: a hand-computed step, and the parameter split of the real tiny model."""

import torch

from model.build import build
from train.metrics import FlopModel


def test_step_flops_on_a_hand_computed_case():
    fm = FlopModel(n_dec=1000, n_head=100, layers=2, width=8, n_vit=50, n_merge=20, vit_layers=1, vit_width=4,
                   merge=2)
    # two packed samples of 3 and 5 tokens (padding is not passed: it costs nothing), 4 loss positions,
    # two images of 1x2x2 and 1x4x2 patches
    got = fm.step_flops([3, 5], 4, torch.tensor([[1, 2, 2], [1, 4, 2]]))
    decoder = 6 * 1000 * 8  # non-embedding decoder parameters per real token
    head = 6 * 100 * 4  # the output head at loss positions only
    attention = 12 * 2 * 8 * (3 * 3 + 5 * 5)  # per sample, not over the whole row
    vit = 6 * 50 * 12 + 6 * 20 * 12 / 4 + 12 * 1 * 4 * (4 * 4 + 8 * 8)  # per patch, merger per merged token
    assert got == decoder + head + attention + vit == 64728
    # text only: no ViT term
    assert fm.step_flops([3, 5], 4, None) == decoder + head + attention


def test_parameter_split_of_the_tiny_model_covers_every_parameter_once():
    model, _ = build("tiny", ["a red circle at the top", "two blue squares"] * 40)
    fm = FlopModel.of(model)
    inner = model.model
    lookups = inner.language_model.embed_tokens.weight.numel() + sum(
        p.numel() for p in inner.visual.embeddings.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert fm.n_dec + fm.n_head + fm.n_vit + fm.n_merge + lookups == total
    assert fm.n_head == model.lm_head.weight.numel() and fm.layers == 4 and fm.width == 128
