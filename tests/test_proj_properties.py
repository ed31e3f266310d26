"""Properties of the projection over random gradients and bases, checked through `Projector`/`UpdateProjector`.

Each gate's invariant is stated in terms of the coordinates c = V g (rows of V orthonormal) and the part of g
outside span(V), so a bug copied into both the reference (`project_one`) and the batched path still fails here:

    one_sided: c' = min(c, 0) * s       no_gate: c' = 0        reverse: c' = -c
    outside span(V): g'_perp = s * g_perp;  s = 1, or |g| / |g'| with preserve_magnitude (|g'| = |g|)
    route: quarantine grad = the removed part, exactly, and it lies in span(V); deployed + quarantine = g (s = 1)

Draws mix knob shapes (matrix and vector), k per module (the padded path), hack-dominated and anti-hack
gradients, and modules without a basis (left untouched).
"""

import pytest
import torch
from torch import nn

from projected_grpo.proj import GATES, Projector, UpdateProjector

SHAPES = {"attn.q": (12, 4), "attn.k": (12, 4), "mlp.up": (20, 4), "mlp.down": (8, 4), "norm.s": (16,), "free": (6, 4)}
N_DRAWS = 24


def draw(seed: int):
    """(knobs with random deployed and quarantine grads, basis on all modules but "free", original grads)."""
    gen = torch.Generator().manual_seed(seed)
    knobs, basis, g0 = {}, {}, {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        dim = torch.Size(shape).numel()
        d, q = nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(shape))
        scale = 10 ** (torch.rand(1, generator=gen).item() * 4 - 2)  # 0.01 .. 100: ratios must be scale-free
        g = torch.randn(dim, generator=gen) * scale
        if name != "free":
            k = int(torch.randint(1, 4, (1,), generator=gen))
            V = torch.linalg.qr(torch.randn(dim, k, generator=gen))[0].T.contiguous()
            basis[name] = V
            mix = (seed + i) % 3  # 0: hack-dominated, 1: anti-hack-dominated, 2: as drawn (mixed signs)
            if mix < 2:
                g = g + (1 if mix == 0 else -1) * 4 * scale * (torch.rand(k, generator=gen) @ V)
        d.grad, q.grad = g.view(shape).clone(), torch.randn(shape, generator=gen)
        knobs[name], g0[name] = (d, q), g
    return knobs, basis, g0


def split(V: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c = V g, the part of g outside span(V))."""
    c = V @ g
    return c, g - c @ V


def close(a, b, scale, tol=1e-5):
    assert (a - b).abs().max().item() <= tol * max(scale, 1e-12), ((a - b).abs().max().item(), scale)


@pytest.mark.parametrize("preserve", [False, True])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("arm", ["erase", "route"])
def test_each_gate_sets_the_span_coordinates_and_keeps_the_rest(arm, gate, preserve):
    for seed in range(N_DRAWS):
        knobs, basis, g0 = draw(seed)
        q0 = {n: q.grad.clone() for n, (_, q) in knobs.items()}
        m = Projector(knobs, basis, gate, preserve_magnitude=preserve)(arm)
        cins = []
        for n, (d, q) in knobs.items():
            g, gp = g0[n], d.grad.reshape(-1)
            assert d.grad.shape == d.shape
            if n not in basis:  # no basis: the deployed grad is untouched; route gives its quarantine no grad
                assert torch.equal(gp, g)
                assert q.grad is None if arm == "route" else torch.equal(q.grad, q0[n])
                continue
            V = basis[n]
            c, perp = split(V, g)
            cp, perp_p = split(V, gp)
            target = {"one_sided": torch.clamp(c, max=0), "no_gate": torch.zeros_like(c), "reverse": -c}[gate]
            unscaled = target @ V + perp
            s = (g.norm() / unscaled.norm()).item() if preserve else 1.0
            close(cp, s * target, g.norm().item())
            close(perp_p, s * perp, g.norm().item())
            if preserve:
                assert gp.norm().item() == pytest.approx(g.norm().item(), rel=1e-5)
            if gate == "one_sided":  # no module keeps a positive component along any axis of V
                assert (cp <= 1e-5 * g.norm()).all()
            removed = (c - target) @ V
            if arm == "route":  # exactly the removed part, in span(V)
                close(q.grad.reshape(-1), removed, g.norm().item())
                if not preserve:
                    close(d.grad.reshape(-1) + q.grad.reshape(-1), g, g.norm().item())
            else:
                assert torch.equal(q.grad, q0[n]), "erase never touches the quarantine"
            cins.append((torch.relu(c).norm() / g.norm()).item())
        assert m["cin"] == pytest.approx(sum(cins) / len(cins), rel=1e-4, abs=1e-7)
        assert m["n_modules"] == len(basis)
        if gate == "one_sided":
            assert m["cout"] < 1e-5


def test_measure_and_none_report_the_hackward_share_and_touch_nothing():
    for seed in range(N_DRAWS):
        knobs, basis, g0 = draw(seed)
        m = Projector(knobs, basis)("none")
        assert all(torch.equal(d.grad.reshape(-1), g0[n]) for n, (d, _) in knobs.items())
        cins = [(torch.relu(V @ g0[n]).norm() / g0[n].norm()).item() for n, V in basis.items()]
        fired = [bool((V @ g0[n] > 0).any()) for n, V in basis.items()]
        assert m["cin"] == pytest.approx(sum(cins) / len(cins), rel=1e-4, abs=1e-7) and m["cout"] == pytest.approx(m["cin"])
        assert m["fired"] == pytest.approx(sum(fired) / len(fired))


@pytest.mark.parametrize("gate", ["one_sided", "no_gate"])
def test_update_projection_leaves_no_hackward_step(gate):
    """A step is hack-ward along v when V delta < 0 (it descends a gradient with V g > 0). After the update
    projection: one_sided keeps V delta' = max(V delta, 0), no_gate gives V delta' = 0; the rest of the step
    is the optimizer's own, bit for bit outside span(V)."""
    for seed in range(N_DRAWS):
        knobs, basis, g0 = draw(seed)
        up = UpdateProjector(knobs, basis, gate)
        before = {n: d.detach().clone().reshape(-1) for n, (d, _) in knobs.items()}
        up.before_step()
        with torch.no_grad():  # the "optimizer": a plain SGD step on the drawn gradients
            for n, (d, _) in knobs.items():
                d.sub_(0.1 * g0[n].view_as(d))
        m = up.after_step(project=True)
        for n, (d, _) in knobs.items():
            delta, raw = d.detach().reshape(-1) - before[n], -0.1 * g0[n]
            if n not in basis:
                assert torch.equal(delta, raw)
                continue
            c, perp = split(basis[n], raw)
            cp, perp_p = split(basis[n], delta)
            scale = raw.norm().item()
            close(cp, torch.clamp(c, min=0) if gate == "one_sided" else torch.zeros_like(c), scale)
            close(perp_p, perp, scale)
        assert m["cout_update"] < 1e-5
