"""Remove the hack-ward component of each deployed knob's gradient (erase), or move it to the quarantine (route).

Per module, V [k, dim] holds orthonormal rows oriented so that +V is hack-ward *in gradient space*: V came
from grad NLL(hack) - grad NLL(clean), so a gradient with c = V g > 0 has descent step -g that raises the
hack completion's likelihood relative to the clean one. `project_one` is the reference formula:

    c = V g;  c_used = relu(c) (one_sided) | c (no_gate) | 2c (reverse)
    removed = c_used @ V;  g' = g - removed;  optionally g' *= |g| / |g'|
    cin = |relu(c)| / |g|;  cout = |relu(V g')| / |g'|      (relu before aggregating, everywhere)

`Projector` applies it to every module at once: modules are grouped by knob size, V is stacked per group with k
padded by zero rows (a zero row has c = 0, so it removes nothing and adds nothing to cin/cout).

Arms: `none` measures only; `erase` writes g' into the deployed grad; `route` also sets the quarantine's grad
to `removed`. cout ~ 0 under one_sided is an arithmetic identity, not a result.

The Adam bypass: AdamW steps on its moments, so a projected gradient can still give a hack-ward *update*.
`UpdateProjector` projects the realised parameter change instead (exact), and measures `cout_update` on it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

GATES = ("one_sided", "no_gate", "reverse")
ARMS = ("none", "erase", "route")
_TINY = 1e-30  # guards x / |g| when |g| = 0 (the ratio is then reported as 0)


def _check(gate: str) -> None:
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")


def project_one(
    g: Float[Tensor, " dim"],
    V: Float[Tensor, "k dim"],
    gate: str = "one_sided",
    preserve_magnitude: bool = False,
) -> tuple[Float[Tensor, " dim"], Float[Tensor, " dim"], Float[Tensor, ""], Float[Tensor, ""]]:
    """(g', removed, cin, cout) for one module: the issue's formulas, written out literally (the reference)."""
    _check(gate)
    c = V @ g
    c_used = {"one_sided": torch.relu(c), "no_gate": c, "reverse": 2 * c}[gate]
    removed = c_used @ V
    g_proj = g - removed
    if preserve_magnitude:
        g_proj = g_proj * (g.norm() / g_proj.norm().clamp_min(_TINY))
    cin = torch.relu(c).norm() / g.norm().clamp_min(_TINY)
    cout = torch.relu(V @ g_proj).norm() / g_proj.norm().clamp_min(_TINY)
    return g_proj, removed, cin, cout


def project_batch(
    G: Float[Tensor, "m dim"],
    V: Float[Tensor, "m k dim"],
    gate: str = "one_sided",
    preserve_magnitude: bool = False,
) -> tuple[
    Float[Tensor, "m dim"], Float[Tensor, "m dim"], Float[Tensor, " m"], Float[Tensor, " m"], Bool[Tensor, " m"]
]:
    """`project_one` for m modules of equal size at once (zero rows of V are padding); also `fired` per module."""
    _check(gate)
    # bmm rather than einsum: this runs every step, and on small models the per-op overhead dominates
    c = torch.bmm(V, G[:, :, None])[:, :, 0]
    hackward = torch.relu(c)
    c_used = hackward if gate == "one_sided" else c if gate == "no_gate" else 2 * c
    removed = torch.bmm(c_used[:, None, :], V)[:, 0, :]
    G_proj = G - removed
    g_norm = G.norm(dim=1)
    if preserve_magnitude:
        G_proj = G_proj * (g_norm / G_proj.norm(dim=1).clamp_min(_TINY))[:, None]
    cin = hackward.norm(dim=1) / g_norm.clamp_min(_TINY)
    c_after = torch.bmm(V, G_proj[:, :, None])[:, :, 0]
    cout = torch.relu(c_after).norm(dim=1) / G_proj.norm(dim=1).clamp_min(_TINY)
    return G_proj, removed, cin, cout, (hackward > 0).any(dim=1)


class _Group:
    """Modules whose knobs have the same numel (and device): V stacked [m, k_max, dim], zero rows as padding."""

    def __init__(self, names: list[str], basis: Mapping[str, Tensor], device: torch.device):
        self.names = names
        k_max, dim = max(basis[n].shape[0] for n in names), basis[names[0]].shape[1]
        self.V = torch.zeros(len(names), k_max, dim, device=device)
        for i, n in enumerate(names):
            self.V[i, : basis[n].shape[0]] = basis[n].to(device=device, dtype=torch.float32)


def _groups(shapes: Mapping[str, tuple[int, torch.device]], basis: Mapping[str, Tensor]) -> list[_Group]:
    """Group the modules that have a basis by (numel, device); check each basis against its knob's numel."""
    unknown = sorted(set(basis) - set(shapes))
    if unknown:
        raise ValueError(f"basis has modules with no knob: {unknown[:4]} ({len(unknown)} in all)")
    by_key: dict[tuple[int, torch.device], list[str]] = {}
    for name in basis:
        numel, device = shapes[name]
        V = basis[name]
        if V.ndim != 2 or V.shape[1] != numel or V.shape[0] < 1:
            raise ValueError(f"basis[{name!r}] has shape {tuple(V.shape)}; expected [k>=1, {numel}] (knob numel)")
        by_key.setdefault((numel, device), []).append(name)
    return [_Group(names, basis, device) for (_, device), names in by_key.items()]


def _summary(cin: list[Tensor], cout: list[Tensor], fired: list[Tensor], removed: list[Tensor]) -> dict[str, float]:
    """Means over modules (and the total removed norm), read back in one device sync."""
    if not cin:
        return {"cin": 0.0, "cout": 0.0, "fired": 0.0, "removed_norm": 0.0, "n_modules": 0.0}
    dev = cin[0].device  # groups on several devices (a sharded model) are gathered on the first one
    ci, co = torch.cat([c.to(dev) for c in cin]), torch.cat([c.to(dev) for c in cout])
    fi = torch.cat([f.to(dev) for f in fired]).float()
    rn = torch.stack([r.square().sum().to(dev) for r in removed]).sum().sqrt()
    vals = torch.stack([ci.mean(), co.mean(), fi.mean(), rn]).tolist()
    return dict(zip(("cin", "cout", "fired", "removed_norm"), vals)) | {"n_modules": float(ci.numel())}


class Projector:
    """Project the deployed knobs' .grad against `basis`, vectorised over modules. Build once, call every step.

    Modules without a basis (under the noise floor) are left alone. In `route`, the quarantine's grad is *set*
    to `removed` (not added to): the quarantine sits in the same forward sum (B + B_hack), so backward has
    already handed it the full gradient, and training it on that would undo the routing. For the same reason,
    quarantines of modules without a basis get grad None (no step, no weight decay) in `route`.
    """

    def __init__(
        self,
        knobs: Mapping[str, tuple[nn.Parameter, nn.Parameter]],
        basis: Mapping[str, Tensor],
        gate: str = "one_sided",
        preserve_magnitude: bool = False,
    ):
        _check(gate)
        self.knobs, self.gate, self.preserve_magnitude = knobs, gate, preserve_magnitude
        self.groups = _groups({n: (d.numel(), d.device) for n, (d, _) in knobs.items()}, basis)

    def _run(self, grads: Mapping[str, Tensor | None], g: _Group):
        missing = [n for n in g.names if grads.get(n) is None]
        if missing:
            raise ValueError(f"no gradient for module(s) with a basis: {missing[:4]}; run backward first")
        G = torch.stack([grads[n].reshape(-1) for n in g.names]).float()
        return project_batch(G, g.V, self.gate, self.preserve_magnitude)

    @torch.no_grad()
    def measure(self, grads: Mapping[str, Tensor | None]) -> dict[str, float]:
        """Metrics of a {module: grad} dict, touching nothing (arm `none`; or the teacher part of a batch).

        The grads stay as they are, so cout = cin; removed_norm is what the projection would remove.
        """
        cin, fired, rem = [], [], []
        for g in self.groups:
            _, removed, ci, _, fi = self._run(grads, g)
            cin.append(ci), fired.append(fi), rem.append(removed)
        return _summary(cin, cin, fired, rem)

    @torch.no_grad()
    def module_cosines(self, grads: Mapping[str, Tensor | None]) -> dict[str, float]:
        """Per module with a basis: the signed cosine of its gradient with span(V), (|relu(V g)| - |relu(-V g)|) / |g|
        (as the held-out validation measures pairs; cos(g, v) when k = 1). For the per-run distribution plot."""
        out = {}
        for g in self.groups:
            G = torch.stack([grads[n].reshape(-1) for n in g.names]).float()
            c = torch.bmm(g.V, G[:, :, None])[:, :, 0]
            signed = (torch.relu(c).norm(dim=1) - torch.relu(-c).norm(dim=1)) / G.norm(dim=1).clamp_min(_TINY)
            out.update(zip(g.names, signed.tolist()))
        return out

    @torch.no_grad()
    def __call__(self, arm: str) -> dict[str, float]:
        """Project the deployed grads in place per `arm`; metrics: mean cin, cout, fired, removed_norm."""
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
        if arm == "none":
            return self.measure({n: d.grad for n, (d, _) in self.knobs.items()})
        cin, cout, fired, rem = [], [], [], []
        for g in self.groups:
            G_proj, removed, ci, co, fi = self._run({n: self.knobs[n][0].grad for n in g.names}, g)
            # Rebinding .grad to a view of the result costs no copy (fp32 knobs) and no kernel launch per module.
            for n, g_row, r_row in zip(g.names, G_proj.unbind(0), removed.unbind(0)):
                deployed, quarantine = self.knobs[n]
                deployed.grad = g_row.view(deployed.shape).to(deployed.dtype)
                if arm == "route":
                    quarantine.grad = r_row.view(quarantine.shape).to(quarantine.dtype)
            cin.append(ci), cout.append(co), fired.append(fi), rem.append(removed)
        if arm == "route":
            with_basis = {n for g in self.groups for n in g.names}
            for n, (_, quarantine) in self.knobs.items():
                if n not in with_basis:
                    quarantine.grad = None
        return _summary(cin, cout, fired, rem)


class UpdateProjector:
    """Make the realised change of each deployed knob free of its hack-ward component (the Adam bypass fix).

        up = UpdateProjector(knobs, basis, gate)
        up.before_step(); opt.step(); metrics = up.after_step(project=True)

    after_step takes delta = p_new - p_old per module, projects u = -delta (the step read as a gradient, so
    that +V is hack-ward as for gradients) with the same gate, and writes p_old - u' (= p_new + removed).
    `cout_update` = |relu(V (-delta))| / |delta| on the change that stays (after any projection): a hack-ward
    step has V delta < 0. project=False only measures. Projecting the update is exact whatever the optimizer
    did (up to the knob dtype's rounding: ~1e-3 relative in bf16); purging Adam's moments inside span(V) is
    not (its second moment is per-coordinate, and span(V) is not axis-aligned), so it is not offered.
    """

    def __init__(
        self,
        knobs: Mapping[str, tuple[nn.Parameter, nn.Parameter]],
        basis: Mapping[str, Tensor],
        gate: str = "one_sided",
    ):
        _check(gate)
        self.gate = gate
        self.params = {n: d for n, (d, _) in knobs.items()}
        self.groups = _groups({n: (p.numel(), p.device) for n, p in self.params.items()}, basis)
        self._old: list[Tensor] | None = None

    def _stack(self, g: _Group) -> Float[Tensor, "m dim"]:
        return torch.stack([self.params[n].detach().reshape(-1) for n in g.names]).float()

    @torch.no_grad()
    def before_step(self) -> None:
        self._old = [self._stack(g) for g in self.groups]

    @torch.no_grad()
    def after_step(self, project: bool = True) -> dict[str, float]:
        if self._old is None:
            raise RuntimeError("UpdateProjector.after_step() without before_step() since the last step")
        cin, cout, fired, rem = [], [], [], []
        for g, old in zip(self.groups, self._old):
            u = old - self._stack(g)  # = -delta: the step read as a gradient
            _, removed, ci, co, fi = project_batch(u, g.V, self.gate)
            if project:
                # p_old - (u - removed) = p_new + removed: a module where nothing fired keeps p_new bit for bit.
                for n, r_row in zip(g.names, removed.unbind(0)):
                    p = self.params[n]
                    p.add_(r_row.view(p.shape).to(p.dtype))
            else:
                co, removed = ci, torch.zeros_like(removed)  # nothing written: the change is the optimizer's own
            cin.append(ci), cout.append(co), fired.append(fi), rem.append(removed)
        self._old = None
        s = _summary(cin, cout, fired, rem)
        return {f"{k}_update": s[k] for k in ("cin", "cout", "fired")} | {"removed_update_norm": s["removed_norm"]}
