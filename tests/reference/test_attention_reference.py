"""Attention methods against independent implementations.

- Attention rollout and GAE against implementations written here from a hand-written forward of
  torchvision's VisionTransformer that computes q, k, v from ``in_proj_weight`` itself and
  exposes the attention probabilities (the hand-written forward is first checked against the
  model's own output). Nothing of gradsum's capture mechanism is used on that side.
- LeGrad against torchcam's LeGrad (the peer library), raw and min-max normalised the same way;
  and gradsum's one-backward LeGrad against one backward per block.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision

import gradsum as gs

TARGETS = [1, 4, 0]


def _tv_vit(seed: int = 0, layers: int = 3, classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=layers, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=classes)
    with torch.no_grad():  # torchvision zero-initialises the head: no gradient would reach anything
        model.heads.head.weight.normal_(0, 0.5)
        model.heads.head.bias.normal_(0, 0.1)
    return model.eval()


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def hand_forward(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """torchvision VisionTransformer written out: (logits, [A per block (B, heads, N, N)])."""
    n = x.shape[0]
    hidden = model.hidden_dim
    tokens = model.conv_proj(x).reshape(n, hidden, -1).permute(0, 2, 1)
    tokens = torch.cat([model.class_token.expand(n, -1, -1), tokens], dim=1) + model.encoder.pos_embedding
    attentions = []
    for block in model.encoder.layers:
        mha = block.self_attention
        y = block.ln_1(tokens)
        q, k, v = (y @ mha.in_proj_weight.T + mha.in_proj_bias).chunk(3, dim=-1)
        heads, d = mha.num_heads, hidden // mha.num_heads
        q, k, v = (t.reshape(n, -1, heads, d).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)
        attentions.append(a)
        mixed = (a @ v).transpose(1, 2).reshape(n, -1, hidden)
        tokens = tokens + mha.out_proj(mixed)
        tokens = tokens + block.mlp(block.ln_2(tokens))
    return model.heads(model.encoder.ln(tokens)[:, 0]), attentions


def reference_rollout(attentions: list[torch.Tensor], fusion: str, discard: float) -> torch.Tensor:
    """Per image, per block: fuse heads, zero the int(N*N*discard) smallest entries except
    [0, 0] (found by sorting), (A + I)/2, rows / row sums, multiply; class row, patch columns."""
    out = []
    for i in range(attentions[0].shape[0]):
        joint = torch.eye(attentions[0].shape[-1], dtype=torch.float64)
        for a in attentions:
            heads = a[i].double()
            fused = {"mean": heads.mean(0), "max": heads.max(0).values, "min": heads.min(0).values}[fusion].clone()
            k = int(fused.numel() * discard)
            order = torch.argsort(fused.flatten())[:k]
            flat = fused.flatten()
            flat[order[order != 0]] = 0
            fused = flat.reshape(fused.shape)
            step = (fused + torch.eye(fused.shape[0], dtype=torch.float64)) / 2
            for r in range(step.shape[0]):
                step[r] = step[r] / step[r].sum()
            joint = step @ joint
        out.append(joint[0, 1:])
    return torch.stack(out)


def reference_gae(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """Chefer et al. 2021b per image: gradients of logit[target] with respect to each hand-made A."""
    out = []
    for i, c in enumerate(targets):
        logits, attentions = hand_forward(model, x[i:i + 1])
        grads = torch.autograd.grad(logits[0, c], attentions)
        n = attentions[0].shape[-1]
        relevance = torch.eye(n, dtype=torch.float64)
        for a, g in zip(attentions, grads, strict=True):
            cam = (g[0].double() * a[0].double()).clamp(min=0).mean(dim=0)
            relevance = relevance + cam @ relevance
        out.append(relevance[0, 1:].detach())
    return torch.stack(out)


def _grid(maps: torch.Tensor) -> torch.Tensor:
    side = math.isqrt(maps.shape[-1])
    return maps.reshape(maps.shape[0], side, side)


def test_hand_forward_equals_the_model():
    model = _tv_vit()
    x = _images()
    with torch.no_grad():
        ours, attentions = hand_forward(model, x)
        theirs = model(x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert len(attentions) == 3 and attentions[0].shape == (3, 2, 17, 17)


@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.9), ("max", 0.5)])
def test_rollout_equals_the_reference(fusion, discard):
    model = _tv_vit()
    x = _images()
    with torch.no_grad():
        _, attentions = hand_forward(model, x)
    expected = _grid(reference_rollout(attentions, fusion, discard))
    got = gs.explainer("attention-rollout", model, head_fusion=fusion, discard_ratio=discard)(x, target=TARGETS)
    torch.testing.assert_close(got.layer_maps["attention"].double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.maps, gs.methods.base.upsample(got.layer_maps["attention"], (32, 32)))


def test_rollout_start_block_and_raw_attention_equal_the_reference():
    model = _tv_vit()
    x = _images()
    with torch.no_grad():
        _, attentions = hand_forward(model, x)
    got = gs.explainer("attention-rollout", model, start_block=1)(x)
    torch.testing.assert_close(got.layer_maps["attention"].double(), _grid(reference_rollout(attentions[1:], "mean", 0)),
                               atol=1e-5, rtol=1e-5)
    for fusion in ("mean", "max", "min"):
        raw = gs.explainer("attention", model, head_fusion=fusion)(x)
        last = attentions[-1][:, :, 0, 1:]
        fused = {"mean": last.mean(1), "max": last.max(1).values, "min": last.min(1).values}[fusion]
        torch.testing.assert_close(raw.layer_maps["attention"], _grid(fused), atol=1e-6, rtol=1e-5)


def test_gae_equals_the_reference():
    model = _tv_vit()
    x = _images()
    expected = _grid(reference_gae(model, x, TARGETS))
    got = gs.explainer("gae", model)(x, target=TARGETS)
    assert float(expected[:, 1:].abs().max()) > 0  # gradients reached the attention
    torch.testing.assert_close(got.layer_maps["attention"].double(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.targets, torch.tensor(TARGETS))
    argmax = gs.explainer("gae", model)(x)  # default target: the argmax, per image
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    torch.testing.assert_close(argmax.layer_maps["attention"].double(), _grid(reference_gae(model, x, predicted)),
                               atol=1e-5, rtol=1e-4)


def _minmax(maps: torch.Tensor) -> torch.Tensor:  # torchcam's normalisation: (m - min) / (max + 1e-8)
    flat = maps.flatten(1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    return (flat / (flat.amax(dim=1, keepdim=True) + 1e-8)).reshape(maps.shape)


@pytest.mark.parametrize("first", [0, 1])
def test_legrad_equals_torchcam(first):
    torchcam = pytest.importorskip("torchcam.methods")
    model = _tv_vit(seed=3)
    x = _images(seed=1)
    peer_model = copy.deepcopy(model)
    blocks = list(peer_model.encoder.layers)[first:]
    with torchcam.LeGrad(peer_model, blocks) as extractor:
        peer_model(x)
        raw = extractor(TARGETS, normalized=False)[0]
    with torchcam.LeGrad(peer_model, blocks) as extractor:
        peer_model(x)
        normalised = extractor(TARGETS)[0]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in peer_model.modules())
    got = gs.explainer("legrad", model, start_block=first)(x, target=TARGETS)
    assert float(raw.abs().max()) > 0
    torch.testing.assert_close(got.layer_maps["attention"], raw, atol=1e-4 * float(raw.abs().max()), rtol=1e-4)
    torch.testing.assert_close(_minmax(got.layer_maps["attention"]), normalised, atol=1e-4, rtol=0)


def test_one_backward_legrad_equals_one_backward_per_block():
    """Detaching each block's input makes d(sum_l s^l)/dA_l = ds^l/dA_l: checked against the
    per-block computation done here by hand (one backward per block on the undetached graph),
    and shown not to hold without the detaching (so the comparison can fail)."""
    model = _tv_vit(seed=5, layers=4)
    x = _images(seed=2)
    n, hidden = x.shape[0], model.hidden_dim
    tokens = model.conv_proj(x).reshape(n, hidden, -1).permute(0, 2, 1)
    tokens = torch.cat([model.class_token.expand(n, -1, -1), tokens], dim=1) + model.encoder.pos_embedding
    attentions, block_scores = [], []
    index = torch.tensor(TARGETS)
    for block in model.encoder.layers:
        mha = block.self_attention
        q, k, v = (block.ln_1(tokens) @ mha.in_proj_weight.T + mha.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, -1, 2, hidden // 2).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hidden // 2), dim=-1)
        if not attentions:  # nothing before the first block requires grad: make A_1 a graph leaf
            a = a.detach().requires_grad_(True)
        attentions.append(a)
        tokens = tokens + mha.out_proj((a @ v).transpose(1, 2).reshape(n, -1, hidden))
        tokens = tokens + block.mlp(block.ln_2(tokens))
        pooled = model.heads(model.encoder.ln(tokens.mean(dim=1)))
        block_scores.append(pooled.gather(1, index[:, None])[:, 0].sum())
    per_block = [torch.autograd.grad(s, a, retain_graph=True)[0] for s, a in zip(block_scores, attentions, strict=True)]
    summed = torch.autograd.grad(sum(block_scores), attentions)
    expected = torch.stack([g.clamp(min=0).mean(dim=(1, 2))[:, 1:] for g in per_block]).mean(0)
    naive = torch.stack([g.clamp(min=0).mean(dim=(1, 2))[:, 1:] for g in summed]).mean(0)
    assert float((naive - expected).abs().max()) > 1e-3 * float(expected.abs().max())  # detaching matters
    one = gs.explainer("legrad", model)(x, target=TARGETS)
    per = gs.explainer("legrad", model, one_pass=False)(x, target=TARGETS)
    scale = float(expected.abs().max())
    torch.testing.assert_close(one.layer_maps["attention"], _grid(expected.detach()), atol=1e-5 * scale, rtol=1e-5)
    torch.testing.assert_close(per.layer_maps["attention"], one.layer_maps["attention"], atol=1e-6 * scale, rtol=1e-5)
    assert one.cost.backward_passes == x.shape[0] and per.cost.backward_passes == 4 * x.shape[0]


def test_capture_equals_the_hand_written_attention():
    """The capture mechanism's A (torchvision's need_weights=False path) is the hand-computed A."""
    from gradsum.core.attention import attention_probabilities

    model = _tv_vit()
    x = _images()
    with torch.no_grad():
        _, expected = hand_forward(model, x)
        reference_out = model(x)
        with attention_probabilities(model) as captured:
            out = model(x)
    torch.testing.assert_close(out, reference_out, atol=1e-5, rtol=0)
    assert len(captured) == len(expected)
    for a, b in zip(captured, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert torch._C._len_torch_function_stack() == 0
