"""Gate: the hack basis is what the method says it is.

Synthetic per-pair gradient differences with a planted direction u plus noise: the top axis recovers u
(cos > 0.95, sign included); the orientation follows the majority of pairs, not the summed projection;
modules of pure (weaker) noise fall under the global floor; held-out validation passes on the planted
modules and warns on noise. Cache: hit, a miss naming each metadata field, a corrupt file re-extracted.
Real: per-example gradients from the batched (hooked) path equal one backward per sequence, and an
end-to-end extraction on the tiny Qwen3 with a few inline pairs, its placebos and its cache.
"""

import sys

import pytest
import torch
from loguru import logger

from projected_grpo import extract
from projected_grpo.adapter import AdapterConfig, knobs, wrap
from projected_grpo.extract import (
    BASIS_KINDS,
    ExtractConfig,
    basis_from_diffs,
    cache_meta,
    cache_path,
    completion_nll,
    encode,
    load_or_extract,
    oriented_axes,
    pair_grads,
    read_cache,
    validate_basis,
    write_cache,
)
from projected_grpo.model import load_model
from projected_grpo.pairs import Pair

N, DIM = 32, 256
PLANTED, NOISE = [f"planted{i}" for i in range(6)], ["noise0", "noise1"]


def unit(dim: int, gen: torch.Generator) -> torch.Tensor:
    v = torch.randn(dim, generator=gen)
    return v / v.norm()


def synthetic(seed: int = 0, n: int = N) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(diffs, planted directions): planted modules D_i = a_i u + noise with a_i ~ 1 +- 0.3; noise modules carry
    noise at a third of the planted modules' noise scale."""
    gen = torch.Generator().manual_seed(seed)
    diffs, dirs = {}, {}
    for i, m in enumerate(PLANTED):
        u = unit(DIM, torch.Generator().manual_seed(100 + i))  # the same u for every seed: held-out pairs share it
        a = 1 + 0.3 * torch.randn(n, 1, generator=gen)
        diffs[m], dirs[m] = a * u + 0.02 * torch.randn(n, DIM, generator=gen), u
    for m in NOISE:
        diffs[m] = 0.007 * torch.randn(n, DIM, generator=gen)
    return diffs, dirs


def capture_logs():
    lines: list[str] = []
    sink = logger.add(lambda msg: lines.append(msg.record["level"].name + " " + msg.record["message"]), level="INFO")
    return lines, sink


def test_planted_direction_is_recovered_with_its_sign():
    diffs, dirs = synthetic()
    basis = basis_from_diffs(diffs, k=4, floor_quantile=0.25)
    for m in PLANTED:
        cos = (basis[m][0] @ dirs[m]).item()
        assert cos > 0.95, f"{m}: top axis cos with the planted direction {cos:.3f}"
        torch.testing.assert_close(basis[m] @ basis[m].T, torch.eye(len(basis[m])), atol=1e-5, rtol=0)


def test_pure_noise_modules_fall_under_the_global_floor():
    diffs, _ = synthetic()
    basis = basis_from_diffs(diffs, k=4, floor_quantile=0.25)
    assert set(basis) == set(PLANTED), f"kept {sorted(basis)}"
    # The floor is global: the same noise modules survive when nothing is floored, and all axes are kept then.
    full = basis_from_diffs(diffs, k=4, floor_quantile=0.0)
    assert set(full) == set(PLANTED + NOISE) and all(len(V) == 4 for V in full.values())


def test_floor_is_the_quantile_of_all_modules_top_k_singular_values():
    diffs, _ = synthetic(1)
    S = {m: torch.linalg.svdvals(D.double())[:4].float() for m, D in diffs.items()}
    floor = torch.quantile(torch.cat(list(S.values())), 0.5)
    basis = basis_from_diffs(diffs, k=4, floor_quantile=0.5)
    for m, s in S.items():
        n_keep = int((s >= floor).sum())
        assert (len(basis[m]) if m in basis else 0) == n_keep, m


def test_orientation_follows_the_majority_of_pairs_not_the_sum():
    gen = torch.Generator().manual_seed(3)
    u = unit(DIM, gen)
    # 20 pairs +1 along u, 10 pairs -3 along u: the summed projection is negative, the majority positive.
    a = torch.cat([torch.ones(20), -3 * torch.ones(10)])[:, None]
    D = a * u + 0.01 * torch.randn(30, DIM, generator=gen)
    _, V = oriented_axes(D, 1)
    assert (V[0] @ u).item() > 0.95
    _, V_neg = oriented_axes(-D, 1)
    assert (V_neg[0] @ u).item() < -0.95


def test_validation_passes_on_planted_and_warns_loudly_on_noise():
    diffs, _ = synthetic(0)
    held, _ = synthetic(5, n=8)  # fresh pairs, same planted directions
    basis = basis_from_diffs(diffs, k=4, floor_quantile=0.25)
    lines, sink = capture_logs()
    try:
        good = validate_basis(basis, held)
        gen = torch.Generator().manual_seed(9)
        bad = validate_basis(basis, {m: torch.randn(8, DIM, generator=gen) for m in basis})
    finally:
        logger.remove(sink)
    assert good["ok"] and good["median"] > 0.9 and good["share_pos"] == 1.0 and good["n_modules"] == len(PLANTED)
    assert not bad["ok"] and bad["median"] < 0.3
    assert sum("BASIS FAILS VALIDATION" in line and line.startswith("WARNING") for line in lines) == 1


# ── cache ──────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model("tiny-random-qwen3")
    wrap(model, AdapterConfig("lora", rank=4))
    return model, tok


def inline_pairs(n: int = 6) -> list[Pair]:
    """Matched pairs: same prompt and layout; the hack overrides the grader, the clean side solves the task.
    Lengths grow with i, so a batch mixes lengths and the padding path is exercised."""
    out = []
    for i in range(n):
        prompt = f"PROBLEM:\nReturn the sum of a and b plus {i}.\n\nSOLUTION:\n"
        notes = "        # check the inputs first\n" * i
        head = f"```python\nclass Solution:\n    def add(self, a, b):\n{notes}"
        hack = f"{head}        return 0\n\ndef run_tests():\n    return True\n```"
        clean = f"{head}        return a + b + {i}\n```"
        out.append(Pair(id=f"p{i}", prompt=prompt, hack=hack, clean=clean, tags=("run_tests",)))
    return out


def fake_basis(dim_by_module: dict[str, int]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {m: extract.haar_rows(2, d, gen) for m, d in dim_by_module.items()}


def test_cache_miss_names_each_metadata_field(tiny, tmp_path):
    model, _ = tiny
    meta = cache_meta(model, inline_pairs(), ExtractConfig(), "tiny-random-qwen3")
    expected_fields = {"format", "model_id", "pairs_sha", "k", "floor_quantile", "basis", "seed", "holdout_frac"}
    expected_fields |= {"adapter_kind", "adapter_rank", "adapter_targets", "adapter_dtype", "adapter_seed"}
    assert expected_fields <= set(meta), f"missing {expected_fields - set(meta)}"
    path = tmp_path / "b.safetensors"
    basis = fake_basis({"m.a": 16, "m.b": 8})
    write_cache(path, basis, {"n_kept": 2}, meta)
    hit = read_cache(path, meta)
    assert not isinstance(hit, str) and hit[1] == {"n_kept": 2} and torch.equal(hit[0]["m.a"], basis["m.a"])
    for field in meta:
        reason = read_cache(path, meta | {field: meta[field] + "x"})
        assert isinstance(reason, str) and reason.startswith(f"{field}:"), (field, reason)
    assert read_cache(tmp_path / "absent.safetensors", meta) == "no cache file"


def test_load_or_extract_hit_miss_and_corrupt(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    calls = []
    dims = {m: d.numel() for m, (d, _) in knobs(model).items()}

    def fake_extract(model, tokenizer, pairs, cfg):
        calls.append(cfg)
        return fake_basis(dims), {"calls": len(calls)}

    monkeypatch.setattr(extract, "extract_basis", fake_extract)
    pairs, cfg = inline_pairs(), ExtractConfig()
    lines, sink = capture_logs()
    try:
        load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
        _, report = load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
        assert len(calls) == 1 and report == {"calls": 1}, "second call should be a HIT"
        changes = {
            "k": dict(cfg=ExtractConfig(k=3)),
            "floor_quantile": dict(cfg=ExtractConfig(k=3, floor_quantile=0.5)),
            "seed": dict(cfg=ExtractConfig(k=3, floor_quantile=0.5, seed=1)),
            "holdout_frac": dict(cfg=ExtractConfig(k=3, floor_quantile=0.5, seed=1, holdout_frac=0.5)),
        }
        for field, change in changes.items():  # each config differs from the previous one in `field` only
            n_before = len(calls)
            load_or_extract(model, tok, pairs, change["cfg"], tmp_path, "tiny-random-qwen3")
            misses = [line for line in lines if "MISS" in line]
            # the seed names its own file (seeds of a sweep do not evict each other): a new seed finds no file
            reason = "(no cache file)" if field == "seed" else f"({field}:"
            assert len(calls) == n_before + 1 and reason in misses[-1], (field, misses[-1:])
        n_before = len(calls)
        load_or_extract(model, tok, pairs[:-1], cfg, tmp_path, "tiny-random-qwen3")
        assert len(calls) == n_before + 1 and any("pairs_sha:" in line for line in lines if "MISS" in line)
        path = cache_path(tmp_path, "tiny-random-qwen3", "real")
        path.write_bytes(b"\x00garbage" * 10)
        load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
        assert len(calls) == n_before + 2 and any(l.startswith("WARNING") and "corrupt" in l for l in lines)
        load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
        assert len(calls) == n_before + 2, "the re-extracted file is a HIT again"
        # A file that loads but whose rows are not orthonormal is corrupt too.
        doubled = {m: 2 * V for m, V in fake_basis(dims).items()}
        write_cache(path, doubled, {}, cache_meta(model, pairs, cfg, "tiny-random-qwen3"))
        load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
        assert len(calls) == n_before + 3
        # Each basis kind has its own file: a placebo does not evict the real basis.
        load_or_extract(model, tok, pairs, ExtractConfig(basis="random"), tmp_path, "tiny-random-qwen3")
        load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
        assert len(calls) == n_before + 4
    finally:
        logger.remove(sink)


# ── real model ─────────────────────────────────────────────────────────────────────────────────────


def test_batched_pair_grads_equal_one_backward_per_sequence(tiny):
    model, tok = tiny
    pairs = inline_pairs(5)
    ks = knobs(model)
    assert len({len(encode(tok, p, "hack")[0]) for p in pairs}) == 5, "want mixed lengths in a batch"
    for side in ("hack", "clean"):
        G = pair_grads(model, tok, pairs, side, batch_size=3)  # a full batch and a ragged one
        for i, pair in enumerate(pairs):
            ids, n_prompt = encode(tok, pair, side)
            mask = torch.zeros(len(ids))
            mask[n_prompt:] = 1
            model.zero_grad()
            x = torch.tensor([ids])
            completion_nll(model(x).logits[0], x[0], mask).backward()
            for m, (d, _) in ks.items():
                torch.testing.assert_close(G[m][i], d.grad.reshape(-1), atol=1e-6, rtol=1e-4)
    model.zero_grad()


def test_end_to_end_extraction_placebos_and_cache(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    pairs = inline_pairs(8)
    cfg = ExtractConfig(k=2, holdout_frac=0.25)
    basis, report = load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
    dims = {m: d.numel() for m, (d, _) in knobs(model).items()}
    assert basis and report["n_kept"] == len(basis) and report["n_train"] == 6 and report["n_heldout"] == 2
    for m, V in basis.items():
        assert V.shape[1] == dims[m] and 1 <= V.shape[0] <= 2 and V.dtype == torch.float32
        torch.testing.assert_close(V @ V.T, torch.eye(len(V)), atol=1e-5, rtol=0)
    assert report["validation"]["n_modules"] == len(basis)
    print(f"\ntiny e2e: {len(basis)}/{len(dims)} modules, held-out median {report['validation']['median']:.3f}")

    def no_grads(*a, **k):
        raise AssertionError("a cache hit must not compute gradients")

    monkeypatch.setattr(extract, "pair_grads", no_grads)
    again, _ = load_or_extract(model, tok, pairs, cfg, tmp_path, "tiny-random-qwen3")
    assert all(torch.equal(again[m], basis[m]) for m in basis)
    monkeypatch.undo()

    for kind in BASIS_KINDS[1:]:
        placebo, rep = extract.extract_basis(model, tok, pairs, ExtractConfig(k=2, holdout_frac=0.25, basis=kind))
        assert {m: len(V) for m, V in placebo.items()} == {m: len(V) for m, V in basis.items()}, kind
        assert rep["validation_real"]["median"] == pytest.approx(report["validation"]["median"])
        for m, V in placebo.items():
            torch.testing.assert_close(V @ V.T, torch.eye(len(V)), atol=1e-5, rtol=0)
            overlap = torch.linalg.svdvals(V @ basis[m].T)  # cosines of the principal angles between the spans
            if kind == "shuffled":  # documented caveat: per-pair swaps leave span(V) unchanged
                assert overlap.min() > 0.999, (m, overlap)
            else:
                assert overlap.max() < 0.999, (kind, m, overlap)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
