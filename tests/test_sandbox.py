"""Unit tests of the sandbox (sandbox*.py): the result encoder, what a child can see and do, and the limits-only fallback."""

from __future__ import annotations

import json
import os
import time

import pytest
from loguru import logger

from projected_grpo.problems import DEFAULT_SETUP_CODE
from projected_grpo.sandbox import Job, Limits, Sandbox
from projected_grpo.sandbox_codec import decode as _decode
from projected_grpo.sandbox_codec import make_encoder as _make_encoder


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


def test_the_child_runs_every_test_and_is_told_nothing(sandbox: Sandbox):
    """No verdict goes back to the child (it used to learn, test by test, whether an answer was right): a
    wrong answer does not stop it, and it has no channel from the zygote to read."""
    code = "import os\nseen = []\ndef f(x):\n    seen.append(x)\n    try:\n        os.read(4, 1)\n        seen.append('told')\n    except OSError:\n        pass\n    return 99"
    (r,) = sandbox.run_many([Job(code=code, setup="", calls=("f(1)", "f(2)", "f(3)", "seen"))])
    assert [x[0] for x in r.results] == ["ok"] * 4 and roundtrip_text(r.results[3][1]) == [1, 2, 3] and r.end


def roundtrip_text(payload: str):
    return _decode(json.loads(payload))


def test_the_grade_counts_results_up_to_where_a_script_of_asserts_stops():
    """The child ran every test; the grader counts up to the first one that raised or is not even `==`
    (a type-loose 2.0 for 2 goes on), as a script of asserts would, so grades do not change."""
    from projected_grpo.problems import Problem
    from projected_grpo.rewards import Outcome, _outcome, parse_tests
    from projected_grpo.sandbox import RunResult

    enc = _make_encoder()
    p = Problem(id="p", mode="none", method="f", starter_code="", description="", reference="",
                tests=tuple(f"assert Solution().f(x = {x}) == {x}" for x in range(5)))  # fmt: skip
    results = [["ok", enc(0)], ["ok", enc(1.0)], ["ok", enc(99)], ["ok", enc(3)], ["err", "ValueError"]]
    run = RunResult(exec_done=True, end=True, exit_code=0, results=results)
    out = _outcome(parse_tests(p.id, p.tests), run, Outcome(code_found=True, compiles=True, attempted=(), n_tests=5))
    assert (out.n_passed, out.gt_correct, out.error, out.channels["eq_override"]) == (1, False, "wrong answer", False)


# ── the grader <-> zygote conversation can never wedge ────────────────────────────────────────────


@pytest.fixture
def short_protocol(monkeypatch):
    """Zygotes started under this wait 1 s (not PROTOCOL_WAIT_S) for a frame they are owed."""
    from projected_grpo import sandbox as sbm

    monkeypatch.setattr(sbm, "PROTOCOL_WAIT_S", 1.0)


def _raw_worker_answer(frames: bytes) -> tuple[dict, float, int]:
    """Write raw frames to a fresh zygote; its answer, how long it took, and the zygote's exit status."""
    from projected_grpo.sandbox_protocol import recv as _recv
    from projected_grpo.sandbox_protocol import write_all as _write_all

    with Sandbox(workers=1, limits=Limits(timeout_s=3.0, test_timeout_s=1.0)) as sb:
        w = sb._workers[0]
        _write_all(w.proc.stdin.fileno(), frames, time.monotonic() + 5)
        t0 = time.monotonic()
        answer = _recv(w.proc.stdout.fileno(), time.monotonic() + 20)  # the old zygote never answered: TimeoutError
        took = time.monotonic() - t0
        return answer, took, w.proc.wait(timeout=5)


JOB = Job(code="class Solution:\n    def f(self):\n        return 1", setup="", calls=("Solution().f()",))


def test_a_job_frame_cut_short_is_answered_not_waited_on(short_protocol):
    """A frame that has started must finish within PROTOCOL_WAIT_S: the zygote answers with an error and
    exits, so the grader restarts it at once instead of waiting out its deadline."""
    from dataclasses import asdict

    from projected_grpo.sandbox_protocol import frame as _frame

    answer, took, status = _raw_worker_answer(_frame({"seq": 1, "job": asdict(JOB)})[:-5])
    assert "TimeoutError" in answer["error"] and took < 4.0 and status == 0


def test_a_frame_that_is_not_a_job_is_a_protocol_error_at_once(short_protocol):
    from projected_grpo.sandbox_protocol import frame as _frame

    answer, took, _ = _raw_worker_answer(_frame({"seq": 1, "expect": ["x"]}))  # the old expect frame: gone
    assert "expected a job frame" in answer["error"] and took < 1.0


def test_a_zygote_that_gives_up_is_replaced_and_the_program_still_graded(short_protocol):
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        with Sandbox(workers=1, limits=Limits(timeout_s=3.0, test_timeout_s=1.0)) as sb:
            from projected_grpo.sandbox_protocol import frame as _frame
            from projected_grpo.sandbox_protocol import write_all as _write_all

            w = sb._workers[0]
            _write_all(w.proc.stdin.fileno(), _frame({"seq": 99, "expect": None}), time.monotonic() + 5)  # derail it
            time.sleep(0.3)
            t0 = time.monotonic()
            (r,) = sb.run_many([JOB])
            assert r.results == [["ok", '["i","0x1"]']] and time.monotonic() - t0 < 10
    finally:
        logger.remove(sink)
    assert any("restarting it" in m for m in messages) and not any("died twice" in m for m in messages)


def test_run_many_reduces_each_result_as_it_ends(sandbox: Sandbox):
    jobs = [Job(code=f"x = {i}", setup="", calls=("x",)) for i in range(3)]
    assert sandbox.run_many(jobs, lambda i, res: (i, res.results[0][1])) == [(i, _make_encoder()(i)) for i in range(3)]


REAP_CHECK = """
import os, sys, time
from projected_grpo.sandbox_isolation import Isolation as _Isolation
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
t0 = time.monotonic()
first = _Isolation._reap()
took = time.monotonic() - t0
os.kill(pid, 9)
deadline = time.monotonic() + 5
while (state := _Isolation._reap()) == (False, True) and time.monotonic() < deadline:
    time.sleep(0.01)
print(first, took < 0.5, state)
"""


def test_reaping_never_waits_on_a_live_process():
    """The zygote's sweep reaps without blocking (a process slow to die after SIGKILL is left for later).
    In a fresh interpreter: reaping any child here would steal the test session's own zygotes."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", REAP_CHECK], capture_output=True, text=True, timeout=30)
    assert out.stdout.split("\n")[0] == "(False, True) True (True, False)", out.stdout + out.stderr


# ── batching: records pile up in the pipe between reads; none is lost when a later test is killed ──────


def test_the_zygote_reads_many_test_records_per_pass(sandbox: Sandbox):
    """3000 quick tests, one record each: the zygote reads them in a few batched passes, not one per test
    (a reader waiting on the pipe is woken by every write: the grader overhead of issue 13)."""
    calls = tuple(f"Solution().f({i})" for i in range(3000))
    (r,) = sandbox.run_many([Job(code="class Solution:\n    def f(self, x):\n        return x", setup="", calls=calls)])
    assert r.results == [["ok", _make_encoder()(i)] for i in range(3000)]
    assert 1 <= r.reads <= 100, r.reads


def test_records_written_before_a_test_is_killed_all_arrive(sandbox: Sandbox):
    """Batching happens in the pipe, not in the child: the records of the tests before one that hangs are
    written as each test ends, so the kill loses none of them."""
    code = "class Solution:\n    def f(self, x):\n        while x == 500:\n            pass\n        return x"
    (r,) = sandbox.run_many([Job(code=code, setup="", calls=tuple(f"Solution().f({i})" for i in range(502)))])
    assert r.timed_out and r.results[:500] == [["ok", _make_encoder()(i)] for i in range(500)] and r.results[500:] == [None, None]


def test_run_many_starts_each_job_as_it_is_yielded(sandbox: Sandbox):
    """The grader parses item k+1 while item k runs: run_many must not wait for the whole generator."""
    import threading

    first_ran = threading.Event()
    seen = []

    def jobs():
        yield Job(code="x = 1", setup="", calls=("x",))
        seen.append(first_ran.wait(30))  # True only if job 0 ran before job 1 was asked for
        yield None  # not run: reduce gets None

    def reduce(i, res):
        first_ran.set()
        return None if res is None else res.results[0]

    assert sandbox.run_many(jobs(), reduce) == [["ok", _make_encoder()(1)], None] and seen == [True]


def test_run_many_propagates_an_error_of_its_jobs_and_stays_usable(sandbox: Sandbox):
    def jobs():
        yield Job(code="x = 1", setup="", calls=("x",))
        raise ValueError("test 3 of problem p: bad")

    with pytest.raises(ValueError, match="bad"):
        sandbox.run_many(jobs())
    (r,) = sandbox.run_many([Job(code="x = 2", setup="", calls=("x",))])
    assert r.results == [["ok", _make_encoder()(2)]]
