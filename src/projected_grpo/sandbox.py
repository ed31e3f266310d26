"""Run hostile model-written Python: a pool of pre-forked zygotes, one fresh child per program.

    Grader ──pipes──► zygote (this file run as a script; stdlib only; setup modules already imported)
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
the zygote waits on nothing without a deadline but the grader's next job (see the wire format).

This file is also the zygote's program, so it imports nothing outside the standard library at module
level (loguru is imported lazily on the parent side).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

UNPRIVILEGED_UID = 1000  # uid of the child inside the user namespace (mapped to nobody outside when root)
NOBODY = 65534


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


# ── wire format: 8-byte length + JSON, both directions ────────────────────────────────────────────
#
# Per program the grader writes one frame, {"seq", "job"}, and the zygote answers one, {"seq", "result"}
# (or {"seq", "error"} just before it exits). Every wait on the other side of a pipe has a deadline, except
# the zygote's idle wait for the next job: a lost, late or foreign frame is a ProtocolError within
# PROTOCOL_WAIT_S, never a hang.

PROTOCOL_WAIT_S = 10.0  # the most either side waits for a frame the other has started or owes right away
KILL_WAIT_S = 5.0  # after a SIGKILL, how long the zygote waits for the program to die before moving on
_os_exit = os._exit  # the child's last resort, bound before any program can replace os._exit


class ProtocolError(RuntimeError):
    """The grader and a zygote disagree about the conversation (a lost, late or mismatched frame)."""


def _frame(obj: object) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">Q", len(data)) + data


def _ready(fd: int, write: bool, deadline: float | None) -> bool:
    """Wait until fd is readable (writable); False at the deadline. poll: no FD_SETSIZE limit on big hosts."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if poller.poll(None if left is None else max(1, int(left * 1000))):
            return True


def _write_all(fd: int, data: bytes, deadline: float | None) -> None:
    """Write all of data to a non-blocking fd, never waiting past the deadline."""
    view = memoryview(data)
    while view:
        if not _ready(fd, True, deadline):
            raise TimeoutError("sandbox pipe: the other side stopped reading")
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            pass


def _send(fd: int, obj: object, deadline: float | None = None) -> None:
    _write_all(fd, _frame(obj), deadline)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if not _ready(fd, False, deadline):
            raise TimeoutError("sandbox zygote did not answer in time")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("sandbox zygote closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(fd: int, deadline: float | None = None) -> dict:
    (n,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    msg = json.loads(_read_exact(fd, n, deadline))
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object frame, got {type(msg).__name__}")
    return msg


# ── parent side ───────────────────────────────────────────────────────────────────────────────────

# The zygote gets no secrets: a fixed environment. PYTHONHASHSEED fixes set/dict-of-str ordering so grading
# is deterministic across workers and runs.
_ZYGOTE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


class _Worker:
    """Parent-side handle of one zygote process."""

    def __init__(self, config: dict, tag: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", os.path.abspath(__file__), "--zygote", tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_ZYGOTE_ENV,
            close_fds=True,
            cwd="/",
        )
        os.set_blocking(self.proc.stdin.fileno(), False)  # so a write can give up at its deadline
        _send(self.proc.stdin.fileno(), config, time.monotonic() + PROTOCOL_WAIT_S)
        self.hello: dict = {}
        self.seq = 0  # numbers the jobs, so an answer to another job is caught, not taken for this one's

    def handshake(self) -> _Worker:
        """Wait for the zygote's hello (separate from __init__ so a pool's zygotes start in parallel)."""
        self.hello = _recv(self.proc.stdout.fileno(), time.monotonic() + 60)
        return self

    def run(self, job: Job, wait_s: float) -> RunResult:
        self.seq += 1
        deadline = time.monotonic() + wait_s
        _write_all(self.proc.stdin.fileno(), _frame({"seq": self.seq, "job": asdict(job)}), deadline)
        answer = _recv(self.proc.stdout.fileno(), deadline)
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
        from loguru import logger  # lazy: this file is also the zygote's program, which has stdlib only

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

    def run_many(self, jobs: list[Job], reduce=None) -> list:
        """Run jobs in parallel; results in input order. `reduce(i, result)`, when given, is applied in the
        worker thread as each run ends and its value returned instead, so a caller that keeps only a small
        summary never holds every program's records at once (up to result_bytes each)."""
        reduce = reduce or (lambda i, res: res)
        return list(self._pool.map(lambda i: reduce(i, self._run_one(jobs[i])), range(len(jobs))))

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
                from loguru import logger

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


# ══ zygote side (runs as `python sandbox.py --zygote TAG`; stdlib only) ══════════════════════════════

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME, MNT_DETACH = 1 << 21, 1 << 24, 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECUREBITS, PR_CAPBSET_DROP = 1, 4, 28, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
SYSCALLS = {"x86_64": {"pivot_root": 155, "keyctl": 250}, "aarch64": {"pivot_root": 41, "keyctl": 219}}
KEYCTL_JOIN_SESSION_KEYRING, CLONE_THREAD = 1, 0x00010000

# Kernel objects and powers a LeetCode program has no use for, denied in every child (EPERM). Each closes a
# hole of issue 18: keyrings are per-uid kernel state that outlives a program (a forged gt_correct was
# carried through them from one program to the next, and the per-uid key quota is shared between workers);
# memfd and SysV shared memory / message queues hold memory RLIMIT_AS does not count; a new process has
# its own CPU clock (clone without CLONE_THREAD: threads stay allowed and share the process's clock).
DENIED_SYSCALLS = (
    "add_key", "request_key", "keyctl",
    "memfd_create", "memfd_secret", "shmget", "shmat", "msgget", "semget", "mq_open",
    "fork", "vfork",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "unshare", "setns", "mount", "umount2", "pivot_root", "ptrace", "process_vm_readv", "process_vm_writev",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "kcmp", "pidfd_getfd",
)  # fmt: skip


def _syscall_filter():
    """The children's seccomp filter (built once, in the zygote, before the root is pivoted away from the
    venv), or the reason there is none. libseccomp through pyseccomp (ctypes): no hand-built BPF."""
    try:
        import errno

        import pyseccomp as sc

        f = sc.SyscallFilter(sc.ALLOW)
        for name in DENIED_SYSCALLS:
            try:
                f.add_rule(sc.ERRNO(errno.EPERM), name)
            except (OSError, ValueError, RuntimeError):  # not a syscall on this architecture
                pass
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags sit in memory, out of a filter's reach: glibc falls back to clone
        return f, "seccomp"
    except Exception as e:  # noqa: BLE001 -- no libseccomp, no pyseccomp, or a kernel without seccomp
        return None, f"no seccomp filter: {type(e).__name__}: {e}"


class _Libc:
    """The few Linux syscalls Python 3.11's os module lacks (unshare, mount, pivot_root, prctl, capset)."""

    def __init__(self):
        import ctypes
        import platform

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.nr = SYSCALLS.get(platform.machine())
        self.libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        self.libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        self.libc.syscall.restype = ctypes.c_long

    def _check(self, r: int, what: str) -> int:
        if r < 0:
            e = self.ctypes.get_errno()
            raise OSError(e, f"{what}: {os.strerror(e)}")
        return r

    def unshare(self, flags: int) -> None:
        self._check(self.libc.unshare(flags), "unshare")

    def mount(self, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        self._check(self.libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {dst}")

    def umount(self, target: str, flags: int = MNT_DETACH) -> None:
        self._check(self.libc.umount2(target.encode(), flags), f"umount {target}")

    def pivot_root(self, new: str, old: str) -> None:
        c = self.ctypes
        self._check(self.libc.syscall(c.c_long(self.nr["pivot_root"]), c.c_char_p(new.encode()), c.c_char_p(old.encode())), "pivot_root")

    def prctl(self, option: int, arg: int = 0) -> int:
        return self.libc.prctl(option, arg, 0, 0, 0)

    def join_fresh_session_keyring(self) -> None:
        """An anonymous session keyring of its own (the user keyring stays shared: the filter denies keyctl)."""
        c = self.ctypes
        self.libc.syscall(c.c_long(self.nr["keyctl"]), c.c_long(KEYCTL_JOIN_SESSION_KEYRING), c.c_void_p(None))

    def drop_caps(self) -> None:
        """Unprivileged host: the child is uid 0 of its user namespace; take away every capability there."""
        c = self.ctypes
        self._check(self.prctl(PR_SET_SECUREBITS, 0x2F), "securebits")  # NOROOT, NO_SETUID_FIXUP (+locks), KEEP_CAPS_LOCKED
        for cap in range(64):
            self.prctl(PR_CAPBSET_DROP, cap)  # EINVAL past the last capability: ignore

        class Header(c.Structure):
            _fields_ = [("version", c.c_uint32), ("pid", c.c_int)]

        class Data(c.Structure):
            _fields_ = [("effective", c.c_uint32), ("permitted", c.c_uint32), ("inheritable", c.c_uint32)]

        data = (Data * 2)()
        self._check(self.libc.capset(c.byref(Header(0x20080522, 0)), data), "capset")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount_flags(path: str) -> int:
    """Flags to keep when remounting a bind of `path` read-only (a user namespace may not clear locked ones)."""
    f = os.statvfs(path).f_flag
    keep = MS_NOSUID | MS_NODEV
    for st, ms in ((8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME), (4096, MS_RELATIME)):
        if f & st:
            keep |= ms
    if not f & (1024 | 4096):
        keep |= MS_STRICTATIME
    return keep


class _Isolation:
    """Set up (once, in the zygote) and apply (per child) the strongest isolation available."""

    def __init__(self, libc: _Libc | None, mode: str):
        self.libc, self.mode = libc, mode
        self.root = os.geteuid() == 0
        self.uid = self.gid = 0
        self.detail = ""
        self.unshared = False  # past the point of no return: a failure now leaves the zygote half-isolated
        self.host_pid = os.getpid()
        self.seccomp, self.syscall_filter = _syscall_filter()

    # -- namespaces ------------------------------------------------------------------------------

    def enter_namespaces(self) -> None:
        libc = self.libc
        if libc is None or libc.nr is None:
            raise OSError("no ctypes/libc syscalls for this platform")
        binds = self._bind_sources()  # resolved before we lose the host's view
        uid, gid = os.getuid(), os.getgid()
        helper = None
        if self.root:
            # Map uid 0 (the zygote, which must read root-owned files to bind them) and an unprivileged uid for
            # children, mapped to nobody outside so RLIMIT_NPROC applies (it never does for host root). Writing a
            # two-line map needs CAP_SETUID in the parent namespace, so a helper still outside writes it.
            helper = self._map_helper(f"0 {uid} 1\n{UNPRIVILEGED_UID} {NOBODY} 1\n", f"0 {gid} 1\n{UNPRIVILEGED_UID} {NOBODY} 1\n")
        libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID)
        self.unshared = True
        if helper is not None:
            os.write(helper[1], b"go")
            os.close(helper[1])
            _, status = os.waitpid(helper[0], 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise OSError("writing the user namespace id maps failed")
            self.uid = self.gid = UNPRIVILEGED_UID
        else:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1\n")
            _write("/proc/self/gid_map", f"0 {gid} 1\n")
        self._become_init()
        libc.mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
        new = "/tmp"  # any existing directory works as the mount point of the new root
        libc.mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for src, kind in binds:
            dst = new + src
            if kind == "link":
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(os.readlink(src), dst)
                continue
            if kind == "dir":
                os.makedirs(dst, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                open(dst, "w").close()
            flags = _mount_flags(src) if kind != "dev" else 0
            libc.mount(src, dst, None, MS_BIND | MS_REC)
            if kind != "dev":  # device nodes stay writable (/dev/null); everything else read-only
                libc.mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
        os.makedirs(new + "/tmp")  # each child gets a fresh tmpfs mounted here
        os.chdir(new)
        libc.pivot_root(".", ".")  # the old root now sits on top of the new one ...
        libc.umount(".", MNT_DETACH)  # ... and goes: nothing of the host is reachable any more
        os.chdir("/")
        libc.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        self.mode = "namespaces"
        self.detail = "user+pid+net+mount+ipc+uts namespaces, pivot_root into a read-only root, tmpfs cwd, rlimits"

    def _become_init(self) -> None:
        """Fork into the new PID namespace as its PID 1; the original process just waits and exits with us.

        As init, after each program `kill(-1, SIGKILL)` reaches every process in the namespace but us (setsid
        or not), and orphans are reparented to us, so nothing a program starts outlives it."""
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        self.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # Children may signal PID 1 only where it has a handler, and must never read its memory (other
        # programs' records pass through it): no SIGINT handler, not dumpable (no ptrace, no /proc/1/mem).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.libc.prctl(PR_SET_DUMPABLE, 0)
        self.host_pid = int(os.readlink("/proc/self"))  # the host's procfs is still mounted: our pid out there

    def _map_helper(self, uid_map: str, gid_map: str) -> tuple[int, int]:
        r, w = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(w)
                os.read(r, 2)
                _write(f"/proc/{me}/uid_map", uid_map)
                _write(f"/proc/{me}/gid_map", gid_map)
                code = 0
            finally:
                os._exit(code)
        os.close(r)
        return pid, w

    @staticmethod
    def _bind_sources() -> list[tuple[str, str]]:
        out = []
        for d in ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"):
            if os.path.islink(d):
                out.append((d, "link"))
            elif os.path.isdir(d):
                out.append((d, "dir"))
        stdlib = os.path.realpath(os.path.dirname(os.__file__))
        if not stdlib.startswith("/usr/"):
            out.append((stdlib, "dir"))
        if os.path.isfile("/etc/ld.so.cache"):  # the loader needs it to find multiarch libs for C extensions
            out.append(("/etc/ld.so.cache", "file"))
        out += [(d, "dev") for d in ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom") if os.path.exists(d)]
        return out

    # -- per child -------------------------------------------------------------------------------

    def make_rundir(self, file_mb: int) -> str:
        if self.mode == "namespaces":
            opts = f"size={file_mb}m,nr_inodes=4096,mode=0700,uid={self.uid},gid={self.gid}"
            self.libc.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts)
            return "/tmp"
        import tempfile

        d = tempfile.mkdtemp(prefix="pg_sandbox_")
        if self.root:
            os.chown(d, NOBODY, NOBODY)
        return d

    def remove_rundir(self, path: str) -> None:
        if self.mode == "namespaces":
            self.libc.umount("/tmp", MNT_DETACH)
        else:
            import shutil

            shutil.rmtree(path, ignore_errors=True)

    def spawn(self) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                if self.mode == "namespaces":
                    self.libc.unshare(CLONE_NEWIPC)  # no SysV IPC objects left over from earlier programs
                else:
                    os.setsid()  # own process group, so a killpg reaches what it forks (setsid children: the sweep)
            except BaseException:
                os._exit(70)  # a child must never fall back into the zygote's loop (it still holds the grader's pipes)
        return pid

    def drop_privileges(self) -> None:
        """In the child, after rlimits: become an unprivileged user with no capabilities."""
        if self.mode == "namespaces" and self.root:
            os.setgroups([])
            os.setgid(UNPRIVILEGED_UID)
            os.setuid(UNPRIVILEGED_UID)
        elif self.mode == "namespaces":
            self.libc.drop_caps()
        elif self.root:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        if self.libc is not None:
            self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1)
            if self.libc.nr is not None:
                self.libc.join_fresh_session_keyring()
        if self.seccomp is not None:
            self.seccomp.load()  # last: everything above needs syscalls the filter denies

    def kill(self, pid: int) -> None:
        """SIGKILL the program and everything it started (reaping: the caller, then `sweep`)."""
        _sigkill(os.kill, pid)
        if self.mode == "namespaces":
            _sigkill(os.kill, -1)  # from PID 1: everyone in the namespace but us
        else:
            _sigkill(os.killpg, pid)

    def sweep(self, wait_s: float = 5.0) -> None:
        """Kill and reap whatever the program left behind (after the program itself was reaped).

        Bounded: a process still dying wait_s after its SIGKILL is left to a later sweep, never waited on."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.mode == "namespaces":
                _sigkill(os.kill, -1)
                kids = []
            else:  # limits mode: we are a subreaper, so orphans come to us; kill each child and its group
                kids = _children()
                for k in kids:
                    _sigkill(os.killpg, k)
                    _sigkill(os.kill, k)
            reaped, left = self._reap()
            # namespaces: until no child is left (everyone was SIGKILLed); limits: until a pass finds nothing
            if (not left if self.mode == "namespaces" else not reaped and not kids) or time.monotonic() > deadline:
                return
            time.sleep(0.001)

    @staticmethod
    def _reap() -> tuple[bool, bool]:
        """Reap dead children without waiting: (any were reaped, any child is left)."""
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped, False
            if pid == 0:
                return reaped, True
            reaped = True


def _children() -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{os.getpid()}/task"):
            with open(f"/proc/{os.getpid()}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def _sigkill(fn, target: int) -> None:
    try:
        fn(target, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _zygote_main() -> None:
    cmd_in, cmd_out = 0, 1
    os.set_blocking(cmd_out, False)  # so an answer the grader stopped reading is given up on, not blocked on
    config = _recv(cmd_in, time.monotonic() + PROTOCOL_WAIT_S)  # the grader writes it right after starting us
    limits = Limits(**config["limits"])
    wait_s = float(config.get("protocol_wait_s", PROTOCOL_WAIT_S))
    # Warm imports (the benchmark's setup code and common solution modules): every child inherits them.
    for m in config["setup_modules"]:
        try:
            __import__(m)
        except Exception:
            pass
    try:
        libc = _Libc()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the grader died: so do we
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    except Exception:
        libc = None
    vm_kb = _vm_kb()  # (before namespaces: /proc goes away) the child's memory limit is on top of this
    iso = _Isolation(libc, "limits")
    warning = config.get("why", "")
    if config["isolation"] in ("auto", "namespaces"):
        try:
            iso.enter_namespaces()
        except Exception as e:  # noqa: BLE001 -- any failure here means: no namespaces on this host
            if config["isolation"] == "namespaces" or iso.unshared:  # half-isolated: the parent starts over
                _send(cmd_out, {"error": f"namespace setup failed: {type(e).__name__}: {e}"}, time.monotonic() + wait_s)
                return
            warning = f"namespaces unavailable ({type(e).__name__}: {e})"
    if iso.mode == "limits":
        iso.detail = "rlimits, setsid + subreaper kill, temp-dir cwd" + (f"; {warning}" if warning else "")
    with open(os.devnull, "rb") as f:  # opened before any child: its stdin/stderr
        devnull = os.dup(f.fileno())
    hello = {"isolation": iso.mode, "detail": iso.detail, "pid": iso.host_pid, "syscall_filter": iso.syscall_filter}
    _send(cmd_out, hello, time.monotonic() + wait_s)
    while True:
        _ready(cmd_in, False, None)  # idle: the one wait without a deadline (EOF: the grader is done with us)
        seq = None
        try:
            msg = _recv(cmd_in, time.monotonic() + wait_s)  # a frame that has started must finish promptly
            seq = msg.get("seq")
            job = _job_frame(msg)
            answer = {"seq": seq, "result": asdict(_supervise(job, iso, limits, devnull, vm_kb))}
        except EOFError:
            return  # the grader closed the pipe: it is shutting down, or gave up on us and starts a new zygote
        except (ProtocolError, TimeoutError, ValueError) as e:  # out of step with the grader: it restarts us
            _give_up(cmd_out, seq, str(e) if isinstance(e, ProtocolError) else f"{type(e).__name__}: {e}", wait_s)
            return
        except Exception as e:  # a bug of the zygote's own: say where, then answer rather than leave it waiting
            import traceback

            traceback.print_exc()
            _give_up(cmd_out, seq, f"zygote failed: {type(e).__name__}: {e}", wait_s)
            return
        try:
            _send(cmd_out, answer, time.monotonic() + wait_s)
        except (OSError, TimeoutError):
            return  # the grader stopped listening (it timed us out and starts a new zygote)


def _job_frame(msg: dict) -> Job:
    if set(msg) != {"seq", "job"} or not isinstance(msg["job"], dict):
        raise ProtocolError(f"expected a job frame, got one with keys {sorted(msg)[:6]}")
    try:
        return Job(**{k: tuple(v) if isinstance(v, list) else v for k, v in msg["job"].items()})
    except TypeError as e:
        raise ProtocolError(f"malformed job frame: {e}") from None


def _give_up(cmd_out: int, seq: object, why: str, wait_s: float) -> None:
    """Tell the grader why we stop (it restarts us at once instead of waiting out its deadline), then exit."""
    print(f"sandbox zygote: giving up: {why}", file=sys.stderr, flush=True)
    try:
        _send(cmd_out, {"seq": seq, "error": why}, time.monotonic() + wait_s)
    except (OSError, TimeoutError):
        pass


_COMPILED: dict = {}  # (kind, sources) -> code objects; the same problem's tests are graded many times


def _compiled(job: Job) -> dict:
    """Compile the trusted parts (setup, test calls, asserts) once per zygote; never the model's code."""
    out = {}
    for kind, srcs, mode in (("setup", (job.setup,), "exec"), ("calls", job.calls, "eval"), ("asserts", job.asserts, "exec")):
        key = (kind, srcs)
        if key not in _COMPILED:
            if len(_COMPILED) > 512:
                _COMPILED.clear()
            _COMPILED[key] = tuple(_compile_or_none(src, f"<{kind} {i}>", mode) for i, src in enumerate(srcs))
        out[kind] = _COMPILED[key]
    out["setup"] = out["setup"][0]
    return out


def _compile_or_none(src: str, name: str, mode: str):
    try:
        return compile(src, name, mode, dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return None  # a broken test (or setup): the child reports it as an error of that test


def _vm_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 512 << 10


def _supervise(job: Job, iso: _Isolation, limits: Limits, devnull: int, vm_kb: int) -> RunResult:
    """Run one program in a fresh child; collect its records, stdout, files and fate.

    Never blocks: the child is killed at its limits, and one that is still dying KILL_WAIT_S after its
    SIGKILL is left to a later sweep. Each pass of the loop does work linear in what was read (64 KiB at
    most), so the deadline holds whatever the child sends."""
    res = RunResult(results=[None] * len(job.calls or job.asserts))
    t0 = time.monotonic()
    rundir = iso.make_rundir(limits.file_mb)
    out_r, out_w = os.pipe()
    rec_r, rec_w = os.pipe()
    nonce = os.urandom(8).hex()
    compiled = _compiled(job)
    gc.freeze()  # the child's collections skip everything inherited: fewer copy-on-write page faults
    pid = iso.spawn()
    if pid == 0:  # ── the child: never returns
        try:
            os.close(out_r)
            os.close(rec_r)
            _child(job, compiled, iso, limits, devnull, (out_w, rec_w), rundir, nonce, vm_kb)
        finally:
            _os_exit(70)  # (bound at import: a program may replace os._exit)
    gc.unfreeze()
    os.close(out_w)
    os.close(rec_w)
    open_fds = {out_r: "out", rec_r: "rec"}
    stdout_head, seen, tail, out_total = bytearray(), set(), b"", 0
    markers = [m.lower().encode() for m in job.markers]
    rec_part, rec_total = [], 0  # the record line being received, in pieces (joined once, at its newline)
    clock = ((~pid) << 3) | 2  # the child's process CPU clock (CPUCLOCK_SCHED), readable from here
    cpu_mark = 0.0  # CPU time at the last progress record
    killed_at = None  # when we sent the SIGKILL

    def kill() -> None:
        nonlocal killed_at
        killed_at = time.monotonic()
        iso.kill(pid)

    def cpu() -> float:
        try:
            return time.clock_gettime(clock)
        except OSError:
            return res.cpu_s

    status = rusage = None
    grace = 0.0
    try:  # readable when the child exits: wakes us even if it closed its pipes while still running
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        res.cpu_s = cpu()
        if killed_at is None and (time.monotonic() - t0 > limits.timeout_s or res.cpu_s - cpu_mark > limits.test_timeout_s):
            res.timed_out = True
            kill()
        watch = list(open_fds) + ([pidfd] if pidfd is not None and status is None else [])
        for fd in select.select(watch, [], [], 0.05 if pidfd is not None else 0.005)[0]:
            if fd == pidfd:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                os.close(fd)
                del open_fds[fd]
            elif open_fds[fd] == "out":
                out_total += len(chunk)
                if len(stdout_head) < 8192:
                    stdout_head += chunk[: 8192 - len(stdout_head)]
                window = tail + chunk.lower()
                seen.update(i for i, m in enumerate(markers) if m in window)
                tail = window[-64:]
                if out_total > limits.output_bytes and killed_at is None:
                    res.output_limit = True
                    kill()
            else:
                rec_total += len(chunk)
                if rec_total > limits.result_bytes and killed_at is None:
                    res.output_limit = True
                    kill()
                *lines, last = chunk.split(b"\n")
                if lines:  # (never re-scans a long line already received: linear in what arrives)
                    lines[0], rec_part = b"".join([*rec_part, lines[0]]), []
                rec_part.append(last)
                if _records(lines, nonce, res, limits.record_bytes):
                    cpu_mark = res.cpu_s
        if status is None:
            done, st, ru = os.wait4(pid, os.WNOHANG)
            if done == pid:
                # Kill what it left behind, so the pipes reach EOF promptly (a short grace covers a descendant
                # that escaped a limits-mode sweep).
                status, rusage, grace = st, ru, time.monotonic() + 0.5
                iso.sweep()
        dying = status is None and killed_at is not None and time.monotonic() - killed_at > KILL_WAIT_S
        if dying or (status is not None and (not open_fds or time.monotonic() > grace)):
            for fd in list(open_fds):
                os.close(fd)
                del open_fds[fd]
            break
    if pidfd is not None:
        os.close(pidfd)
    iso.sweep()
    if status is None:  # killed, but still dying: reported as the SIGKILL it got (a later sweep reaps it)
        res.signal = signal.SIGKILL
    elif os.WIFEXITED(status):
        res.exit_code = os.WEXITSTATUS(status)
    elif os.WIFSIGNALED(status):
        res.signal = os.WTERMSIG(status)
    res.maxrss_kb = rusage.ru_maxrss if rusage is not None else 0
    res.stdout_head = stdout_head.decode("utf-8", "replace")
    res.stdout_hits = [job.markers[i] for i in sorted(seen)]
    res.files = _scan_files(rundir)
    iso.remove_rundir(rundir)
    res.wall_s = time.monotonic() - t0
    return res


def _scan_files(rundir: str) -> dict:
    """Top-level regular files the program left in its cwd (first 4 KiB each; no symlinks, no FIFOs)."""
    out = {}
    try:
        names = sorted(os.listdir(rundir))[:64]
    except OSError:
        return out
    for name in names:
        if len(out) >= 16:
            break
        try:
            fd = os.open(os.path.join(rundir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                out[name] = os.read(fd, 4096).decode("utf-8", "replace")
        except OSError:
            pass
        finally:
            os.close(fd)
    return out


PROBES = ("sentinel", "run_tests")


def _records(lines: list, nonce: str, res: RunResult, record_bytes: int) -> bool:
    """Parse the child's records into `res`; True on progress (which resets the per-test CPU clock).

    Anything in the child can write here (model code can find the nonce): a record only ever says what the
    program's answer or probe outcome was, never more. A record over record_bytes is dropped at once."""
    progress = False
    for raw in lines:
        if len(raw) > record_bytes:
            parts = raw[:64].decode("utf-8", "replace").split(" ", 3)
            if len(parts) == 4 and parts[0] == nonce and parts[1] in ("r", "n"):
                parts[3] = "err result too large"
            else:
                continue
        else:
            parts = raw.decode("utf-8", "replace").split(" ", 3)
        if len(parts) < 2 or parts[0] != nonce:
            continue  # not from the harness (or corrupted): ignore
        kind, rest = parts[1], parts[2:]
        if kind == "x" and rest:
            progress = True
            if rest[0] == "ok":
                res.exec_done = True
            else:
                res.exec_error = " ".join(rest[1:])[:300] or "error"
        elif kind in ("r", "n") and len(rest) == 2 and rest[0].isascii() and rest[0].isdigit() and len(rest[0]) < 10 and int(rest[0]) < len(res.results):
            i = int(rest[0])
            if res.results[i] is None:  # first record per test wins
                status, _, payload = rest[1].partition(" ")
                res.results[i] = [status, payload]
                progress = True
        elif kind == "p" and len(rest) == 2 and rest[0] in PROBES:  # (the last word wins: the harness's own comes after the program's)
            res.probes[rest[0]] = rest[1] == "1"
        elif kind == "e":
            res.end = True
    return progress


# ── the child: runs in the fresh process, then model code ─────────────────────────────────────────


def _child(job: Job, compiled: dict, iso: _Isolation, limits: Limits, devnull: int, pipes: tuple, rundir: str, nonce: str, vm_kb: int) -> None:
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
    encode, encode_loosely = _make_encoder(), _make_encoder(loose=True)
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


def _make_encoder(max_items: int = 1_000_000, max_depth: int = 100, max_chars: int = 1 << 20, loose: bool = False):
    """value -> tagged JSON text, accepting exact builtin types only (subclasses are rejected; with `loose`,
    a subclass of a builtin is encoded as its builtin base, for the naive eq_override grader only).

    ["n"] None, ["b",0|1], ["i",hex], ["f",float.hex], ["s",utf-8 hex], ["l"|"t"|"S"|"F",[...]] list/tuple/
    set/frozenset, ["d",[[k,v],...]], ["L",[vals]] a ListNode chain, ["R",[vals|["n"]]] a TreeNode in level order.
    """
    _type, _int, _float, _str, _bool, _list, _tuple, _set, _frozenset, _dict = (
        type, int, float, str, bool, list, tuple, set, frozenset, dict)  # fmt: skip
    _hex, _float_hex, _str_encode, _bytes_hex, _len, _str_join = hex, float.hex, str.encode, bytes.hex, len, str.join
    _dict_items, _getattr, _TypeError, _ValueError, _issubclass = dict.items, getattr, TypeError, ValueError, issubclass
    TEXT = 1
    bases = (_int, _float, _str, _list, _tuple, _dict, _set, _frozenset)  # (bool cannot be subclassed)

    def downcast(v):
        t = _type(v)  # type(), not isinstance: a spoofed __class__ does not count
        if v is None or t in bases or t is _bool or t.__name__ in ("ListNode", "TreeNode"):
            return v
        for base in bases:
            if _issubclass(t, base):
                v = base(v)
                if _type(v) is base:
                    return v
        raise _TypeError("result of non-builtin type")

    def encode(value) -> str:
        out, stack, n, size = [], [(0, value, 0)], 0, 0
        while stack:
            kind, v, depth = stack.pop()
            if kind == TEXT:
                out.append(v)
                size += _len(v)
                continue
            n += 1
            if n > max_items or depth > max_depth or size > max_chars:
                raise _ValueError("result too large or too deeply nested")
            if loose:
                v = downcast(v)
            t = _type(v)
            if v is None:
                piece = '["n"]'
            elif t is _bool:
                piece = '["b",1]' if v else '["b",0]'
            elif t is _int:
                piece = '["i","' + _hex(v) + '"]'
            elif t is _float:
                piece = '["f","' + _float_hex(v) + '"]'
            elif t is _str:
                piece = '["s","' + _bytes_hex(_str_encode(v, "utf-8", "surrogatepass")) + '"]'
            elif t is _list or t is _tuple or t is _set or t is _frozenset:
                items = _list(v)
                stack.append((TEXT, "]]", 0))
                for j in _range_rev(_len(items)):
                    stack.append((0, items[j], depth + 1))
                    if j:
                        stack.append((TEXT, ",", 0))
                piece = '["' + ("l" if t is _list else "t" if t is _tuple else "S" if t is _set else "F") + '",['
            elif t is _dict:
                pairs = _list(_dict_items(v))
                stack.append((TEXT, "]]", 0))
                for j in _range_rev(_len(pairs)):
                    stack += [(TEXT, "]", 0), (0, pairs[j][1], depth + 2), (TEXT, ",", 0), (0, pairs[j][0], depth + 2), (TEXT, "[", 0)]
                    if j:
                        stack.append((TEXT, ",", 0))
                piece = '["d",['
            elif t.__name__ in ("ListNode", "TreeNode"):
                vals = _linked_values(v, t.__name__ == "TreeNode", max_items, _getattr, _ValueError)
                stack.append((TEXT, "]]", 0))
                for j in _range_rev(_len(vals)):
                    stack.append((0, vals[j], depth + 1))
                    if j:
                        stack.append((TEXT, ",", 0))
                piece = '["' + ("R" if t.__name__ == "TreeNode" else "L") + '",['
            else:
                raise _TypeError("result of non-builtin type")
            out.append(piece)
            size += _len(piece)
            if size > max_chars:  # after the piece: one huge int or str must not slip past the cap
                raise _ValueError("result too large or too deeply nested")
        return _str_join("", out)

    return encode


def _range_rev(n: int):
    return range(n - 1, -1, -1)


def _linked_values(node, tree: bool, cap: int, _getattr, _ValueError) -> list:
    """A ListNode chain's values, or a TreeNode's LeetCode level order (None gaps, trailing Nones dropped)."""
    vals = []
    if not tree:
        while node is not None:
            if len(vals) >= cap:
                raise _ValueError("linked list too long (a cycle?)")
            vals.append(_getattr(node, "val"))
            node = _getattr(node, "next")
        return vals
    queue, i = [node], 0
    while i < len(queue):
        if len(queue) > cap:
            raise _ValueError("tree too large")
        cur = queue[i]
        i += 1
        if cur is None:
            vals.append(None)
            continue
        vals.append(_getattr(cur, "val"))
        queue += [_getattr(cur, "left"), _getattr(cur, "right")]
    while vals and vals[-1] is None:
        vals.pop()
    return vals


@dataclass(frozen=True)
class _Linked:  # a ListNode chain, by value
    vals: tuple


@dataclass(frozen=True)
class _Tree:  # a TreeNode, by its LeetCode level order (None gaps, no trailing None)
    vals: tuple


MAX_SAME_HASH = 64  # elements of one decoded set (keys of one dict) that may share a hash value


def _hashable(items: list) -> list:
    """`items`, checked before a set or dict is built of them: a pile of distinct values with one hash (crafted
    ints do it) makes building it quadratic (107 s for one forged record, issue 18). Linear: distinct
    hash values, which index a dict without piling up."""
    counts: dict = {}
    for e in items:
        h = hash(e)  # (TypeError for an unhashable element: malformed)
        counts[h] = c = counts.get(h, 0) + 1
        if c > MAX_SAME_HASH:
            raise ValueError("result whose elements share hashes (built to be slow)")
    return items


def _decode(node: object) -> object:
    """The child's tagged JSON -> a plain value (ValueError on anything malformed: the child is not trusted).
    Linear in the size of `node`: sets and dicts are built only of elements that pass `_hashable`."""
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise ValueError("malformed result")
    tag, rest = node[0], node[1:]
    if tag == "n" and not rest:
        return None
    if len(rest) != 1:
        raise ValueError("malformed result")
    (x,) = rest
    if tag == "b" and x in (0, 1) and type(x) is int:
        return bool(x)
    if tag == "i" and isinstance(x, str):
        return int(x, 16)
    if tag == "f" and isinstance(x, str):
        return float.fromhex(x)
    if tag == "s" and isinstance(x, str):
        return bytes.fromhex(x).decode("utf-8", "surrogatepass")
    if not isinstance(x, list):
        raise ValueError("malformed result")
    if tag == "l":
        return [_decode(e) for e in x]
    if tag == "t":
        return tuple(_decode(e) for e in x)
    if tag == "S":
        return set(_hashable([_decode(e) for e in x]))
    if tag == "F":
        return frozenset(_hashable([_decode(e) for e in x]))
    if tag == "d":
        pairs = [(_decode(k), _decode(v)) for k, v in x]
        _hashable([k for k, _ in pairs])
        return dict(pairs)
    if tag == "L":
        return _Linked(tuple(_decode(e) for e in x)) if x else None
    if tag == "R":
        return _Tree(tuple(_decode(e) for e in x)) if x else None
    raise ValueError("malformed result")



if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    # Ctrl-C reaches the terminal's whole process group, zygotes included. The grader decides when to stop (it
    # may finish the current step first); a zygote exits quietly when the grader closes its pipe or dies
    # (PDEATHSIG), so it ignores both signals rather than dying mid-step with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _zygote_main()
