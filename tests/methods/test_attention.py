"""The attention capture mechanism and the attention family (attention, attention-rollout, gae,
legrad) on tiny torchvision / timm / gradsum ViTs: outputs unchanged, model state restored (also
after an error), batches, regression targets, wrappers, prefix tokens and grids, options."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import gradsum as gs
from gradsum.core.attention import AttentionCaptureError, attention_probabilities
from gradsum.methods.registry import method_info

timm = pytest.importorskip("timm")

METHODS = ["attention", "attention-rollout", "gae", "legrad"]
SMALL = dict(pretrained=False, img_size=32, patch_size=8, depth=3, num_classes=5)


def tv_vit(seed: int = 0, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=classes)
    with torch.no_grad():  # torchvision's head starts at zero: no gradient would flow
        model.heads.head.weight.normal_(0, 0.5)
    return model.eval()


def timm_vit(seed: int = 0, name: str = "vit_tiny_patch16_224", **extra) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **{**SMALL, **extra}).eval()


def images(n: int = 3, size: tuple[int, int] = (32, 32), seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def model_state(model: nn.Module) -> dict:
    """What must survive an explanation: modules, hooks (identity), flags, modes, grads."""
    modules = list(model.named_modules())
    hooks = []
    for _, m in modules:
        for table in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks,
                      m._forward_hooks_with_kwargs, m._forward_pre_hooks_with_kwargs):
            hooks.append(tuple((k, id(v)) for k, v in table.items()))
    return {
        "modules": [(n, id(m)) for n, m in modules],
        "hooks": hooks,
        "fused": [getattr(m, "fused_attn", None) for _, m in modules],
        "training": [m.training for _, m in modules],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "modes": torch._C._len_torch_function_stack(),
    }


# --- the capture mechanism -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["torchvision", "timm", "timm-eager", "vit-tiny"])
def test_capture_keeps_outputs_and_reads_probabilities(kind):
    if kind == "torchvision":
        model, x = tv_vit(), images()
    elif kind == "vit-tiny":
        from gradsum.models.vit import ViTTiny

        torch.manual_seed(0)
        model, x = ViTTiny(num_classes=3, depth=2).eval(), images(size=(64, 128))
    else:
        model, x = timm_vit(), images()
        if kind == "timm-eager":
            for block in model.blocks:
                block.attn.fused_attn = False
    before = model_state(model)
    with torch.no_grad():
        expected = model(x)
        with attention_probabilities(model) as captured:
            out = model(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert len(captured) == (2 if kind == "vit-tiny" else 3)
    for a in captured:
        assert a.ndim == 4 and a.shape[0] == x.shape[0] and a.shape[-1] == a.shape[-2]
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5, rtol=0)
        assert bool((a >= 0).all())
    assert model_state(model) == before


def test_timm_fused_and_eager_paths_give_the_same_attention():
    model = timm_vit()
    x = images()
    with torch.no_grad(), attention_probabilities(model) as fused:
        model(x)
    block = model.blocks[1]  # the hand-made A of block 1
    inputs = []
    handle = block.attn.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
    for b in model.blocks:
        b.attn.fused_attn = False
    try:
        with torch.no_grad(), attention_probabilities(model) as eager:
            model(x)
    finally:
        handle.remove()
    with torch.no_grad():
        q, k, _ = block.attn.qkv(inputs[0]).reshape(3, 17, 3, 3, 64).permute(2, 0, 3, 1, 4)
        hand = ((q @ k.transpose(-2, -1)) * 64 ** -0.5).softmax(-1)
    for a, b in zip(fused, eager, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused[1], hand, atol=1e-6, rtol=1e-5)
    assert all(b.attn.fused_attn is False for b in model.blocks)  # the flag is the user's, untouched
    assert not any(b.attn.attn_drop._forward_hooks for b in model.blocks)


def test_capture_is_graph_connected():
    model = timm_vit()
    for p in model.parameters():
        p.requires_grad_(False)
    x = images()
    with attention_probabilities(model) as captured:
        out = model(x)
    assert captured[0].is_leaf and not captured[1].is_leaf  # the first is where the graph starts
    grads = torch.autograd.grad(out[:, 0].sum(), captured)
    assert all(float(g.abs().sum()) > 0 for g in grads)
    with torch.no_grad(), attention_probabilities(model) as captured:
        model(x)
    assert not any(a.requires_grad for a in captured)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_with_masks_and_cross_attention(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first, kdim=12, vdim=10).eval()
    gen = torch.Generator().manual_seed(1)
    b, lq, lk = 2, 5, 7
    q = torch.randn(b, lq, 16, generator=gen)
    k, v = torch.randn(b, lk, 12, generator=gen), torch.randn(b, lk, 10, generator=gen)
    if not batch_first:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    padding = torch.zeros(b, lk, dtype=torch.bool)
    padding[1, -2:] = True
    float_mask = torch.randn(lq, lk, generator=gen)
    bool_mask = torch.rand(b * 4, lq, lk, generator=gen) > 0.8
    bool_mask[..., 0] = False
    for kwargs in ({}, {"key_padding_mask": padding}, {"attn_mask": float_mask},
                   {"attn_mask": bool_mask, "key_padding_mask": padding}):
        with torch.no_grad():
            out, weights = mha(q, k, v, need_weights=True, average_attn_weights=False, **kwargs)
            with attention_probabilities(mha) as captured:
                got, none = mha(q, k, v, need_weights=False, **kwargs)
        torch.testing.assert_close(got, out, atol=1e-5, rtol=0)
        assert none is None and len(captured) == 1
        torch.testing.assert_close(captured[0], weights, atol=1e-6, rtol=1e-5)


def test_multihead_attention_unbatched_self_attention_and_returned_weights():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(6, 8)
    causal = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        out, weights = mha(x, x, x, attn_mask=causal, is_causal=True)
        with attention_probabilities(mha) as captured:
            got, got_weights = mha(x, x, x, attn_mask=causal, is_causal=True)
    torch.testing.assert_close(got, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_weights, weights, atol=1e-6, rtol=1e-5)  # averaged over heads, as torch does
    assert captured[0].shape == (1, 2, 6, 6)


def test_scaled_dot_product_attention_variants():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 5, 8, generator=gen)
    k, v = torch.randn(2, 4, 7, 8, generator=gen), torch.randn(2, 4, 7, 6, generator=gen)
    bool_mask = torch.rand(5, 7, generator=gen) > 0.3
    bool_mask[:, 0] = True
    cases = [
        ((q, k, v), {}),
        ((q, k, v), {"attn_mask": bool_mask}),
        ((q, k, v), {"attn_mask": torch.randn(2, 1, 5, 7, generator=gen), "scale": 0.3}),
        ((q, k[:, :, :5], v[:, :, :5]), {"is_causal": True}),
        ((q, k[:, :2], v[:, :2]), {"enable_gqa": True}),
    ]
    for args, kwargs in cases:
        expected = F.scaled_dot_product_attention(*args, **kwargs)
        with attention_probabilities(nn.Identity()) as captured:
            got = F.scaled_dot_product_attention(*args, **kwargs)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert captured[0].shape == (2, 4, 5, args[1].shape[-2])


def test_unsupported_attention_is_refused():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8)
    for mha in (nn.MultiheadAttention(8, 2, batch_first=True, add_zero_attn=True),
                nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True)):
        with pytest.raises(AttentionCaptureError, match="add_zero_attn"), attention_probabilities(mha):
            mha.eval()(x, x, x, need_weights=False)
    dropout = nn.MultiheadAttention(8, 2, batch_first=True, dropout=0.5).train()
    with pytest.raises(AttentionCaptureError, match="dropout is active"), attention_probabilities(dropout):
        dropout(x, x, x)
    assert torch._C._len_torch_function_stack() == 0

    class Eager(nn.Module):  # fused_attn=False but no attn_drop to read A from
        fused_attn = False

    model = nn.Sequential(Eager())
    with pytest.raises(AttentionCaptureError, match="fused_attn"), attention_probabilities(model):
        pass
    assert torch._C._len_torch_function_stack() == 0


# --- the methods ----------------------------------------------------------------------------------

def test_registry_entries():
    for name, passes in (("attention", "1 forward"), ("attention-rollout", "1 forward"),
                         ("gae", "1 forward + 1 backward"), ("legrad", "1 forward + 1 backward")):
        info = method_info(name)
        assert info.family == "attention" and info.passes.startswith(passes) and info.paper
    assert set(METHODS) <= set(gs.available_methods("attention"))


@pytest.mark.parametrize("method", METHODS)
def test_model_state_is_kept_also_after_an_error(method):
    model = timm_vit()
    model.blocks[1].attn.fused_attn = False  # one eager block among fused ones
    user_calls = []
    handle = model.blocks[2].register_forward_hook(lambda m, i, o: user_calls.append(1))
    try:
        x = images()
        with torch.no_grad():
            expected = model(x)
        before = model_state(model)
        result = gs.explainer(method, model)(x)
        assert result.maps.shape == (3, 32, 32)
        assert model_state(model) == before

        def failing(out):  # a target that raises after the forward, hooks and mode in place
            raise RuntimeError("target failed")

        with pytest.raises(RuntimeError, match="target failed"):
            gs.explainer(method, model)(x, target=failing)
        assert model_state(model) == before

        def raising(module, inputs, output):  # an error inside the forward, mid-model
            raise RuntimeError("block failed")

        inner = model.blocks[1].register_forward_hook(raising)
        with pytest.raises(RuntimeError, match="block failed"):
            gs.explainer(method, model)(x)
        inner.remove()
        assert model_state(model) == before
        with pytest.raises((TypeError, ValueError)):
            gs.explainer(method, model, start_blok=1)
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
        assert user_calls  # the user's hook is still the one called
    finally:
        handle.remove()


@pytest.mark.parametrize("method", METHODS)
def test_batch_maps_do_not_depend_on_the_other_images(method):
    model = timm_vit(seed=1)
    x = images(4, seed=3)
    batch = gs.explainer(method, model)(x, target=[0, 1, 2, 3])
    for i in range(4):
        alone = gs.explainer(method, model)(x[i:i + 1], target=i)
        torch.testing.assert_close(batch.maps[i:i + 1], alone.maps, atol=1e-5, rtol=1e-4)
    assert batch.cost.forward_passes == 4


def test_regression_targets():
    model = timm_vit(seed=2, num_classes=1)
    x = images(2)
    for method in METHODS:
        up = gs.explainer(method, model)(x, target=gs.RegressionTarget(0, sign=1))
        down = gs.explainer(method, model)(x, target=gs.RegressionTarget(0, sign=-1))
        default = gs.explainer(method, model)(x)
        torch.testing.assert_close(down.scores, -up.scores)
        torch.testing.assert_close(default.maps, up.maps)
        assert bool(torch.isfinite(up.maps).all())
        if method in ("gae", "legrad"):  # class-specific: the sign matters
            assert not torch.allclose(up.maps, down.maps)
        else:
            torch.testing.assert_close(up.maps, down.maps)


def test_through_the_prepared_wrapper():
    from gradsum.models import Prepared

    model = timm_vit(seed=4)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    wrapped = Prepared(model, mean, std)
    x = images(2)
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    for method in METHODS:
        got = gs.explainer(method, wrapped)(x, target=[1, 2])
        expected = gs.explainer(method, model)(normalised, target=[1, 2])
        torch.testing.assert_close(got.maps, expected.maps, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "extra", "prefix"), [
    ("vit_tiny_patch16_224", {"reg_tokens": 4}, 5),
    ("deit_tiny_distilled_patch16_224", {}, 2),
])
def test_register_and_distillation_tokens_give_the_patch_grid(name, extra, prefix):
    model = timm_vit(name=name, **extra)
    x = images(2)
    for method in METHODS:
        result = gs.explainer(method, model)(x)
        assert result.layer_maps["attention"].shape == (2, 4, 4)
        assert result.settings["prefix_tokens"] == prefix and result.settings["grid"] == (4, 4)
    # the class token's row, prefix columns dropped: the map is the patch part of the raw attention
    with torch.no_grad(), attention_probabilities(model) as captured:
        model(x)
    raw = gs.explainer("attention", model)(x)
    torch.testing.assert_close(raw.layer_maps["attention"], captured[-1].mean(1)[:, 0, prefix:].reshape(2, 4, 4))


def test_non_square_input_on_vit_tiny():
    from gradsum.models.vit import ViTTiny

    torch.manual_seed(0)
    model = ViTTiny(num_classes=3, depth=2).eval()
    x = images(2, size=(64, 128))
    for method in METHODS:
        result = gs.explainer(method, model)(x)
        assert result.layer_maps["attention"].shape == (2, 8, 16) and result.maps.shape == (2, 64, 128)


def test_no_class_token():
    model = timm_vit(class_token=False, global_pool="avg")
    with pytest.raises(ValueError, match="no class token.*legrad"):
        gs.explainer("attention-rollout", model)
    result = gs.explainer("legrad", model)(images(2))
    assert result.layer_maps["attention"].shape == (2, 4, 4) and result.settings["prefix_tokens"] == 0


def test_options_change_the_maps():
    model = tv_vit(seed=1)
    x = images(2)
    fused = {f: gs.explainer("attention", model, head_fusion=f)(x).maps for f in ("mean", "max", "min")}
    assert bool((fused["max"] >= fused["mean"] - 1e-6).all()) and bool((fused["min"] <= fused["mean"] + 1e-6).all())
    plain = gs.explainer("attention-rollout", model)(x).maps
    dropped = gs.explainer("attention-rollout", model, discard_ratio=0.9)(x).maps
    assert not torch.allclose(plain, dropped)
    late = gs.explainer("gae", model, start_block=2)(x)
    assert late.settings["blocks"] == 1 and not torch.allclose(late.maps, gs.explainer("gae", model)(x).maps)


def test_legrad_projections():
    model = tv_vit(seed=2)
    x = images(2)
    default = gs.explainer("legrad", model)(x, target=[1, 3])
    given = gs.explainer("legrad", model, score_projection=lambda t: model.heads(model.encoder.ln(t.mean(1))))(
        x, target=[1, 3])
    torch.testing.assert_close(given.maps, default.maps)
    assert given.settings["score_projection"] == "given"
    # pool="model" on the last block alone: s^L is the model's own output, so the map is
    # mean_{h,q} ReLU(dy/dA_L) over the patch keys
    for m in (model, timm_vit(seed=2)):
        last = gs.explainer("legrad", m, pool="model", start_block=2)(x, target=[1, 3])
        for p in m.parameters():
            p.requires_grad_(False)
        with attention_probabilities(m) as captured:
            out = m(x)
        (grad,) = torch.autograd.grad(out.gather(1, torch.tensor([[1], [3]])).sum(), captured[-1])
        for p in m.parameters():
            p.requires_grad_(True)
        expected = grad.clamp_min(0).mean(dim=(1, 2))[:, 1:].reshape(2, 4, 4)
        torch.testing.assert_close(last.layer_maps["attention"], expected, atol=1e-7, rtol=1e-5)


def test_bad_options_are_one_line_errors():
    model = tv_vit()
    cases = [
        ("attention", {"head_fusion": "avg"}, ValueError, "head_fusion"),
        ("attention-rollout", {"discard_ratio": 1.0}, ValueError, "discard_ratio"),
        ("attention-rollout", {"start_block": -1}, ValueError, "start_block"),
        ("gae", {"start_block": 1.5}, TypeError, "start_block"),
        ("gae", {"head_fusion": "mean"}, TypeError, "unknown option"),
        ("legrad", {"pool": "cls"}, ValueError, "pool"),
        ("legrad", {"score_projection": 3}, TypeError, "score_projection"),
        ("legrad", {"one_pass": "yes"}, TypeError, "one_pass"),
        ("attention", {"tokens": "cls+x"}, ValueError, "tokens"),
        ("attention-rollout", {"discard_rato": 0.5}, TypeError, "did you mean 'discard_ratio'"),
    ]
    for method, options, error, words in cases:
        with pytest.raises(error, match=words) as info:
            gs.explainer(method, model, **options)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="start_block=3 but"):
        gs.explainer("gae", model, start_block=3)(images(1))


def test_models_that_are_not_vits_are_refused_clearly():
    class NoHead(nn.Module):  # attention blocks, but no norm/head legrad could read scores with
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.MultiheadAttention(8, 2, batch_first=True) for _ in range(2))

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="score_projection="):
        gs.explainer("legrad", NoHead())

    class Windowed(nn.Module):  # Swin-like: attention within 4 windows of each image
        cls_token = None

        def __init__(self):
            super().__init__()
            self.proj = nn.Conv2d(3, 8, 8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            t = self.proj(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
            w = t.reshape(-1, 1, 4, 8)  # (B*4, 1 head, 4 tokens, 8)
            t = F.scaled_dot_product_attention(w, w, w).reshape(x.shape[0], 16, 8)
            return self.head(t.mean(1))

    with pytest.raises(ValueError, match="windowed attention"):
        gs.explainer("attention-rollout", Windowed(), tokens="none")(images(2))
    with pytest.raises(ValueError, match="no self-attention"):
        gs.explainer("gae", torchvision.models.resnet18(num_classes=2).eval(), tokens="cls")(images(1))


def test_zero_initialised_head_warns_and_explain_runs_the_family():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=5).eval()
    x = images(2)
    for method in ("gae", "legrad"):  # torchvision's new head is zero: no gradient reaches the attention
        with pytest.warns(gs.methods.base.ZeroMapWarning):
            result = gs.explainer(method, model)(x)
        assert result.settings["zero_gradients"] == [0, 1]
    results = gs.explain(tv_vit(), x, methods=METHODS)
    assert list(results) == METHODS and results.cost.forward_passes == 4 * 2
    assert results.cost.backward_passes == 2 * 2


def test_fully_masked_queries_give_zeros_as_torch_does():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, 4, generator=gen) for _ in range(3))
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.no_grad(), attention_probabilities(nn.Identity()) as captured:
        got = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert bool((captured[0][:, :, 1] == 0).all())
