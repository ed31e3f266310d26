"""What crosses the pipes between the grader and a sandbox zygote: the job, its limits, the result, and
the framing (8-byte length + JSON, both directions). Stdlib only: the zygote imports it too.

Per program the grader writes one frame, {"seq", "job"}, and the zygote answers one, {"seq", "result"}
(or {"seq", "error"} just before it exits). Every wait on the other side of a pipe has a deadline, except
the zygote's idle wait for the next job: a lost, late or foreign frame is a ProtocolError within
PROTOCOL_WAIT_S, never a hang.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0  # wall clock for the whole program: setup, module code, every test, probes
    test_timeout_s: float = 2.0  # CPU seconds between two progress records (module code counts as one)
    memory_mb: int = 1024  # address space the program may add to the zygote's own
    file_mb: int = 16  # RLIMIT_FSIZE, and the size of the program's tmpfs
    nproc: int = 8  # tasks (processes + threads) the program may hold at once
    output_bytes: int = 8 << 20  # stdout beyond this kills the program
    result_bytes: int = 32 << 20  # test records beyond this kill the program
    record_bytes: int = (1 << 20) + 64  # one test's record beyond this is dropped at once (the encoder's own cap)


@dataclass(frozen=True)
class Job:
    code: str  # the model's program
    setup: str  # the problem's preamble (imports, ListNode/TreeNode helpers), run first in the same namespace
    calls: tuple[str, ...] = ()  # ground-truth mode: expressions to evaluate; results come back encoded
    asserts: tuple[str, ...] = ()  # naive mode: statements to exec; each reports pass/fail only
    probes: bool = False  # after the calls: sentinel attributes and the completion's own run_tests()
    markers: tuple[str, ...] = ()  # stdout substrings to look for (case-insensitive)


@dataclass
class RunResult:
    exec_error: str | None = None  # setup/program raised (None: it ran, or never got that far)
    exec_done: bool = False  # setup + program finished without raising
    results: list = field(default_factory=list)  # per call/assert: ["ok", encoded] | ["err"|"obj", msg] | None (never ran)
    probes: dict = field(default_factory=dict)  # probe name -> bool
    end: bool = False  # the harness reached its end (the program did not exit early)
    exit_code: int | None = None  # the child's exit status (None when killed by a signal)
    signal: int | None = None
    timed_out: bool = False
    output_limit: bool = False  # killed for too much stdout or too large results
    stdout_hits: list = field(default_factory=list)  # which markers appeared on stdout
    stdout_head: str = ""
    files: dict = field(default_factory=dict)  # top-level regular files left in the cwd: name -> first 4 KiB
    wall_s: float = 0.0
    cpu_s: float = 0.0
    maxrss_kb: int = 0
    reads: int = 0  # passes of the zygote's loop that read the child's records (batched: not one per test)


PROTOCOL_WAIT_S = 10.0  # the most either side waits for a frame the other has started or owes right away


class ProtocolError(RuntimeError):
    """The grader and a zygote disagree about the conversation (a lost, late or mismatched frame)."""


def frame(obj: object) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">Q", len(data)) + data


def ready(fd: int, write: bool, deadline: float | None) -> bool:
    """Wait until fd is readable (writable); False at the deadline. poll: no FD_SETSIZE limit on big hosts."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if poller.poll(None if left is None else max(1, int(left * 1000))):
            return True


def write_all(fd: int, data: bytes, deadline: float | None) -> None:
    """Write all of data to a non-blocking fd, never waiting past the deadline."""
    view = memoryview(data)
    while view:
        if not ready(fd, True, deadline):
            raise TimeoutError("sandbox pipe: the other side stopped reading")
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            pass


def send(fd: int, obj: object, deadline: float | None = None) -> None:
    write_all(fd, frame(obj), deadline)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if not ready(fd, False, deadline):
            raise TimeoutError("sandbox zygote did not answer in time")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("sandbox zygote closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd: int, deadline: float | None = None) -> dict:
    (n,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    msg = json.loads(_read_exact(fd, n, deadline))
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object frame, got {type(msg).__name__}")
    return msg
