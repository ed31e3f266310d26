"""Gate: the adapters are exact where the method leans on them.

For every kind (lora, svd, svd_full) on `tiny-random-qwen3` and on the Qwen3-0.6B-shaped random model:
- identity at init: lora logits bit-identical to the unwrapped model, svd within 1e-5 relative; svd_full (the
  forward rebuilt from the full SVD) passes seed 004's round-trip check, max abs logit diff < 1e-3;
- `quarantine_ablated` == the model with the quarantine knob zeroed, `adapter_zeroed` == the base model,
  and one wrapper's output matches a hand-computed forward;
- gradient reaches the knobs only (base frozen), and the quarantine gets none while ablated;
- save/load round trip, and a mismatched file fails loudly.
Plus: no matching target is an error, and the SVD cache hits on a second wrap and is keyed by W.

On the 0.6B shape the svd variants wrap 3 modules only: an exact fp32 SVD of all 196 weights costs
~2 minutes on 2 CPU cores (cached afterwards), which a gate should not pay.
"""

import sys
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from projected_grpo import adapter
from projected_grpo.adapter import AdapterConfig
from projected_grpo.model import load_model

MODELS = ("tiny-random-qwen3", "qwen3-0.6b-shape")
SVD_TARGETS_06B = ("layers.0.self_attn.q_proj", "layers.0.mlp.down_proj", "layers.27.mlp.gate_proj")


@pytest.fixture(scope="module", params=MODELS)
def base(request):
    """(name, model, input ids, base logits): one model per name, wrapped and unwrapped by each test."""
    model, tok = load_model(request.param, device="cpu")
    model.eval()
    ids = torch.tensor([tok.encode("def add(a, b): return a + b")[:8]])
    with torch.no_grad():
        logits = model(ids).logits
    return request.param, model, ids, logits


@pytest.fixture(scope="module")
def svd_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("svd"))  # shared, so only the first svd wrap of a model pays for the SVD


@pytest.fixture(params=adapter.ADAPTER_KINDS)
def wrapped(base, request, svd_cache):
    """(model, ids, base logits, cfg) with the model wrapped; unwrapped again afterwards."""
    name, model, ids, logits = base
    if request.param == "svd_full" and name == "qwen3-0.6b-shape" and request.node.originalname != "test_identity_at_init":
        pytest.skip("svd_full on the 0.6B shape: the round trip only (its knobs, contexts and saving are svd's code)")
    cfg = AdapterConfig(kind=request.param, rank=8, svd_cache_dir=svd_cache)
    if request.param != "lora" and name == "qwen3-0.6b-shape":
        cfg = replace(cfg, targets=SVD_TARGETS_06B)
    adapter.wrap(model, cfg)
    yield model, ids, logits, cfg
    adapter.unwrap(model)


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _randomize_knobs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for dep, quar in adapter.knobs(model).values():
            for p in (dep, quar):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_identity_at_init(wrapped):
    model, ids, base_logits, cfg = wrapped
    for dep, quar in adapter.knobs(model).values():
        assert not dep.any() and not quar.any(), "knobs must start at zero"
    out = _logits(model, ids)
    if cfg.kind == "lora":
        assert torch.equal(out, base_logits), f"lora not bit-identical at init: {(out - base_logits).abs().max()}"
    elif cfg.kind == "svd_full":
        diff = adapter.round_trip_diff(model, lambda: model(ids).logits)
        assert diff == (out - base_logits).abs().max().item() and diff < 1e-3, f"round trip {diff}"
    else:
        assert _rel(out, base_logits) <= 1e-5


def test_contexts(wrapped):
    model, ids, base_logits, cfg = wrapped
    _randomize_knobs(model)
    full = _logits(model, ids)
    with adapter.quarantine_ablated(model):
        ablated = _logits(model, ids)
    with adapter.adapter_zeroed(model):
        zeroed = _logits(model, ids)
    assert _rel(full, ablated) > 1e-4 and _rel(ablated, base_logits) > 1e-4, "random knobs must move the logits"
    assert torch.equal(zeroed, base_logits), "adapter_zeroed must be the base model"

    # The ablated model is exactly the model whose quarantine knob holds zeros.
    saved = {n: q.detach().clone() for n, (_, q) in adapter.knobs(model).items()}
    with torch.no_grad():
        for _, q in adapter.knobs(model).values():
            q.zero_()
        quarantine_zero = _logits(model, ids)
        for n, (_, q) in adapter.knobs(model).items():
            q.copy_(saved[n])
    assert torch.equal(ablated, quarantine_zero)
    assert torch.equal(_logits(model, ids), full), "contexts must restore the full forward on exit"

    # One wrapper against the formula, in every mode.
    name, w = next(iter(adapter.wrappers(model).items()))
    x = torch.randn(3, w.base.in_features, generator=torch.Generator().manual_seed(1))
    W, b = w.base.weight, w.base.bias if w.base.bias is not None else 0.0
    if cfg.kind == "lora":
        deployed, full_delta = w.B @ w.A, (w.B + w.B_hack) @ w.A
    else:
        deployed, full_delta = w.U @ torch.diag(w.dS) @ w.Vh, w.U @ torch.diag(w.dS + w.dS_hack) @ w.Vh
    with torch.no_grad():
        torch.testing.assert_close(w(x), x @ (W + full_delta).T + b)
        with adapter.quarantine_ablated(model):
            torch.testing.assert_close(w(x), x @ (W + deployed).T + b)
        with adapter.adapter_zeroed(model):
            assert torch.equal(w(x), w.base(x)), name


def test_contexts_nest_and_restore_on_error(wrapped):
    model = wrapped[0]
    w = next(iter(adapter.wrappers(model).values()))
    with pytest.raises(RuntimeError, match="boom"):
        with adapter.quarantine_ablated(model):
            with adapter.adapter_zeroed(model):
                assert (w.enabled, w.use_quarantine) == (False, False)
                raise RuntimeError("boom")
    assert (w.enabled, w.use_quarantine) == (True, True)
    with adapter.quarantine_ablated(model):
        with adapter.adapter_zeroed(model):
            pass
        assert (w.enabled, w.use_quarantine) == (True, False), "inner context must restore the outer one's flags"


def _loss(model, ids):
    logits = model(ids).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def test_gradient_reaches_knobs_only(wrapped):
    model, ids, _, cfg = wrapped
    knobs = adapter.knobs(model)
    knob_ids = {id(p) for pair in knobs.values() for p in pair}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {id(p) for p in model.parameters() if p.requires_grad} == knob_ids, f"trainable: {trainable[:5]}"

    _loss(model, ids).backward()
    for n, p in model.named_parameters():
        if id(p) not in knob_ids:
            assert p.grad is None, f"base parameter {n} got a gradient"
    for n, (dep, quar) in knobs.items():
        assert dep.grad is not None and dep.grad.abs().sum() > 0 and dep.grad.isfinite().all(), n
        # Both knobs enter the forward as a sum, so before any routing their gradients are equal.
        assert torch.equal(dep.grad, quar.grad), n

    for p in model.parameters():
        p.grad = None
    with adapter.quarantine_ablated(model):
        _loss(model, ids).backward()
    for n, (dep, quar) in knobs.items():
        assert dep.grad is not None and quar.grad is None, f"{n}: the ablated quarantine must get no gradient"
    with adapter.adapter_zeroed(model):
        assert not model(ids).logits.requires_grad, "the zeroed model must not depend on the knobs"
    for p in model.parameters():
        p.grad = None


def test_save_load_round_trip(wrapped, tmp_path):
    model, ids, _, cfg = wrapped
    _randomize_knobs(model, seed=2)
    before = _logits(model, ids)
    path = tmp_path / "knobs.safetensors"
    adapter.save_knobs(model, path, metadata={"step": "7"})
    assert [p.name for p in tmp_path.iterdir()] == ["knobs.safetensors"], "no temp file may be left behind"

    _randomize_knobs(model, seed=3)
    assert not torch.equal(_logits(model, ids), before)
    meta = adapter.load_knobs(model, path)
    assert torch.equal(_logits(model, ids), before)
    assert meta["step"] == "7" and meta["kind"] == cfg.kind
    assert meta["rank"] == ("full" if cfg.kind == "svd_full" else str(cfg.rank))

    # A file missing one module's knob, or holding a wrongly shaped one, fails naming the key.
    tensors = load_file(path)
    key = next(iter(tensors))
    bad = tmp_path / "bad.safetensors"
    save_file({k: v for k, v in tensors.items() if k != key}, bad)
    with pytest.raises(ValueError, match="1 missing"):
        adapter.load_knobs(model, bad)
    save_file({**tensors, key: torch.zeros(*tensors[key].shape[:-1], tensors[key].shape[-1] + 1)}, bad)
    with pytest.raises(ValueError, match="shape mismatch"):
        adapter.load_knobs(model, bad)
    assert torch.equal(_logits(model, ids), before), "a failed load must not touch the knobs"


def test_mismatched_adapter_file_errors(base, tmp_path):
    """A lora file into an svd model (and a rank-4 file into a rank-8 model) is refused by the signature."""
    name, model, ids, _ = base
    targets = ("layers.0.self_attn.q_proj",)
    adapter.wrap(model, AdapterConfig("lora", rank=4, targets=targets))
    adapter.save_knobs(model, tmp_path / "lora4.safetensors")
    adapter.unwrap(model)
    try:
        adapter.wrap(model, AdapterConfig("lora", rank=8, targets=targets))
        with pytest.raises(ValueError, match="rank"):
            adapter.load_knobs(model, tmp_path / "lora4.safetensors")
        adapter.unwrap(model)
        adapter.wrap(model, AdapterConfig("svd", rank=4, targets=targets, svd_cache_dir=str(tmp_path / "svd")))
        with pytest.raises(ValueError, match="kind"):
            adapter.load_knobs(model, tmp_path / "lora4.safetensors")
    finally:
        adapter.unwrap(model)


def test_no_matching_target_errors(base):
    model = base[1]
    modules_before = [type(m) for m in model.modules()]
    with pytest.raises(ValueError, match=r"no nn.Linear matches adapter targets \('c_attn',\).*q_proj"):
        adapter.wrap(model, AdapterConfig(targets=("c_attn",)))
    assert [type(m) for m in model.modules()] == modules_before, "a failed wrap must leave the model as it was"


def test_svd_cache_hits_and_is_keyed_by_weight(tmp_path, monkeypatch):
    model, _ = load_model("tiny-random-qwen3", device="cpu")
    cfg = AdapterConfig("svd", rank=8, svd_cache_dir=str(tmp_path))
    first = {n: w.U.clone() for n, w in adapter.wrap(model, cfg).items()}
    assert len(list(tmp_path.glob("*.safetensors"))) == len(first) == 14

    calls = []
    real = adapter._compute_svd
    monkeypatch.setattr(adapter, "_compute_svd", lambda w, r: calls.append(tuple(w.shape)) or real(w, r))
    adapter.unwrap(model)
    second = adapter.wrap(model, cfg)
    assert calls == [], f"second wrap recomputed {len(calls)} SVDs"
    assert all(torch.equal(first[n], w.U) for n, w in second.items())

    # Change one weight: exactly that module misses; a new rank misses everywhere.
    adapter.unwrap(model)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    adapter.wrap(model, cfg)
    assert calls == [(64, 128)]
    adapter.unwrap(model)
    adapter.wrap(model, replace(cfg, rank=4))
    assert len(calls) == 1 + 14


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "--durations=0"]))
