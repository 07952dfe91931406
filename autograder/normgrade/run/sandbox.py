"""
Running the sandboxed worker (normgrade.run.worker) on a student's layers.py.

A run gets a private folder holding worker.py and a fresh copy of the
provided normlab package with the student's layers.py, and starts
`python -I -B worker.py MODE` under bubblewrap (in mode "calls", one for the
whole submission: its workers are forked in it, worker.serve_session):

- read-only: the system's /usr (and its /lib, /bin links), the Python
  environment grading runs in (sys.prefix, sys.base_prefix), and the private
  folder, mounted at /sandbox; an installed normgrade package is hidden;
- writable: an empty tmpfs at /tmp (size-capped), which is also HOME;
- nothing else: not the course, source/, the gradebook, expected values, the
  reference, other students, the home folder or the grader's other modules;
- new user, PID, network (loopback only), IPC, UTS and cgroup namespaces; no
  capabilities; a new session; killed with its whole PID namespace when
  grading ends or dies;
- set by the worker on itself before it imports student code: rlimits (CPU
  time, address space, processes, open files, file size, no core files) and
  a seccomp allow-list (worker.allow_only_what_workers_need): no new process
  or program (root, which is exempt from the process rlimit, included), no
  socket, no io_uring, no IPC, and any syscall not on the list refused.

Where bubblewrap is missing or user namespaces are blocked, `Sandbox()` raises
SandboxUnavailable saying how to enable them. `Sandbox(user="nobody")`, for a
grader running as root where namespaces are blocked (a Gradescope container),
runs the worker without bubblewrap as that unprivileged user, with the same
rlimits, seccomp allow-list (no socket of any kind, no io_uring) and private
folder. It first takes write access away from that user everywhere on the
machine, /tmp included (take_write_access_away: for a disposable container
only), so the one place a worker can write is a folder made anew for each
sandbox and wiped before the next worker is forked: nothing a worker writes
reaches the next.
What it must not read (the expected values, the grader's code, the results)
is kept from it by file permissions, which the caller sets. Its files are
limited one by one (RLIMIT_FSIZE), not together. `Sandbox(unsandboxed=True)`
runs the worker as a plain child process with the same rlimits and private
folder, for an instructor who chose that explicitly; every report then says so.
"""
import functools
import json
import os
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from normgrade.language import _
from normgrade.run import worker
from normgrade.paths import STUDENT_PACKAGE

WORKER_SOURCE = Path(worker.__file__)
SCRATCH_PREFIX = "tmp-"  # nobody mode: the one folder a worker may write, in its private folder, made anew each time
MOUNT = "/sandbox"

ENABLE_HINT = (
    "Grading runs student code under bubblewrap with unprivileged user namespaces. Where bubblewrap is "
    "missing, install it (Debian/Ubuntu: `apt-get install bubblewrap`). Where user namespaces are blocked: "
    "on Ubuntu 24.04 run `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or add an AppArmor "
    "profile for /usr/bin/bwrap); elsewhere `sysctl user.max_user_namespaces` must be above 0 and "
    "`kernel.unprivileged_userns_clone` 1; in a container, allow them (Docker: `--security-opt "
    "seccomp=unconfined --security-opt apparmor=unconfined`). To grade without a sandbox anyway (student "
    "code then runs with your rights, and every report says so), pass --unsandboxed."
)


class SandboxUnavailable(RuntimeError):
    """Bubblewrap cannot run here; the message says why and how to enable it."""


@dataclass(frozen=True)
class Limits:
    call_seconds: float = 10.0  # wall time of one call (a hidden-input run of one function)
    cpu_seconds: int = 60  # CPU time of one worker process
    memory_bytes: int = 2 << 30  # address space of each process
    processes: int = 32  # processes and threads in the sandbox
    open_files: int = 64
    file_bytes: int = 16 << 20  # largest file it may write
    tmp_bytes: int = 64 << 20  # the whole of /tmp
    result_bytes: int = 64 << 20  # everything it sends back in one run

    def rlimits(self):
        return {"RLIMIT_CPU": int(self.cpu_seconds), "RLIMIT_AS": int(self.memory_bytes),
                "RLIMIT_NPROC": int(self.processes), "RLIMIT_NOFILE": int(self.open_files),
                "RLIMIT_FSIZE": int(self.file_bytes), "RLIMIT_CORE": 0}


# Limits for executing a notebook: a Jupyter kernel, its threads and matplotlib.
NOTEBOOK_LIMITS = Limits(call_seconds=600, cpu_seconds=600, memory_bytes=4 << 30, processes=128, open_files=256)


def _python_roots():
    """The folders the Python environment lives in (stdlib, site-packages, the interpreter)."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    roots.add(Path(sys.executable).resolve().parent)
    # Keep the outermost folders only: a venv inside a base prefix needs one mount.
    return sorted(r for r in roots if not any(o != r and o in r.parents for o in roots))


# What a graded worker ("calls" mode) sees of the installed packages: the grading environment holds much
# that the students' does not (PyTorch after `make oracle`, SciPy, nbgrader, SQLAlchemy, Dask), and
# layers.py may use only the standard library and what worker.ALLOWED_IMPORTS names. The worker itself
# needs pyseccomp. In notebook mode the kernel sees the whole environment: nothing it does is scored.
GRADED_DISTRIBUTIONS = ("numpy", "array-api-compat", "pyseccomp")


def _package_folders():
    """Every site-packages and dist-packages folder a mounted Python environment or /usr could import from."""
    found = set()
    for root in {Path(sys.prefix), Path(sys.base_prefix), Path("/usr"), Path("/usr/local")}:
        for pattern in ("lib*/python3*/site-packages", "lib*/python3*/dist-packages", "lib/python3/dist-packages"):
            found.update(p.resolve() for p in root.glob(pattern) if p.is_dir())
    return sorted(found)


@functools.lru_cache(maxsize=None)
def graded_package_mounts():
    """
    bwrap arguments that empty every package folder (_package_folders) and
    bind back, read-only, only the files of GRADED_DISTRIBUTIONS: in a graded
    worker, `import torch` fails because torch is not there, whatever the
    student's code does to sys.path or the import system.
    """
    import importlib.metadata

    keep = {}
    for name in GRADED_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        base = Path(dist.locate_file("")).resolve()
        for top in {f.parts[0] for f in dist.files or ()} - {"..", "__pycache__"}:
            if (base / top).exists():
                keep.setdefault(base, set()).add(top)
    args = []
    for folder in _package_folders():
        args += ["--tmpfs", str(folder)]
        for top in sorted(keep.get(folder, ())):
            args += ["--ro-bind", str(folder / top), str(folder / top)]
        args += ["--remount-ro", str(folder)]
    return tuple(args)


def _hidden_paths(roots):
    """Folders under the mounted roots a student must not read: the grader's own package."""
    grader = Path(__file__).resolve().parents[1]  # the whole normgrade package, not only run/
    return [grader] if any(r in grader.parents for r in roots) else []


@functools.lru_cache(maxsize=None)
def _bwrap_supports(bwrap, option):
    done = subprocess.run([bwrap, "--help"], capture_output=True, text=True)
    return option in done.stdout + done.stderr


@functools.lru_cache(maxsize=None)
def probe_bwrap():
    """None if bubblewrap starts a worker here that sets up its limits and imports the stubs, else the reason."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    box = Sandbox.__new__(Sandbox)
    box.unsandboxed, box.bwrap, box.user = False, bwrap, None
    return box.self_test()


def system_mounts():
    """bwrap arguments for the system's programs and libraries: /usr read-only, and /bin, /lib... as they are here."""
    args = []
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


class Sandbox:
    """
    Starts sandboxed workers. Sandbox() checks bubblewrap first; user="name"
    (root only, in a disposable container: it takes write access away from
    that user everywhere, take_write_access_away) runs them as that
    unprivileged user instead; unsandboxed=True must be chosen explicitly.
    """

    def __init__(self, unsandboxed=False, user=None):
        self.unsandboxed = bool(unsandboxed)
        self.bwrap = None
        self.user = None
        if user is not None:
            import pwd

            if os.geteuid() != 0:
                raise SandboxUnavailable(f"cannot run student code as {user!r}: that needs root")
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise SandboxUnavailable(f"cannot run student code as {user!r}: no such user") from None
            if entry.pw_uid == 0 or entry.pw_gid == 0:
                raise SandboxUnavailable(f"{user!r} is root or in root's group: not an unprivileged user")
            take_write_access_away(entry.pw_uid, entry.pw_gid)  # this machine is a disposable container
            self.user = (user, entry.pw_uid, entry.pw_gid)
        elif not self.unsandboxed:
            reason = probe_bwrap()
            if reason:
                raise SandboxUnavailable(f"cannot grade safely: {reason}. {ENABLE_HINT}")
            self.bwrap = shutil.which("bwrap")

    @property
    def description(self):
        if self.unsandboxed:
            return "UNSANDBOXED: student code ran as a plain process with your rights (chosen with --unsandboxed)"
        if self.user:
            name, uid, _gid = self.user
            return (f"unprivileged user: student code ran as {name} (uid {uid}) with the rlimits and seccomp filter, "
                    "writing only to a folder made anew for each worker, without bubblewrap (user namespaces are "
                    "blocked here)")
        return "bubblewrap sandbox"

    # ---- the private folder ----

    @staticmethod
    def private_folder(layers, package_dir=STUDENT_PACKAGE):
        """
        A new folder with worker.py and normlab/ (the provided package, the
        student's layers.py), readable by all. `layers`: the student's file as
        bytes (read once from the submission: normgrade.files), a path of the
        grader's own (tests, the stubs), or None.
        """
        folder = Path(tempfile.mkdtemp(prefix="normgrade-worker-"))
        shutil.copy(WORKER_SOURCE, folder / "worker.py")
        package = folder / "normlab"
        shutil.copytree(package_dir, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if isinstance(layers, bytes):
            (package / "layers.py").write_bytes(layers)
        elif layers is not None:
            shutil.copyfile(layers, package / "layers.py")
        for path in [folder, *folder.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        return folder

    # ---- starting a worker ----

    def _bwrap_argv(self, limits, graded=False):
        # --as-pid-1: the worker is the PID namespace's init, so no unfiltered bwrap process shares the
        # namespace with student code (one could be taken over through /proc/1/mem).
        # --die-with-parent: bwrap and the worker die with the thread that started them (the worker cannot
        # undo it: its seccomp filter denies prctl(PR_SET_PDEATHSIG)). One gap: killed while bwrap sets
        # up, bwrap 0.8 leaves its sandbox process waiting forever (before any student code runs). A dying
        # grading process kills its live sandboxes itself (kill_all); what it misses goes to the run's
        # subreaper (parallel.run_local), and what a grader killed outright leaves, to kill_orphans().
        args = [self.bwrap, "--unshare-all", "--unshare-user", "--as-pid-1", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--hostname", "sandbox", "--clearenv"]
        if _bwrap_supports(self.bwrap, "--disable-userns"):  # bubblewrap 0.8+; the seccomp filter denies unshare too
            args.append("--disable-userns")
        args += system_mounts()
        if Path("/etc/ld.so.cache").is_file():  # how ctypes finds libseccomp
            args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        # /tmp first: a Python environment that lives under /tmp is then mounted over it, not hidden by it.
        # /dev is a tmpfs of bwrap's with no size limit: read-only (its device nodes still work).
        args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                 "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
        roots = _python_roots()
        for root in roots:
            args += ["--ro-bind", str(root), str(root)]
        for hidden in _hidden_paths(roots):
            args += ["--tmpfs", str(hidden)]
        if graded:
            args += graded_package_mounts()
        return args

    def _popen(self, command, folder, limits, extra_env=None, graded=False):
        """
        Start `command` (argv inside the sandbox, cwd /sandbox). Returns the
        process, the read ends of its result pipe and of its status pipe
        (graded: a session's, worker.serve_session), and the read end of
        bwrap's info pipe (which names the worker's host PID).
        """
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp", **(extra_env or {})}
        read_end, write_end = os.pipe()
        info_read, info_write = os.pipe()  # bwrap writes {"child-pid": host pid of the worker} here
        status_read, status_write = os.pipe() if graded else (None, None)
        env[worker.RESULT_FD] = str(write_end)
        if graded:
            env[worker.STATUS_FD] = str(status_write)
        env[worker.LIBRARIES] = _libraries()
        try:
            preexec = _no_core_files
            if self.user:
                _name, uid, gid = self.user
                for earlier in folder.glob(f"{SCRATCH_PREFIX}*"):  # the only place an earlier worker could write
                    shutil.rmtree(earlier)
                scratch = Path(tempfile.mkdtemp(dir=folder, prefix=SCRATCH_PREFIX))  # a new one each worker
                os.chown(scratch, uid, gid)
                argv = [arg.replace(MOUNT, str(folder)) for arg in command]
                cwd, env = str(folder), dict(env, HOME=str(scratch), MPLCONFIGDIR=str(scratch), TMPDIR=str(scratch))
                preexec = functools.partial(_become, uid, gid)
            elif self.unsandboxed:
                argv = [arg.replace(MOUNT, str(folder)) for arg in command]
                scratch = Path(tempfile.mkdtemp(dir=folder, prefix=SCRATCH_PREFIX))  # wiped between workers
                cwd, env = str(folder), dict(env, HOME=str(scratch), MPLCONFIGDIR=str(scratch), TMPDIR=str(scratch))
            else:
                argv = self._bwrap_argv(limits, graded) + ["--info-fd", str(info_write)]
                argv += ["--ro-bind", str(folder), MOUNT, "--chdir", MOUNT, "--remount-ro", "/"]
                for key, value in env.items():
                    argv += ["--setenv", key, value]
                argv += command
                cwd, env = "/", {}
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE,
                                       pass_fds=[fd for fd in (write_end, info_write, status_write) if fd is not None],
                                       preexec_fn=preexec, start_new_session=True)
            _LIVE.add(process.pid)
        except BaseException:
            for fd in (read_end, info_read, status_read):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (write_end, info_write, status_write):
                if fd is not None:
                    os.close(fd)
        return process, read_end, status_read, info_read

    def self_test(self, limits=Limits()):
        """None if a worker starts, sets up its limits and imports the stub package; else what went wrong."""
        folder = self.private_folder(None)
        try:
            run = self.start("calls", folder, limits)
            try:
                run.send(worker.encode_frame({"kind": "request", "names": [], "calls": [], "limits": limits.rlimits()}))
                header, _arrays = run.next_frame(60)
            except WorkerDied as err:
                return f"the sandbox did not start ({err}): {run.process.stderr.read(4000).decode(errors='replace').strip()}"
            finally:
                run.close()
        except OSError as err:
            return f"the sandbox did not start: {err}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if header.get("kind") != "ready":
            return f"the sandbox did not start: {header.get('error')}"
        return None

    def start(self, mode, folder, limits, args=(), extra_env=None):
        """A running worker: `python -I -B worker.py MODE ARGS` in the private folder."""
        command = [os.path.normpath(sys.executable), "-I", "-B", f"{MOUNT}/worker.py", mode, *args]
        process, read_end, status, info = self._popen(command, folder, limits, extra_env, graded=mode == "calls")
        return Run(process, read_end, info, limits, sandboxed=self.bwrap is not None, status_fd=status)


@functools.cache
def _libraries():
    """The libraries the worker's seccomp filter loads, found here once (worker.LIBRARIES)."""
    import ctypes.util

    return json.dumps({name: ctypes.util.find_library(name) for name in ("seccomp", "c")})


def _no_core_files():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def writable_by(uid, gid, top="/"):
    """
    The folders and regular files below `top` that user `uid` (with group
    `gid` and no other) could write to or change the mode of: writable by
    all, writable by its group, or its own; what sits on a read-only mount is
    left out, and so are /proc and /sys. find(1) walks, as it does it fast
    (a container's hundreds of thousands of files in half a second). Modes
    only: an ACL is not seen.
    """
    find = ["find", top, "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
            "(", "-type", "d", "-o", "-type", "f", ")",
            "(", "-perm", "-0002", "-o", "-uid", str(uid), "-o", "(", "-gid", str(gid), "-perm", "-0020", ")", ")",
            "-print0"]
    listed = subprocess.run(find, capture_output=True, check=False).stdout  # status 1: a file vanished meanwhile
    found = []
    for path in filter(None, os.fsdecode(listed).split("\0")):
        # find may take a type from the folder's entry: a device bound over a file (a container's /dev/null)
        # is listed as a file. What counts is what lstat says of the path itself.
        try:
            info = os.lstat(path)
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)) or not _writable(info, uid, gid):
                continue
            if not os.statvfs(path).f_flag & os.ST_RDONLY:
                found.append(path)
        except OSError:  # gone meanwhile
            pass
    return found


def _writable(info, uid, gid):
    return bool(info.st_mode & stat.S_IWOTH or info.st_uid == uid or (info.st_gid == gid and info.st_mode & stat.S_IWGRP))


def take_write_access_away(uid, gid):
    """
    Make every place user `uid` could write (writable_by) root's and not
    writable by all or by its group, so that nothing it writes can outlive a
    worker but in the fresh folder each worker gets. For a disposable
    container only (Gradescope's): it changes the whole machine, /tmp
    included. Returns the paths changed; raises SandboxUnavailable if the
    user could still write somewhere afterwards.
    """
    changed = writable_by(uid, gid)
    for path in changed:
        info = os.lstat(path)
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):  # never a device (see writable_by)
            continue
        if info.st_uid == uid or info.st_gid == gid:
            os.lchown(path, 0 if info.st_uid == uid else -1, 0 if info.st_gid == gid else -1)
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~(0o022 if info.st_gid == gid else 0o002), follow_symlinks=False)
    left = writable_by(uid, gid)
    if left:
        raise SandboxUnavailable(f"uid {uid} can still write {', '.join(left[:5])}: not confined")
    return changed


def _become(uid, gid):
    """In the child, before exec: no core files, no supplementary groups, then the unprivileged user for good."""
    _no_core_files()
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


_LIVE = set()  # process groups of this process's running sandboxes (bwrap and its setup child share one)


def kill_all():
    """Kill every sandbox this process started and has not closed (for a grader that must stop at once)."""
    for group in list(_LIVE):
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def kill_orphans(folder):
    """
    Kill bubblewrap processes left without a parent whose private folder is
    under `folder` (a run's scratch folder): what a grader killed while a
    sandbox was being set up leaves behind. Returns their PIDs.
    """
    needle = str(Path(folder).resolve()).encode()
    killed = []
    for pid, parent in parents().items():
        try:
            if (parent == 1 and Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap"
                    and needle in Path(f"/proc/{pid}/cmdline").read_bytes()):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except OSError:  # gone while being read
            pass
    return killed


def parents():
    """{PID: its parent's PID} of every process, from /proc/<pid>/stat (one gone while being read is left out)."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    found[int(entry.name)] = int(stat.read().rsplit(b")", 1)[1].split()[1])  # after "(comm)"
            except (OSError, ValueError, IndexError):
                pass
    return found


class Run:
    """
    A running sandbox: send it a request, read its frames with a deadline,
    kill it. In mode "calls" it is a session (worker.serve_session): each
    request is served by a worker of its own, forked in the sandbox after the
    previous one exited; its exit status comes on the status pipe, so a
    worker that dies costs a fork, not a new sandbox.
    """

    def __init__(self, process, read_end, info_fd, limits, sandboxed=True, status_fd=None):
        self.process, self.fd, self.info_fd, self.limits = process, read_end, info_fd, limits
        self.sandboxed = sandboxed
        self.status_fd = status_fd
        self.buffer = bytearray()
        self.status_buffer = bytearray()
        self.received = 0
        self.exited = None  # the current worker's exit status, once the status pipe said it (a session)

    def send(self, data):
        """Send a request: in a session, to the next worker (the stream stays open); else all of stdin."""
        self.buffer.clear()
        self.received, self.exited = 0, None
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
            if self.status_fd is None:
                self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # it died already; reading says how

    def next_frame(self, seconds):
        """The next frame (header, arrays), or raises WorkerDied with what happened within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                frame = worker.decode_frame(self.buffer, self.limits.result_bytes - self.received)
            except worker.FrameTooLarge:
                raise WorkerDied(_("sent more than {limit} MiB of results").format(
                    limit=self.limits.result_bytes >> 20)) from None
            except worker.FrameError as err:
                raise WorkerDied(_("sent a malformed result ({error})").format(error=err)) from None
            if frame is not None:
                header, arrays, used = frame
                del self.buffer[:used]
                self.received += used
                return header, arrays
            if self.exited is not None:  # the worker is gone and its every byte was read: no frame is coming
                raise WorkerDied(self._death(self.exited), exited=True)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied(_stopped(seconds), timed_out=True)
            watched = [self.fd] + ([self.status_fd] if self.status_fd is not None else [])
            ready, _writable, _errors = select.select(watched, [], [], left)
            if self.status_fd in ready:
                self._read_status()
                continue
            if not ready:
                continue
            self._read_results()

    def _read_results(self, block=True):
        """Append what the result pipe holds to the buffer; WorkerDied when it ended (the sandbox is gone)."""
        if not block and not select.select([self.fd], [], [], 0)[0]:
            return False
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise WorkerDied(self._death())
        self.buffer += chunk
        if len(self.buffer) + self.received > self.limits.result_bytes:
            raise WorkerDied(_("sent more than {limit} MiB of results").format(limit=self.limits.result_bytes >> 20))
        return True

    def _read_status(self):
        """The worker's exit status from the status pipe; then everything it wrote is read from the result pipe."""
        chunk = os.read(self.status_fd, 4096)
        if not chunk:
            raise WorkerDied(self._death())
        self.status_buffer += chunk
        frame = worker.decode_frame(self.status_buffer, 1 << 16)
        if frame is None:
            return
        header, _arrays, used = frame
        del self.status_buffer[:used]
        while self._read_results(block=False):  # the worker has exited: all it wrote is in the pipe already
            pass
        self.exited = int(header.get("status", -1))

    def wait_exit(self, seconds):
        """
        In a session, after a worker's last result: discard what else it
        writes and wait for its exit status. True once it has exited (the
        next request goes to a new worker); False if it did not in `seconds`
        (close the session then).
        """
        deadline = time.monotonic() + seconds
        try:
            while self.exited is None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd, self.status_fd], [], [], left)[0]:
                    return False
                if select.select([self.status_fd], [], [], 0)[0]:
                    self._read_status()
                else:
                    self._read_results()
                    self.buffer.clear()
        except WorkerDied:
            return False
        return True

    def read_all(self, seconds):
        """Everything until the worker closes fd 3 (notebook mode); raises WorkerDied on time or size."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied(_stopped(seconds))
            ready, _writable, _errors = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return bytes(self.buffer)
            self.buffer += chunk
            if len(self.buffer) > self.limits.result_bytes:
                raise WorkerDied(_("sent more than {limit} MiB").format(limit=self.limits.result_bytes >> 20))

    def _death(self, code=None):
        """What ended the worker (of a session: its exit status `code`), in words (the current language's)."""
        if code is None:
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return _("closed its result pipe and kept running")
        if code < 0 or code > 128:  # killed by a signal (bwrap reports 128 + signal)
            number = -code if code < 0 else code - 128
            name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
            if number in (signal.SIGXCPU, signal.SIGKILL):  # the kernel's answer to the CPU rlimit
                return _("was killed (signal {number}), most likely for using {seconds} s of CPU time").format(
                    number=number, seconds=self.limits.cpu_seconds)
            if number == signal.SIGXFSZ:
                return _("wrote a file larger than {limit} MiB (limit)").format(limit=self.limits.file_bytes >> 20)
            return _("crashed with signal {number} ({name})").format(number=number, name=name)
        return _("exited with status {code} before it finished").format(code=code)

    def _worker_pid(self):
        """The worker's host PID: bwrap's child (the PID namespace's init), or the process itself unsandboxed."""
        if not self.sandboxed:
            return self.process.pid
        ready, _writable, _errors = select.select([self.info_fd], [], [], 2)
        try:
            return int(json.loads(os.read(self.info_fd, 4096))["child-pid"]) if ready else None
        except (ValueError, KeyError, TypeError):
            return None

    def close(self):
        """
        Kill the worker and wait until it is gone. While bwrap runs it has
        not reaped its child, so the PID is still the worker's; killing a PID
        namespace's init kills everything in it, and bwrap exits once it has
        reaped it. bwrap is killed only if that does not happen.
        """
        if self.process.poll() is None:
            pid = self._worker_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.process.wait(timeout=5)  # bwrap reaps the worker, then exits: nothing is left
                except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                    pass
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _LIVE.discard(self.process.pid)
        for fd in (self.fd, self.info_fd, self.status_fd):
            try:
                if fd is not None:
                    os.close(fd)
            except OSError:
                pass
        if self.process.stdin:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        if self.process.stderr:
            self.process.stderr.close()


def _stopped(seconds):
    """What a worker stopped on its time limit says: "stopped after 2.5 s (time limit)"."""
    return _("stopped after {seconds} s (time limit)").format(seconds=f"{seconds:.1f}".rstrip("0").rstrip("."))


class WorkerDied(RuntimeError):
    """The worker stopped answering; the message says how (time, signal, exit, size), in the current language."""

    def __init__(self, message, timed_out=False, exited=False):
        super().__init__(message)
        self.timed_out = timed_out
        self.exited = exited  # a session's worker exited: the session goes on with the next
