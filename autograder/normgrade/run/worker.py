"""
The sandboxed side of grading: runs a student's normlab.layers and returns raw values.

This file is the only part of normgrade a student's code can see. It is copied
into the sandbox beside a fresh copy of the provided normlab package with the
student's layers.py, and started as `python -I -B worker.py MODE`. Before any
student code runs it lowers its rlimits and loads a seccomp allow-list
(allow_only_what_workers_need: no process, socket, io_uring or IPC).
It imports nothing but the standard library, NumPy and pyseccomp (nbclient
and ipykernel in notebook mode); a package the student's file imports that
the sandbox does not have is a stand-in that fails only where it is used
(OnlyAllowedImports). It holds no expected value, key or
point, and decides nothing: the scorer (normgrade.score.scorer, outside the sandbox)
compares what comes back with the expected values. Everything this process
returns is a claim by the student's code, which runs in this same process.

Message format (both directions), a sequence of frames:

    frame  = 8-byte big-endian length of header, header, data of each array
    header = UTF-8 JSON object; "arrays": [{"dtype": "<f8", "shape": [..]}, ...]
             lists the arrays whose raw C-order bytes follow, in order

Only numeric dtypes (bool, int, uint, float, complex) cross; nothing is
pickled, so reading a frame cannot run code.

MODE "calls": one sandbox per submission (serve_session). This process
imports NumPy once and forks the workers one after the other; it never reads
a request itself. Each worker reads one request frame from stdin:

    {"kind": "request", "names": [input name per array], "calls": [call, ...],
     "messages": {the worker's own English message: its words in the course's language}}
    call = {"id": str, "recipe": name in RECIPES, ...recipe arguments}

and writes frames to the result pipe (fd $NORMGRADE_RESULT_FD): {"kind": "ready"} once normlab.layers imported
(or {"kind": "import_error" or "setup_error", "error": text}), then per call, in order,

    {"kind": "result", "id": str, "error": text or null,
     "values": {quantity: {"type": "array", "index": k} | {"type": "none"}
                           | {"type": "other", "name": type name}}}

with the arrays that "index" points into, then {"kind": "done"}, and exits.
Once it has exited (done, crashed or killed by an rlimit) and its scratch
folder is wiped, the session writes {"kind": "exited", "status": its exit
code, or minus the signal} to the status pipe (fd $NORMGRADE_STATUS_FD),
which no worker holds, and forks the next; at the end of stdin the session
ends. A worker that hangs is the scorer's to stop: it kills the sandbox.

MODE "notebook LIMITS SECONDS". stdin holds a notebook (JSON text); it is
executed with nbclient in the folder of the package, by a kernel that is this
file in MODE "kernel" (limits and process filter first, then ipykernel), and
the executed notebook is written to the result pipe as JSON text. Either way, fds 0 to 2 point at /dev/null while student
code runs, so nothing it prints can be mistaken for a result.
"""
import json
import math
import os
import resource
import select
import stat
import struct
import sys
import threading
import traceback

import numpy as np

LENGTH = struct.Struct(">Q")
RESULT_FD = "NORMGRADE_RESULT_FD"  # environment variable: the fd of the result pipe
STATUS_FD = "NORMGRADE_STATUS_FD"  # environment variable: the fd of the status pipe (mode "calls")
LIBRARIES = "NORMGRADE_LIBRARIES"  # environment variable: JSON {"seccomp": soname, "c": soname}, found by the grader
NUMERIC_KINDS = "biufc"
MAX_HEADER = 1 << 20


# ---- frames --------------------------------------------------------------------------


def encode_frame(header, arrays=()):
    """Bytes of one frame: header (a dict) and the arrays it lists under "arrays"."""
    arrays = [np.asarray(a, order="C") for a in arrays]  # (ascontiguousarray would make 0-d arrays 1-d)
    header = dict(header, arrays=[{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays])
    text = json.dumps(header).encode()
    return b"".join([LENGTH.pack(len(text)), text] + [a.tobytes() for a in arrays])


class FrameError(ValueError):
    """Bytes that are not a well-formed frame."""


class FrameTooLarge(FrameError):
    """A frame larger than the reader allows."""


def numeric_dtype(text):
    """np.dtype of `text`, refusing anything but plain numbers (no objects, records, strings)."""
    try:
        dtype = np.dtype(str(text))
    except TypeError as err:
        raise FrameError(f"unknown dtype {text!r}") from err
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise FrameError(f"dtype {text!r} is not a plain numeric type")
    return dtype


def decode_frame(buffer, max_bytes):
    """
    (header, arrays, bytes used) for the first frame in `buffer`, or None while
    it is incomplete. Raises FrameError for a malformed frame or one larger than max_bytes.
    """
    if len(buffer) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack_from(buffer)
    if size > MAX_HEADER:
        raise FrameTooLarge(f"a header of {size} bytes (at most {MAX_HEADER})")
    end = LENGTH.size + size
    if len(buffer) < end:
        return None
    try:
        header = json.loads(bytes(buffer[LENGTH.size:end]))
        if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
            raise TypeError("the header is not an object with a list of arrays")
        specs = [(numeric_dtype(s["dtype"]), tuple(int(n) for n in s["shape"])) for s in header.get("arrays", [])]
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise FrameError(f"malformed header: {type(err).__name__}") from err
    if any(n < 0 for _, shape in specs for n in shape):
        raise FrameError("malformed header: a negative dimension")
    sizes = [dtype.itemsize * math.prod(shape) for dtype, shape in specs]  # Python ints: no overflow
    if end + sum(sizes) > max_bytes:
        raise FrameTooLarge(f"a frame of {end + sum(sizes)} bytes (at most {max_bytes})")
    if len(buffer) < end + sum(sizes):
        return None
    arrays = []
    for (dtype, shape), nbytes in zip(specs, sizes):
        try:
            arrays.append(np.frombuffer(bytes(buffer[end:end + nbytes]), dtype=dtype).reshape(shape).copy())
        except ValueError as err:  # more dimensions than NumPy allows, say
            raise FrameError(f"malformed array: {err}") from err
        end += nbytes
    return header, arrays, end


def _read_exactly(fd, count):
    data = bytearray()
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            raise FrameError("the stream ended inside a frame" if data else "the stream ended")
        data += chunk
    return data


def read_frame_from_fd(fd, max_bytes=1 << 30):
    """
    Read exactly one frame from a file descriptor, not a byte more: what
    follows it in the pipe is the next reader's (a session's next worker).
    Raises FrameError("the stream ended") at the end of the stream.
    """
    buffer = _read_exactly(fd, LENGTH.size)
    (size,) = LENGTH.unpack_from(buffer)
    if size > MAX_HEADER:
        raise FrameTooLarge(f"a header of {size} bytes (at most {MAX_HEADER})")
    buffer += _read_exactly(fd, size)
    try:
        header = json.loads(bytes(buffer[LENGTH.size:]))
        specs = [(numeric_dtype(s["dtype"]), tuple(int(n) for n in s["shape"])) for s in header.get("arrays", [])]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise FrameError(f"malformed header: {type(err).__name__}") from err
    if any(n < 0 for _, shape in specs for n in shape):
        raise FrameError("malformed header: a negative dimension")
    rest = sum(dtype.itemsize * math.prod(shape) for dtype, shape in specs)
    if len(buffer) + rest > max_bytes:
        raise FrameTooLarge(f"a frame of {len(buffer) + rest} bytes (at most {max_bytes})")
    buffer += _read_exactly(fd, rest)
    header, arrays, _ = decode_frame(buffer, max_bytes)
    return header, arrays


def read_frame(stream, max_bytes=1 << 30):
    """Read exactly one frame from a binary stream (the worker's request)."""
    buffer = bytearray()
    while True:
        frame = decode_frame(buffer, max_bytes)
        if frame is not None:
            return frame[0], frame[1]
        chunk = stream.read(1 << 16)
        if not chunk:
            raise FrameError("the stream ended inside a frame")
        buffer += chunk


# ---- recipes: how each graded quantity is obtained from the student's functions ----------
# A recipe takes the layers module, the named input arrays and the call's
# arguments, and returns {quantity: value}. The reference values come from the
# same recipes (normgrade.score.expected), so both sides run identical calls.


def _bn_train(L, i, call):
    bn_param = {"mode": "train"}
    out, _ = L.batchnorm_forward(i["bn_x"].copy(), i["bn_gamma"].copy(), i["bn_beta"].copy(), bn_param)
    return {"bn_train_out": out, "bn_train_running_mean": bn_param.get("running_mean"),
            "bn_train_running_var": bn_param.get("running_var")}


def _bn_steps(L, i, call):
    bn_param = {"mode": "train", "momentum": call["momentum"], "eps": call["eps"],
                "running_mean": i["bn_steps_rm"].copy(), "running_var": i["bn_steps_rv"].copy()}
    for x in i["bn_steps_x"]:
        L.batchnorm_forward(x.copy(), i["bn_gamma"].copy(), i["bn_beta"].copy(), bn_param)
    return {"bn_steps_running_mean": bn_param.get("running_mean"),
            "bn_steps_running_var": bn_param.get("running_var")}


def _bn_test(L, i, call):
    bn_param = {"mode": "test", "running_mean": i["bn_test_rm"].copy(), "running_var": i["bn_test_rv"].copy(),
                "eps": call["eps"]}
    out, _ = L.batchnorm_forward(i["bn_test_x"].copy(), i["bn_gamma"].copy(), i["bn_beta"].copy(), bn_param)
    return {"bn_test_out": out, "bn_test_running_mean": bn_param.get("running_mean"),
            "bn_test_running_var": bn_param.get("running_var")}


def _bn_edge(L, i, call):
    """Train mode on a batch of one example, on a single feature, and on a square batch (N == D)."""
    param = {"mode": "train", "eps": call["eps"]}
    out_n1, _ = L.batchnorm_forward(i["bn_n1_x"].copy(), i["bn_gamma"].copy(), i["bn_beta"].copy(), dict(param))
    out_d1, _ = L.batchnorm_forward(i["bn_d1_x"].copy(), i["bn_d1_gamma"].copy(), i["bn_d1_beta"].copy(), dict(param))
    out_square, _ = L.batchnorm_forward(i["bn_square_x"].copy(), i["bn_gamma"].copy(), i["bn_beta"].copy(),
                                        dict(param))
    return {"bn_n1_out": out_n1, "bn_d1_out": out_d1, "bn_square_out": out_square}


def _bn_float32(L, i, call):
    f32 = lambda k: i[k].astype(np.float32)  # noqa: E731
    out, _ = L.batchnorm_forward(f32("bn_big_x"), f32("bn_gamma"), f32("bn_beta"), {"mode": "train"})
    return {"bn_f32_out": out}


MESSAGES = []  # every message N_ marks here: the ones a request brings the translation of (scorer._request)


def N_(message):
    """Mark `message` for the catalogs: this module imports nothing, so a request brings its translation (SAID)."""
    MESSAGES.append(message)
    return message


# What a worker says in its own words (a message that reaches the student): English here; a request's
# "messages" gives them in the course's language, which the scorer sends (scorer._request).
FORWARD_FAILED = N_("{name} raised {error} (so the backward pass was not checked)")
NOT_ONE_SHAPE = N_("{forward} returned {kind} {shape}, not an array of one shape")
NOT_THREE_GRADIENTS = N_("{backward} returned {kind}, expected (dx, dgamma, dbeta)")
UNAVAILABLE_CALL = N_("{module} is not available when grading: use NumPy (this call used {name}, imported on line "
                      "{line}; an import alone costs nothing)")
UNAVAILABLE_IMPORT = N_("{module} is not available when grading: {rule}")
SAID = {}  # English message -> its words in the course's language, from the request


def said(message, **fields):
    """`message` (one of the worker's own) in the request's language, its fields filled."""
    return SAID.get(message, message).format(**fields)


class ForwardPassFailed(Exception):
    """A forward pass raised while a backward pass's cache was being built: the backward was never called."""


def _cache(forward, name, *args):
    """The cache `forward` (the student's function `name`) returns for args; ForwardPassFailed if it raises."""
    return _forward(forward, name, *args)[1]


def _forward(forward, name, *args):
    """(out, cache) `forward` (the student's function `name`) returns for args; ForwardPassFailed if it raises."""
    try:
        out, cache = forward(*args)
    except NotImplementedError:  # a stub's own words name the forward pass already ("... is not implemented yet")
        raise
    except Exception as err:  # noqa: BLE001 - whatever the student's forward pass raises, said as its own
        # Its own error first: a message reaches the student cut at error_text's 160 characters.
        raise ForwardPassFailed(said(FORWARD_FAILED, name=name, error=error_text(err))) from None
    return out, cache


def _bn_backward(L, i, call):
    name = call["function"]
    cache = _cache(L.batchnorm_forward, "batchnorm_forward", i["bn_x"].copy(), i["bn_gamma"].copy(),
                   i["bn_beta"].copy(), {"mode": "train"})
    dx, dgamma, dbeta = getattr(L, name)(i["bn_dout"].copy(), cache)
    return {f"{name}_dx": dx, f"{name}_dgamma": dgamma, f"{name}_dbeta": dbeta}


def _ln_forward(L, i, call):
    out, _ = L.layernorm_forward(i["ln_x"].copy(), i["ln_gamma"].copy(), i["ln_beta"].copy(), {})
    return {"ln_out": out}


def _ln_float32(L, i, call):
    f32 = lambda k: i[k].astype(np.float32)  # noqa: E731
    out, _ = L.layernorm_forward(f32("ln_big_x"), f32("ln_gamma"), f32("ln_beta"), {})
    return {"ln_f32_out": out}


def _ln_single(L, i, call):
    """A single example, and a square batch (N == D)."""
    out, _ = L.layernorm_forward(i["ln_single_x"].copy(), i["ln_gamma"].copy(), i["ln_beta"].copy(), {"eps": call["eps"]})
    square, _ = L.layernorm_forward(i["ln_square_x"].copy(), i["ln_gamma"].copy(), i["ln_beta"].copy(),
                                    {"eps": call["eps"]})
    return {"ln_single_out": out, "ln_square_out": square}


def _ln_backward(L, i, call):
    cache = _cache(L.layernorm_forward, "layernorm_forward", i["ln_x"].copy(), i["ln_gamma"].copy(),
                   i["ln_beta"].copy(), {})
    dx, dgamma, dbeta = L.layernorm_backward(i["ln_dout"].copy(), cache)
    return {"ln_dx": dx, "ln_dgamma": dgamma, "ln_dbeta": dbeta}


def _sbn_train(L, i, call):
    bn_param = {"mode": "train", "momentum": call["momentum"]}
    out, _ = L.spatial_batchnorm_forward(i["sbn_x"].copy(), i["sbn_gamma"].copy(), i["sbn_beta"].copy(), bn_param)
    square, _ = L.spatial_batchnorm_forward(i["sbn_square_x"].copy(), i["sbn_gamma"].copy(), i["sbn_beta"].copy(),
                                            {"mode": "train", "eps": call["square_eps"]})  # N == C, H == W
    return {"sbn_train_out": out, "sbn_running_mean": bn_param.get("running_mean"),
            "sbn_running_var": bn_param.get("running_var"), "sbn_square_out": square}


def _sbn_test(L, i, call):
    bn_param = {"mode": "test", "running_mean": i["sbn_test_rm"].copy(), "running_var": i["sbn_test_rv"].copy(),
                "eps": call["eps"]}
    out, _ = L.spatial_batchnorm_forward(i["sbn_test_x"].copy(), i["sbn_gamma"].copy(), i["sbn_beta"].copy(), bn_param)
    return {"sbn_test_out": out}


def _sbn_float32(L, i, call):
    f32 = lambda k: i[k].astype(np.float32)  # noqa: E731
    out, _ = L.spatial_batchnorm_forward(f32("sbn_big_x"), f32("sbn_gamma"), f32("sbn_beta"), {"mode": "train"})
    return {"sbn_f32_out": out}


def _sbn_backward(L, i, call):
    cache = _cache(L.spatial_batchnorm_forward, "spatial_batchnorm_forward", i["sbn_x"].copy(), i["sbn_gamma"].copy(),
                   i["sbn_beta"].copy(), {"mode": "train"})
    dx, dgamma, dbeta = L.spatial_batchnorm_backward(i["sbn_dout"].copy(), cache)
    return {"sbn_dx": dx, "sbn_dgamma": dgamma, "sbn_dbeta": dbeta}


def _gn_forward(L, i, call):
    G = int(call["groups"])
    gn_param = {"eps": call["eps"]} if "eps" in call else {}
    out, _ = L.spatial_groupnorm_forward(i["gn_x"].copy(), i["gn_gamma"].copy(), i["gn_beta"].copy(), G, gn_param)
    found = {f"gn_G{G}_out": out}
    if call.get("square"):  # C == G * G, H == W
        found["gn_square_out"], _ = L.spatial_groupnorm_forward(
            i["gn_square_x"].copy(), i["gn_square_gamma"].copy(), i["gn_square_beta"].copy(), G, dict(gn_param))
    return found


def _gn_float32(L, i, call):
    f32 = lambda k: i[k].astype(np.float32)  # noqa: E731
    out, _ = L.spatial_groupnorm_forward(f32("gn_big_x"), f32("gn_gamma"), f32("gn_beta"), int(call["groups"]), {})
    return {"gn_f32_out": out}


def _gn_backward(L, i, call):
    G = int(call["groups"])
    cache = _cache(L.spatial_groupnorm_forward, "spatial_groupnorm_forward", i["gn_x"].copy(), i["gn_gamma"].copy(),
                   i["gn_beta"].copy(), G, {})
    dx, dgamma, dbeta = L.spatial_groupnorm_backward(i["gn_dout"].copy(), cache)
    return {f"gn_G{G}_dx": dx, f"gn_G{G}_dgamma": dgamma, f"gn_G{G}_dbeta": dbeta}


def _forward_many(L, i, call):
    """The forward pass on each (x, gamma, beta) of three stacks: for numerical gradients, taken by the scorer."""
    forward = getattr(L, call["forward"])
    outputs = []
    for x, gamma, beta in zip(i[call["x"]], i[call["gamma"]], i[call["beta"]]):
        out, _ = forward(x.copy(), gamma.copy(), beta.copy(), *call["extra"], dict(call["param"]))
        if not isinstance(out, np.ndarray) or (outputs and out.shape != outputs[0].shape):
            raise TypeError(said(NOT_ONE_SHAPE, forward=call["forward"], kind=type(out).__name__,
                                 shape=getattr(out, "shape", "")))
        outputs.append(out)
    return {call["quantity"]: np.stack(outputs)}


def _backward_at(L, i, call):
    """
    Forward then backward at one point: the analytic gradients a numerical
    check compares, or a backward pass's edge case (checks.EDGES: then in
    float32 where the call says so, and with the forward's output too).
    """
    forward, backward = getattr(L, call["forward"]), getattr(L, call["backward"])
    arg = (lambda k: i[call[k]].astype(np.float32)) if call.get("float32") else (lambda k: i[call[k]].copy())
    found = {}
    if call.get("out"):
        found[f"{call['quantity']}_out"], cache = _forward(forward, call["forward"], arg("x"), arg("gamma"),
                                                           arg("beta"), *call["extra"], dict(call["param"]))
    else:
        cache = _cache(forward, call["forward"], arg("x"), arg("gamma"), arg("beta"), *call["extra"],
                       dict(call["param"]))
    grads = backward(arg("dout"), cache)
    if not isinstance(grads, tuple) or len(grads) != 3:
        raise TypeError(said(NOT_THREE_GRADIENTS, backward=call["backward"], kind=type(grads).__name__))
    return {**found, **{f"{call['quantity']}_{name}": g for name, g in zip(("dx", "dgamma", "dbeta"), grads)}}


RECIPES = {
    "bn_train": _bn_train, "bn_edge": _bn_edge, "bn_steps": _bn_steps, "bn_test": _bn_test, "bn_float32": _bn_float32,
    "bn_backward": _bn_backward, "ln_forward": _ln_forward, "ln_float32": _ln_float32, "ln_single": _ln_single,
    "ln_backward": _ln_backward, "sbn_train": _sbn_train, "sbn_test": _sbn_test, "sbn_backward": _sbn_backward,
    "sbn_float32": _sbn_float32, "gn_forward": _gn_forward, "gn_float32": _gn_float32, "gn_backward": _gn_backward,
    "forward_many": _forward_many, "backward_at": _backward_at,
}


def run_call(layers, inputs, call):
    """{quantity: value} of one call; raises what the student's code raised."""
    with np.errstate(all="ignore"):
        return RECIPES[call["recipe"]](layers, inputs, call)


# ---- the worker process ---------------------------------------------------------------


MAX_ERROR_CHARS = 160


def error_text(err):
    """
    What an exception says, short: its type's name and the first line of its
    message, at most MAX_ERROR_CHARS characters, never a traceback or the
    arguments' reprs. The student sees it in the feedback, and the student's
    code wrote it while holding the hidden inputs: a few words cannot carry
    them out in bulk.
    """
    try:
        message = str(err)
    except BaseException:  # noqa: B902 - a student's __str__ may raise anything
        message = "(its message could not be read)"
    lines = message.strip().splitlines()
    text = f"{type(err).__name__[:60]}: {lines[0] if lines else ''}".strip().rstrip(":")
    return text if len(text) <= MAX_ERROR_CHARS and len(lines) <= 1 else text[:MAX_ERROR_CHARS] + " ..."


def _encode_values(values):
    described, arrays = {}, []
    for name, value in values.items():
        if value is None:
            described[name] = {"type": "none"}
        elif isinstance(value, np.ndarray) and value.dtype.kind in NUMERIC_KINDS and value.dtype.fields is None:
            described[name] = {"type": "array", "index": len(arrays)}
            arrays.append(value)
        else:
            described[name] = {"type": "other", "name": type(value).__name__}
    return described, arrays


def apply_limits(limits):
    """Lower this process's rlimits (soft and hard) to `limits` {name: value}; children inherit them."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


# The seccomp allow-list: what a worker process needs and nothing else, so a syscall family the kernel adds
# later (io_uring was one) is refused until someone adds it here. Every call it makes touches only the
# process itself, its own threads, the files its rlimits and the sandbox let it open, and the descriptors
# it was given. Names a machine's architecture lacks (open and stat on arm64, say) are skipped.
WORKER_SYSCALLS = (
    # memory
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "msync",
    # files and folders (where the sandbox lets it: its private folder read-only, a fresh writable one)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "lseek", "close", "close_range", "open", "openat", "creat", "stat", "fstat", "lstat", "newfstatat", "statx",
    "statfs", "fstatfs", "getdents", "getdents64", "readlink", "readlinkat", "access", "faccessat", "faccessat2",
    "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat",
    "ftruncate", "truncate", "fsync", "fdatasync", "fchmod", "chmod", "fchmodat", "fchown", "umask", "utimensat",
    "dup", "dup2", "dup3", "fcntl", "fadvise64", "sendfile", "copy_file_range", "pipe", "pipe2",
    "poll", "ppoll", "select", "pselect6",
    # time
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep",
    # threads of its own (clone only with CLONE_THREAD: see below)
    "futex", "set_robust_list", "get_robust_list", "rseq", "set_tid_address", "gettid", "sched_yield",
    "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam", "sched_getscheduler",
    "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min", "membarrier", "mbind", "get_mempolicy",
    # signals to itself
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend",
    "sigaltstack", "tgkill", "tkill",
    # what it may ask about itself
    "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid",
    "getpgrp", "getpgid", "getsid", "getrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname",
    "getrandom", "getpriority", "arch_prctl",
    "exit", "exit_group",
)
# A notebook's kernel (bubblewrap only, with a network namespace of its own: loopback and nothing else)
# talks to its client over ZeroMQ: an event loop and local sockets.
KERNEL_SYSCALLS = (
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd",
    "eventfd2", "socket", "socketpair", "bind", "listen", "connect", "accept", "accept4", "getsockname",
    "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "shutdown", "ioctl", "flock", "kill", "signalfd4", "timerfd_create", "timerfd_settime", "timerfd_gettime",
)
CLONE_THREAD = 0x00010000
PRCTL_OPTIONS = {"PR_GET_DUMPABLE": 3, "PR_SET_NAME": 15, "PR_GET_NAME": 16, "PR_GET_SECCOMP": 21,
                 "PR_SET_VMA": 0x53564D41}  # glibc names its anonymous memory; never PR_SET_PDEATHSIG (1)
IOCTLS = {"TCGETS": 0x5401, "TIOCGWINSZ": 0x5413, "FIONREAD": 0x541B, "FIONBIO": 0x5421, "FIONCLEX": 0x5450,
          "FIOCLEX": 0x5451}  # isatty, a terminal's size, close-on-exec: nothing that reaches another process


def _import_pyseccomp():
    """
    pyseccomp, its libraries named by the grader (LIBRARIES): finding them
    itself, it would run ldconfig, which opens /dev/null for writing (not
    always allowed to the student user) and costs a process start.
    """
    import ctypes.util

    known = json.loads(os.environ.get(LIBRARIES, "{}"))
    find = ctypes.util.find_library
    ctypes.util.find_library = lambda name: known.get(name) or find(name)
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = find
    return pyseccomp


def allow_only_what_workers_need(kernel=False):
    """
    Load the seccomp allow-list on this process and every thread it has
    (children would inherit it, but it makes none): WORKER_SYSCALLS, clone
    only for a thread, prctl and ioctl only for PRCTL_OPTIONS and IOCTLS;
    every other syscall fails with EPERM (clone3 with ENOSYS, so libc falls
    back to clone). So: no new process or program, no socket (not even a Unix
    one), no io_uring, no System V or POSIX IPC, no memfd, no keyring, no new
    namespace, no ptrace, no prctl(PR_SET_PDEATHSIG) (which would undo bwrap's
    --die-with-parent). It holds whatever the user (root is exempt from
    RLIMIT_NPROC; a filter is not), in bubblewrap and in nobody mode alike.
    kernel=True adds KERNEL_SYSCALLS (sockets, an event loop, every ioctl) for
    a notebook's kernel, which runs only under bubblewrap.
    """
    import errno

    sc = _import_pyseccomp()
    rules = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    for name in WORKER_SYSCALLS + (KERNEL_SYSCALLS if kernel else ()):
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:  # -1: not a syscall of this architecture
            rules.add_rule(sc.ALLOW, name)
    rules.add_rule(sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, CLONE_THREAD))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for option in PRCTL_OPTIONS.values():
        rules.add_rule(sc.ALLOW, "prctl", sc.Arg(0, sc.EQ, option))
    if not kernel:
        for request in IOCTLS.values():
            rules.add_rule(sc.ALLOW, "ioctl", sc.Arg(1, sc.EQ, request))
    rules.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread already running too (exit_with_the_grader's)
    rules.load()


def _set_not_dumpable():
    """prctl(PR_SET_DUMPABLE, 0): /proc/<pid>/mem and ptrace of this process need privileges then."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _silence_standard_fds():
    """Standard input, output and error all the /dev/null the grader opened as output (the student user may not open it)."""
    for fd in (0, 2):
        os.dup2(1, fd)


# Besides the standard library, what normlab/layers.py may import: what the students' environment offers
# it (environment.yml). normlab.check.GRADED_IMPORTS says the same to students (a test checks they agree).
ALLOWED_IMPORTS = ("numpy", "array_api_compat", "normlab")
IMPORT_RULE = N_("normlab/layers.py may import only the standard library, {allowed}")


IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def guarded_import_lines(source):
    """
    The lines of the import statements in `source` that sit in a try whose
    handlers catch ImportError (by that name, a parent of it, or a bare
    except): there the student's own fallback is to run, as without grading.
    """
    import ast

    def catches(handler):
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        return handler.type is None or any(
            (k.id if isinstance(k, ast.Name) else getattr(k, "attr", None)) in IMPORT_ERRORS for k in kinds)

    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try) and any(catches(h) for h in node.handlers):
            for statement in node.body:
                for inner in ast.walk(statement):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return frozenset(lines)


class Unavailable:
    """
    What an import of a package the grader does not have binds in the
    student's layers.py: it holds nothing and fails whatever touches it (a
    call, an attribute, an operator, a conversion to an array), saying why.
    An unused import (an editor's auto-import) then costs nothing; a use fails
    the call that makes it, and only that call.
    """

    def __init__(self, name, line):
        object.__setattr__(self, "_Unavailable__name", name)
        object.__setattr__(self, "_Unavailable__line", line)

    def _refuse(self, *args, **kwargs):
        name = object.__getattribute__(self, "_Unavailable__name")
        # What to do first: an exception's message reaches the student cut at error_text's 160 characters.
        raise ModuleNotFoundError(said(UNAVAILABLE_CALL, module=name.partition(".")[0], name=name,
                                       line=object.__getattribute__(self, "_Unavailable__line")))

    def __repr__(self):
        return f"<{object.__getattribute__(self, '_Unavailable__name')}: not available when grading>"


for _special in ("__call__", "__getattr__", "__setattr__", "__delattr__", "__getitem__", "__setitem__",
                 "__delitem__", "__iter__", "__len__", "__bool__", "__contains__", "__index__", "__int__",
                 "__float__", "__complex__", "__array__", "__array_ufunc__", "__array_function__", "__enter__",
                 "__exit__", "__neg__", "__pos__", "__abs__", "__invert__", "__round__", "__lt__", "__le__",
                 "__gt__", "__ge__", *(f"__{p}{op}__" for op in ("add", "sub", "mul", "matmul", "truediv",
                                                                  "floordiv", "mod", "pow", "and", "or", "xor",
                                                                  "lshift", "rshift") for p in ("", "r", "i"))):
    setattr(Unavailable, _special, Unavailable._refuse)


class _UnavailableModule(type(sys)):
    """A stand-in module: its attributes are stand-ins (so `from pkg import name` binds one), its dunders absent."""

    def __init__(self, name, line):
        super().__init__(name)
        self.__path__ = []  # a package: `import pkg.sub` gets a stand-in too
        self.__line = line

    def __getattr__(self, attribute):
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        return Unavailable(f"{self.__name__}.{attribute}", self.__line)


class _UnavailableLoader:
    def __init__(self, line):
        self.line = line  # of the import statement in the student's file

    def create_module(self, spec):
        return _UnavailableModule(spec.name, self.line)

    def exec_module(self, module):
        pass


class OnlyAllowedImports:
    """
    The last meta path finder: asked only for a module no other finder
    found. The sandbox does not mount other packages
    (sandbox.graded_package_mounts), so removing this gains nothing: it only
    decides how the absence shows. An import statement of the student's
    layers.py gets a stand-in module (Unavailable: costs nothing while
    unused, fails the call that uses it, naming the package and the rule);
    an import in a try that catches ImportError, and any import made by
    other code (NumPy's optional ones, importlib.import_module), raises
    ModuleNotFoundError saying why, as a missing module does.
    """

    layers_file = None  # the student's normlab/layers.py as its code objects name it
    guarded_lines = frozenset()

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ALLOWED_IMPORTS or top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return None  # the usual finders decide
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back
        if (frame is None or os.path.abspath(frame.f_code.co_filename) != cls.layers_file
                or frame.f_lineno in cls.guarded_lines):
            raise ModuleNotFoundError(said(UNAVAILABLE_IMPORT, module=top, rule=said(
                IMPORT_RULE, allowed=", ".join(ALLOWED_IMPORTS))), name=name)
        from importlib.machinery import ModuleSpec

        return ModuleSpec(name, _UnavailableLoader(frame.f_lineno), is_package=True)


NO_MORE_REQUESTS = 75  # a session worker's exit status when its request pipe ended: the session is over


def serve_session(package_dir, out, status):
    """
    MODE "calls": one sandbox per submission. This process imports NumPy
    once, then forks the workers one after the other; each reads its own
    request from stdin, serves it (serve_calls) and exits. Only after one
    has exited, and what it could write has been wiped (its scratch folder),
    is the next forked, and its exit status written to the status pipe,
    which no worker holds. This process never reads a request, so a worker
    inherits no other worker's inputs (the isolated worker has not the first
    worker's dout) and no result; it is not dumpable, so a worker (same user)
    cannot read its memory through /proc either.
    """
    _set_not_dumpable()
    scratch = Scratch(os.environ.get("TMPDIR", "/tmp"))
    while True:
        pid = os.fork()
        if pid == 0:
            try:
                os.close(status.fileno())
                exit_with_the_grader(out.fileno())  # the parent's watcher thread is not forked with it
                serve_calls(package_dir, out)
            finally:
                os._exit(0)
        _, wait_status = os.waitpid(pid, 0)
        scratch.restore()
        code = os.waitstatus_to_exitcode(wait_status)
        status.write(encode_frame({"kind": "exited", "status": code}))
        status.flush()
        if code == NO_MORE_REQUESTS:
            return


class Scratch:
    """
    A worker's scratch folder (its TMPDIR: the one place it can write) as
    the session found it, and the means to put it back so after each worker.
    Under bubblewrap it may hold folders that lead to mounts (a Python
    environment that lives under /tmp is bound there): those folders stay,
    everything a worker made is removed, and every folder's mode and times
    are restored, so that not even a timestamp a worker set reaches the next.
    """

    def __init__(self, folder):
        self.folder = folder
        self.device = os.stat(folder).st_dev
        self.kept = {}  # path -> (mode, atime_ns, mtime_ns) of the folders there at the start, on its device
        for root, dirs, _ in os.walk(folder):
            for path in [root] + [os.path.join(root, d) for d in dirs]:
                info = os.lstat(path)
                if info.st_dev == self.device and stat.S_ISDIR(info.st_mode):
                    self.kept[path] = (stat.S_IMODE(info.st_mode), info.st_atime_ns, info.st_mtime_ns)

    def restore(self):
        """Remove what is not kept, whatever its modes; put the kept folders' modes and times back."""
        self._remove_below(self.folder)
        for path, (mode, atime, mtime) in sorted(self.kept.items(), key=lambda item: -len(item[0])):
            os.chmod(path, mode)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)

    def _remove_below(self, folder):
        os.chmod(folder, 0o700)  # a worker may have taken its own rights away
        for entry in os.scandir(folder):
            info = entry.stat(follow_symlinks=False)
            if info.st_dev != self.device:  # a mount: the sandbox's, not the worker's
                continue
            if stat.S_ISDIR(info.st_mode):
                self._remove_below(entry.path)
                if entry.path not in self.kept:
                    os.rmdir(entry.path)
            else:
                os.unlink(entry.path)


def serve_calls(package_dir, out):
    try:
        header, arrays = read_frame_from_fd(0)
    except FrameError as err:
        if str(err) == "the stream ended":
            os._exit(NO_MORE_REQUESTS)
        raise
    inputs = dict(zip(header["names"], arrays))
    SAID.update({english: words for english, words in header.get("messages", {}).items()
                 if isinstance(english, str) and isinstance(words, str)})
    try:
        apply_limits(header.get("limits", {}))
        allow_only_what_workers_need()
    except Exception as err:
        out.write(encode_frame({"kind": "setup_error", "error": error_text(err)}))
        out.flush()
        return
    _silence_standard_fds()
    sys.path.insert(0, package_dir)
    OnlyAllowedImports.layers_file = os.path.abspath(os.path.join(package_dir, "normlab", "layers.py"))
    try:
        with open(OnlyAllowedImports.layers_file, encoding="utf-8") as source:
            OnlyAllowedImports.guarded_lines = guarded_import_lines(source.read())
    except (OSError, SyntaxError, ValueError):  # the import below says what is wrong
        pass
    sys.meta_path.append(OnlyAllowedImports)
    try:
        import normlab.layers as layers
    except BaseException as err:  # noqa: B902 - a student module may raise anything, SystemExit included
        out.write(encode_frame({"kind": "import_error", "error": error_text(err)}))
        out.flush()
        return
    out.write(encode_frame({"kind": "ready"}))
    out.flush()
    for call in header["calls"]:
        try:
            values, error = run_call(layers, inputs, call), None
        except BaseException as err:  # noqa: B902
            values, error = {}, error_text(err)
        try:
            described, result_arrays = _encode_values(values if isinstance(values, dict) else {})
            frame = encode_frame({"kind": "result", "id": call["id"], "error": error, "values": described},
                                 result_arrays)
        except BaseException as err:  # noqa: B902 - an array subclass may break on the way out
            frame = encode_frame({"kind": "result", "id": call["id"], "error": error_text(err), "values": {}})
        out.write(frame)
        out.flush()
    out.write(encode_frame({"kind": "done"}))
    out.flush()


KERNEL_NAME = "normgrade-sandboxed"


def execute_notebook(package_dir, out, limits, timeout):
    """Run every cell with nbclient; the kernel is this file in "kernel" mode."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.reads(sys.stdin.read(), as_version=4)
    apply_limits({k: v for k, v in limits.items() if k != "RLIMIT_NPROC"})
    spec = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kernels", KERNEL_NAME)
    os.makedirs(spec)
    with open(os.path.join(spec, "kernel.json"), "w") as f:
        argv = [sys.executable, "-I", "-B", os.path.abspath(__file__), "kernel", json.dumps(limits),
                "-f", "{connection_file}"]
        json.dump({"argv": argv, "display_name": "Python 3 (sandboxed)", "language": "python"}, f)
    os.environ["JUPYTER_PATH"] = os.path.dirname(os.path.dirname(spec))
    _set_not_dumpable()  # the kernel (student code, same user) must not write this unfiltered process's memory
    _silence_standard_fds()
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": package_dir}})
    try:
        client.execute()
    except BaseException:  # noqa: B902 - a dead kernel ends the run; the outputs so far are kept
        traceback.print_exc()
    out.write(nbformat.writes(nb).encode())
    out.flush()


def run_kernel(package_dir, limits, kernel_args):
    """An IPython kernel for a notebook's cells, with the limits and the process filter set first."""
    apply_limits(limits)
    allow_only_what_workers_need(kernel=True)
    sys.path.insert(0, package_dir)
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance(argv=kernel_args)


def exit_with_the_grader(result_fd):
    """
    End this process as soon as the grader is gone. The grader holds the only
    read end of the result pipe, so when it dies (killed, Ctrl-C) the write
    end reports POLLERR; a daemon thread waits for that. Without it, a worker
    in a student's endless call would outlive a grader killed mid-run.
    """
    watched = os.dup(result_fd)  # stays open after the result pipe is closed at the end

    def watch():
        poller = select.poll()
        poller.register(watched, 0)  # POLLERR and POLLHUP are always reported
        poller.poll()
        os._exit(1)

    threading.Thread(target=watch, name="grader-watch", daemon=True).start()


def main(argv):
    mode, package_dir = argv[1], os.path.dirname(os.path.abspath(__file__))
    if mode == "kernel":
        return run_kernel(package_dir, json.loads(argv[2]), argv[3:])
    out = os.fdopen(int(os.environ.pop(RESULT_FD)), "wb")
    exit_with_the_grader(out.fileno())
    if mode == "calls":
        serve_session(package_dir, out, os.fdopen(int(os.environ.pop(STATUS_FD)), "wb"))
    elif mode == "notebook":
        execute_notebook(package_dir, out, json.loads(argv[2]), float(argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out.close()
    os._exit(0)  # no interpreter shutdown: nothing the student's code registered at exit runs


if __name__ == "__main__":
    main(sys.argv)
