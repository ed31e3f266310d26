"""Unit tests of sandbox.py: the result encoder, what a child can see and do, and the limits-only fallback."""

from __future__ import annotations

import json
import os
import time

import pytest
from loguru import logger

from projected_grpo.problems import DEFAULT_SETUP_CODE
from projected_grpo.rewards import _decode
from projected_grpo.sandbox import Job, Limits, Sandbox, _make_encoder


def roundtrip(value):
    return _decode(json.loads(_make_encoder()(value)))


def test_encoder_roundtrips_builtins_exactly():
    values = [0, -(10**40), 2.5, float("-inf"), "héllo\ud800", True, None, [1, (2, "x")], {1: [2.0]}, {3, 4}, frozenset({5}), []]
    for v in values:
        out = roundtrip(v)
        assert out == v and type(out) is type(v), v


def test_encoder_rejects_subclasses_and_objects():
    class I(int):
        pass

    class Eq:
        def __eq__(self, other):
            return True

    for bad in (I(3), Eq(), [1, Eq()], {"k": I(1)}, object()):
        with pytest.raises(TypeError):
            _make_encoder()(bad)
    deep = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(ValueError):
        _make_encoder()(deep)


def test_encoder_reads_linked_lists_and_trees_by_value():
    ns: dict = {}
    exec(DEFAULT_SETUP_CODE, ns)
    assert roundtrip(ns["list_node"]([1, 2, 3])).vals == (1, 2, 3)
    assert roundtrip(ns["tree_node"]([1, None, 2, 3])).vals == (1, None, 2, 3)
    cyc = ns["list_node"]([1, 2])
    cyc.next.next = cyc
    with pytest.raises(ValueError):
        _make_encoder(max_items=100)(cyc)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1, limits=Limits(timeout_s=3.0, test_timeout_s=1.0)) as sb:
        yield sb


PEEK = """
import os, socket
def probe(fn):
    try:
        return repr(fn())
    except Exception as e:
        return type(e).__name__
report = {
    "root": sorted(os.listdir("/")),
    "proc": probe(lambda: os.listdir("/proc")),
    "work": probe(lambda: os.listdir("/work")),
    "write_usr": probe(lambda: open("/usr/x", "w")),
    "write_cwd": probe(lambda: open("out.txt", "w").write("hi")),
    "net": probe(lambda: socket.create_connection(("127.0.0.1", 22), timeout=0.5)),
    "env": sorted(os.environ),
    "cwd": os.getcwd(),
    "stdin": probe(lambda: input()),
}
print(report)
"""


def test_child_sees_a_minimal_world(sandbox: Sandbox):
    if sandbox.isolation != "namespaces":
        pytest.skip(f"no namespaces here: {sandbox.detail}")
    r = sandbox.run(Job(code=PEEK, setup=""))
    report = eval(r.stdout_head)
    assert "work" not in report["root"] and "proc" not in report["root"] and "home" not in report["root"]
    assert report["proc"] == report["work"] == "FileNotFoundError"
    assert report["write_usr"] == "OSError"  # read-only file system
    assert report["write_cwd"] == "2" and r.files == {"out.txt": "hi"}
    assert report["net"] == "OSError"  # network unreachable
    assert report["env"] == ["HOME", "LANG", "PATH", "TMPDIR"] and report["stdin"] == "EOFError"


def test_records_exit_codes_and_markers(sandbox: Sandbox):
    jobs = [
        Job(code="x = 41", setup="", calls=("x + 1", "x / 0", "object()")),
        Job(code="import sys\nprint('ALL TESTS PASSED')\nsys.exit(3)", setup="", calls=("1",), markers=("all tests passed",)),
        Job(code="x = 1", setup="", asserts=("assert x == 1", "assert x == 2")),
    ]
    a, b, c = sandbox.run_many(jobs)
    assert a.exec_done and a.end and a.exit_code == 0
    assert a.results[0] == ["ok", '["i","0x2a"]'] and a.results[1][0] == "err" and a.results[1][1].startswith("ZeroDivisionError")
    assert a.results[2][0] == "obj"
    assert (b.exit_code, b.end, b.exec_done, b.results, b.stdout_hits) == (3, False, False, [None], ["all tests passed"])
    assert [r[0] for r in c.results] == ["ok", "err"]


def test_limits_only_fallback_still_contains_hostile_code():
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        with Sandbox(workers=1, limits=Limits(timeout_s=2.0, test_timeout_s=1.0), isolation="limits") as sb:
            assert sb.isolation == "limits"
            tag = os.urandom(4).hex()
            daemon = f"import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '654.{tag}'])\n"
            t0 = time.monotonic()
            loop, ok, _ = sb.run_many([Job(code="while True:\n    pass", setup="", calls=("1",)), Job(code="x = 2", setup="", calls=("x",)), Job(code=daemon, setup="")])
            assert loop.timed_out and loop.wall_s <= 3.0 and time.monotonic() - t0 < 10
            assert ok.results == [["ok", '["i","0x2"]']]
            time.sleep(0.2)
            alive = [d for d in os.listdir("/proc") if d.isdigit() and f"654.{tag}" in _cmdline(d)]
            assert alive == []
    finally:
        logger.remove(sink)
    assert any("LIMITS ONLY" in m for m in messages)


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def test_stops_at_the_first_naively_wrong_test_deterministically(sandbox: Sandbox):
    """With expected encodings the run stops where a script of asserts would: right after the first test that
    raised or is not even `==` to its expected value (a type-loose 2.0 for 2 goes on)."""
    code = "import time\ndef f(x):\n    if x == 3:\n        return 99\n    if x >= 4:\n        time.sleep(60)\n    return float(x) if x == 2 else x"
    enc = _make_encoder()
    job = Job(code=code, setup="", calls=tuple(f"f({x})" for x in range(6)))
    expects = [[enc(x) for x in range(6)]]
    for _ in range(3):  # the same place every time
        (r,) = sandbox.run_many([job], expects)
        assert [x and x[0] for x in r.results] == ["ok", "ok", "ok", "ok", None, None] and not r.timed_out and r.end
    (full,) = sandbox.run_many([Job(code="def f(x):\n    return 0", setup="", calls=("f(1)", "f(2)"))])  # no expects: all run
    assert [x[0] for x in full.results] == ["ok", "ok"]
