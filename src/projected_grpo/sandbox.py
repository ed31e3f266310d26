"""Run hostile model-written Python: a pool of pre-forked zygotes, one fresh child per program.

This module is the trusted parent side and the public API (`Sandbox`, `Job`, `Limits`, `RunResult`). The
other side, one concept per module, all stdlib only (the zygote imports them before it pivots away from
the venv):
    sandbox_protocol   Job / Limits / RunResult and the framing on the grader <-> zygote pipes
    sandbox_zygote     the zygote's program: one fresh child per job, supervised against its limits
    sandbox_isolation  namespaces, pivot_root, seccomp filter, keyring, privilege drop, kill + reap
    sandbox_harness    the child: limits, then setup + program + every test's call, one record per test
    sandbox_codec      the result codec: builtin values as tagged JSON (child encodes, grader decodes)

    Grader ──pipes──► zygote (`sandbox_zygote.py` run as a script; setup modules already imported)
                      PID 1 of its own user + pid + mount + net + ipc + uts namespaces, pivoted into a
                      minimal read-only root: /usr, /lib*, the stdlib, /dev/{null,zero,random,urandom},
                      ld.so.cache. No /proc, no /work, no home, no data files; network = a downed loopback.
                      └─fork─► child: unprivileged, own IPC namespace, cwd = a fresh tmpfs at /tmp (the only
                         writable place), rlimits (CPU, AS, FSIZE, NPROC, NOFILE), empty env, a fresh session
                         keyring and a seccomp filter (no keyrings, memfd, SysV IPC, new processes, ...);
                         runs setup + program + the calls it was sent; one record per test on fd 3.

After each program the zygote, as PID 1, sends SIGKILL to every other process in its namespace
(kill(-1)) and reaps them, so nothing a program started survives it, `setsid` or not. Where namespaces
are unavailable the zygote falls back to rlimits + a process-group kill + a subreaper sweep, and the
parent logs a warning.

Ground truth never enters the child, nor the zygote: the child receives the *call* of each test
(`Solution().f(args)`), runs every test, and returns each result as plain tagged JSON built by an encoder
that accepts builtin types only (exact `type(x) is int` checks, captured before model code runs). Only
the grader compares (`rewards.py`), after the child is gone; nothing the child can observe depends on
whether an answer was right (no early-stop verdict), and nothing it leaves in the kernel survives it
(the syscall filter denies keyrings and the like; the tmpfs, IPC namespace and processes go with it).

No program can wedge a zygote: the child never waits on the zygote (which kills it at its limits), and
the zygote waits on nothing without a deadline but the grader's next job (see `sandbox_protocol`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict

from loguru import logger

from projected_grpo.sandbox_protocol import (
    PROTOCOL_WAIT_S,
    Job,
    Limits,
    ProtocolError,
    RunResult,
    frame,
    recv,
    send,
    write_all,
)

__all__ = ["Job", "Limits", "ProtocolError", "RunResult", "Sandbox"]
ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_zygote.py")  # the zygote's program

# The zygote gets no secrets: a fixed environment. PYTHONHASHSEED fixes set/dict-of-str ordering so grading
# is deterministic across workers and runs.
_ZYGOTE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


class _Worker:
    """Parent-side handle of one zygote process."""

    def __init__(self, config: dict, tag: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", ZYGOTE, "--zygote", tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_ZYGOTE_ENV,
            close_fds=True,
            cwd="/",
        )
        os.set_blocking(self.proc.stdin.fileno(), False)  # so a write can give up at its deadline
        send(self.proc.stdin.fileno(), config, time.monotonic() + PROTOCOL_WAIT_S)
        self.hello: dict = {}
        self.seq = 0  # numbers the jobs, so an answer to another job is caught, not taken for this one's

    def handshake(self) -> _Worker:
        """Wait for the zygote's hello (separate from __init__ so a pool's zygotes start in parallel)."""
        self.hello = recv(self.proc.stdout.fileno(), time.monotonic() + 60)
        return self

    def run(self, job: Job, wait_s: float) -> RunResult:
        self.seq += 1
        deadline = time.monotonic() + wait_s
        write_all(self.proc.stdin.fileno(), frame({"seq": self.seq, "job": asdict(job)}), deadline)
        answer = recv(self.proc.stdout.fileno(), deadline)
        if "error" in answer:
            raise ProtocolError(f"sandbox zygote gave up on job {answer.get('seq')}: {answer['error']}")
        if answer.get("seq") != self.seq or not isinstance(answer.get("result"), dict):
            raise ProtocolError(f"sandbox zygote answered job {answer.get('seq')!r} to job {self.seq}")
        try:
            return RunResult(**answer["result"])
        except TypeError as e:
            raise ProtocolError(f"sandbox zygote sent a malformed result: {e}") from None

    def close(self) -> None:
        _kill_worker(self.proc)


def _kill_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()  # a zygote exits on EOF; kill in case it is stuck
            proc.wait(timeout=2)
        except Exception:
            proc.kill()
            proc.wait()


class Sandbox:
    """A pool of zygotes; `run_many` runs jobs in parallel, results in input order."""

    def __init__(self, workers: int | None = None, limits: Limits = Limits(), isolation: str = "auto", slack_s: float = 30.0):
        if isolation not in ("auto", "namespaces", "limits"):
            raise ValueError(f"isolation must be auto, namespaces or limits, not {isolation!r}")
        self.limits = limits
        # How long past timeout_s the grader waits for an answer before it calls the zygote wedged. Every
        # wait inside the zygote is bounded, so this never fires; tests shorten it to see a wedge in seconds.
        self.slack_s = slack_s
        self.tag = os.urandom(8).hex()  # marks this pool's processes (the gates look for survivors by it)
        self._config = dict(limits=asdict(limits), isolation=isolation, setup_modules=_SETUP_MODULES, protocol_wait_s=PROTOCOL_WAIT_S)
        self._lock = threading.Lock()
        self.max_child_rss_kb = 0  # the largest program's peak RSS so far (for the benchmark)
        self._workers = self._start_workers(max(1, workers or _cpus()))
        self._finalizer = weakref.finalize(self, _kill_workers, [w.proc for w in self._workers])
        self.isolation = self._workers[0].hello["isolation"]
        self.detail = self._workers[0].hello["detail"]
        self.syscall_filter = self._workers[0].hello["syscall_filter"]  # "seccomp", or why there is none

        if self.isolation == "namespaces":
            logger.info(f"sandbox: {len(self._workers)} workers, isolation = {self.detail}")
        else:
            logger.warning(f"sandbox: {len(self._workers)} workers, isolation = LIMITS ONLY ({self.detail})")
        if self.syscall_filter != "seccomp":
            # Without it, kernel keyrings carry data from one program to the next (and between workers),
            # memfd memory escapes RLIMIT_AS and forked descendants escape the CPU clock (issue 18).
            logger.warning(f"sandbox: NO SYSCALL FILTER ({self.syscall_filter}); install libseccomp + pyseccomp")
        self._idle = list(self._workers)
        self._pool = ThreadPoolExecutor(len(self._workers), thread_name_prefix="sandbox")

    def _start_workers(self, n: int) -> list[_Worker]:
        ws = [w.handshake() for w in [_Worker(self._config, self.tag) for _ in range(n)]]
        if any("error" in w.hello for w in ws) and self._config["isolation"] == "auto":
            # Namespaces failed half-way (after unshare): start over without them, and say so.
            err = next(w.hello["error"] for w in ws if "error" in w.hello)
            _kill_workers([w.proc for w in ws])
            self._config = {**self._config, "isolation": "limits", "why": err}
            ws = [w.handshake() for w in [_Worker(self._config, self.tag) for _ in range(n)]]
        if any("error" in w.hello for w in ws):
            _kill_workers([w.proc for w in ws])
            raise RuntimeError(f"sandbox zygote failed to start: {next(w.hello['error'] for w in ws if 'error' in w.hello)}")
        return ws

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def zygote_pids(self) -> list[int]:
        """Host pids of the pool's own processes (with namespaces, each zygote is the child of a waiting parent)."""
        return sorted({pid for w in self._workers for pid in (w.proc.pid, w.hello["pid"])})

    def run_many(self, jobs: Iterable[Job | None], reduce=None) -> list:
        """Run jobs in parallel; results in input order. `reduce(i, result)`, when given, is applied in the
        worker thread as each run ends and its value returned instead, so a caller that keeps only a small
        summary never holds every program's records at once (up to result_bytes each).

        Each job starts as soon as `jobs` yields it, so a generator that prepares the next job overlaps that
        work with the runs already going. A None job is not run (`reduce(i, None)`). If `jobs` raises, the
        jobs not yet started are cancelled, the running ones finish, and the error propagates."""
        reduce = reduce or (lambda i, res: res)
        futures: list[Future] = []
        try:
            for i, job in enumerate(jobs):
                futures.append(self._pool.submit(lambda i=i, job=job: reduce(i, None if job is None else self._run_one(job))))
        except BaseException:
            for f in futures:
                f.cancel()
            wait(futures)
            raise
        return [f.result() for f in futures]

    def run(self, job: Job) -> RunResult:
        return self.run_many([job])[0]

    def _run_one(self, job: Job) -> RunResult:
        with self._lock:
            w = self._idle.pop()
        wait_s = self.limits.timeout_s + self.slack_s  # the zygote enforces the limits; this only catches a wedged zygote
        broken = (EOFError, TimeoutError, OSError, json.JSONDecodeError, ProtocolError)
        try:
            try:
                res = w.run(job, wait_s)
            except broken as e:
                # A zygote never runs model code itself, so this is an infrastructure failure: restart, retry once.
                logger.warning(f"sandbox zygote {w.proc.pid} failed ({type(e).__name__}: {e}); restarting it")
                w = self._replace(w)
                try:
                    res = w.run(job, wait_s)
                except broken as e2:
                    # Twice on one program: without namespaces a program can kill its zygote. Fail the program,
                    # not the whole batch (a real infrastructure fault shows up as a warning on every program).
                    logger.warning(f"sandbox zygote died twice on one program ({type(e2).__name__}: {e2}); failing it")
                    w = self._replace(w)
                    res = RunResult(exec_error="sandbox worker died", results=[None] * len(job.calls or job.asserts))
            self.max_child_rss_kb = max(self.max_child_rss_kb, res.maxrss_kb)
            return res
        finally:
            with self._lock:
                self._idle.append(w)

    def _replace(self, w: _Worker) -> _Worker:
        w.close()
        new = self._start_workers(1)[0]
        with self._lock:
            self._workers[self._workers.index(w)] = new
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _kill_workers, [x.proc for x in self._workers])
        return new

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _kill_workers(procs: list) -> None:
    for p in procs:
        _kill_worker(p)


# Modules the benchmark's setup code imports; the zygote imports them once so each child starts warm.
_SETUP_MODULES = [
    "random", "functools", "collections", "string", "math", "datetime", "typing", "itertools", "heapq",
    "bisect", "operator", "re", "copy", "fractions", "decimal", "statistics", "array", "json", "io",
    "dataclasses", "enum", "abc", "types", "inspect", "traceback", "contextlib", "ctypes", "tempfile", "pathlib",
]  # fmt: skip
