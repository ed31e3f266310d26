"""The sandbox zygote: one per worker, started by `sandbox.Sandbox` as `python sandbox_zygote.py --zygote TAG`.

It enters its namespaces (`sandbox_isolation`), then for each job frame forks one fresh child that runs the
program (`sandbox_harness`), supervises it against its limits, reads its records and answers one result
frame. It never compares a result with an expected value (it has none) and never tells the child anything.
No program can wedge it: the child never waits on the zygote (which kills it at its limits), and the zygote
waits on nothing without a deadline but the grader's next job. Stdlib only.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as the zygote's program: import the package this file belongs to (its
    # sandbox_* modules are stdlib only), not another copy an installed venv may point at; src/ holds nothing else
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gc
import select
import signal
import stat
import time
from dataclasses import asdict

from projected_grpo.sandbox_harness import run_child
from projected_grpo.sandbox_isolation import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_PDEATHSIG,
    Isolation,
    Libc,
)
from projected_grpo.sandbox_protocol import (
    PROTOCOL_WAIT_S,
    Job,
    Limits,
    ProtocolError,
    RunResult,
    ready,
    recv,
    send,
)

KILL_WAIT_S = 5.0  # after a SIGKILL, how long the zygote waits for the program to die before moving on
BATCH_S = 0.01  # how long the child's records pile up in its pipe between two reads (the clocks' resolution)
_os_exit = os._exit  # the child's last resort, bound before any program can replace os._exit


def main() -> None:
    cmd_in, cmd_out = 0, 1
    os.set_blocking(cmd_out, False)  # so an answer the grader stopped reading is given up on, not blocked on
    config = recv(cmd_in, time.monotonic() + PROTOCOL_WAIT_S)  # the grader writes it right after starting us
    limits = Limits(**config["limits"])
    wait_s = float(config.get("protocol_wait_s", PROTOCOL_WAIT_S))
    # Warm imports (the benchmark's setup code and common solution modules): every child inherits them.
    for m in config["setup_modules"]:
        try:
            __import__(m)
        except Exception:
            pass
    try:
        libc = Libc()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the grader died: so do we
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    except Exception:
        libc = None
    vm_kb = _vm_kb()  # (before namespaces: /proc goes away) the child's memory limit is on top of this
    iso = Isolation(libc, "limits")
    warning = config.get("why", "")
    if config["isolation"] in ("auto", "namespaces"):
        try:
            iso.enter_namespaces()
        except Exception as e:  # noqa: BLE001 -- any failure here means: no namespaces on this host
            if config["isolation"] == "namespaces" or iso.unshared:  # half-isolated: the parent starts over
                send(cmd_out, {"error": f"namespace setup failed: {type(e).__name__}: {e}"}, time.monotonic() + wait_s)
                return
            warning = f"namespaces unavailable ({type(e).__name__}: {e})"
    if iso.mode == "limits":
        iso.detail = "rlimits, setsid + subreaper kill, temp-dir cwd" + (f"; {warning}" if warning else "")
    with open(os.devnull, "rb") as f:  # opened before any child: its stdin/stderr
        devnull = os.dup(f.fileno())
    hello = {"isolation": iso.mode, "detail": iso.detail, "pid": iso.host_pid, "syscall_filter": iso.syscall_filter}
    send(cmd_out, hello, time.monotonic() + wait_s)
    while True:
        ready(cmd_in, False, None)  # idle: the one wait without a deadline (EOF: the grader is done with us)
        seq = None
        try:
            msg = recv(cmd_in, time.monotonic() + wait_s)  # a frame that has started must finish promptly
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
            send(cmd_out, answer, time.monotonic() + wait_s)
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
        send(cmd_out, {"seq": seq, "error": why}, time.monotonic() + wait_s)
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


def _supervise(job: Job, iso: Isolation, limits: Limits, devnull: int, vm_kb: int) -> RunResult:
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
            run_child(job, compiled, iso=iso, limits=limits, devnull=devnull, pipes=(out_w, rec_w), rundir=rundir, nonce=nonce, vm_kb=vm_kb)
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
    pile_up = False  # the last pass emptied the pipes: let the next records pile up there before reading
    while True:
        if pile_up and status is None and killed_at is None:
            # One pass per BATCH_S, not one per test record: a reader waiting on the pipe is woken by every
            # write. Records wait in the pipe, where they outlive the child (a kill loses none), and the
            # child's exit (pidfd) still ends the wait at once.
            select.select([pidfd] if pidfd is not None else [], [], [], BATCH_S)
        res.cpu_s = cpu()
        if killed_at is None and (time.monotonic() - t0 > limits.timeout_s or res.cpu_s - cpu_mark > limits.test_timeout_s):
            res.timed_out = True
            kill()
        watch = list(open_fds) + ([pidfd] if pidfd is not None and status is None else [])
        pile_up = False
        for fd in select.select(watch, [], [], 0.05 if pidfd is not None else 0.005)[0]:
            if fd == pidfd:
                continue
            chunk = os.read(fd, 1 << 16)
            pile_up = pile_up or 0 < len(chunk) < 1 << 16  # (a full read: more is waiting, read it now)
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
                res.reads += 1
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


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    # Ctrl-C reaches the terminal's whole process group, zygotes included. The grader decides when to stop (it
    # may finish the current step first); a zygote exits quietly when the grader closes its pipe or dies
    # (PDEATHSIG), so it ignores both signals rather than dying mid-step with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    main()
