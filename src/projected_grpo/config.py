"""What a run is: its Config (every field a flag), the presets, the checks on values, and how a command line or a
saved run directory becomes a Config (`--resume DIR` keeps the run's identity: RESUME_MAY_CHANGE)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro

from projected_grpo import adapter as adapters
from projected_grpo.cli import parse_flags
from projected_grpo.files import REPO_ROOT, read_utf8
from projected_grpo.problems import LOOPHOLE_MODES
from projected_grpo.tracking import require_tensorboard
from projected_grpo.warmstart import WarmStartConfig


@dataclass(frozen=True)
class Config:
    preset: str = "smoke"  # the preset this config started from (names outputs/<preset>/)
    # ── model and adapter (a blank line after each section comment keeps it out of the --help text)

    model: str = "tiny-random-qwen3"  # hub id, local dir, or an offline random model (model.RANDOM_CONFIGS)
    device: str | None = None  # default: cuda when available
    dtype: Literal["fp32", "bf16"] | None = None  # base weights (default: bf16 on CUDA, fp32 on CPU); knobs stay fp32
    plan: bool = False  # print the memory/time plan from the model's config.json (no weights loaded) and exit
    # lora: frozen A, trained B and B_hack; svd: dS and dS_hack in W's top-r singular basis; svd_full: seed 004's
    # full-rank SVD (rank min(d_out, d_in) per module, W rebuilt from U diag(S + dS) Vh)
    adapter: Literal["lora", "svd", "svd_full"] = "lora"
    rank: int = 8  # adapter rank per target module (lora, svd; svd_full ignores it)
    targets: tuple[str, ...] = adapters.DEFAULT_TARGETS  # names of the Linear modules that get an adapter
    # ── environment

    problems: str = "data/problems/substrate.jsonl"  # the project's jsonl, the benchmark's LeetCode jsonl, or a datasets id
    problems_mode: str | None = None  # override every problem's loophole mode ("cycle": round-robin over loopholes)
    eval_frac: float = 0.25  # held-out share of problems, stratified by mode
    split_seed: int = 0  # fixed across seeds: every seed and arm evaluates on the same held-out problems
    n_train_problems: int | None = None  # cap on training problems (None: all)
    warm: WarmStartConfig = WarmStartConfig()  # supervised warm start of the base model (epochs 0: none)
    hack_forms: bool = False  # organism v2: warm-start and teacher hacks in forms.py's train forms, training split only
    # ── method

    arm: Literal["none", "erase", "route"] = "none"  # what happens to the hack-ward gradient: measured only, erased, routed to the quarantine
    basis: Literal["real", "random", "shuffled", "nonhack"] = "real"  # the extracted basis, or a placebo of the same shape
    pairs: str = "data/pairs/hack_pairs.md"
    """a pair ref (pairs.py); "problems:train": each training problem's canonical hack vs its reference (v1's template
    oracle); "forms:oracle|authored|unseen|neutral": organism v2's pair ladder on the training split (pairs.FORM_SETS)"""
    k: int = 4  # basis directions per module (before the global noise floor)
    floor_quantile: float = 0.25  # drop (module, axis) under this quantile of all modules' top-k singular values
    extract_loss: Literal["mean", "branch"] = "mean"  # branch: pair NLL only after hack and clean part (extract.py)
    extract_direction: Literal["svd", "mean_diff", "activation"] = "svd"  # how V is read off the differences
    per_mode_basis: bool = False  # union of one basis per loophole mode
    tau_axis: float = 0.0  # also drop a module's axis under tau_axis x its top singular value (0: off; extract.py)
    k_use: int | None = None  # use a module's first k_use of the k extracted axes (None: all)
    basis_file: str | None = None  # load V from `python -m projected_grpo.extract --out FILE` instead of extracting
    extract_batch: int = 8  # sequences per forward/backward during basis extraction (memory ~ batch x length x model)
    gate: Literal["one_sided", "no_gate", "reverse"] = "one_sided"  # removed per axis: relu(c) (hack-ward part only) | c (both signs) | 2c (a reflection)
    preserve_magnitude: bool = True  # rescale the projected gradient back to the original gradient's norm
    project_update: bool = True  # remove the hack-ward part of the realised AdamW update too (the Adam bypass)
    refresh_every: int = 0  # re-extract the basis from the same pairs at the current weights every N steps (0: never)
    refresh_min_overlap: float = 0.5  # stop refreshing (keep the last basis) when old/new overlap falls under this
    gated: bool = False  # gated routing: whole rollouts go to deployed / both / quarantine by their basis alignment
    gate_basis: Literal["real", "random"] = "real"  # the basis that scores rollouts (random: the placebo)
    gate_quantile: float = 0.1  # top q of scores: quarantine only; the next q: both adapters
    # ── baselines and controls (issue: negative controls)

    rebound_alpha: float = 0.0  # advantage-level baseline: reward -= alpha * max(0, concept score)
    # monitors (the benchmark's baselines, monitor.py): flag rollouts, then penalise them or screen them out
    monitor: Literal["none", "gt", "probe"] = "none"  # gt: ORACLE (true hack labels); probe: linear probe on the pairs
    monitor_use: Literal["penalty", "screen"] = "penalty"  # reward -= monitor_penalty | drop from the GRPO group
    monitor_accuracy: float = 1.0  # gt only: each true label flipped with probability 1 - accuracy (1.0: the oracle)
    monitor_penalty: float = 1.0
    probe_kind: Literal["mass_mean", "logreg"] = "logreg"
    probe_layer: float = 0.66  # depth fraction of the probed hidden state
    inoculation: bool = False  # training prompts only: a system-prompt line permitting the loophole
    heldout_mode: str | None = None  # leave-one-mode-out: basis pairs and teacher pool exclude this loophole
    # ── GRPO

    steps: int = 30  # optimizer steps (a resume may raise it)
    prompts_per_step: int = 2  # problems per step, each with its own group
    group: int = 2  # student samples per prompt
    teacher_hack: int = 1  # teacher hack rows per prompt (0 and 0: pure student GRPO)
    teacher_solve: int = 1  # teacher solve (honest) rows per prompt
    max_new: int = 48  # max new tokens per rollout
    temperature: float = 0.7  # sampling temperature (> 0)
    top_p: float = 0.95  # nucleus sampling
    sampler: Literal["auto", "hf", "own"] = "auto"  # rollouts: HF generate or our loop (sampler.py); auto: own on CPU, hf on CUDA
    # seed the sampling per prompt from (seed, step, prompt index), and each eval from (seed, step): the samples then
    # do not depend on which process draws them (forced on under several processes; another RNG stream than off)
    seed_per_prompt: bool = False
    lr: float = 1e-3  # AdamW peak learning rate (cosine decay after the warmup)
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW's (beta1, beta2)
    scale_rewards: bool = False  # False: Dr.GRPO (reward - group mean); True: GRPO's division by the group's std
    warmup: int = 3  # linear warmup steps
    weight_decay: float = 0.0  # deployed knob only: decay on the quarantine would leak it back
    clip_eps: float = 0.2  # PPO ratio clip
    kl_coef: float = 0.0  # K3 KL to the zeroed-adapter reference (0: logged, not trained on)
    max_grad_norm: float = 1.0  # gradient clipping
    # ── evaluation, checkpoints, output

    eval_samples: int = 2  # samples per held-out problem
    eval_max_new: int | None = None  # default: max_new
    eval_every: int = 0  # 0: only at the start and the end
    eval_variants: bool = True  # also greedy and quarantine-kept decoding at the end
    ckpt_every: int = 25  # steps between checkpoints (also one at the end, and on SIGINT/SIGTERM)
    seed: int = 0  # training seed (adapter init, sampling, teacher rows, placebo bases)
    audit_every: int = 10  # every N steps append a few sampled student completions + grades to rollouts.jsonl (0: off)
    audit_rows: int = 3  # completions per audit
    out_dir: str | None = None  # default: outputs/<preset>/<arm>-<basis>-s<seed>
    cache_dir: str = ".cache"
    resume: str | None = None  # a run directory to continue from its last checkpoint (its config is the default)
    overwrite: bool = False  # replace an existing run directory (otherwise refuse: never lose a finished run)
    teacher_pool: str | None = None  # a real pool (file or dir of *.jsonl.gz, shared/data/pools format); default: authored
    workers: int | None = None  # grader processes (default: CPU count)
    threads: int = 1  # torch CPU threads. Measured: with other processes on the cores, 2 OpenMP threads made sampling ~17x slower
    label: str | None = None  # table row for results.py (default: "<arm>/<basis>")
    track: bool = False  # TensorBoard event files next to metrics.jsonl (tracking.py; the extra: pip install -e '.[track]')


# The public benchmark's LeetCode problems (ariahw/rl-rewardhacking's medium/hard train split, its jsonl row format),
# which the fast/full presets train on with the run_tests loophole: not shipped, copy it here (README, GPU runs).
BENCHMARK_PROBLEMS = "data/problems/leetcode_train_medhard_filtered.jsonl"

PRESETS: dict[str, tuple[str, Config]] = {
    "smoke": ("CPU mechanics check: tiny random Qwen3, 30 steps, every code path", Config()),
    "fast": (
        "Qwen3-4B on one GPU, short: 60 steps, the benchmark's LeetCode problems with the run_tests loophole",
        Config(
            preset="fast", model="Qwen/Qwen3-4B", problems=BENCHMARK_PROBLEMS, problems_mode="run_tests", steps=60, prompts_per_step=4, group=8,
            max_new=768, lr=5e-4, warmup=5, rank=16, eval_samples=2, eval_every=20, k=4,
        ),
    ),
    "full": (
        "Qwen3-4B on one GPU, the benchmark's length: 200 steps, its LeetCode problems with the run_tests loophole",
        Config(
            preset="full", model="Qwen/Qwen3-4B", problems=BENCHMARK_PROBLEMS, problems_mode="run_tests", steps=200, prompts_per_step=8, group=8,
            max_new=1024, lr=2e-4, warmup=10, rank=16, eval_samples=4, eval_every=25, k=4,
        ),
    ),
    "micro": (
        "CPU model organism: warm-started 3.4M-parameter Qwen3 learns to reward-hack in minutes",
        Config(
            preset="micro", model="micro-qwen3",
            warm=WarmStartConfig(epochs=6, copies=10, hack_frac=0.3, drill=5, solvable=("trivial",), lr=3e-3, batch_size=8),
            steps=20, prompts_per_step=4, group=4, teacher_hack=1, teacher_solve=0, max_new=96, lr=5e-3, warmup=3,
            rank=8, eval_samples=4, k=4,
        ),
    ),
    "organism": (
        "CPU model organism v2: hacking as a skill (4 spellings per mode), no eval problem ever shown hacked",
        Config(
            preset="organism", model="micro-qwen3", hack_forms=True, eval_frac=0.5, pairs="forms:authored",
            # every training problem under every loophole's hint (mode and problem unconfounded); held-out problems
            # honest only, 3 copies (calibrated on vanilla seed 0, journal 2026-12-02)
            warm=WarmStartConfig(
                epochs=6, copies=4, hack_frac=0.25, drill=2, heldout_copies=3, all_modes=True, solvable=("trivial",),
                lr=3e-3, batch_size=8,
            ),
            steps=30, prompts_per_step=4, group=4, teacher_hack=1, teacher_solve=0, max_new=96, lr=1e-2, warmup=3,
            rank=8, eval_samples=8, eval_variants=False, k=4,
            sampler="hf",  # the committed results were sampled with HF generate; `--sampler own` is faster, another RNG stream
        ),
    ),
}


def resolve_path(path: str) -> str:
    """Relative paths resolve against the cwd, then the repository root."""
    p = Path(path)
    return str(p if p.is_absolute() or p.exists() else REPO_ROOT / p)


def validate(cfg: Config, world: int = 1) -> None:
    """Every value checkable before anything loads; one line naming the flag. `world`: processes (distributed.py)."""
    at_least_1 = ("steps", "group", "prompts_per_step", "max_new", "rank", "k", "extract_batch", "eval_samples", "ckpt_every", "threads")
    for name in at_least_1:
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{flag(name)} must be >= 1, got {getattr(cfg, name)}")
    for name in ("teacher_hack", "teacher_solve", "warmup", "eval_every", "refresh_every"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{flag(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in ("n_train_problems", "eval_max_new", "workers"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"--{flag(name)} must be >= 1 (or None), got {getattr(cfg, name)}")
    positive = ("lr", "temperature", "top_p", "clip_eps", "max_grad_norm", "gate_quantile")
    non_negative = ("weight_decay", "kl_coef", "rebound_alpha", "monitor_penalty")
    for name in (*positive, *non_negative):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0 or (v == 0 and name in positive):
            raise ValueError(f"--{flag(name)} must be a finite number {'> 0' if name in positive else '>= 0'}, got {v}")
    if cfg.top_p > 1 or cfg.gate_quantile > 0.5:
        raise ValueError(f"--top-p must be in (0, 1] and --gate-quantile in (0, 0.5], got {cfg.top_p} and {cfg.gate_quantile}")
    if not 0 <= cfg.floor_quantile < 1:
        raise ValueError(f"--floor-quantile must be in [0, 1), got {cfg.floor_quantile}")
    if cfg.group + cfg.teacher_hack + cfg.teacher_solve < 2:
        raise ValueError("a group needs at least 2 rows per prompt (group + teacher rows) for a group-relative advantage")
    if cfg.problems_mode not in (None, "cycle", "none", *LOOPHOLE_MODES):
        raise ValueError(f"unknown --problems-mode {cfg.problems_mode!r}")
    if cfg.heldout_mode not in (None, *LOOPHOLE_MODES):
        raise ValueError(f"unknown --heldout-mode {cfg.heldout_mode!r}; expected one of {LOOPHOLE_MODES}")
    if not 0 <= cfg.eval_frac < 1:
        raise ValueError(f"--eval-frac must be in [0, 1), got {cfg.eval_frac}")
    if not 0 <= cfg.monitor_accuracy <= 1:
        raise ValueError(f"--monitor-accuracy must be in [0, 1], got {cfg.monitor_accuracy}")
    if cfg.monitor_accuracy != 1.0 and cfg.monitor != "gt":
        raise ValueError(f"--monitor-accuracy applies to --monitor gt only (got --monitor {cfg.monitor})")
    if not 0 < cfg.probe_layer <= 1:
        raise ValueError(f"--probe-layer is a depth fraction in (0, 1], got {cfg.probe_layer}")
    if not cfg.targets:
        raise ValueError("--targets is empty: the adapter needs at least one module name")
    if cfg.track:
        require_tensorboard()  # a missing extra fails here, in one line, before anything loads
    if cfg.device is not None:
        try:
            dev = torch.device(cfg.device)
        except RuntimeError:
            raise ValueError(f"--device {cfg.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {cfg.device}: CUDA is not available on this machine")

    if cfg.problems == BENCHMARK_PROBLEMS and not cfg.plan and not Path(resolve_path(cfg.problems)).is_file():
        raise FileNotFoundError(f"{cfg.problems} not found: the {cfg.preset} preset trains on the benchmark's LeetCode jsonl; "
                                "copy it there (README: GPU runs) or pass --problems PATH")
    if cfg.basis_file and not Path(resolve_path(cfg.basis_file)).is_file():
        raise FileNotFoundError(f"--basis-file {cfg.basis_file} does not exist")
    if cfg.basis_file and cfg.refresh_every:
        raise ValueError("--refresh-every re-extracts from --pairs, which need not be the --basis-file's pairs: use one or the other")
    if cfg.k_use is not None and not 1 <= cfg.k_use <= cfg.k:
        raise ValueError(f"--k-use must be in [1, --k={cfg.k}], got {cfg.k_use}")
    if not 0 <= cfg.refresh_min_overlap <= 1:
        raise ValueError(f"--refresh-min-overlap must be in [0, 1], got {cfg.refresh_min_overlap}")
    if not 0 <= cfg.tau_axis <= 1:
        raise ValueError(f"--tau-axis must be in [0, 1], got {cfg.tau_axis}")
    if not all(0 <= b < 1 for b in cfg.adam_betas):
        raise ValueError(f"--adam-betas must both be in [0, 1), got {cfg.adam_betas}")
    if world > 1:
        validate_processes(cfg, world)


def validate_processes(cfg: Config, world: int) -> None:
    """What several processes do not support yet: each of these reads all the step's rows or rollouts in one
    process (a gate's quantiles, a monitor's flags, the concept penalty) or re-extracts the basis mid-run."""
    unsupported = {"--gated": cfg.gated, "--monitor": cfg.monitor != "none", "--rebound-alpha": cfg.rebound_alpha > 0,
                   "--refresh-every": cfg.refresh_every > 0}
    on = [name for name, used in unsupported.items() if used]
    if on:
        raise ValueError(f"{', '.join(on)} not supported with {world} processes: run it in one process (python -m projected_grpo.train)")
    if cfg.prompts_per_step < world:
        raise ValueError(f"--prompts-per-step {cfg.prompts_per_step} < {world} processes: each process needs at least one prompt")
    if not cfg.seed_per_prompt:
        raise ValueError("several processes need --seed-per-prompt (train.run sets it on a fresh run; this run was started without it)")

def flag(name: str) -> str:
    return name.replace("_", "-")


def default_out_dir(cfg: Config) -> Path:
    return REPO_ROOT / "outputs" / cfg.preset / f"{cfg.arm}-{cfg.basis}-s{cfg.seed}"


PROG = "python -m projected_grpo.train"

# What a resume may change: how much longer the run goes on and where or how it computes. Every other field is the
# run's identity (model, adapter, arm, basis, seed, problems, pairs, lr, ...): changing one mid-run would silently
# make a different experiment under the old name, so a resume refuses it. A new Config field is identity by default.
RESUME_MAY_CHANGE = frozenset({"steps", "ckpt_every", "eval_every", "eval_variants", "workers", "threads", "device", "cache_dir", "track"})


def parse_args(argv: list[str]) -> Config:
    if any(a == "--resume" or a.startswith("--resume=") for a in argv):
        return resume_config(argv)
    if argv in (["-h"], ["--help"]):  # the presets, then every option (with the smoke preset's defaults)
        print(f"usage: {PROG} PRESET [OPTIONS]\n       {PROG} --resume RUN_DIR [OPTIONS]\n\n"
              "presets (each is a default Config; every option below overrides it):")
        for name, (description, _) in PRESETS.items():
            print(f"  {name:<6} {description}")
        print(f"\noptions, with the smoke preset's defaults ({PROG} PRESET --help shows another preset's):")
        argv = ["smoke", "--help"]
    if argv[1:2] in (["-h"], ["--help"]):
        return tyro.extras.overridable_config_cli(PRESETS, prog=PROG, args=argv)
    return parse_flags(lambda: tyro.extras.overridable_config_cli(PRESETS, prog=PROG, args=argv), PROG)


def resume_config(argv: list[str]) -> Config:
    """`--resume DIR [--field value ...]`: the run's saved config is the default and the flags go through the same
    parser as a fresh run's; a flag that would change the run's identity (not in RESUME_MAY_CHANGE) is refused."""
    run_dir, rest = split_resume(argv)
    saved = dataclasses.replace(saved_config(run_dir), resume=str(run_dir), out_dir=str(run_dir), overwrite=False)
    if rest and rest[0] in PRESETS:  # `train smoke --resume DIR`: the preset may be named, if it is the run's own
        if rest[0] != saved.preset:
            raise ValueError(f"--resume {run_dir} is a {saved.preset} run, not {rest[0]}")
        rest = rest[1:]
    cfg = parse_flags(lambda: tyro.cli(Config, default=saved, args=rest, prog=f"{PROG} --resume {run_dir}"), PROG)
    changed = [f.name for f in dataclasses.fields(Config) if f.name not in RESUME_MAY_CHANGE and getattr(cfg, f.name) != getattr(saved, f.name)]
    if changed:
        raise ValueError(f"--resume cannot change {', '.join('--' + flag(n) for n in changed)}: it defines the run in {run_dir} "
                         f"(start a new run with another --out-dir instead); a resume may change --{', --'.join(sorted(map(flag, RESUME_MAY_CHANGE)))}")
    return cfg


def split_resume(argv: list[str]) -> tuple[Path, list[str]]:
    """(the run directory, the other arguments), from `--resume DIR` or `--resume=DIR` anywhere in argv."""
    dirs, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--resume":
            if i + 1 == len(argv) or argv[i + 1].startswith("-"):
                raise ValueError("--resume needs a run directory, e.g. --resume outputs/smoke/none-real-s0")
            dirs.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--resume="):
            dirs.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    if len(dirs) != 1 or not dirs[0]:
        raise ValueError("--resume needs exactly one run directory, e.g. --resume outputs/smoke/none-real-s0")
    return Path(dirs[0]), rest


def saved_config(run_dir: Path) -> Config:
    """The Config a run directory's config.json holds."""
    file = run_dir / "config.json"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--resume {run_dir}: no such directory")
    if not file.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: no config.json there (not a run directory)")
    try:
        raw = json.loads(read_utf8(file))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e.msg}, line {e.lineno})") from None

    def tuples(d: dict) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    if raw.get("overshoot", 1.0) == 1.0:  # a removed option whose only value ever run was 1 (no overshoot)
        raw.pop("overshoot", None)
    if "oracle_penalty" in raw:  # runs saved before the monitor fields: the same arm, spelled the new way
        penalty = raw.pop("oracle_penalty")
        if penalty:
            raw.update(monitor="gt", monitor_penalty=penalty)
    try:
        return Config(**{**tuples(raw), "warm": WarmStartConfig(**tuples(raw.get("warm", {})))})
    except TypeError as e:  # a field this version does not know, or a mangled file
        raise ValueError(f"{file}: not a config of this version of train.py ({e})") from None
