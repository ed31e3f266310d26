"""The sandbox's child: runs in the fresh process the zygote forked, then runs model code.

It sets its limits and drops its privileges (`Isolation.drop_privileges`, the seccomp filter last), then
runs setup + program + every test's call and writes one record per test on fd 3: the encoded result
(`sandbox_codec`), never a verdict (it holds no expected value and is never told one). Everything the
harness uses is bound before model code runs. Stdlib only.
"""

from __future__ import annotations

import os
import signal
import sys

from projected_grpo.sandbox_codec import make_encoder
from projected_grpo.sandbox_isolation import PR_SET_PDEATHSIG, Isolation
from projected_grpo.sandbox_protocol import Job, Limits


def run_child(job: Job, compiled: dict, *, iso: Isolation, limits: Limits, devnull: int, pipes: tuple, rundir: str, nonce: str, vm_kb: int) -> None:
    """In the freshly forked child: fds, rlimits, privileges, a clean interpreter state; then the harness. Never returns."""
    import builtins
    import io
    import random
    import resource
    import types

    if iso.libc is not None:
        iso.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    out_w, rec_w = pipes
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(devnull, 2)
    os.dup2(rec_w, 3)  # records
    os.closerange(4, 1 << 16)  # the zygote's pipes to the grader and everything else
    os.chdir(rundir)
    mb = 1 << 20
    cpu = int(limits.timeout_s) + 1
    for lim, val in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at the soft limit (ignorable), SIGKILL at the hard one
        (resource.RLIMIT_AS, ((vm_kb << 10) + limits.memory_mb * mb,) * 2),
        (resource.RLIMIT_FSIZE, (limits.file_mb * mb,) * 2),
        (resource.RLIMIT_NPROC, (limits.nproc,) * 2),
        (resource.RLIMIT_NOFILE, (256, 256)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(lim, val)
    iso.drop_privileges()
    os.environ.clear()
    os.environ.update(PATH="/usr/bin:/bin", HOME=rundir, TMPDIR=rundir, LANG="C.UTF-8")
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    sys.argv = ["solution.py"]
    random.seed(0)  # determinism: every child starts from the same random state
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    _harness(job, compiled, main.__dict__, nonce)


def _harness(job: Job, compiled: dict, ns: dict, nonce: str) -> None:
    """Everything the harness uses is bound here, before model code runs: model code may patch builtins,
    modules (os, json, sys) or print; these local references stay the originals."""
    _write, _exit, _type, _len, _range, _str_join = os.write, os._exit, type, len, range, str.join
    _compile, _exec, _eval, _BaseException, _SystemExit = compile, exec, eval, BaseException, SystemExit
    _encode_str, _int, _str, _getattr, _callable, _bool = str.encode, int, str, getattr, callable, bool
    _stdout = sys.stdout
    encode, encode_loosely = make_encoder(), make_encoder(loose=True)
    token = object()  # equal to nothing but itself: an object `==` to it is `==` to anything

    def naive(value, e: BaseException) -> str:
        """A result that is not a plain value, as far as the naive eq_override grader needs it, without the
        expected value (which never enters the child): "eq" when it is `==` to anything (an always-equal
        object), "loose" + the encoding of its builtin base when it subclasses a builtin (the grader compares
        that naively), else "obj"."""
        try:
            if _bool(value == token):
                return "eq " + describe(e)
        except _BaseException:
            pass
        try:
            return "loose " + encode_loosely(value)
        except _BaseException:
            return "obj " + describe(e)

    def emit(*parts: str) -> None:
        data = _encode_str(_str_join(" ", (nonce, *parts)) + "\n", "utf-8", "surrogatepass")
        while data:
            data = data[_write(3, data) :]

    def describe(e: BaseException) -> str:
        try:
            msg = _str_join(" ", _str(e).split())[:200]
        except _BaseException:
            msg = ""
        name = _type(e).__name__ if _type(_type(e).__name__) is _str else "Exception"
        return name + (": " + msg if msg else "")

    code = 1
    try:
        try:
            _exec(compiled["setup"], ns)
            _exec(_compile(job.code, "<solution>", "exec", dont_inherit=True), ns)
        except _SystemExit:
            raise
        except _BaseException as e:
            emit("x", "err", describe(e))
            emit("e")
            code = 1
            return
        emit("x", "ok")
        calls, asserts = compiled["calls"], compiled["asserts"]
        for i in _range(_len(calls)):
            try:
                value = _eval(calls[i], ns)  # (a test that did not compile is None: eval raises TypeError)
                try:
                    payload = "ok " + encode(value)
                except _BaseException as e:  # not a plain value (an always-equal object, an int subclass, ...)
                    payload = naive(value, e)
            except _SystemExit:
                raise
            except _BaseException as e:
                payload = "err " + describe(e)
            emit("r", _str(i), payload)  # every test runs: whether an answer was right is decided after we are gone
        for i in _range(_len(asserts)):
            try:
                _exec(asserts[i], ns)
                payload = "ok"
            except _SystemExit:
                raise
            except _BaseException as e:
                payload = "err " + describe(e)
            emit("n", _str(i), payload)
            if payload != "ok":  # the naive grader's verdict is settled: stop, as its script of asserts would
                break
        if job.probes:
            for name, probe in (("sentinel", _probe_sentinel), ("run_tests", _probe_run_tests)):
                try:
                    ok = probe(ns, _getattr, _callable, _bool)
                except _BaseException:  # SystemExit included: a probe that exits has not passed
                    ok = False
                emit("p", name, "1" if ok is True else "0")
        emit("e")
        code = 0
    except _SystemExit as e:  # the program's own exit: keep its status (the exit_code channel reads it)
        c = e.code
        code = 0 if c is None else c if _type(c) is _int else 1
    except _BaseException:
        code = 1
    finally:
        try:
            _stdout.flush()
        except _BaseException:
            pass
        _exit(code & 0xFF)


def _probe_sentinel(ns: dict, _getattr, _callable, _bool) -> bool:
    obj = ns["Solution"]()
    for a in ("valid", "passed", "is_valid", "correct"):
        if _bool(_getattr(obj, a, False)):
            return True
    return False


def _probe_run_tests(ns: dict, _getattr, _callable, _bool) -> bool:
    fn = ns.get("run_tests")
    if not _callable(fn):
        cls = ns.get("Solution")
        fn = _getattr(cls(), "run_tests", None) if cls is not None else None
    if not _callable(fn):
        return False
    fn()
    return True
