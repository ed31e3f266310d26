"""Gate: the projection does exactly what the method claims, on random gradients and on the real adapters.

- removed lies in span(V); no_gate leaves V g' ~ 0; one_sided never increases a hack-ward coordinate;
  reverse flips V g; preserve_magnitude keeps |g|.
- route puts exactly `removed` into the quarantine grad (and the deployed grad becomes g - removed), on the
  lora and svd adapters of the tiny Qwen3 after a real backward, with the base in fp32 and in bf16; erase on a
  bf16 base leaves the basis component at fp32 tolerance (the knobs and their grads stay fp32).
- The Adam bypass: over 20 AdamW steps on gradients with a hack-ward component, projecting only the gradient
  still lets the parameters move along V; projecting the update (UpdateProjector) leaves < 1e-6 relative.
"""

import sys

import pytest
import torch
from torch import nn

from projected_grpo.adapter import AdapterConfig, knobs, wrap
from projected_grpo.model import load_model
from projected_grpo.proj import GATES, Projector, UpdateProjector, project_batch

N_DRAWS, DIM, K = 256, 96, 4


def haar_stack(m: int, k: int, dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(m, dim, k, generator=torch.Generator().manual_seed(seed)))
    return q.transpose(1, 2).contiguous()  # [m, k, dim], orthonormal rows per module


def draws(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Many random (g, V) with mixed-sign coordinates, some hack-dominated, one exactly zero gradient."""
    gen = torch.Generator().manual_seed(seed)
    V = haar_stack(N_DRAWS, K, DIM, seed)
    G = torch.randn(N_DRAWS, DIM, generator=gen) * torch.rand(N_DRAWS, 1, generator=gen) * 10
    G[: N_DRAWS // 4] += 5 * torch.einsum("mk,mkd->md", torch.rand(N_DRAWS // 4, K, generator=gen), V[: N_DRAWS // 4])
    G[-1] = 0
    return G, V


@pytest.mark.parametrize("gate", GATES)
def test_removed_lies_in_span_of_V(gate):
    G, V = draws()
    _, R, _, _, _ = project_batch(G, V, gate)
    in_span = torch.einsum("mk,mkd->md", torch.einsum("mkd,md->mk", V, R), V)
    assert (R - in_span).norm(dim=1).max() <= 1e-5 * R.norm(dim=1).max()


def test_no_gate_zeroes_the_span():
    G, V = draws(1)
    Gp, _, cin, cout, _ = project_batch(G, V, "no_gate")
    assert torch.einsum("mkd,md->mk", V, Gp).abs().max() <= 1e-5 * G.norm(dim=1).max()
    assert cout.max() < 1e-5 and cin.max() > 0.1
    assert ((G - Gp).norm(dim=1) <= G.norm(dim=1) + 1e-5).all()  # an orthogonal projection never grows g


def test_one_sided_never_increases_a_hackward_coordinate():
    G, V = draws(2)
    Gp, _, _, cout, fired = project_batch(G, V, "one_sided")
    c, cp = torch.einsum("mkd,md->mk", V, G), torch.einsum("mkd,md->mk", V, Gp)
    tol = 1e-5 * G.norm(dim=1, keepdim=True)
    assert (cp <= c + tol).all() and (cp <= tol).all()  # c' = min(c, 0)
    assert ((cp - c).abs() <= tol)[c < 0].all()  # anti-hack coordinates are kept
    assert cout.max() < 1e-5 and fired[: N_DRAWS // 4].float().mean() > 0.9  # hack-dominated draws fire


def test_reverse_flips_the_span_and_preserve_magnitude_keeps_norm():
    G, V = draws(3)
    Gp, _, _, _, _ = project_batch(G, V, "reverse")
    c, cp = torch.einsum("mkd,md->mk", V, G), torch.einsum("mkd,md->mk", V, Gp)
    torch.testing.assert_close(cp, -c, atol=1e-4, rtol=1e-4)
    for gate in GATES:
        Gp, _, _, _, _ = project_batch(G, V, gate, preserve_magnitude=True)
        torch.testing.assert_close(Gp.norm(dim=1), G.norm(dim=1), atol=1e-4, rtol=1e-5)


def real_grads(kind: str, dtype: str, svd_dir) -> dict:
    """Knobs of the tiny Qwen3 (base in `dtype`) moved off zero, after one real backward."""
    model, tok = load_model("tiny-random-qwen3", device="cpu", dtype=dtype)
    wrap(model, AdapterConfig(kind=kind, rank=4, svd_cache_dir=str(svd_dir)))
    ks = knobs(model)
    with torch.no_grad():  # move off the init so the gradients are generic
        for d, _ in ks.values():
            d.normal_(0, 0.05)
    ids = torch.randint(0, len(tok), (2, 24), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    assert {p.dtype for p in model.model.embed_tokens.parameters()} == {dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype]}
    return ks


@pytest.mark.parametrize("kind", ["lora", "svd"])
@pytest.mark.parametrize("gate", ["no_gate", "one_sided"])
def test_erase_on_a_bf16_base_removes_the_basis_component_to_fp32_tolerance(kind, gate, tmp_path):
    ks = real_grads(kind, "bf16", tmp_path)
    basis = {n: haar_stack(1, 2, d.numel(), seed=i)[0] for i, (n, (d, _)) in enumerate(sorted(ks.items()))}
    g0 = {n: d.grad.detach().clone().reshape(-1).float() for n, (d, _) in ks.items()}
    assert Projector(ks, basis, gate)("erase")["fired"] > 0
    for n, (d, _) in ks.items():
        c = basis[n] @ d.grad.reshape(-1).float()
        left = c.abs() if gate == "no_gate" else torch.relu(c)  # one_sided keeps the non-hack-ward side
        assert (left <= 1e-6 * g0[n].norm()).all(), f"{n}: {left.max() / g0[n].norm():.1e} of |g| left along V"


@pytest.mark.parametrize("kind", ["lora", "svd"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_route_on_real_adapters_puts_exactly_removed_in_quarantine(kind, dtype, tmp_path):
    ks = real_grads(kind, dtype, tmp_path)
    names = sorted(ks)
    basis = {n: haar_stack(1, 2, ks[n][0].numel(), seed=i)[0] for i, n in enumerate(names[::2])}  # half the modules
    g0 = {n: d.grad.detach().clone() for n, (d, _) in ks.items()}
    metrics = Projector(ks, basis, "one_sided")("route")
    assert metrics["n_modules"] == len(basis) and metrics["fired"] > 0 and metrics["removed_norm"] > 0
    for n, (d, q) in ks.items():
        if n not in basis:
            assert torch.equal(d.grad, g0[n]) and q.grad is None
            continue
        g, V = g0[n].reshape(-1), basis[n]
        removed = torch.relu(V @ g) @ V
        torch.testing.assert_close(q.grad.reshape(-1), removed, atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(d.grad.reshape(-1) + q.grad.reshape(-1), g, atol=1e-7, rtol=1e-5)  # exact split
        assert (V @ d.grad.reshape(-1) <= 1e-6 * g.norm()).all()


def adam_run(update_projection: bool, gate: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """20 AdamW steps on B [16, 4] with gradients = noise + a hack-ward part; the gradient is always projected."""
    gen = torch.Generator().manual_seed(seed)
    B, B_hack = nn.Parameter(torch.randn(16, 4, generator=gen) * 0.1), nn.Parameter(torch.zeros(16, 4))
    ks = {"m": (B, B_hack)}
    V = haar_stack(1, 2, B.numel(), seed)[0]
    opt = torch.optim.AdamW([B], lr=1e-2, weight_decay=0.1)
    proj, up = Projector(ks, {"m": V}, gate), UpdateProjector(ks, {"m": V}, gate)
    B0, logs = B.detach().clone(), []
    for _ in range(20):
        hack = 3 * torch.rand(2, generator=gen) @ V  # c > 0 on both axes: hack-ward
        B.grad = (torch.randn(B.numel(), generator=gen) + hack).view_as(B)
        proj("erase")
        up.before_step()
        opt.step()
        logs.append(up.after_step(project=update_projection))
    return (B.detach() - B0).reshape(-1), V, logs


@pytest.mark.parametrize("gate", ["no_gate", "one_sided"])
def test_update_projection_closes_the_adam_bypass(gate):
    def hackward(delta, V):  # the change's component along V that counts: all of it (no_gate), -V delta > 0 (one_sided)
        c = V @ delta
        return (c if gate == "no_gate" else torch.relu(-c)).norm() / delta.norm()

    delta_g, V, logs_g = adam_run(update_projection=False, gate=gate)
    delta_u, _, logs_u = adam_run(update_projection=True, gate=gate)
    leak_g, leak_u = hackward(delta_g, V).item(), hackward(delta_u, V).item()
    print(f"{gate}: realised change along V, gradient-only {leak_g:.2e}, with update projection {leak_u:.2e}")
    assert leak_g > 1e-2, "gradient-only projection should leak through AdamW's per-coordinate scaling"
    assert leak_u < 1e-6
    assert max(m["cout_update"] for m in logs_u) < 1e-5
    assert max(m["cout_update"] for m in logs_g) > 1e-2  # the metric sees the bypass when nothing stops it


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
