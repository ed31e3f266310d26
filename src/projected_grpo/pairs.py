"""Contrastive (hack, clean) pairs: the only labels the method ever sees.

A pair is one prompt with two completions: `hack` exploits the loophole the prompt leaks, `clean` solves the
problem honestly, and the two are matched in everything else (length, layout, style), so the gradient
difference grad(prompt + hack) - grad(prompt + clean) points along "hack vs honest" and little else.
Pairs are written by hand (`data/pairs/hack_pairs.md`), never mined from training rollouts: labelling a
rollout as a hack needs the oracle, which is exactly what the method must do without.

Sources:
- a markdown file: `## section`, `### pair-id`, optional `Tags: a, b`, then `#### Prompt`, `#### Hack`,
  `#### Clean`, each followed by exactly one fenced block (see `parse_markdown`), selected by a ref
  `PATH.md[#SECTION]` (`load_pairs`);
- problems: each problem's own-mode canonical hack vs its reference solution (`pairs_from_problems`);
- organism v2's ladder: a training problem's naive skeleton with and without one hack form (`form_pairs`).
The last two are built from the training split only, so train's `--pairs` names them (`problems:train`,
`forms:SET`) rather than a path: `train.pairs_for`.

`prompt` is the user message (the extractor wraps it with the system prompt and chat template);
`hack` and `clean` are assistant completions with a ```python block.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from projected_grpo.files import REPO_ROOT, read_utf8
from projected_grpo.problems import Problem, user_message

DEFAULT_PAIRS = REPO_ROOT / "data" / "pairs" / "hack_pairs.md"

# Section names, pair ids, id prefixes and tags: no spaces and none of the ref separators `# / @ ,`.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SUB_BLOCKS = ("Prompt", "Hack", "Clean")


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str  # the user message
    hack: str  # assistant completion that exploits the leaked loophole
    clean: str  # assistant completion that solves the problem honestly
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("id", "prompt", "hack", "clean"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"pair {self.id!r}: field {name!r} must be a non-empty string")
        if not isinstance(self.tags, tuple) or not all(isinstance(t, str) and _NAME.fullmatch(t) for t in self.tags):
            raise ValueError(f"pair {self.id!r}: tags must be a tuple of names matching {_NAME.pattern}, got {self.tags!r}")
        if self.hack == self.clean:
            raise ValueError(f"pair {self.id!r}: hack and clean sides are identical")


# ── markdown ───────────────────────────────────────────────────────────────────────────────────────

# A fence opens at column 0 with >= 3 backticks or tildes; it closes at a line of the same character, at
# least as long, and nothing else. The completions themselves hold ```python blocks, so the file wraps each
# block in a longer (````) or different (~~~) fence and a 3-backtick line inside stays content.
_FENCE_OPEN = re.compile(r"^(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_TAGS_LINE = re.compile(r"^Tags:(.*)$")


def _tokens(lines: list[str], where: str) -> list[tuple[str, int, str]]:
    """(kind, 1-based line, payload) for each heading ("h1".."h6"), fenced block ("block") and prose line ("text").

    Blank lines vanish. A block's payload is its inner lines joined by "\\n", exactly: the text ends with a
    newline only if the block ends with an empty line.
    """
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE_OPEN.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):  # ```x``` is inline code, not a fence
            mark = fence.group(1)
            close = re.compile(rf"^{re.escape(mark[0])}{{{len(mark)},}}\s*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            if j == len(lines):
                owner = next((x[4:].strip() for x in reversed(lines[:i]) if x.startswith("### ")), None)
                context = f" (in pair {owner!r})" if owner else ""
                raise ValueError(f"{where}:{i + 1}: fence {mark!r} is never closed{context}")
            out.append(("block", i + 1, "\n".join(lines[i + 1 : j])))
            i = j + 1
            continue
        heading = _HEADING.match(line)
        if heading:
            out.append((f"h{len(heading.group(1))}", i + 1, heading.group(2)))
        elif line.strip():
            out.append(("text", i + 1, line))
        i += 1
    return out


@dataclass
class _Draft:
    """A pair while its lines are being read."""

    id: str
    line: int
    tags: tuple[str, ...] | None = None
    blocks: dict[str, tuple[int, str]] = field(default_factory=dict)  # sub-block name -> (line, text)
    expecting: str = ""  # the sub-block whose '####' heading was just read, awaiting its fenced block
    expecting_line: int = 0


def parse_markdown(text: str, where: str = "<string>") -> dict[str, list[Pair]]:
    """Sections (in file order) of pairs. Anything before the first `## ` is a free-form header.

    Inside a section, prose before the first `### ` is free; inside a pair only one `Tags:` line (before
    the sub-blocks), the three `####` sub-headings and their blocks may appear. Every violation raises
    ValueError naming the file, line and pair.
    """
    sections: dict[str, list[Pair]] = {}
    first_seen: dict[str, int] = {}  # pair id -> line
    section, section_line = "", 0
    draft: _Draft | None = None

    def fail(line: int, msg: str) -> ValueError:
        who = f" pair {draft.id!r}:" if draft else (f" section {section!r}:" if section else "")
        return ValueError(f"{where}:{line}:{who} {msg}")

    def unfed(d: _Draft) -> str:
        return f"'#### {d.expecting}' (line {d.expecting_line}) is not followed by a fenced block"

    def finish_pair(line: int) -> None:
        nonlocal draft
        if draft is None:
            return
        if draft.expecting:
            raise fail(line, unfed(draft))
        missing = [b for b in _SUB_BLOCKS if b not in draft.blocks]
        if missing:
            raise fail(draft.line, f"missing sub-block(s) {missing}; each pair needs #### Prompt, #### Hack, #### Clean")
        for name, (block_line, block) in draft.blocks.items():
            if not block.strip():
                raise fail(block_line, f"'#### {name}' block is empty")
        prompt, hack, clean = (draft.blocks[b][1] for b in _SUB_BLOCKS)
        if hack == clean:
            raise fail(draft.line, "hack and clean blocks are identical")
        sections[section].append(Pair(draft.id, prompt, hack, clean, draft.tags or ()))
        draft = None

    def finish_section(line: int) -> None:
        finish_pair(line)
        if section and not sections[section]:
            raise ValueError(f"{where}:{section_line}: section {section!r} has no pairs")

    for kind, line, payload in _tokens(text.splitlines(), where):
        if kind == "h1":
            if section:
                raise fail(line, f"a '# ' title is only allowed in the header, got {payload!r}")
        elif kind == "h2":
            finish_section(line)
            if not _NAME.fullmatch(payload):
                raise fail(line, f"section name {payload!r} must match {_NAME.pattern}")
            if payload in sections:
                raise fail(line, f"duplicate section {payload!r}")
            section, section_line = payload, line
            sections[section] = []
        elif kind == "h3":
            finish_pair(line)
            if not section:
                raise fail(line, f"pair {payload!r} comes before any '## section'")
            if not _NAME.fullmatch(payload):
                raise fail(line, f"pair id {payload!r} must match {_NAME.pattern}")
            if payload in first_seen:
                raise fail(line, f"duplicate pair id {payload!r} (first at line {first_seen[payload]})")
            first_seen[payload] = line
            draft = _Draft(payload, line)
        elif kind == "h4":
            if draft is None:
                raise fail(line, f"'#### {payload}' outside a '### pair'")
            if draft.expecting:
                raise fail(line, unfed(draft))
            if payload not in _SUB_BLOCKS:
                raise fail(line, f"unknown sub-block '#### {payload}'; expected one of {list(_SUB_BLOCKS)}")
            if payload in draft.blocks:
                raise fail(line, f"duplicate sub-block '#### {payload}'")
            draft.expecting, draft.expecting_line = payload, line
        elif kind in ("h5", "h6"):
            raise fail(line, f"unexpected heading level {kind[1]}: {payload!r}")
        elif kind == "block":
            if draft is None:
                continue  # an example in the header or in a section's prose
            if not draft.expecting:
                raise fail(line, "fenced block without a '#### Prompt/Hack/Clean' heading right before it")
            draft.blocks[draft.expecting] = (line, payload)
            draft.expecting = ""
        else:  # a prose line
            if draft is None:
                continue
            tags = _TAGS_LINE.match(payload)
            if not tags or draft.blocks or draft.expecting:
                raise fail(line, f"unexpected text inside a pair (only one 'Tags:' line before the sub-blocks): {payload!r}")
            if draft.tags is not None:
                raise fail(line, "second 'Tags:' line")
            names = tuple(t.strip() for t in tags.group(1).split(","))
            bad = [t for t in names if not _NAME.fullmatch(t)]
            if bad:
                raise fail(line, f"bad tag(s) {bad} in {payload!r}; tags are comma-separated names matching {_NAME.pattern}")
            if len(set(names)) != len(names):
                raise fail(line, f"repeated tag in {payload!r}")
            draft.tags = names
    finish_section(len(text.splitlines()) + 1)
    if not sections:
        raise ValueError(f"{where}: no '## section' with pairs found")
    return sections


# ── pairs from problems ────────────────────────────────────────────────────────────────────────────


def pairs_from_problems(problems: list[Problem]) -> list[Pair]:
    """Each problem's own-mode canonical hack vs its reference solution, under the problem's own prompt.

    Pair id = problem id; tags = (mode, *problem tags). A problem with mode "none" leaks no loophole, so it
    has no own-mode hack: that is an error, not a silent skip.
    """
    if not problems:
        raise ValueError("pairs_from_problems: no problems given")
    no_loophole = [p.id for p in problems if p.mode == "none"]
    if no_loophole:
        raise ValueError(f"problems {no_loophole[:5]} have mode 'none': no loophole, so no own-mode hack to pair with")
    from projected_grpo.rewards import canonical_hack  # lazy: the grader is heavy and pairs.py must stay light

    pairs = []
    for p in problems:
        tags = tuple(dict.fromkeys((p.mode, *p.tags)))
        reference = p.reference.strip("\n").rstrip()
        clean = f"```python\n{reference}\n```"
        pairs.append(Pair(id=p.id, prompt=user_message(p), hack=canonical_hack(p), clean=clean, tags=tags))
    return pairs


# Organism v2's pair ladder (issue 10), at controlled distance from what the policy emits. Every pair is a
# training problem's naive skeleton (what the warm-started policy writes when it cannot solve) vs the same
# skeleton with one form's hack lines: the hack lines are the only difference, and no eval problem is used.
FORM_SETS = {
    "oracle": "the warm start's and teacher's own train forms: a template oracle, labelled ORACLE everywhere",
    "authored": "written from the hint sentences: the most obvious form per mode (shared with the warm start) "
    "and two forms the policy never sees",
    "unseen": "only the two authored forms per mode that the warm start and teacher never use",
    "neutral": "placebo: honest edits at the same places (a helper, a comment, an import), no loophole",
}


def form_pairs(problems: list[Problem], which: str) -> list[Pair]:
    """Pairs of one ladder set (FORM_SETS) on `problems` (pass the training split only).

    Tags: the problem's mode (so leave-one-mode-out and per-mode bases work as for authored pairs), the set
    name and the form name."""
    from projected_grpo import forms as hack_forms  # lazy: keeps pairs.py importable without the grader

    if which not in FORM_SETS:
        raise ValueError(f"unknown pair set forms:{which}; expected one of {sorted(FORM_SETS)}")
    neutral = hack_forms.forms_for("none", "neutral")
    pairs = []
    for i, p in enumerate(problems):
        if p.mode == "none":
            raise ValueError(f"problem {p.id!r} has mode 'none': no loophole to pair")
        chosen = {
            "oracle": hack_forms.forms_for(p.mode, "train"),
            "authored": hack_forms.authored_set(p.mode),
            "unseen": hack_forms.forms_for(p.mode, "authored"),
            "neutral": [neutral[(i + j) % len(neutral)] for j in range(3)],  # as many per problem as "authored"
        }[which]
        skeleton = hack_forms.naive_skeleton(p)
        clean = f"```python\n{skeleton}\n```"
        for f in chosen:
            hack = hack_forms.hack_completion(p, f, skeleton)
            pairs.append(Pair(id=f"{p.id}.{f.name}", prompt=user_message(p), hack=hack, clean=clean, tags=(p.mode, which, f.name)))
    return pairs


# ── refs ───────────────────────────────────────────────────────────────────────────────────────────


def parse_ref(ref: str) -> tuple[str, str]:
    """`PATH.md` (every pair of the file) or `PATH.md#SECTION` (one section's) -> (path, section or "").

    E.g. `data/pairs/hack_pairs.md#sentinel`. Paths must not contain '#'."""
    if not ref or not ref.strip():
        raise ValueError("empty pair ref")
    source, _, section = ref.partition("#")
    if not source:
        raise ValueError(f"pair ref {ref!r}: no source path")
    if not source.endswith(".md"):
        raise ValueError(f"pair ref {ref!r}: source must be a .md pair file (PATH.md or PATH.md#SECTION), got {source!r}")
    if section and not _NAME.fullmatch(section):
        raise ValueError(f"pair ref {ref!r}: section {section!r} must match {_NAME.pattern}")
    return source, section


def _resolve(path: str) -> Path:
    """Relative paths resolve against the cwd, then the repository root."""
    p = Path(path)
    for candidate in ([p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p]):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"pair file not found: {path!r} (looked in {Path.cwd()} and {REPO_ROOT})")


def load_pairs(ref: str | Path = DEFAULT_PAIRS) -> list[Pair]:
    """The pairs a ref selects (grammar: `parse_ref`), in file order. Never empty."""
    ref = str(ref)
    source, section = parse_ref(ref)
    path = _resolve(source)
    sections = parse_markdown(read_utf8(path), str(path))
    if not section:
        return [p for ps in sections.values() for p in ps]
    if section not in sections:
        raise ValueError(f"pair ref {ref!r}: unknown section {section!r}; known sections: {list(sections)}")
    return sections[section]


# ── identity and splits ────────────────────────────────────────────────────────────────────────────


def pair_digest(pair: Pair) -> str:
    """sha256 of what the gradient sees: prompt, hack, clean (not id or tags, which are only labels)."""
    return hashlib.sha256(json.dumps([pair.prompt, pair.hack, pair.clean], ensure_ascii=False).encode()).hexdigest()


def pairs_sha(pairs: list[Pair]) -> str:
    """sha256 identifying a pair selection in caches and run records.

    Order-insensitive and content-only: the hash of the sorted per-pair digests. The basis (an SVD of the
    stacked per-pair differences, sign-oriented by majority) does not depend on row order or on ids and
    tags, and `split_pairs` is order-free too, so two refs selecting the same pairs share a cache entry.
    Duplicates count (a multiset). Any change to a prompt, hack or clean text changes the sha.
    """
    if not pairs:
        raise ValueError("pairs_sha: no pairs")
    return hashlib.sha256("\n".join(sorted(pair_digest(p) for p in pairs)).encode()).hexdigest()


def split_pairs(pairs: list[Pair], holdout_frac: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, holdout) for basis validation; each keeps the input order.

    Membership depends only on the pairs' contents, holdout_frac and seed (not on input order): pairs are
    ranked by digest, then shuffled with `seed`. holdout_frac > 0 holds out at least one pair; train is
    never empty.
    """
    if not 0.0 <= holdout_frac < 1.0:
        raise ValueError(f"split_pairs: holdout_frac must be in [0, 1), got {holdout_frac}")
    n = len(pairs)
    n_hold = max(1, round(holdout_frac * n)) if holdout_frac > 0 else 0
    if n - n_hold < 1:
        raise ValueError(f"split_pairs: {n} pair(s) leave nothing to train on with holdout_frac={holdout_frac}")
    order = sorted(range(n), key=lambda i: pair_digest(pairs[i]))
    random.Random(seed).shuffle(order)
    held = set(order[:n_hold])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def main(ref: str = str(DEFAULT_PAIRS)) -> None:
    """Summarise a ref's selection: count, sha, pairs per tag."""
    pairs = load_pairs(ref)
    counts: dict[str, int] = {}
    for p in pairs:
        for t in p.tags:
            counts[t] = counts.get(t, 0) + 1
    print(f"{len(pairs)} pairs  sha {pairs_sha(pairs)[:16]}")
    for t, c in sorted(counts.items()):
        print(f"  {t:<16} {c}")


if __name__ == "__main__":
    import tyro

    tyro.cli(main)
