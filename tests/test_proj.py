"""Unit tests of proj.py: the formulas on hand-made numbers, batching == the per-module reference, input checks."""

import pytest
import torch
from torch import nn

from projected_grpo.proj import GATES, Projector, UpdateProjector, project_batch, project_one


def haar(k: int, dim: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, k, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()


def fake_knobs(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, tuple[nn.Parameter, nn.Parameter]]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        d, q = nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(shape))
        d.grad, q.grad = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        out[name] = (d, q)
    return out


def test_project_one_by_hand():
    # V = e0, e1 in R^3; g = (2, -1, 5): c = (2, -1).
    V = torch.eye(3)[:2]
    g = torch.tensor([2.0, -1.0, 5.0])
    gp, removed, cin, cout = project_one(g, V, "one_sided")
    assert torch.equal(removed, torch.tensor([2.0, 0.0, 0.0]))
    assert torch.equal(gp, torch.tensor([0.0, -1.0, 5.0]))
    assert cin.item() == pytest.approx(2 / g.norm().item())
    assert cout.item() == 0.0  # V g' = (0, -1): nothing hack-ward left
    gp, removed, _, _ = project_one(g, V, "no_gate")
    assert torch.equal(gp, torch.tensor([0.0, 0.0, 5.0]))
    gp, _, _, cout = project_one(g, V, "reverse")
    assert torch.equal(gp, torch.tensor([-2.0, 1.0, 5.0]))
    assert cout.item() == pytest.approx(1 / gp.norm().item())  # relu(V g') = (0, 1)


def test_project_one_zero_gradient_is_guarded():
    gp, removed, cin, cout = project_one(torch.zeros(5), haar(2, 5), "one_sided", preserve_magnitude=True)
    assert torch.isfinite(gp).all() and gp.abs().max() == 0 and cin.item() == 0 and cout.item() == 0


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("preserve", [False, True])
def test_batch_matches_reference_with_padded_rows(gate, preserve):
    dim, ks = 12, [3, 1, 2]
    Vs = [haar(k, dim, seed=i) for i, k in enumerate(ks)]
    V = torch.zeros(len(ks), max(ks), dim)
    for i, v in enumerate(Vs):
        V[i, : len(v)] = v
    G = torch.randn(len(ks), dim, generator=torch.Generator().manual_seed(1))
    Gp, R, cin, cout, fired = project_batch(G, V, gate, preserve)
    for i, v in enumerate(Vs):
        gp, r, ci, co = project_one(G[i], v, gate, preserve)
        torch.testing.assert_close(Gp[i], gp)
        torch.testing.assert_close(R[i], r)
        torch.testing.assert_close(cin[i], ci)
        torch.testing.assert_close(cout[i], co, atol=1e-6, rtol=1e-5)
        assert bool(fired[i]) == bool((v @ G[i] > 0).any())


def test_projector_handles_vector_and_matrix_knobs_and_skips_modules_without_basis():
    knobs = fake_knobs({"a": (6, 2), "b": (6, 2), "c": (5,), "d": (3, 3)})
    before = {n: d.grad.clone() for n, (d, _) in knobs.items()}
    basis = {"a": haar(2, 12, 1), "b": haar(1, 12, 2), "c": haar(3, 5, 3)}  # "d": no basis
    m = Projector(knobs, basis, "no_gate")("erase")
    assert m["n_modules"] == 3 and 0 < m["cin"] < 1 and m["cout"] < 1e-6
    for n in basis:
        d = knobs[n][0]
        assert d.grad.shape == d.shape
        assert (basis[n] @ d.grad.reshape(-1)).abs().max() < 1e-6
        assert not torch.equal(d.grad, before[n])
    assert torch.equal(knobs["d"][0].grad, before["d"])


def test_none_arm_and_measure_touch_nothing():
    knobs = fake_knobs({"a": (4, 2), "b": (8,)})
    basis = {"a": haar(2, 8, 1), "b": haar(2, 8, 2)}
    before = {n: (d.grad.clone(), q.grad.clone()) for n, (d, q) in knobs.items()}
    p = Projector(knobs, basis)
    m_none = p("none")
    m_meas = p.measure({n: d.grad for n, (d, _) in knobs.items()})
    for n, (d, q) in knobs.items():
        assert torch.equal(d.grad, before[n][0]) and torch.equal(q.grad, before[n][1])
    assert m_none == m_meas and m_none["cin"] > 0
    assert m_none["cout"] == pytest.approx(m_none["cin"])  # nothing removed: before == after


def test_route_clears_quarantine_grads_of_modules_without_basis():
    knobs = fake_knobs({"a": (4, 2), "b": (4, 2)})
    Projector(knobs, {"a": haar(2, 8)})("route")
    assert knobs["a"][1].grad is not None and knobs["b"][1].grad is None
    assert knobs["b"][0].grad is not None  # the deployed grad of a module without basis stays


def test_bf16_knobs_keep_their_dtype():
    d, q = nn.Parameter(torch.zeros(4, 2, dtype=torch.bfloat16)), nn.Parameter(torch.zeros(4, 2, dtype=torch.bfloat16))
    d.grad = torch.randn(4, 2).bfloat16()
    Projector({"a": (d, q)}, {"a": haar(2, 8)})("route")
    assert d.grad.dtype == torch.bfloat16 and q.grad.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "basis, match",
    [
        ({"zz": haar(1, 8)}, "no knob"),
        ({"a": haar(1, 9)}, "expected"),
        ({"a": torch.zeros(0, 8)}, "expected"),
        ({"a": torch.zeros(8)}, "expected"),
    ],
)
def test_bad_basis_is_named(basis, match):
    with pytest.raises(ValueError, match=match):
        Projector(fake_knobs({"a": (4, 2)}), basis)


def test_bad_arm_gate_and_missing_grad():
    knobs = fake_knobs({"a": (4, 2)})
    basis = {"a": haar(1, 8)}
    with pytest.raises(ValueError, match="arm"):
        Projector(knobs, basis)("erase_all")
    with pytest.raises(ValueError, match="gate"):
        Projector(knobs, basis, gate="two_sided")
    knobs["a"][0].grad = None
    with pytest.raises(ValueError, match="no gradient"):
        Projector(knobs, basis)("erase")


def test_update_projector_needs_before_step_and_keeps_unfired_modules_bit_exact():
    knobs = fake_knobs({"a": (4, 2)})
    V = haar(1, 8)
    up = UpdateProjector(knobs, {"a": V})
    with pytest.raises(RuntimeError, match="before_step"):
        up.after_step()
    p = knobs["a"][0]
    up.before_step()
    with torch.no_grad():  # a step that moves away from the hack direction: V delta > 0
        p.add_(V[0].view(4, 2) * 0.5 + 0.0)
    expected = p.detach().clone()
    m = up.after_step(project=True)
    assert torch.equal(p.detach(), expected) and m["fired_update"] == 0 and m["cout_update"] == 0
