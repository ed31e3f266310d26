"""Unit tests of extract.py: config checks, tokenization boundary, the loss, SVD details, placebos, order-freedom."""

from pathlib import Path

import pytest
import torch

from projected_grpo.adapter import AdapterConfig, wrap
from projected_grpo.extract import (
    ExtractConfig,
    basis_from_diffs,
    completion_nll,
    encode,
    extract_basis,
    haar_rows,
    pair_grads,
    placebo_basis,
    validate_basis,
)
from projected_grpo.model import load_model
from projected_grpo.pairs import Pair
from projected_grpo.problems import SYSTEM_PROMPT, render_chat


def pairs(n: int) -> list[Pair]:
    return [
        Pair(
            id=f"p{i}",
            prompt=f"Return x + {i}.",
            hack=f"```python\ndef f(x):\n    return 0\nprint('All tests passed')  # {i}\n```",
            clean=f"```python\ndef f(x):\n    return x + {i}\n```",
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tok():
    return load_model("tiny-random-qwen3")[1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "k"),
        (dict(floor_quantile=1.0), "floor_quantile"),
        (dict(basis="fake"), "basis"),
        (dict(batch_size=0), "batch_size"),
        (dict(holdout_frac=-0.1), "holdout_frac"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExtractConfig(**kwargs)


def test_encode_splits_prompt_and_completion_exactly(tok):
    p = pairs(1)[0]
    ids, n_prompt = encode(tok, p, "clean")
    prompt = render_chat(tok, [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p.prompt}])
    assert tok.decode(ids[:n_prompt]) == prompt
    assert tok.decode(ids[n_prompt:]) == p.clean
    with pytest.raises(ValueError, match="side"):
        encode(tok, p, "both")


def test_completion_nll_counts_completion_tokens_only():
    logits = torch.randn(5, 7)
    ids = torch.tensor([1, 2, 3, 4, 5])
    mask = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])  # tokens 3 and 4 are the completion
    logp = torch.log_softmax(logits, -1)
    expected = -(logp[2, 4] + logp[3, 5]) / 2
    torch.testing.assert_close(completion_nll(logits, ids, mask), expected)


def test_zero_modules_get_no_basis_and_k_is_capped_by_pairs():
    gen = torch.Generator().manual_seed(0)
    diffs = {"zero": torch.zeros(3, 10), "live": torch.randn(3, 10, generator=gen)}
    basis = basis_from_diffs(diffs, k=8, floor_quantile=0.0)
    assert set(basis) == {"live"} and basis["live"].shape == (3, 10)


def test_validation_with_one_axis_is_the_plain_cosine():
    gen = torch.Generator().manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(1, 12, generator=gen), dim=1)
    held = torch.randn(4, 12, generator=gen)
    d = held.mean(0)
    rep = validate_basis({"m": v}, {"m": held}, warn=False)
    assert rep["cos"]["m"] == pytest.approx((v[0] @ d / d.norm()).item(), abs=1e-6)


def test_haar_rows_are_orthonormal_and_seeded():
    a = haar_rows(3, 20, torch.Generator().manual_seed(0))
    b = haar_rows(3, 20, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a @ a.T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.equal(a, b)


def test_placebos_copy_structure_and_fail_loudly():
    gen = torch.Generator().manual_seed(2)
    gh, gc = {"a": torch.randn(6, 16, generator=gen)}, {"a": torch.randn(6, 16, generator=gen)}
    like = {"a": haar_rows(2, 16, gen)}
    for kind in ("random", "shuffled", "nonhack"):
        out = placebo_basis(kind, like, gh, gc, seed=0)
        assert out["a"].shape == (2, 16), kind
    with pytest.raises(ValueError, match="placebo kind"):
        placebo_basis("real", like, gh, gc, seed=0)
    with pytest.raises(ValueError, match=">= 2 pairs"):
        placebo_basis("nonhack", like, {"a": gh["a"][:1]}, {"a": gc["a"][:1]}, seed=0)


def test_pair_grads_needs_a_wrapped_model(tok):
    model, _ = load_model("tiny-random-qwen3")
    with pytest.raises(ValueError, match="wrap"):
        pair_grads(model, tok, pairs(1), "hack")


def test_svd_adapter_grads_and_order_free_basis(tmp_path):
    model, tok = load_model("tiny-random-qwen3")
    wrap(model, AdapterConfig("svd", rank=4, svd_cache_dir=str(tmp_path)))
    G = pair_grads(model, tok, pairs(3), "hack", batch_size=2)
    assert all(g.shape == (3, 4) and torch.isfinite(g).all() for g in G.values())
    assert sum(g.abs().sum() for g in G.values()) > 0
    cfg = ExtractConfig(k=2, holdout_frac=0.25)
    b1, r1 = extract_basis(model, tok, pairs(5), cfg)
    b2, r2 = extract_basis(model, tok, pairs(5)[::-1], cfg)  # pairs_sha is order-free, so the basis must be
    assert b1.keys() == b2.keys() and all(torch.allclose(b1[m], b2[m], atol=1e-5) for m in b1)
    assert r1["validation"]["median"] == pytest.approx(r2["validation"]["median"], abs=1e-5)


def test_tau_axis_and_k_use_cut_axes_per_module():
    gen = torch.Generator().manual_seed(0)
    # module "a": one strong axis and weak ones; module "b": a flat spectrum
    strong = torch.randn(6, 1, generator=gen) @ torch.randn(1, 12, generator=gen) * 10
    diffs = {"a": strong + 0.1 * torch.randn(6, 12, generator=gen), "b": torch.randn(6, 12, generator=gen)}
    full = basis_from_diffs(diffs, k=4, floor_quantile=0.0)
    assert {m: V.shape[0] for m, V in full.items()} == {"a": 4, "b": 4}
    cut = basis_from_diffs(diffs, k=4, floor_quantile=0.0, tau_axis=0.3)
    assert cut["a"].shape[0] == 1 and cut["b"].shape[0] >= 2, "tau_axis is relative to each module's own top axis"
    used = basis_from_diffs(diffs, k=4, floor_quantile=0.0, k_use=2)
    assert all(V.shape[0] == 2 for V in used.values())
    assert all(torch.equal(used[m], full[m][:2]) for m in full), "k_use keeps the first axes of the k extracted"
    with pytest.raises(ValueError, match="k_use"):
        ExtractConfig(k=4, k_use=5)
    with pytest.raises(ValueError, match="tau_axis"):
        ExtractConfig(tau_axis=1.5)


def test_a_pair_with_a_non_finite_gradient_is_named_and_dropped(tok, monkeypatch):
    import projected_grpo.extract as extract

    model = load_model("tiny-random-qwen3")[0]
    wrap(model, AdapterConfig("lora", rank=2))
    real = extract.pair_grads
    bad_id = {"id": None}

    def poisoned(model, tokenizer, ps, side, batch_size=8, skips=None):
        g = real(model, tokenizer, ps, side, batch_size, skips)
        if side == "clean":
            i = [p.id for p in ps].index(bad_id["id"])
            next(iter(g.values()))[i, 0] = float("nan")
        return g

    monkeypatch.setattr(extract, "pair_grads", poisoned)
    ps = pairs(8)
    bad_id["id"] = ps[3].id
    basis, report = extract_basis(model, tok, ps, ExtractConfig(k=2, floor_quantile=0.0))
    assert report["dropped_pairs"] == [ps[3].id]
    assert report["n_train"] + report["n_heldout"] == 7
    assert all(torch.isfinite(V).all() for V in basis.values())

    monkeypatch.setattr(extract, "pair_grads", lambda m, t, ps, side, b=8, skips=None: {
        n: torch.full_like(g, float("nan")) for n, g in real(m, t, ps, side, b, skips).items()})
    with pytest.raises(ValueError, match="every training pair has a non-finite gradient"):
        extract_basis(model, tok, ps, ExtractConfig(k=2, floor_quantile=0.0))


def test_extract_cli_writes_a_basis_file_that_training_loads_and_refuses_when_foreign(tmp_path):
    """`python -m projected_grpo.extract` prints the per-module report and writes FILE + FILE.png; a smoke run
    loads it with --basis-file; a file for another adapter seed (another lora A) is refused in one line."""
    import dataclasses
    import subprocess
    import sys

    from projected_grpo import train
    from projected_grpo.extract import load_basis_file

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "basis.safetensors"
    r = subprocess.run([sys.executable, "-m", "projected_grpo.extract", "--out", str(out), "--extract.k", "2"],
                       capture_output=True, text=True, cwd=repo, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "model.layers.0.self_attn.q_proj" in r.stdout and "noise floor" in r.stdout
    assert "held-out validation: share > 0" in r.stdout and out.exists() and out.with_suffix(".png").stat().st_size > 0

    cfg = dataclasses.replace(train.PRESETS["smoke"][1], steps=1, eval_samples=1, eval_frac=0.1, eval_variants=False,
                              max_new=16, out_dir=str(tmp_path / "run"), cache_dir=str(repo / ".cache"), basis_file=str(out),
                              arm="erase")
    summary = train.run(cfg)
    assert summary["basis_report"]["k_per_module"] == {m: len(S) for m, S in summary["basis_report"]["singular_values"].items()}
    assert max(summary["basis_report"]["k_per_module"].values()) == 2, "the file's k=2 basis, not the run's k=4"

    model, tok = load_model("tiny-random-qwen3")
    wrap(model, AdapterConfig("lora", rank=8, seed=1))
    with pytest.raises(ValueError, match=r"another setup: adapter_seed '0' \(run: '1'\)"):
        load_basis_file(out, model, "tiny-random-qwen3", "real")
    with pytest.raises(ValueError, match=r"model_id 'tiny-random-qwen3' \(run: 'micro-qwen3'\)"):
        load_basis_file(out, model, "micro-qwen3", "real")
    r = subprocess.run([sys.executable, "-m", "projected_grpo.train", "smoke", "--basis-file", str(out), "--refresh-every", "2",
                        "--out-dir", str(tmp_path / "x")], capture_output=True, text=True, cwd=repo, timeout=120)
    assert r.returncode == 2 and "use one or the other" in r.stderr and "Traceback" not in r.stderr


def test_subspace_overlap_is_the_mean_principal_cosine():
    from projected_grpo.extract import subspace_overlap

    eye = torch.eye(4)
    rot = torch.tensor([[0.6, 0.8, 0, 0], [-0.8, 0.6, 0, 0]])  # the same plane as eye[:2], other axes
    old = {"same": eye[:2], "turned": eye[:2], "gone": eye[:1]}
    new = {"same": rot, "turned": torch.stack([eye[0], eye[2]]), "born": eye[:1]}
    ov = subspace_overlap(old, new)
    assert ov["same"] == pytest.approx(1.0) and ov["turned"] == pytest.approx(0.5)
    assert ov["gone"] == 0.0 and ov["born"] == 0.0
