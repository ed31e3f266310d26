"""Memory and time plan of a run, from the model's config.json alone: no weights are loaded.

    python -m projected_grpo.train fast --plan          # prints the plan and exits
    python -m projected_grpo.train fast                 # refuses in one line when the plan exceeds the device

The model is built on the meta device (`accelerate.init_empty_weights`) and wrapped with the run's adapter, so
parameter and knob counts are the real architecture's, not a formula's. Bytes on the device, per component:

  weights      base parameters x dtype size (tied embeddings once)
  adapter      knobs (deployed + quarantine), fixed matrices (A; U, S, Vh), their grads, AdamW's two moments,
               the teacher grads put aside and the projection's stacked copies, all fp32
  basis        V stacked per module group, k axes x knob size, held twice (Projector, UpdateProjector)
  generation   KV cache: 2 x layers x kv_heads x head_dim x dtype x rows x (prompt + max_new), rows = the larger
               of prompts x group (rollouts) and held-out problems x eval samples; plus the sampler's per-step
               fp32 logits work (rows x vocab) and the prefill's widest layer temporaries
  loss         what autograd saves for backward over rows x (prompt + max_new) tokens of the largest backward
               part (student rows, or teacher rows): per layer and token, the two RMSNorm inputs in fp32, the
               q/k RMSNorm inputs in fp32, the attention's q, k, v (kv heads), output and log-sum-exp, the
               MLP's gate, silu and up, the adapters' rank-r intermediates; the frozen Linears save no input
               (listed from autograd's saved tensors on the tiny model). Plus the completion logits: fp32 saved
               for the log-softmax, and the reference forward's and the backward's logit-sized temporaries.

peak = weights + adapter + basis + max(generation, loss). The estimate is checked against measured peak
memory on CPU (tests/test_plan.py). Not counted: attention kernels that hold rows x heads x T^2 scores (sdpa's
math kernel, which CPU prefill and padded CPU batches use; flash-attn 2 and CUDA's efficient sdpa do not),
activation memory of basis extraction and warm start (batches of 8 short sequences), allocator fragmentation.
Time is a roofline lower bound from FLOPs and weight reads on reference GPUs: HF `generate` runs well above
it; scripts/gpu_check.sh measures the real figures.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from dataclasses import dataclass

import torch
from torch import nn

from projected_grpo import adapter as adapters

GB = 1e9
# Logit-sized fp32 buffers alive at the loss's peak (in backward), besides the saved fp32 logits: the grads of the
# log-sum-exp and the gather paths and their sum. A 16-bit base adds its own logits (and their grad) in its dtype.
# Measured on CPU, tiny model, 8 rows x 64 completion tokens: 16.4 bytes per logit in fp32, 19.4 in bf16
# (plan: 16 and 18); journal 2026-12-02.
LOGIT_TEMPS = 3
# bf16 dense tensor-core TFLOP/s and HBM TB/s from the vendors' spec sheets: a lower bound on time, not a forecast.
GPU_SPECS = {"H200": (989.0, 4.8), "H100": (989.0, 3.35), "A100": (312.0, 2.0)}
REFERENCE_GPUS = {"H100 80GB": 80e9, "H200 141GB": 141e9}


@dataclass(frozen=True)
class Arch:
    """What the meta-device skeleton tells: counts of the real architecture, wrapped with the run's adapter."""

    n_params: int  # base parameters (tied embeddings once)
    n_modules: int  # wrapped Linears
    n_knob: int  # deployed knob parameters (the quarantine has as many)
    n_fixed: int  # the adapters' fixed matrices (A; U, S, Vh)
    rank_per_layer: int  # sum of wrapped modules' ranks in one layer (their saved intermediates)
    hidden: int
    inter: int
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    vocab: int


@dataclass(frozen=True)
class Plan:
    dtype: str
    arch: Arch
    prompt_tokens: int
    gen_rows: int
    loss_rows: int
    weights: float  # bytes, as every field below
    adapter: float
    basis: float
    kv_cache: float
    gen_temps: float
    activations: float
    logits: float
    gen_flops: float
    loss_flops: float
    gen_bytes_read: float

    @property
    def generation(self) -> float:
        return self.kv_cache + self.gen_temps

    @property
    def loss(self) -> float:
        return self.activations + self.logits

    @property
    def peak(self) -> float:
        return self.weights + self.adapter + self.basis + max(self.generation, self.loss)


def skeleton(cfg) -> nn.Module:
    """The run's model on the meta device, wrapped with its adapter: the real modules, no memory, no weights."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from projected_grpo.model import model_config

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(model_config(cfg.model))
    model.tie_weights()  # on the meta device from_config leaves lm_head untied (4.41B for Qwen3-4B, not 4.02B)
    adapters.wrap(model, adapters.AdapterConfig(kind=cfg.adapter, rank=cfg.rank, targets=cfg.targets, seed=cfg.seed))
    return model


def architecture(cfg) -> Arch:
    model = skeleton(cfg)
    hf, ws = model.config, adapters.wrappers(model)
    knob_ids = {id(p) for w in ws.values() for p in w.parameters(recurse=False)}
    return Arch(
        n_params=sum(p.numel() for p in model.parameters() if id(p) not in knob_ids),
        n_modules=len(ws),
        n_knob=sum(getattr(w, w.DEPLOYED).numel() for w in ws.values()),
        n_fixed=sum(b.numel() for w in ws.values() for b in w.buffers(recurse=False)),
        rank_per_layer=sum(w.cfg.rank for w in ws.values()) // hf.num_hidden_layers,
        hidden=hf.hidden_size,
        inter=hf.intermediate_size,
        layers=hf.num_hidden_layers,
        q_heads=hf.num_attention_heads,
        kv_heads=hf.num_key_value_heads,
        head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
        vocab=hf.vocab_size,
    )


def prompt_tokens(cfg) -> tuple[int, int, str]:
    """(longest prompt in tokens, held-out problem count, which tokenizer counted). Hub models whose tokenizer is
    not on disk are counted with the shipped tokenizer, a stand-in (a smaller vocabulary: more tokens per prompt,
    so the plan errs high)."""
    from transformers import AutoTokenizer

    from projected_grpo.model import RANDOM_CONFIGS, TOKENIZER_DIR, load_tokenizer
    from projected_grpo.problems import load_problems, render_prompt
    from projected_grpo.config import resolve_path
    from projected_grpo.problems import split_problems

    source = f"{cfg.model}'s tokenizer"
    try:
        tok = load_tokenizer(cfg.model) if cfg.model in RANDOM_CONFIGS else AutoTokenizer.from_pretrained(cfg.model, local_files_only=True)
    except (OSError, ValueError):
        tok, source = load_tokenizer(str(TOKENIZER_DIR)), "the shipped tokenizer (a stand-in)"
    if not Path(resolve_path(cfg.problems)).exists():  # --plan needs no data: the GPU presets' file is not shipped
        return ASSUMED_PROMPT_TOKENS, ASSUMED_HELD_OUT, f"{source}; {cfg.problems} is missing, so prompts are assumed " \
            f"{ASSUMED_PROMPT_TOKENS} tokens and {ASSUMED_HELD_OUT} held-out problems"
    problems = load_problems(resolve_path(cfg.problems), mode=cfg.problems_mode)
    _, held = split_problems(problems, cfg.eval_frac, cfg.split_seed)
    longest = max(len(tok(render_prompt(tok, p), add_special_tokens=False).input_ids) for p in problems)
    return longest, len(held), source


# When the problems file is missing (--plan on a machine without the benchmark's jsonl): generous stand-ins. The
# benchmark's medium/hard prompts are a few hundred tokens; its held-out count depends on the file and --eval-frac.
ASSUMED_PROMPT_TOKENS, ASSUMED_HELD_OUT = 1024, 64


def estimate(a: Arch, cfg, prompt_len: int, n_eval: int, dtype: torch.dtype) -> Plan:
    """Bytes and FLOPs of a run of train `Config` cfg with base weights in `dtype` (arithmetic only)."""
    s = torch.finfo(dtype).bits // 8
    trained = 2 * a.n_knob if cfg.arm == "route" else a.n_knob
    # knobs (2) + their grads (2) + AdamW moments (2 per trained) + teacher grads put aside (1)
    # + the projection's stacked G, G' and removed (3) + the fixed matrices; all fp32
    adapter_bytes = 4 * (2 * a.n_knob + 2 * a.n_knob + 2 * trained + a.n_knob + 3 * a.n_knob + a.n_fixed)
    basis_bytes = 4 * cfg.k * a.n_knob * (3 if cfg.gated else 2)

    gen_new = max(cfg.max_new, cfg.eval_max_new or cfg.max_new)
    gen_rows = max(cfg.prompts_per_step * cfg.group, n_eval * cfg.eval_samples)
    kv = 2 * a.layers * a.kv_heads * a.head_dim * s * gen_rows * (prompt_len + gen_new)
    # sampler, per decode step: fp32 logits, softmax, sorted values (+ int64 indices) and cumsum for top-p;
    # prefill: one layer's widest temporaries (gate, up, silu) over the prompt tokens
    gen_temps = gen_rows * a.vocab * (4 * 4 + 8) + gen_rows * prompt_len * 3 * a.inter * s

    teacher_rows = cfg.teacher_hack + cfg.teacher_solve
    loss_rows = 1 if cfg.gated else cfg.prompts_per_step * max(cfg.group, teacher_rows)
    per_token_layer = (
        2 * a.hidden * 4  # input and post-attention RMSNorm: fp32 input (layer 0's input norm saves nothing,
        # the final norm does: the count per layer stays right)
        + (a.q_heads + a.kv_heads) * a.head_dim * 4  # q_norm, k_norm: fp32 input saved
        + (a.q_heads + a.kv_heads + 2) * 4  # the four RMSNorms' fp32 rsqrt
        + 2 * (a.q_heads + a.kv_heads) * a.head_dim * s + a.q_heads * 4  # attention: q, k, v, output; lse
        + 3 * a.inter * s  # MLP: gate (silu's input), silu's output, up
        + a.rank_per_layer * 4  # adapters: the rank-r intermediates (fp32)
    )
    seq = prompt_len + cfg.max_new
    tokens = loss_rows * seq
    activations = tokens * a.layers * per_token_layer
    logits = loss_rows * cfg.max_new * a.vocab * (4 * (1 + LOGIT_TEMPS) + (s if s < 4 else 0))

    return Plan(
        dtype=str(dtype).removeprefix("torch."), arch=a, prompt_tokens=prompt_len, gen_rows=gen_rows, loss_rows=loss_rows,
        weights=float(a.n_params * s), adapter=float(adapter_bytes), basis=float(basis_bytes), kv_cache=float(kv),
        gen_temps=float(gen_temps), activations=float(activations), logits=float(logits),
        gen_flops=float(2 * a.n_params * gen_rows * (prompt_len + gen_new)),
        # forward with grad, reference forward, backward to the activations only (frozen base: no weight grads),
        # for the student and the teacher part
        loss_flops=float(6 * a.n_params * tokens * (1 + (teacher_rows > 0))),
        # each decode step reads every weight and, on average, half the KV cache
        gen_bytes_read=float(gen_new * (a.n_params * s + kv / 2)),
    )


def device_memory(device: str | None) -> tuple[str, float]:
    """(name, total bytes) of the device a run would use: the GPU's memory, or the machine's RAM on CPU."""
    from projected_grpo.model import pick_device

    dev = pick_device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return props.name, float(props.total_memory)
    return "CPU RAM", float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def suggestion(a: Arch, cfg, budget: float, prompt_len: int, n_eval: int, dtype: torch.dtype) -> str:
    """The first knob (prompts per step, group, max_new) with a value that fits `budget`: its largest such value."""
    base = estimate(a, cfg, prompt_len, n_eval, dtype)
    if base.weights + base.adapter + base.basis > budget:
        return "the weights alone do not fit: use a smaller --model or a bigger device"
    for knob in ("prompts_per_step", "group", "max_new"):
        now = getattr(cfg, knob)
        for value in range(now - 1, 0, -1) if now <= 16 else sorted({now * i // 16 for i in range(1, 16)}, reverse=True):
            if estimate(a, dataclasses.replace(cfg, **{knob: value}), prompt_len, n_eval, dtype).peak <= budget:
                return f"--{knob.replace('_', '-')} {value} fits"
    return "lower --prompts-per-step, --group and --max-new together"


def run_dtype(cfg) -> torch.dtype:
    from projected_grpo.model import pick_device, resolve_dtype

    return resolve_dtype(cfg.dtype, pick_device(cfg.device))


def check_fits(cfg) -> Plan:
    """Raise ValueError in one line, naming a knob to turn, when the plan exceeds the device's memory."""
    a, (prompt_len, n_eval, _), dtype = architecture(cfg), prompt_tokens(cfg), run_dtype(cfg)
    p = estimate(a, cfg, prompt_len, n_eval, dtype)
    name, total = device_memory(cfg.device)
    if p.peak > total:
        raise ValueError(
            f"plan: {p.peak / GB:.1f} GB needed > {total / GB:.1f} GB on {name} (loss {p.loss / GB:.1f} GB, "
            f"KV cache {p.kv_cache / GB:.1f} GB, weights {p.weights / GB:.1f} GB): "
            f"{suggestion(a, cfg, total, prompt_len, n_eval, dtype)} (--plan prints the whole plan)"
        )
    return p


def roofline_seconds(flops: float, bytes_read: float, gpu: str) -> float | None:
    """A lower bound on time from the spec sheet (None for an unknown device)."""
    spec = next((v for k, v in GPU_SPECS.items() if k in gpu), None)
    return None if spec is None else max(flops / (spec[0] * 1e12), bytes_read / (spec[1] * 1e12))


def describe(cfg) -> str:
    """The plan as `--plan` prints it: on this device in the run's dtype, and on reference GPUs in bf16 (or --dtype)."""
    t0 = time.perf_counter()
    a, (prompt_len, n_eval, tok_source) = architecture(cfg), prompt_tokens(cfg)
    here_dtype, gpu_dtype = run_dtype(cfg), torch.bfloat16 if cfg.dtype is None else run_dtype(cfg)
    here, gpu = (estimate(a, cfg, prompt_len, n_eval, d) for d in (here_dtype, gpu_dtype))
    name, total = device_memory(cfg.device)
    cols = [(f"here ({here.dtype})", here)] + ([(f"GPU ({gpu.dtype})", gpu)] if gpu_dtype != here_dtype else [])
    row = lambda label, f, note="": (  # noqa: E731
        f"  {label:<11}" + "".join(f"{f(p) / GB:>16.2f} GB" for _, p in cols) + (f"   {note}" if note else "")
    )
    lines = [
        f"plan for {cfg.model} (preset {cfg.preset}, {cfg.adapter} rank {cfg.rank}, arm {cfg.arm}), from its config.json:",
        f"  model      {a.n_params / 1e9:.3f}B base parameters; {a.n_modules} wrapped modules; "
        f"{a.n_knob:,} deployed knob parameters (+ as many in the quarantine)",
        f"  basis      up to {cfg.k} axes per module: {cfg.k * a.n_knob:,} floats ({4 * cfg.k * a.n_knob / GB:.2f} GB fp32) per copy",
        f"  prompt     {prompt_len} tokens at most (counted with {tok_source}); {n_eval} held-out problems",
        "  " + " " * 11 + "".join(f"{label:>19}" for label, _ in cols),
        row("weights", lambda p: p.weights),
        row("adapter", lambda p: p.adapter, "knobs, grads, AdamW moments, projection stacks (fp32)"),
        row("basis", lambda p: p.basis, "the Projector's and the UpdateProjector's copies"),
        row("generation", lambda p: p.generation, f"KV cache for {here.gen_rows} rows x ({prompt_len} + "
            f"{max(cfg.max_new, cfg.eval_max_new or 0)}) tokens + sampler/prefill temporaries"),
        row("loss", lambda p: p.loss, f"activations for {here.loss_rows} rows x ({prompt_len} + {cfg.max_new}) tokens "
            "+ completion logits"),
        row("  of which", lambda p: p.logits, "completion logits (fp32 log-softmax and its temporaries)"),
        row("peak", lambda p: p.peak, "= weights + adapter + basis + max(generation, loss)"),
        f"  this device: {name}, {total / GB:.1f} GB: {'fits' if here.peak <= total else 'DOES NOT FIT: ' + suggestion(a, cfg, total, prompt_len, n_eval, here_dtype)}",
    ]
    for ref, mem in REFERENCE_GPUS.items():
        verdict = "fits" if gpu.peak <= mem else "does not fit: " + suggestion(a, cfg, mem, prompt_len, n_eval, gpu_dtype)
        lines.append(f"  on an {ref} ({gpu.dtype}): {verdict}")
    for ref in ("H100", "H200"):
        g, l = roofline_seconds(gpu.gen_flops, gpu.gen_bytes_read, ref), roofline_seconds(gpu.loss_flops, 0.0, ref)
        lines.append(f"  time/step on an {ref}, roofline lower bound: generation >= {g:.1f} s, loss >= {l:.1f} s "
                     f"(HF generate runs well above its bound: gpu_check.sh measures)")
    lines.append(f"  ({gpu.gen_flops / 1e12:.0f} TFLOP generation, {gpu.loss_flops / 1e12:.0f} TFLOP loss per step; "
                 f"planned in {time.perf_counter() - t0:.1f} s)")
    return "\n".join(lines)
