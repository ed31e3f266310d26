"""Adapters whose trained knob is split in two: a deployed knob and a quarantine knob deleted at deploy.

Per target `nn.Linear` (weight W [d_out, d_in], bias b), the base is frozen and kept intact:

- `lora` (default): frozen A [r, d_in] with semi-orthonormal rows, trained B and B_hack [d_out, r] (zeros).
  y = W x + b + (B + B_hack) (A x). A is fixed so the update dW = (B + B_hack) A stays *linear* in the
  knob: a hack direction extracted once in knob space stays one fixed weight-space direction.
- `svd` (AntiPaSTO-style): frozen U [d_out, r], S [r], Vh [r, d_in], the top-r SVD of W (fp32, cached on
  disk keyed by W's bytes + r); trained dS and dS_hack [r] (zeros). y = W x + b + U diag(dS + dS_hack) Vh x.
- `svd_full` (seed 004's first pass): the full SVD, r = min(d_out, d_in) *per module* (`rank` is ignored), so
  W = U diag(S) Vh and W_res = 0; the forward is rebuilt from the factors, y = U diag(S + dS + dS_hack) Vh x + b.
  Only dS (and the quarantine dS_hack) train. At dS = 0 it matches the base up to the SVD's rounding: the
  round-trip check `round_trip_diff` measures it (seed 004: max abs diff < 1e-3 on a fixed prompt).

Both knobs have the same shape, so the route quarantine is capacity-matched with the deployed knob.
Both start at zero, so a wrapped model computes exactly what the base model does until it trains (`svd_full`:
up to the reconstruction's rounding).

Dtype: knobs and fixed matrices (A; U, S, Vh) are fp32 whatever the base's dtype. A bf16 knob would round
away Adam steps smaller than 2^-8 of its value, and the projection's erase/route identities would only hold
to bf16's ~4e-3; the knobs are a few MB, so fp32 costs nothing. The low-rank term runs in fp32 on x cast up
(bf16 -> fp32 is exact) and is cast back to the base's dtype when added; autograd saves no fp32 copy of x
(A and U, Vh need no gradient), only the rank-r intermediate.

Usage:
    wrap(model, AdapterConfig("lora", rank=8))
    for name, (deployed, quarantine) in knobs(model).items(): ...   # deployed.grad is what proj.py edits
    with quarantine_ablated(model): ...   # what ships: deployed knob only
    with adapter_zeroed(model): ...       # the base model: a free reference for KL
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from loguru import logger
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from projected_grpo.files import atomic_write

ADAPTER_KINDS = ("lora", "svd", "svd_full")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KNOB_DTYPE = torch.float32  # knobs and fixed matrices, whatever the base dtype (module docstring)


@dataclass(frozen=True)
class AdapterConfig:
    kind: str = "lora"  # one of ADAPTER_KINDS
    rank: int = 8  # lora: rows of A (<= d_in); svd: top singular directions kept (<= min(d_out, d_in)); svd_full: unused
    targets: tuple[str, ...] = DEFAULT_TARGETS  # a Linear is wrapped when its name ends with ".<target>"
    seed: int = 0  # lora: seeds each module's A (mixed with the module name)
    svd_cache_dir: str = ".cache/svd"  # svd: where (U, S, Vh) per weight are cached

    def __post_init__(self):
        if self.kind not in ADAPTER_KINDS:
            raise ValueError(f"unknown adapter kind {self.kind!r}; expected one of {ADAPTER_KINDS}")
        if self.rank < 1:
            raise ValueError(f"adapter rank must be >= 1, got {self.rank}")
        if not self.targets or any(not t for t in self.targets):
            raise ValueError(f"adapter targets must be non-empty names, got {self.targets!r}")


# ---------------------------------------------------------------------------------------------------------
# Wrappers. `enabled` and `use_quarantine` are flags the context managers toggle; knob values never change.


class LoRALinear(nn.Module):
    DEPLOYED, QUARANTINE = "B", "B_hack"

    def __init__(self, base: nn.Linear, cfg: AdapterConfig, name: str):
        super().__init__()
        d_out, d_in = base.weight.shape
        w = base.weight
        self.base, self.cfg = base, cfg
        self.enabled, self.use_quarantine = True, True
        # A in fp32 from a per-module generator on CPU (reproducible across devices), fp32 like the knobs.
        # On the meta device (a skeleton for planning) there is nothing to initialise.
        A = torch.empty(cfg.rank, d_in, device="meta" if w.is_meta else "cpu")
        if not w.is_meta:
            nn.init.orthogonal_(A, generator=torch.Generator().manual_seed(_module_seed(cfg.seed, name)))
        self.register_buffer("A", A.to(w.device), persistent=False)
        self.B = nn.Parameter(torch.zeros(d_out, cfg.rank, device=w.device, dtype=KNOB_DTYPE))
        self.B_hack = nn.Parameter(torch.zeros(d_out, cfg.rank, device=w.device, dtype=KNOB_DTYPE))

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        y = self.base(x)
        if not self.enabled:
            return y
        B = self.B + self.B_hack if self.use_quarantine else self.B
        # At init B = B_hack = 0, so the added term is exactly 0 and y is bit-identical to the base output.
        return y + F.linear(F.linear(x.to(KNOB_DTYPE), self.A), B).to(y.dtype)

    def per_example_grad(self, x: Float[Tensor, "b t d_in"], dy: Float[Tensor, "b t d_out"]) -> Float[Tensor, "b d_out r"]:
        """d loss_i / d B for each sequence i, from this module's input and output gradient (y = ... + B A x)."""
        return torch.einsum("bto,btr->bor", dy.float(), F.linear(x.to(KNOB_DTYPE), self.A))

    def extra_repr(self) -> str:
        return f"rank={self.cfg.rank}, enabled={self.enabled}, use_quarantine={self.use_quarantine}"


class SVDLinear(nn.Module):
    DEPLOYED, QUARANTINE = "dS", "dS_hack"

    def __init__(self, base: nn.Linear, cfg: AdapterConfig, factors: tuple[Tensor, Tensor, Tensor]):
        super().__init__()
        w = base.weight
        self.base, self.cfg = base, cfg
        self.enabled, self.use_quarantine = True, True
        U, S, Vh = (t.to(w.device, KNOB_DTYPE) for t in factors)
        self.register_buffer("U", U, persistent=False)
        self.register_buffer("S", S, persistent=False)  # not in the forward; kept to read the spectrum
        self.register_buffer("Vh", Vh, persistent=False)
        r = U.shape[1]  # cfg.rank for svd; min(d_out, d_in) of this module for svd_full
        self.dS = nn.Parameter(torch.zeros(r, device=w.device, dtype=KNOB_DTYPE))
        self.dS_hack = nn.Parameter(torch.zeros(r, device=w.device, dtype=KNOB_DTYPE))

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        # W stays intact (no W_res = W - U S Vh), so a truncated rank adds no reconstruction error.
        y = self.base(x)
        if not self.enabled:
            return y
        dS = self.dS + self.dS_hack if self.use_quarantine else self.dS
        return y + F.linear(F.linear(x.to(KNOB_DTYPE), self.Vh) * dS, self.U).to(y.dtype)

    def per_example_grad(self, x: Float[Tensor, "b t d_in"], dy: Float[Tensor, "b t d_out"]) -> Float[Tensor, "b r"]:
        """d loss_i / d dS for each sequence i (y = ... + U diag(dS) Vh x)."""
        return torch.einsum("btr,btr->br", dy.float() @ self.U, F.linear(x.to(KNOB_DTYPE), self.Vh))

    def extra_repr(self) -> str:
        return f"rank={self.dS.numel()}, enabled={self.enabled}, use_quarantine={self.use_quarantine}"


class SVDFullLinear(SVDLinear):
    """Seed 004's AntiPaSTO wrap: the weight is *replaced* by its full SVD, y = U diag(S + dS) Vh x + b.

    Same knobs, per-example gradient and buffers as `SVDLinear` (at full rank U diag(dS) Vh x is the added
    term either way); only the forward differs: it runs through the factors, not W, so W_res = 0 is real and
    the round-trip check tests the factorisation. `base` keeps W for `adapter_zeroed` (the KL reference).
    """

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        if not self.enabled:
            return self.base(x)
        dS = self.dS + self.dS_hack if self.use_quarantine else self.dS
        return F.linear(F.linear(x, self.Vh) * (self.S + dS), self.U, self.base.bias)


WRAPPERS = (LoRALinear, SVDLinear)  # SVDFullLinear is an SVDLinear


def _module_seed(seed: int, name: str) -> int:
    # Python's hash() is salted per process; sha256 gives every run the same A for the same (seed, module).
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


# ---------------------------------------------------------------------------------------------------------
# SVD factors, cached on disk: an exact SVD of a 3072x1024 weight takes ~1 s on 2 CPU cores.


def weight_key(weight: Tensor, rank: int) -> str:
    """Cache key of the top-`rank` SVD of `weight`: sha256 of its shape, dtype and raw bytes, plus the rank."""
    w = weight.detach().contiguous().cpu()
    h = hashlib.sha256(f"{tuple(w.shape)}:{w.dtype}:".encode())
    h.update(w.view(-1).view(torch.uint8).numpy())
    return f"{h.hexdigest()[:40]}_r{rank}"


def _compute_svd(
    weight: Float[Tensor, "d_out d_in"], rank: int
) -> tuple[Float[Tensor, "d_out r"], Float[Tensor, " r"], Float[Tensor, "r d_in"]]:
    U, S, Vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)  # fp32: no bf16 SVD kernel
    return U[:, :rank].contiguous(), S[:rank].contiguous(), Vh[:rank].contiguous()


def svd_factors(
    weight: Float[Tensor, "d_out d_in"], rank: int, cache_dir: str | Path
) -> tuple[tuple[Tensor, Tensor, Tensor], bool]:
    """((U, S, Vh) in fp32 on CPU, cache_hit). A corrupt or mis-shaped cache file is recomputed with a warning."""
    path = Path(cache_dir) / f"{weight_key(weight, rank)}.safetensors"
    d_out, d_in = weight.shape
    if path.exists():
        try:
            t = load_file(path)
            shapes = (tuple(t["U"].shape), tuple(t["S"].shape), tuple(t["Vh"].shape))
            if shapes != ((d_out, rank), (rank,), (rank, d_in)):
                raise ValueError(f"shapes {shapes}")
            return (t["U"], t["S"], t["Vh"]), True
        except (SafetensorError, ValueError, KeyError, OSError) as e:
            logger.warning(f"svd cache {path} unreadable ({e}); recomputing")
    U, S, Vh = (t.cpu() for t in _compute_svd(weight, rank))
    meta = {"d_out": str(d_out), "d_in": str(d_in), "rank": str(rank)}
    atomic_write(path, lambda tmp: save_file({"U": U, "S": S, "Vh": Vh}, str(tmp), metadata=meta))
    return (U, S, Vh), False


# ---------------------------------------------------------------------------------------------------------
# Wrap / unwrap


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def wrap(model: nn.Module, cfg: AdapterConfig) -> dict[str, nn.Module]:
    """Freeze every base parameter and replace each target Linear by an adapter wrapper; {name: wrapper}."""
    if wrappers(model):
        raise ValueError("model is already wrapped with an adapter; unwrap(model) first")
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = {n: m for n, m in linears.items() if any(_matches(n, t) for t in cfg.targets)}
    if not chosen:
        raise ValueError(
            f"no nn.Linear matches adapter targets {cfg.targets}; Linear modules include {list(linears)[:6]}"
        )
    unmatched = [t for t in cfg.targets if not any(_matches(n, t) for n in chosen)]
    if unmatched:
        raise ValueError(f"adapter targets {unmatched} match no nn.Linear; matched e.g. {list(chosen)[:4]}")
    # Check every rank before touching the model, so a bad config leaves it unchanged.
    for name, lin in chosen.items():
        d_out, d_in = lin.weight.shape
        if cfg.kind == "svd_full":  # rank is per module: min(d_out, d_in)
            continue
        limit = d_in if cfg.kind == "lora" else min(d_out, d_in)  # lora: A needs orthonormal rows
        if cfg.rank > limit:
            raise ValueError(f"adapter rank {cfg.rank} > {limit} for {cfg.kind} on {name} (weight {d_out}x{d_in})")

    for p in model.parameters():
        p.requires_grad_(False)
    out, hits, t0 = {}, 0, time.perf_counter()
    for name, lin in chosen.items():
        if cfg.kind == "lora":
            w = LoRALinear(lin, cfg, name)
        elif lin.weight.is_meta:  # a skeleton for planning (plan.py): shapes only, no weights to decompose
            d_out, d_in = lin.weight.shape
            w = SVDLinear(lin, cfg, tuple(torch.empty(s, device="meta") for s in ((d_out, cfg.rank), (cfg.rank,), (cfg.rank, d_in))))
        else:
            rank = min(lin.weight.shape) if cfg.kind == "svd_full" else cfg.rank
            factors, hit = svd_factors(lin.weight, rank, cfg.svd_cache_dir)
            hits += hit
            w = (SVDFullLinear if cfg.kind == "svd_full" else SVDLinear)(lin, cfg, factors)
        _set_submodule(model, name, w)
        out[name] = w
    n_knob = sum(getattr(w, w.DEPLOYED).numel() for w in out.values())
    ranks = sorted({getattr(w, w.DEPLOYED).shape[-1] for w in out.values()})
    rank_text = f"full rank (per module: {', '.join(map(str, ranks))})" if cfg.kind == "svd_full" else f"rank {cfg.rank}"
    msg = f"wrapped {len(out)} Linear modules with {cfg.kind} {rank_text}: {n_knob} deployed knob params"
    if cfg.kind != "lora":
        msg += f"; svd cache {cfg.svd_cache_dir}: {hits} hit, {len(out) - hits} computed"
    logger.info(f"{msg} ({time.perf_counter() - t0:.1f}s)")
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """Put the base Linears back (knobs are dropped). Base parameters stay frozen, as wrap left them."""
    for name, w in wrappers(model).items():
        _set_submodule(model, name, w.base)
    return model


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# ---------------------------------------------------------------------------------------------------------
# The knobs, uniformly across kinds


def wrappers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, WRAPPERS)}


def _wrappers_or_raise(model: nn.Module) -> dict[str, nn.Module]:
    ws = wrappers(model)
    if not ws:
        raise ValueError("model has no adapter wrappers; call adapter.wrap(model, cfg) first")
    return ws


def knobs(model: nn.Module) -> dict[str, tuple[nn.Parameter, nn.Parameter]]:
    """{module_name: (deployed, quarantine)}: lora (B, B_hack) [d_out, r]; svd (dS, dS_hack) [r]."""
    return {n: (getattr(w, w.DEPLOYED), getattr(w, w.QUARANTINE)) for n, w in _wrappers_or_raise(model).items()}


def deployed_params(model: nn.Module) -> list[nn.Parameter]:
    return [d for d, _ in knobs(model).values()]


def quarantine_params(model: nn.Module) -> list[nn.Parameter]:
    return [q for _, q in knobs(model).values()]


def adapter_signature(model: nn.Module) -> dict[str, str]:
    """What fixes the knob space (kind, rank, targets, knob dtype, base dtype; lora also its A seed): for cache
    keys. The base dtype is in it because gradients through a bf16 base differ from fp32 ones (a basis is not
    shared across them); loading knobs ignores both dtypes (copy_ casts)."""
    ws = _wrappers_or_raise(model)
    cfgs = {w.cfg for w in ws.values()}
    if len(cfgs) != 1:
        raise ValueError(f"model mixes {len(cfgs)} adapter configs; expected one")
    cfg, w = cfgs.pop(), next(iter(ws.values()))
    rank = "full" if cfg.kind == "svd_full" else str(cfg.rank)  # svd_full: min(d_out, d_in) per module
    sig = {"kind": cfg.kind, "rank": rank, "targets": ",".join(cfg.targets)}
    sig["dtype"] = str(getattr(w, w.DEPLOYED).dtype).removeprefix("torch.")
    sig["base_dtype"] = str(w.base.weight.dtype).removeprefix("torch.")
    if cfg.kind == "lora":  # the svd basis is a function of W alone
        sig["seed"] = str(cfg.seed)
    return sig


# ---------------------------------------------------------------------------------------------------------
# Contexts: toggle flags on every wrapper, restore the previous flags on exit (so they nest), even on error.


@contextmanager
def _flags(model: nn.Module, **flags: bool) -> Iterator[None]:
    ws = list(_wrappers_or_raise(model).values())
    saved = [{k: getattr(w, k) for k in flags} for w in ws]
    try:
        for w in ws:
            for k, v in flags.items():
                setattr(w, k, v)
        yield
    finally:
        for w, s in zip(ws, saved):
            for k, v in s.items():
                setattr(w, k, v)


def quarantine_ablated(model: nn.Module) -> AbstractContextManager[None]:
    """Forward with the deployed knob only: the model that ships."""
    return _flags(model, use_quarantine=False)


def adapter_zeroed(model: nn.Module) -> AbstractContextManager[None]:
    """Forward of the unwrapped base model: a free reference policy for the KL term."""
    return _flags(model, enabled=False)


@torch.no_grad()
def round_trip_diff(model: nn.Module, forward: Callable[[], Tensor]) -> float:
    """Max |forward() with every knob at 0 - forward() of the base model|: seed 004's round-trip check.

    Exactly 0 for `lora` and `svd` (they add a zero term to W x); for `svd_full` it is the SVD reconstruction's
    rounding as seen at the output (the seed's bar: < 1e-3 on a fixed prompt, in fp32). The knobs are restored.
    """
    params = [p for pair in knobs(model).values() for p in pair]
    saved = [p.detach().clone() for p in params]
    try:
        for p in params:
            p.zero_()
        out = forward().float()
        with adapter_zeroed(model):
            ref = forward().float()
    finally:
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    return (out - ref).abs().max().item()


# ---------------------------------------------------------------------------------------------------------
# Save / load the knobs


def _knob_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """{"<module>.B": B, "<module>.B_hack": B_hack, ...}: the keys of a knob file."""
    out = {}
    for name, w in _wrappers_or_raise(model).items():
        for attr in (w.DEPLOYED, w.QUARANTINE):
            out[f"{name}.{attr}"] = getattr(w, attr)
    return out


def save_knobs(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write every deployed and quarantine knob to safetensors, with the adapter signature in the metadata."""
    path = Path(path)
    meta, sig = dict(metadata or {}), adapter_signature(model)
    clash = {k for k in sig if k in meta and meta[k] != sig[k]}
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} contradict the adapter signature {sig}")
    meta.update(sig)
    tensors = {k: p.detach().contiguous().cpu() for k, p in _knob_tensors(model).items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_knobs(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Copy saved knobs into the wrapped model; return the file's metadata. Checks everything before copying."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"knob file {path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    saved, params = load_file(path), _knob_tensors(model)
    sig = adapter_signature(model)
    bad = {k: (meta[k], v) for k, v in sig.items() if k in meta and k not in ("dtype", "base_dtype") and meta[k] != v}
    if bad:
        raise ValueError(f"{path}: adapter mismatch (file, model): {bad}")
    missing, extra = sorted(params.keys() - saved.keys()), sorted(saved.keys() - params.keys())
    if missing or extra:
        raise ValueError(
            f"{path}: knob keys differ from the model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} extra (e.g. {extra[:3]})"
        )
    wrong = [f"{k}: file {tuple(saved[k].shape)} vs model {tuple(p.shape)}"
             for k, p in params.items() if saved[k].shape != p.shape]
    if wrong:
        raise ValueError(f"{path}: knob shape mismatch: {wrong[:3]}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(saved[k])  # copy_ casts, so fp32 knobs load into a bf16 model
    return meta
