"""Isolation for the sandbox's children, set up once per zygote and applied per child (stdlib + ctypes).

Namespaces (user, pid, mount, net, ipc, uts) through the few libc calls Python's os module lacks, a pivot
into a minimal read-only root, a seccomp filter (libseccomp via pyseccomp) denying kernel objects that
outlive a program, a fresh session keyring, privilege drop, and killing + reaping whatever a program
started. Where namespaces are unavailable: rlimits + a process-group kill + a subreaper sweep.
"""

from __future__ import annotations

import os
import signal
import time

UNPRIVILEGED_UID = 1000  # uid of the child inside the user namespace (mapped to nobody outside when root)
NOBODY = 65534
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


def syscall_filter():
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


class Libc:
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


class Isolation:
    """Set up (once, in the zygote) and apply (per child) the strongest isolation available."""

    def __init__(self, libc: Libc | None, mode: str):
        self.libc, self.mode = libc, mode
        self.root = os.geteuid() == 0
        self.uid = self.gid = 0
        self.detail = ""
        self.unshared = False  # past the point of no return: a failure now leaves the zygote half-isolated
        self.host_pid = os.getpid()
        self.seccomp, self.syscall_filter = syscall_filter()

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
