"""Gate: on the warm-started model organism (`micro`), the authored pairs' basis validates with a positive median.

The `micro` preset's own recipe: its warm start (loaded from `.cache/warmstart`, never trained here: that takes
~6 minutes on 2 cores), its adapter, its pairs and its extraction settings; the basis is extracted fresh (no basis
cache), so a bug in extraction cannot hide behind a cached file. Held-out validation (the signed cosine of each
module's mean held-out hack-minus-clean difference with span(V)) must have a positive median: the basis points
hack-ward on pairs it never saw. Skips, saying how to build it, when the warm start is not cached.

    PYTHONPATH=$PWD/src .venv/bin/python scripts/verify_warm_basis.py           # the gate
    PYTHONPATH=$PWD/src .venv/bin/python scripts/verify_warm_basis.py --build   # build the warm start first (~6 min)
"""

import sys

import pytest

from projected_grpo.adapter import AdapterConfig, wrap
from projected_grpo.config import PRESETS, resolve_path
from projected_grpo.extract import ExtractConfig, extract_basis
from projected_grpo.files import REPO_ROOT
from projected_grpo.model import load_model
from projected_grpo.pairs import load_pairs
from projected_grpo.problems import load_problems
from projected_grpo.train import seed_everything
from projected_grpo.warmstart import recipe_key, sft_examples, warm_start, weights_digest

CFG = PRESETS["micro"][1]
CACHE = REPO_ROOT / CFG.cache_dir / "warmstart"


def warm_model(build: bool = False):
    """(model, tokenizer) of `micro` after its warm start; pytest.skip when the warm start is not cached."""
    problems = load_problems(resolve_path(CFG.problems), mode=CFG.problems_mode)
    model, tok = load_model(CFG.model, CFG.device, seed=CFG.split_seed)
    key = recipe_key(CFG.model, sft_examples(problems, CFG.warm), CFG.warm, tok, weights_digest(model))
    path = CACHE / f"warmstart-{key}.safetensors"
    if not path.exists() and not build:
        pytest.skip(f"no cached micro warm start ({path} absent): run `python scripts/verify_warm_basis.py --build` "
                    "or `just micro` once (~6 min on 2 cores) to build it")
    warm_start(model, tok, CFG.model, problems, CFG.warm, CACHE)
    return model, tok


def test_authored_pairs_basis_validates_on_the_warm_started_organism(build: bool = False):
    model, tok = warm_model(build)
    seed_everything(CFG.seed)
    wrap(model, AdapterConfig(kind=CFG.adapter, rank=CFG.rank, targets=CFG.targets, seed=CFG.seed))
    ecfg = ExtractConfig(k=CFG.k, floor_quantile=CFG.floor_quantile, basis="real", seed=CFG.seed, batch_size=CFG.extract_batch)
    _, report = extract_basis(model, tok, load_pairs(resolve_path(CFG.pairs)), ecfg)
    val = report["validation"]
    print(f"\nmicro warm start: basis on {report['n_kept']}/{report['n_modules']} modules; held-out cos median "
          f"{val['median']:.3f}, share > 0 {val['share_pos']:.0%} over {val['n_modules']} modules ({report['n_heldout']} pairs)")
    assert val["n_modules"] > 0 and val["median"] > 0, f"held-out validation median {val['median']:.3f} is not positive"


if __name__ == "__main__":
    if "--build" in sys.argv:
        test_authored_pairs_basis_validates_on_the_warm_started_organism(build=True)
        sys.exit(0)
    sys.exit(pytest.main([__file__, "-q", "-s"]))
