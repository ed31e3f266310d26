"""Unit tests of adapter.py on a toy model of named Linears (the gate scripts/verify_adapter.py runs Qwen3)."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from projected_grpo import adapter
from projected_grpo.adapter import AdapterConfig


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(8, 6, bias=True)
        self.down_proj = nn.Linear(6, 8, bias=False)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        return x + self.down_proj(torch.tanh(self.q_proj(self.norm(x))))


class Toy(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


TARGETS = ("q_proj", "down_proj")
NAMES = ["layers.0.q_proj", "layers.0.down_proj", "layers.1.q_proj", "layers.1.down_proj"]


def cfg(kind="lora", rank=4, tmp=None, **kw):
    return AdapterConfig(kind=kind, rank=rank, targets=TARGETS, svd_cache_dir=str(tmp or ".cache/svd"), **kw)


@pytest.fixture
def x():
    return torch.randn(5, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kw", [dict(kind="dora"), dict(rank=0), dict(targets=()), dict(targets=("",))])
def test_config_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        AdapterConfig(**kw)


@pytest.mark.parametrize("kind", adapter.ADAPTER_KINDS)
def test_wrap_names_shapes_and_freezing(kind, tmp_path):
    model = Toy()
    ws = adapter.wrap(model, cfg(kind, tmp=tmp_path))
    assert list(ws) == NAMES, "wrappers in model order, named like the Linears they replace"
    assert isinstance(model.head, nn.Linear), "non-target Linears stay as they are"
    ks = adapter.knobs(model)
    for name, (dep, quar) in ks.items():
        lin = ws[name].base
        want = {"lora": (lin.out_features, 4), "svd": (4,), "svd_full": (min(lin.weight.shape),)}[kind]
        assert dep.shape == quar.shape == want and dep is not quar
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in adapter.deployed_params(model) + adapter.quarantine_params(model)}
    assert len(adapter.deployed_params(model)) == len(adapter.quarantine_params(model)) == 4


def test_lora_A_is_semi_orthonormal_and_seeded():
    a = adapter.wrap(Toy(), cfg(rank=4))
    A = a["layers.0.q_proj"].A
    torch.testing.assert_close(A @ A.T, torch.eye(4), atol=1e-6, rtol=0)
    b = adapter.wrap(Toy(seed=1), cfg(rank=4))  # other base weights, same adapter seed: same A
    c = adapter.wrap(Toy(), cfg(rank=4, seed=1))
    assert all(torch.equal(a[n].A, b[n].A) for n in NAMES)
    assert not torch.equal(a["layers.0.q_proj"].A, c["layers.0.q_proj"].A), "the seed must change A"
    assert not torch.equal(a["layers.0.q_proj"].A, a["layers.1.q_proj"].A), "each module gets its own A"


@pytest.mark.parametrize("kind", ["lora", "svd"])  # svd_full rebuilds W from its factors: see the round-trip test
def test_bf16_model_identity_at_init(kind, tmp_path, x):
    model = Toy().to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    with torch.no_grad():
        ref = model(xb)
    ws = adapter.wrap(model, cfg(kind, tmp=tmp_path))
    w = ws["layers.0.q_proj"]
    # the base stays bf16; knobs and fixed matrices are fp32 (adapter docstring: why)
    assert {t.dtype for t in w.base.parameters()} == {torch.bfloat16}
    assert {t.dtype for t in [*w.buffers(recurse=False), *w.parameters(recurse=False)]} == {torch.float32}
    sig = adapter.adapter_signature(model)
    assert (sig["dtype"], sig["base_dtype"]) == ("float32", "bfloat16")
    with torch.no_grad():
        out = model(xb)
        assert out.dtype == torch.bfloat16 and torch.equal(out, ref)


@pytest.mark.parametrize(
    "kind, rank, match",
    [("lora", 7, "rank 7 > 6 for lora on layers.0.down_proj"), ("svd", 7, "rank 7 > 6 for svd on layers.0.q_proj")],
)
def test_rank_too_large_leaves_model_untouched(kind, rank, match, tmp_path):
    model = Toy()
    with pytest.raises(ValueError, match=match):
        adapter.wrap(model, cfg(kind, rank=rank, tmp=tmp_path))
    assert not adapter.wrappers(model) and all(p.requires_grad for p in model.parameters())


def test_target_errors():
    model = Toy()
    with pytest.raises(ValueError, match=r"c_attn.*layers.0.q_proj"):
        adapter.wrap(model, AdapterConfig(targets=("c_attn",)))
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        adapter.wrap(model, AdapterConfig(targets=("proj",)))  # a target is a whole dotted suffix, not a substring
    with pytest.raises(ValueError, match=r"\['v_proj'\] match no nn.Linear"):
        adapter.wrap(model, AdapterConfig(rank=4, targets=("q_proj", "v_proj")))
    ws = adapter.wrap(model, AdapterConfig(rank=4, targets=("layers.1.q_proj",)))  # a dotted suffix picks one layer
    assert list(ws) == ["layers.1.q_proj"]
    with pytest.raises(ValueError, match="already wrapped"):
        adapter.wrap(model, cfg())


def test_unwrap_restores_the_base_modules():
    model = Toy()
    linears = {n: m for n, m in model.named_modules() if n in NAMES}
    adapter.wrap(model, cfg())
    adapter.unwrap(model)
    assert not adapter.wrappers(model)
    assert all(model.get_submodule(n) is m for n, m in linears.items())


@pytest.mark.parametrize("kind", adapter.ADAPTER_KINDS)
def test_forward_formula_and_contexts(kind, tmp_path, x):
    model = Toy()
    with torch.no_grad():
        ref = model(x)
    adapter.wrap(model, cfg(kind, tmp=tmp_path))
    with torch.no_grad():
        for dep, quar in adapter.knobs(model).values():
            dep.normal_(0, 0.3), quar.normal_(0, 0.3)
    w = model.layers[0].q_proj
    h = torch.randn(3, 8)
    W, b = w.base.weight, w.base.bias
    if kind == "lora":
        delta, delta_dep = (w.B + w.B_hack) @ w.A, w.B @ w.A
    elif kind == "svd":
        delta, delta_dep = w.U @ torch.diag(w.dS + w.dS_hack) @ w.Vh, w.U @ torch.diag(w.dS) @ w.Vh
    else:  # svd_full: the forward is U diag(S + dS) Vh x + b, with no W term at all
        W = torch.zeros_like(W)
        delta, delta_dep = (w.U @ torch.diag(w.S + s) @ w.Vh for s in (w.dS + w.dS_hack, w.dS))
    with torch.no_grad():
        torch.testing.assert_close(w(h), h @ (W + delta).T + b)
        with adapter.quarantine_ablated(model):
            torch.testing.assert_close(w(h), h @ (W + delta_dep).T + b)
            with adapter.adapter_zeroed(model):
                assert torch.equal(model(x), ref)
            torch.testing.assert_close(w(h), h @ (W + delta_dep).T + b)
        assert not torch.allclose(model(x), ref)


def test_contexts_need_a_wrapped_model():
    with pytest.raises(ValueError, match="no adapter wrappers"):
        with adapter.quarantine_ablated(Toy()):
            pass
    with pytest.raises(ValueError, match="no adapter wrappers"):
        adapter.knobs(Toy())


def test_signature():
    lora = Toy()
    adapter.wrap(lora, cfg(rank=4, seed=3))
    assert adapter.adapter_signature(lora) == {
        "kind": "lora", "rank": "4", "targets": "q_proj,down_proj", "dtype": "float32", "base_dtype": "float32", "seed": "3"
    }


def test_save_load_errors(tmp_path):
    model = Toy()
    adapter.wrap(model, cfg())
    path = tmp_path / "k.safetensors"
    with pytest.raises(ValueError, match="contradict"):
        adapter.save_knobs(model, path, metadata={"rank": "9"})
    adapter.save_knobs(model, path, metadata={"note": "x"})
    assert sorted(load_file(path)) == sorted(f"{n}.{k}" for n in NAMES for k in ("B", "B_hack"))
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        adapter.load_knobs(model, tmp_path / "nope.safetensors")
    tensors = load_file(path)
    save_file({**tensors, "layers.9.q_proj.B": torch.zeros(6, 4)}, tmp_path / "extra.safetensors")
    with pytest.raises(ValueError, match=r"1 extra \(e.g. \['layers.9.q_proj.B'\]\)"):
        adapter.load_knobs(model, tmp_path / "extra.safetensors")

    other = Toy()
    adapter.wrap(other, cfg(seed=1))  # a different A: the saved B would mean something else
    with pytest.raises(ValueError, match="seed"):
        adapter.load_knobs(other, path)


def test_fp32_knobs_load_into_bf16_model(tmp_path, x):
    src = Toy()
    adapter.wrap(src, cfg())
    with torch.no_grad():
        for dep, quar in adapter.knobs(src).values():
            dep.fill_(0.25), quar.fill_(-0.5)
    adapter.save_knobs(src, tmp_path / "k.safetensors")
    dst = Toy().to(torch.bfloat16)
    adapter.wrap(dst, cfg())
    adapter.load_knobs(dst, tmp_path / "k.safetensors")
    for dep, quar in adapter.knobs(dst).values():
        assert dep.dtype == torch.float32 and (dep == 0.25).all() and (quar == -0.5).all()


def test_svd_factors_are_the_top_singular_triplets(tmp_path):
    w = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    (U, S, Vh), hit = adapter.svd_factors(w, 6, tmp_path)
    assert not hit
    torch.testing.assert_close(U @ torch.diag(S) @ Vh, w, atol=1e-5, rtol=0)  # full rank reconstructs W
    (U3, S3, Vh3), hit = adapter.svd_factors(w, 3, tmp_path)
    assert not hit and torch.equal(S3, S[:3]) and (S3[:-1] >= S3[1:]).all()
    assert adapter.svd_factors(w, 3, tmp_path)[1], "the second call must hit the cache"


def test_weight_key_depends_on_bytes_dtype_and_rank():
    w = torch.randn(4, 5)
    w2 = w.clone()
    w2[3, 4] = torch.nextafter(w2[3, 4], torch.tensor(10.0))
    keys = {adapter.weight_key(w, 2), adapter.weight_key(w2, 2), adapter.weight_key(w, 3),
            adapter.weight_key(w.to(torch.bfloat16), 2)}
    assert len(keys) == 4 and adapter.weight_key(w.clone(), 2) == adapter.weight_key(w, 2)


def test_corrupt_svd_cache_is_recomputed(tmp_path):
    w = torch.randn(6, 8)
    (U, _, _), _ = adapter.svd_factors(w, 3, tmp_path)
    path = tmp_path / f"{adapter.weight_key(w, 3)}.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    (U2, _, _), hit = adapter.svd_factors(w, 3, tmp_path)
    assert not hit and torch.equal(U, U2)
    assert adapter.svd_factors(w, 3, tmp_path)[1], "the recomputed entry must overwrite the corrupt file"


def test_svd_full_rank_is_per_module_and_round_trips(tmp_path, x):
    """Seed 004's first pass: r = min(d_out, d_in) per module, only dS trains, and at dS = 0 the rebuilt forward
    matches the base model (max abs diff < 1e-3, here 1e-5 in fp32)."""
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 10), nn.Linear(10, 4))
    ws = adapter.wrap(model, AdapterConfig(kind="svd_full", targets=("0", "1", "2"), svd_cache_dir=str(tmp_path)))
    assert [w.dS.shape[0] for w in ws.values()] == [6, 6, 4], "one rank per module: min(d_out, d_in)"
    assert all(type(w) is adapter.SVDFullLinear for w in ws.values())
    assert adapter.adapter_signature(model)["rank"] == "full"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for w in ws.values() for p in (w.dS, w.dS_hack)}
    with torch.no_grad():
        ws["1"].dS.fill_(0.5)  # round_trip_diff zeroes the knobs itself, and puts them back
    assert adapter.round_trip_diff(model, lambda: model(x)) < 1e-5
    assert (ws["1"].dS == 0.5).all()
    with torch.no_grad():
        ws["1"].S.mul_(1.01)  # a factorisation that no longer reconstructs W must fail the check
    assert adapter.round_trip_diff(model, lambda: model(x)) > 1e-3
