"""
Hostile and broken layers.py files against the trusted scorer and the real bubblewrap sandbox.

Each case is the reference with one attack appended (or a whole hostile
module), and states exactly which functions must lose points and what the
message must say. Every other function keeps all its points: a failure costs
only the checks that needed the failing call.
"""
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from processes import live_pids

from normgrade.score import checks
from normgrade.paths import REPO, SOLUTION_LAYERS, STUB_LAYERS
from normgrade.run.sandbox import Limits, Sandbox, SandboxUnavailable, _python_roots
from normgrade.score.scorer import collect, score_code

FAST = Limits(call_seconds=3, cpu_seconds=20)
LAYERNORM = {"layernorm_forward", "layernorm_backward"}  # the backward calls the forward first


def _override(body):
    """The reference with layernorm_forward replaced by `body` (its statements)."""
    return SOLUTION_LAYERS.read_text() + "\n\ndef layernorm_forward(x, gamma, beta, ln_param):\n" + textwrap.indent(
        textwrap.dedent(body), "    ") + "\n"


def _grade(tmp_path, source, data, sandbox, limits=FAST):
    path = tmp_path / "layers.py"
    path.write_text(source)
    start = time.monotonic()
    scores = score_code(path, checks.FUNCTIONS, data, sandbox, limits)
    return scores, time.monotonic() - start


def _check(scores, losing, message, named=("layernorm_forward",)):
    """
    Exactly the functions in `losing` lose every point, the value checks of
    those in `named` with `message`; all other functions keep all their points.
    """
    for function, results in scores.items():
        earned = sum(r.earned for r in results)
        if function in losing:
            assert earned == 0, (function, [r.message for r in results])
            assert function not in named or all(message in r.message for r in results if not r.check.gradient), (
                function, [r.message for r in results])
        else:
            assert earned == checks.total_points(function), (function, [r.message for r in results if r.message])


CASES = {
    "infinite loop": (_override("while True:\n    pass"), LAYERNORM, "stopped after 3 s"),
    "os._exit": (_override("import os\nos._exit(7)"), LAYERNORM, "exited with status 7"),
    "segfault": (_override("import ctypes\nctypes.string_at(0)"), LAYERNORM, "crashed with signal 11 (SIGSEGV)"),
    "memory bomb": (_override("import numpy\nreturn numpy.ones(1 << 32), {}"), LAYERNORM, "ran out of memory"),
    "fork bomb": (_override("import os\nwhile True:\n    os.fork()"), LAYERNORM, "raised PermissionError"),
    "subprocess": (_override("import subprocess\nsubprocess.run(['sh', '-c', 'sleep 100 &'])"), LAYERNORM,
                   "raised PermissionError"),
    "huge result": (_override("import numpy\nreturn numpy.zeros(12 << 20), {}"), LAYERNORM,
                    "sent more than 64 MiB of results"),
    "huge file": (_override("open('/tmp/big', 'wb').write(bytes(32 << 20))"), LAYERNORM,
                  "raised OSError: [Errno 27] File too large"),
    "CPU hog in threads": (_override(
        "import threading\nfor _ in range(4):\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()\n"
        "while True:\n    pass"), LAYERNORM, "stopped after"),
    "thread bomb": (_override(
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()"),
        LAYERNORM, "raised RuntimeError: can't start new thread"),
    "System V shared memory": (_override(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.shmget(0, 512 << 20, 0o1600) < 0:\n    raise OSError(ctypes.get_errno(), 'shmget refused')"),
        LAYERNORM, "raised PermissionError: [Errno 1] shmget refused"),
    "memfd": (_override("import os\nos.memfd_create('hold')"), LAYERNORM, "raised PermissionError"),
    "new user namespace": (_override(
        "import ctypes\nif ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:\n"
        "    raise OSError(ctypes.get_errno(), 'unshare refused')"), LAYERNORM, "raised PermissionError"),
    # io_uring makes sockets and opens files without the socket or open calls (IORING_OP_SOCKET): never set up.
    "io_uring": (_override(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nparams = ctypes.create_string_buffer(120)\n"
        "if libc.syscall(425, 8, params) < 0:  # io_uring_setup\n"
        "    raise OSError(ctypes.get_errno(), 'io_uring_setup refused')"), LAYERNORM,
        "raised PermissionError: [Errno 1] io_uring_setup refused"),
    "a key in the user's keyring": (_override(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "number = {'x86_64': 248, 'aarch64': 217}[__import__('os').uname().machine]  # add_key\n"
        "if libc.syscall(number, b'user', b'note', b'1.5', 3, -4) < 0:  # to the user keyring\n"
        "    raise OSError(ctypes.get_errno(), 'add_key refused')"), LAYERNORM,
        "raised PermissionError: [Errno 1] add_key refused"),
    "System V semaphores": (_override(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.semget(0x4E4F5445, 1, 0o1600) < 0:\n    raise OSError(ctypes.get_errno(), 'semget refused')"),
        LAYERNORM, "raised PermissionError: [Errno 1] semget refused"),
    "execve of another program": (_override("import os\nos.execv('/bin/sh', ['sh', '-c', 'true'])"), LAYERNORM,
                                  "raised PermissionError"),
    **{f"a socket of family {family.name}": (_override(
        f"import socket\nsocket.socket({int(family)}, socket.SOCK_{kind}).close()"), LAYERNORM, "raised PermissionError")
        for family, kind in ((socket.AF_INET, "STREAM"), (socket.AF_INET6, "DGRAM"), (socket.AF_UNIX, "STREAM"),
                             (socket.AF_NETLINK, "RAW"), (socket.AF_PACKET, "RAW"), (socket.AF_ALG, "SEQPACKET"),
                             (socket.AF_VSOCK, "STREAM"))},
    "sys.exit in a function": (_override("import sys\nsys.exit(3)"), LAYERNORM, "raised SystemExit: 3"),
    "returns None": (_override("return None, None"), LAYERNORM, "is missing (None)"),
    "returns a list": (_override("return [[0.0]], {}"), LAYERNORM, "is a list, expected an array"),
    "returns an object array": (_override("import numpy\nreturn numpy.array([object()]), {}"), LAYERNORM,
                                "is a ndarray, expected an array"),
    "uses a library inside the function": (_override("import scipy.special\nreturn scipy.special.erf(x), {}"),
                                           LAYERNORM, "raised ModuleNotFoundError: scipy is not available when grading"),
    # importlib's own import is other code's: it raises, as before (no stand-in that returns quietly).
    "imports a library through importlib": (_override("import importlib\nimportlib.import_module('scipy')\nreturn x, {}"),
                                            LAYERNORM, "raised ModuleNotFoundError: scipy is not available when grading"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_failing_call_costs_only_its_checks(tmp_path, data, sandbox, case):
    source, losing, message = CASES[case]
    scores, seconds = _grade(tmp_path, source, data, sandbox)
    _check(scores, losing, message)
    assert seconds < 60


def test_a_function_that_hung_is_not_run_again_in_the_isolated_worker(tmp_path, data, sandbox):
    """Its time limit is spent once per function: the isolated worker's call of it is not run (10 s each before)."""
    path = tmp_path / "layers.py"
    path.write_text(CASES["infinite loop"][0])
    calls = [call for function in checks.FUNCTIONS for call in checks.calls_for(function)]
    isolated = [call for call in calls if call.get("isolated") and call["id"].startswith("layernorm_backward/")]
    assert isolated  # the large call, which runs in a worker of its own after the others
    values = collect(path, calls, data.all_inputs, sandbox, FAST)
    timed_out = {name for name, value in values.items() if getattr(value, "seconds", 0)}
    assert timed_out == {"ln_out", "ln_dx", "ln_dgamma", "ln_dbeta"}  # one call of each function, 3 s each
    for name in isolated[0]["produces"]:
        assert values[name].message == "was not run: an earlier call of layernorm_backward stopped after 3 s " \
                                       "(time limit)"


IMPORT_FAILURES = {
    "syntax error": ("def batchnorm_forward(:\n", "normlab could not be imported: SyntaxError"),
    "import error": ("import not_a_module_anywhere\nnot_a_module_anywhere.setup()\n",
                     "normlab could not be imported: ModuleNotFoundError"),
    "sys.exit at import": ("import sys\nsys.exit(2)\n", "normlab could not be imported: SystemExit: 2"),
    "hang at import": ("while True:\n    pass\n", "normlab could not be imported: it stopped after 3 s"),
    "os._exit at import": ("import os\nos._exit(0)\n", "normlab could not be imported: it exited with status 0"),
    # Libraries of the grading environment that the students' environment does not offer: not even mounted.
    # Imported and used at the top of the file (an unused import costs nothing: see below).
    "a library students do not have": ("import scipy.special\nscipy.special.erf(0.0)\n",
                                       "scipy is not available when grading"),
    "the grader's own tools": ("import nbgrader.api\nnbgrader.api.Gradebook('sqlite://')\n",
                               "nbgrader is not available when grading"),
    "a database driver": ("from sqlalchemy import create_engine\ncreate_engine('sqlite://')\n",
                          "sqlalchemy is not available when grading"),
    "PyTorch": ("import torch\nx = torch.zeros(1) + 1\n", "torch is not available when grading"),
    "site-packages put back on sys.path": (
        "import sys, sysconfig\nsys.meta_path[:] = sys.meta_path[:-1]\nsys.path.append(sysconfig.get_paths()['purelib'])\n"
        "import sklearn\n", "No module named 'sklearn'"),
    "a library loaded by its path": (
        "import importlib.util, sysconfig\nspec = importlib.util.spec_from_file_location('s', "
        "sysconfig.get_paths()['purelib'] + '/scipy/__init__.py')\nspec.loader.exec_module(importlib.util.module_from_spec(spec))\n",
        "FileNotFoundError"),
}


@pytest.mark.parametrize("case", IMPORT_FAILURES)
def test_a_module_that_does_not_import_earns_nothing_once(tmp_path, data, sandbox, case):
    source, message = IMPORT_FAILURES[case]
    scores, seconds = _grade(tmp_path, source, data, sandbox)
    _check(scores, set(checks.FUNCTIONS), message, named=checks.FUNCTIONS)
    assert seconds < 15, "an import failure is not retried call after call"


UNUSED_IMPORTS = {
    "an editor's auto-import": "from pyparsing import col\n",
    "plotting and scipy, never called": "import matplotlib.pyplot as plt\nimport scipy\nfrom tqdm import tqdm as _bar\n",
}


@pytest.mark.parametrize("case", UNUSED_IMPORTS)
def test_an_unused_import_of_a_library_the_grader_lacks_costs_nothing(tmp_path, data, sandbox, case):
    """A real public submission, all nine functions right, scored 0 / 36 for `from pyparsing import col`."""
    scores, _ = _grade(tmp_path, UNUSED_IMPORTS[case] + SOLUTION_LAYERS.read_text(), data, sandbox)
    _check(scores, set(), "")


def test_a_used_import_fails_only_the_calls_that_use_it_naming_the_package_and_its_line(tmp_path, data, sandbox):
    source = "import scipy.special as sp\n" + _override("return sp.erf(x), {}")
    scores, _ = _grade(tmp_path, source, data, sandbox)
    _check(scores, LAYERNORM, "scipy is not available when grading")
    said = "scipy is not available when grading: use NumPy (this call used scipy.special.erf, imported on line 1; " \
           "an import alone costs nothing)"
    assert all(said in r.message for r in scores["layernorm_forward"]), "whole, not cut at 160 characters"


def test_an_import_guarded_by_the_student_runs_their_fallback(tmp_path, data, sandbox):
    """`try: import scipy ... except ImportError:` takes the except branch, as on a machine without scipy."""
    fallback = SOLUTION_LAYERS.read_text() + (
        "\ntry:\n    from scipy import special as sp\nexcept (ValueError, ImportError):\n    sp = None\n"
        "\n_right_ln = layernorm_forward\n\n\ndef layernorm_forward(x, gamma, beta, ln_param):\n"
        "    if sp is not None:\n        return sp.erf(x), {}\n    return _right_ln(x, gamma, beta, ln_param)\n")
    scores, _ = _grade(tmp_path, fallback, data, sandbox)
    _check(scores, set(), "")


def test_the_graded_worker_sees_only_the_libraries_students_have(tmp_path, data, sandbox):
    """What a graded worker finds in every package folder: numpy, array_api_compat, pyseccomp, nothing else."""
    source = _override("""
        import numpy, os, sys, sysconfig
        found = set()
        for folder in {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib'], *sys.path}:
            if os.path.isdir(folder) and folder.endswith(('site-packages', 'dist-packages')):
                found.update(name.split('-')[0].split('.')[0] for name in os.listdir(folder))
        return numpy.frombuffer(' '.join(sorted(found)).encode(), dtype=numpy.uint8).copy(), None""")
    (tmp_path / "layers.py").write_text(source)
    calls = [c for c in checks.calls_for("layernorm_forward") if c["recipe"] == "ln_forward"]
    values = collect(tmp_path / "layers.py", calls, data.all_inputs, sandbox, FAST)
    assert set(bytes(values["ln_out"]).decode().split()) == {"numpy", "array_api_compat", "pyseccomp"}


LEAKY = STUB_LAYERS.read_text() + textwrap.dedent('''
    import base64 as _b64, zlib as _zlib, numpy as _np

    def _leak(*args, **kwargs):  # every hidden array it is given, compressed, in the exception's message
        blob = b"".join(a.tobytes() for a in args if isinstance(a, _np.ndarray))
        text = _b64.b85encode(_zlib.compress(blob)).decode()
        raise ValueError("LEAK" + text + "\\n" + text)

    class LEAKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx:
        pass

    def _odd(*args, **kwargs):
        return LEAKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx(), None

    batchnorm_forward = layernorm_forward = spatial_groupnorm_forward = _leak
    batchnorm_backward = batchnorm_backward_alt = layernorm_backward = _leak
    spatial_batchnorm_backward = spatial_groupnorm_backward = _leak
    spatial_batchnorm_forward = _odd
    ''')


def test_exception_text_cannot_carry_the_hidden_inputs_out(tmp_path, data, sandbox):
    """Each message is one short line, and a submission's messages together are bounded (scorer.StudentText)."""
    from normgrade.score.scorer import MAX_STUDENT_TEXT
    from normgrade.run.worker import MAX_ERROR_CHARS

    scores, _ = _grade(tmp_path, LEAKY, data, sandbox)
    report = " ".join(r.message for results in scores.values() for r in results)  # unwrapped
    leaked = [piece.split()[0] for piece in report.split("LEAK")[1:]]
    assert leaked, "the submission's messages reach the feedback at all"
    assert max(len(piece) for piece in leaked) <= MAX_ERROR_CHARS
    assert len("".join(set(leaked))) <= MAX_STUDENT_TEXT, "more than the budget of student text left the sandbox"
    assert "its message is not shown" in report
    hidden = sum(array.nbytes for array in data.all_inputs.values())
    assert hidden > 20 * MAX_STUDENT_TEXT, "the budget is small next to what it protects"


def test_output_on_stdout_stderr_and_warnings_costs_nothing(tmp_path, data, sandbox):
    source = SOLUTION_LAYERS.read_text() + textwrap.dedent('''
        import os as _os, sys as _sys, warnings as _warnings
        _reference = layernorm_forward
        def layernorm_forward(*args):
            print("debug output")
            print("to stderr", file=_sys.stderr)
            _sys.__stderr__.write("to the original stderr\\n")
            _os.write(2, b"to fd 2\\n")
            _os.write(1, b"to fd 1\\n")
            _warnings.warn("student warning")
            return _reference(*args)
        ''')
    scores, _ = _grade(tmp_path, source, data, sandbox)
    _check(scores, set(), "")


def test_forged_results_on_the_pipe_earn_nothing(tmp_path, data, sandbox):
    """Code that finds the result pipe and writes its own frames only breaks its own calls."""
    source = STUB_LAYERS.read_text() + textwrap.dedent('''
        import os as _os
        from worker import encode_frame as _frame
        import numpy as _np
        for _fd in map(int, _os.listdir("/proc/self/fd")):
            try:
                _os.write(_fd, _frame({"kind": "ready"}) + _frame(
                    {"kind": "result", "id": "layernorm_forward/0", "error": None,
                     "values": {"ln_out": {"type": "array", "index": 0}}}, [_np.zeros((5, 8))]) + b"garbage" * 100)
            except OSError:
                pass
        ''')
    scores, _ = _grade(tmp_path, source, data, sandbox)
    assert sum(r.earned for rs in scores.values() for r in rs) == 0


FAKE = '''
import numpy as _np
def _forward(x, gamma, beta, *rest):
    return {out}, (x, gamma, beta)
def _backward(dout, cache):
    x, gamma, beta = cache
    return {grads}
batchnorm_forward = layernorm_forward = spatial_batchnorm_forward = spatial_groupnorm_forward = _forward
batchnorm_backward = batchnorm_backward_alt = layernorm_backward = _backward
spatial_batchnorm_backward = spatial_groupnorm_backward = _backward
'''
FAKES = {  # forward output, its exact backward, why the gradient check gives nothing
    "zeros of the right shape": ("_np.zeros_like(x)", "_np.zeros_like(x), _np.zeros_like(gamma), _np.zeros_like(beta)",
                                 "does not respond to x"),
    "x + sum(gamma) + sum(beta)": ("x + gamma.sum() + beta.sum()",
                                   "dout, _np.full(gamma.shape, dout.sum()), _np.full(beta.shape, dout.sum())",
                                   "is not a normalization"),
}


@pytest.mark.parametrize("fake", FAKES)
def test_fake_implementations_with_consistent_gradients_earn_nothing(tmp_path, data, sandbox, fake):
    """No point for a gradient consistent with a forward that normalizes nothing, or for statistics left alone."""
    out, grads, message = FAKES[fake]
    scores, _ = _grade(tmp_path, STUB_LAYERS.read_text() + FAKE.format(out=out, grads=grads), data, sandbox)
    assert {f: sum(r.earned for r in rs) for f, rs in scores.items()} == {f: 0 for f in checks.FUNCTIONS}
    gradient = next(r for r in scores["layernorm_backward"] if r.check.gradient)
    assert message in gradient.message


# Trivial code that a scale test alone took for a normalization: out = gamma * x / x.flat[0] + beta is scale
# invariant, and its exact backward is consistent with it. _normalized is each layer's right forward pass.
TRIVIAL = """
import numpy as _np

def _channels(a, x):  # gamma and beta broadcast as the layer does
    return a.reshape(1, -1, 1, 1) if x.ndim == 4 else a

def _trivial(x, gamma, beta):
    return _channels(gamma, x) * x / x.flat[0] + _channels(beta, x)

def _forward(x, gamma, beta, layer):
    return _trivial(x, gamma, beta), (x.copy(), gamma)

def _backward(dout, cache):
    x, gamma = cache
    g, x0, axes = _channels(gamma, x), x.flat[0], (0, 2, 3) if x.ndim == 4 else (0,)
    dx = dout * g / x0
    dx.flat[0] -= _np.sum(dout * g * x) / x0 ** 2
    return dx, _np.sum(dout * x / x0, axis=axes).reshape(gamma.shape), _np.sum(dout, axis=axes).reshape(gamma.shape)

def _normalized(x, gamma, beta, layer):
    if x.ndim == 2:
        axis = 1 if layer == "ln" else 0
        x_hat = (x - x.mean(axis=axis, keepdims=True)) / _np.sqrt(x.var(axis=axis, keepdims=True) + 1e-5)
    else:
        N, C, H, W = x.shape
        v, axes = (x.reshape(N, layer, C // layer, H, W), (2, 3, 4)) if layer else (x[:, None], (0, 3, 4))
        x_hat = ((v - v.mean(axis=axes, keepdims=True)) / _np.sqrt(v.var(axis=axes, keepdims=True) + 1e-5))
        x_hat = x_hat.reshape(x.shape)
    return _channels(gamma, x) * x_hat + _channels(beta, x)

def _multiple_of(x, old):  # x = c * old, c far from 1: the scale test's points
    ratio = x / old if old.shape == x.shape else _np.array([_np.nan])
    return bool(_np.all(_np.isfinite(ratio)) and abs(ratio.flat[0]) > 1.5
                and _np.ptp(ratio) < 1e-9 * abs(ratio.flat[0]))
%s
def batchnorm_forward(x, gamma, beta, bn_param):
    return _forward(x, gamma, beta, None)
def layernorm_forward(x, gamma, beta, ln_param):
    return _forward(x, gamma, beta, "ln")
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    return _forward(x, gamma, beta, None)
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    return _forward(x, gamma, beta, G)
batchnorm_backward = batchnorm_backward_alt = layernorm_backward = _backward
spatial_batchnorm_backward = spatial_groupnorm_backward = _backward
"""
TRIVIAL_CASES = {
    "scale invariant: gamma * x / x.flat[0] + beta": "",
    "gamma * x + beta, remembering its last call to repeat its output for a multiple of x": """
_last = {}
def _forward(x, gamma, beta, layer):
    if "x" in _last and _multiple_of(x, _last["x"]):
        return _last["out"].copy(), (x.copy(), gamma)
    _last.update(x=x.copy(), out=_channels(gamma, x) * x + _channels(beta, x))
    return _last["out"].copy(), (x.copy(), gamma)

def _backward(dout, cache):
    x, gamma = cache
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    return (dout * _channels(gamma, x), _np.sum(dout * x, axis=axes).reshape(gamma.shape),
            _np.sum(dout, axis=axes).reshape(gamma.shape))
""",
    "normalizes only a multiple of an x it has seen": """
_seen = []
def _forward(x, gamma, beta, layer):
    if any(_multiple_of(x, old) for old in _seen):
        return _normalized(x, gamma, beta, layer), (x.copy(), gamma)
    _seen[:] = _seen[-2:] + [x.copy()]
    return _trivial(x, gamma, beta), (x.copy(), gamma)
""",
    "normalizes only an x spread over more than 50": """
def _forward(x, gamma, beta, layer):
    if _np.ptp(x) > 50:  # x * 100 of the scale test, not x = 1e4 + noise
        return _normalized(x, gamma, beta, layer), (x.copy(), gamma)
    return _trivial(x, gamma, beta), (x.copy(), gamma)
""",
}


@pytest.mark.parametrize("case", TRIVIAL_CASES)
def test_trivial_code_with_consistent_gradients_earns_nothing_whatever_it_remembers(tmp_path, data, sandbox, case):
    """
    The gradient check credits a forward pass only if its output standardizes
    at every point the numerical gradient is taken from; dbeta (dout summed,
    whatever the forward pass) only with such a forward pass. Once earned
    8 / 36 (the five gradient checks and dbeta).
    """
    scores, _ = _grade(tmp_path, STUB_LAYERS.read_text() + TRIVIAL % TRIVIAL_CASES[case], data, sandbox)
    assert {f: sum(r.earned for r in rs) for f, rs in scores.items()} == {f: 0 for f in checks.FUNCTIONS}
    for backward in checks.GRADIENTS:
        gradient = next(r for r in scores[backward] if r.check.gradient)
        assert "is not a normalization" in gradient.message, gradient.message
    dbeta = next(r for r in scores["batchnorm_backward"] if r.check.gated)
    assert dbeta.message.startswith("not credited: batchnorm_backward_dbeta is dout summed"), dbeta.message


# Backward passes by central differences of the student's own (right) forward passes: no derivation at all.
NUMERICAL = """
import numpy as _np
_forwards = {name: globals()[name] for name in ("batchnorm_forward", "layernorm_forward",
                                                "spatial_batchnorm_forward", "spatial_groupnorm_forward")}

def _with_numerical_cache(name):
    def forward(x, gamma, beta, *rest):
        out, _ = _forwards[name](x, gamma, beta, *rest)
        params = [dict(r, mode="train") if isinstance(r, dict) else r for r in rest]
        def f(x, gamma, beta):
            return _forwards[name](x, gamma, beta, *[dict(r) if isinstance(r, dict) else r for r in params])[0]
        return out, (f, x.copy(), gamma.copy(), beta.copy())
    return forward

def _numerical(dout, cache, h=1e-6):  # fourth-order central differences: right to 1e-9 on the small inputs
    f, x, gamma, beta = cache
    grads = []
    for a in (x, gamma, beta):
        grad = _np.zeros_like(a)
        for index in _np.ndindex(a.shape):
            old, at = a[index], {}
            for k in (-2, -1, 1, 2):
                a[index] = old + k * h
                at[k] = _np.sum(f(x, gamma, beta) * dout)
            a[index] = old
            grad[index] = (8 * (at[1] - at[-1]) - (at[2] - at[-2])) / (12 * h)
        grads.append(grad)
    return tuple(grads)

for _name in _forwards:
    globals()[_name] = _with_numerical_cache(_name)
batchnorm_backward = batchnorm_backward_alt = layernorm_backward = _numerical
spatial_batchnorm_backward = spatial_groupnorm_backward = _numerical
"""


def test_a_backward_pass_by_finite_differences_loses_every_backward_point(tmp_path, data, sandbox):
    """
    Right on the small inputs, but each backward pass's checks include an input
    of about 100,000 entries (checks.LARGE), where finite differences need some
    200,000 forward passes and a call has seconds: every backward point is
    lost, with a message that says why, and the forward passes keep theirs
    (the edge cases, checks.EDGES, have no large input: finite differences of
    a float32 forward pass lose them on their values).
    """
    scores, seconds = _grade(tmp_path, SOLUTION_LAYERS.read_text() + NUMERICAL, data, sandbox)
    for function, results in scores.items():
        if function in checks.GRADIENTS:
            shape = "(500, 200)" if function in ("batchnorm_backward", "batchnorm_backward_alt",
                                                 "layernorm_backward") else "(2, 8, 50, 125)"
            assert [r.earned for r in results] == [0.0] * len(results), function
            for r in results:
                if r.check.quantities and not set(r.check.quantities + r.check.finishes) & set(checks.LARGE_QUANTITIES):
                    assert r.check.quantities[0].startswith(checks.EDGE_PREFIX[function]), r.check
                    continue
                assert f"{function} did not finish in 3 s on a {shape} input: a vectorized analytic backward pass " \
                       "takes milliseconds; loops over entries or numerical differences are not credited" \
                       in r.message, (function, r.message)
        else:
            assert sum(r.earned for r in results) == checks.total_points(function), function
    assert seconds < 60


def test_structured_finite_differences_and_state_earn_only_the_stated_limit(tmp_path, data, sandbox):
    """
    The red team's finite-difference backward passes (tests/data/structured_fd_backward.py): state kept from
    the forward calls before it tells spatial batch and group norm's backward nothing (the directional
    derivative's points run in a worker of their own, after it), so both earn nothing; what structure-aware
    finite differences still earn for batch and layer norm is what docs/trust-model.md states: 7.5 of 16 points.
    """
    source = SOLUTION_LAYERS.read_text() + (REPO / "tests" / "data" / "structured_fd_backward.py").read_text()
    scores, _ = _grade(tmp_path, source, data, sandbox, Limits())
    backward = {f: sum(r.earned for r in results) for f, results in scores.items() if f in checks.GRADIENTS}
    assert backward["spatial_batchnorm_backward"] == backward["spatial_groupnorm_backward"] == 0, backward
    assert sum(backward.values()) <= 7.5, backward
    for function in ("batchnorm_forward", "layernorm_forward", "spatial_batchnorm_forward",
                     "spatial_groupnorm_forward"):
        assert sum(r.earned for r in scores[function]) == checks.total_points(function)


def test_the_directional_points_never_reach_the_backward_pass_worker(data):
    """The inputs each worker run is sent: the large stacks only to the isolated forward passes' run."""
    from normgrade.score.scorer import worker_runs

    calls = [c for f in checks.FUNCTIONS for c in checks.calls_for(f)]
    (main_calls, main_inputs), (isolated_calls, isolated_inputs) = worker_runs(calls, data.all_inputs)
    stacks = {n for n in data.all_inputs if n.startswith("large_") and n.endswith("_stack")}
    assert stacks and not stacks & set(main_inputs) and set(isolated_inputs) == stacks
    assert all(c["recipe"] == "forward_many" for c in isolated_calls)
    assert {c["recipe"] for c in main_calls if c["id"].startswith("spatial_groupnorm_backward")} >= {"backward_at"}


MEMORY_SCAN = textwrap.dedent('''
    import os as _os, tempfile as _tempfile
    import numpy as _np

    MARK = [1234.5, 2345.25, 3456.125, 4567.0625]  # what the backward pass returns, to look for later

    def _in_memory(values):
        """Whether four consecutive float64 values are anywhere in this process's readable memory."""
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                fields = line.split()
                start, end = (int(a, 16) for a in fields[0].split("-"))
                if not fields[1].startswith("r") or end - start > (256 << 20) or fields[-1].startswith("[v"):
                    continue
                try:
                    mem.seek(start)
                    chunk = mem.read(end - start)
                except (OSError, ValueError, OverflowError):
                    continue
                a = _np.frombuffer(chunk, "<f8", len(chunk) // 8)
                for i in _np.flatnonzero(a[:-3] == values[0]):
                    if a[i + 1] == values[1] and a[i + 2] == values[2] and a[i + 3] == values[3]:
                        return True
        return False

    def _parent_memory_readable():
        try:
            with open(f"/proc/{_os.getppid()}/mem", "rb", 0) as mem:
                mem.read(1)
            return True
        except (OSError, ValueError):
            return False

    def batchnorm_forward(x, gamma, beta, bn_param):  # in the isolated worker: what of the first is there?
        out = _np.zeros_like(x)
        tmp = _os.stat(_tempfile.gettempdir())
        out.flat[:7] = [_in_memory(DOUT), _in_memory(MARK), _os.path.exists(_os.path.join(_tempfile.gettempdir(), "note")),
                        _parent_memory_readable(), _in_memory(SECRET), tmp.st_mtime_ns == 123456789012345,
                        tmp.st_mode & 0o777 == 0o500]
        return out, None

    def batchnorm_backward(dout, cache):  # in the first worker: leaves notes, and looks for the secret points
        tmp = _tempfile.gettempdir()
        open(_os.path.join(tmp, "note"), "w").write("from the backward pass")
        _os.makedirs(_os.path.join(tmp, "locked", "deeper"))
        open(_os.path.join(tmp, "locked", "deeper", "note"), "w").write("hidden")
        _os.chmod(_os.path.join(tmp, "locked", "deeper"), 0)
        _os.chmod(_os.path.join(tmp, "locked"), 0)
        _os.utime(tmp, ns=(123456789012345, 123456789012345))  # its times and mode: bits the next could read
        _os.chmod(tmp, 0o500)
        dx = _np.zeros_like(dout)
        dx.flat[:7] = MARK + [_in_memory(SECRET), _in_memory(DOUT), _parent_memory_readable()]
        return dx, _np.zeros(dout.shape[1]), _np.zeros(dout.shape[1])
    ''')


def test_a_worker_holds_nothing_of_the_other_and_cannot_read_their_session(tmp_path, data, sandbox):
    """
    One sandbox per submission, its workers forked one after the other
    (worker.serve_session): the backward pass's worker, scanning all of its
    memory, finds its own dout there (the scan works) but not the secret
    points of the directional derivative; the isolated forward pass's worker,
    scanning its memory, finds the points it was sent but neither that dout
    nor what the backward pass returned, nor the note it left in its /tmp;
    and neither can read the memory of the process that forks them.
    """
    inputs = data.all_inputs
    needle = lambda name: [float(v) for v in inputs[name].flat[:4]]  # noqa: E731
    source = (SOLUTION_LAYERS.read_text() + f"\nDOUT = {needle('large_2d_dout')!r}\n"
              f"SECRET = {[float(v) for v in inputs['large_2d_x_stack'][0].flat[:4]]!r}\n" + MEMORY_SCAN)
    (tmp_path / "layers.py").write_text(source)
    calls = [dict(c, id=f"batchnorm_backward/{i}") for i, c in enumerate(checks._large_calls("batchnorm_backward"))]
    values = collect(tmp_path / "layers.py", calls, inputs, sandbox, Limits(call_seconds=60, cpu_seconds=120))
    dx = values["batchnorm_backward_large_dx"]
    assert isinstance(dx, np.ndarray), dx
    assert list(dx.flat[:4]) == [1234.5, 2345.25, 3456.125, 4567.0625]
    secret_seen, dout_seen, parent_read = dx.flat[4:7]
    assert dout_seen == 1, "the memory scan does not work: it should find the worker's own dout"
    assert secret_seen == 0 and parent_read == 0
    outputs = values["batchnorm_backward_large_outputs"]
    assert isinstance(outputs, np.ndarray), outputs
    dout_seen, mark_seen, note_seen, parent_read, points_seen, time_seen, mode_seen = outputs[0].flat[:7]
    assert points_seen == 1, "the memory scan does not work: it should find the points it was sent"
    assert (dout_seen, mark_seen, note_seen, parent_read, time_seen, mode_seen) == (0, 0, 0, 0, 0, 0)


def test_a_workers_scratch_is_put_back_around_the_mounts_it_holds(tmp_path):
    """
    Under bubblewrap, a Python environment that lives under /tmp is bound
    there, inside the workers' scratch folder (a fresh clone's .venv in
    /tmp is one): worker.Scratch removes what a worker made, even in folders
    it locked, restores the folders' modes and times, and leaves the mount
    and the folders leading to it as they were.
    """
    import shutil
    import stat as stat_module

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("no bubblewrap")
    environment = tmp_path / "environment"
    environment.mkdir()
    (environment / "kept.txt").write_text("the environment's own")
    script = textwrap.dedent('''
        import os, sys
        sys.path.insert(0, sys.argv[1])
        import worker
        scratch = worker.Scratch("/tmp")
        before = {p: (os.stat(p).st_mode, os.stat(p).st_mtime_ns) for p in ("/tmp", "/tmp/lib")}
        os.makedirs("/tmp/lib/made/deeper")
        open("/tmp/lib/made/deeper/note", "w").write("x")
        open("/tmp/note", "w").write("x")
        os.chmod("/tmp/lib/made/deeper", 0)
        os.utime("/tmp/lib", ns=(1, 1))
        os.chmod("/tmp", 0o500)
        scratch.restore()
        after = {p: (os.stat(p).st_mode, os.stat(p).st_mtime_ns) for p in ("/tmp", "/tmp/lib")}
        print("note" in os.listdir("/tmp"), os.listdir("/tmp/lib"), os.listdir("/tmp/lib/env"), before == after)
    ''')
    worker_folder = Path(__import__("normgrade.run.worker", fromlist=["x"]).__file__).parent
    argv = [bwrap, "--unshare-all", "--dev-bind", "/", "/", "--tmpfs", "/tmp"]
    for root in _python_roots():  # as the sandbox does: an environment under /tmp is bound over the tmpfs
        argv += ["--ro-bind", str(root), str(root)]
    argv += ["--ro-bind", str(worker_folder), "/tmp/normgrade"]  # a checkout may live under /tmp too
    done = subprocess.run(argv + ["--ro-bind", str(environment), "/tmp/lib/env", sys.executable, "-c", script,
                                  "/tmp/normgrade"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "['env']", "['kept.txt']", "True"]
    assert stat_module.S_IMODE(environment.stat().st_mode) & 0o700 == 0o700


SNOOP = textwrap.dedent('''
    import os as _os, socket as _socket

    def _snoop():
        seen = {}
        secrets = ("expected.npz", "normgrade_expected.npz", "gradebook.db", "nbgrader_config.py", "checks.py",
                   "mutants.py", "scorer.py")
        found = []
        for top in ("/", ):
            for folder, dirs, files in _os.walk(top):
                dirs[:] = [d for d in dirs if folder != "/" or d not in ("proc", "sys", "dev")]
                found += [_os.path.join(folder, f) for f in files if f in secrets]
                found += [_os.path.join(folder, f) for f in files if f == "layers.py"
                          and "BEGIN SOLUTION" in open(_os.path.join(folder, f), errors="ignore").read()]
        seen["secrets"] = found
        seen["processes"] = sorted(p for p in _os.listdir("/proc") if p.isdigit())
        writable = []
        for target in ("/sandbox/normlab/layers.py", "/sandbox/worker.py", "/usr/x", "/etc/x", "/dev/x", "/dev/shm/x",
                       "/x", "@HOME@/x", "@COURSE@/x"):
            try:
                open(target, "a").close()
                writable.append(target)
            except OSError:
                pass
        seen["writable"] = writable
        try:
            _socket.create_connection(("127.0.0.1", @PORT@), timeout=2)
            seen["network"] = "connected"
        except OSError as err:
            seen["network"] = type(err).__name__
        seen["listed"] = {p: sorted(_os.listdir(p)) for p in ("@HOME@", "@COURSE@", "@REPO@") if _os.path.isdir(p)}
        return seen

    def layernorm_forward(x, gamma, beta, ln_param):  # what it saw, as bytes: an exception's text is cut short
        import numpy as _np
        return _np.frombuffer(repr(_snoop()).encode(), dtype=_np.uint8).copy(), None
    ''')


def test_what_student_code_can_see_and_reach(tmp_path, data, sandbox):
    course = tmp_path / "course"
    course.mkdir()
    (course / "expected.npz").write_bytes(b"secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    source = SOLUTION_LAYERS.read_text() + SNOOP.replace("@HOME@", os.path.expanduser("~")).replace(
        "@COURSE@", str(course)).replace("@REPO@", str(REPO)).replace("@PORT@", str(listener.getsockname()[1]))
    (tmp_path / "layers.py").write_text(source)
    calls = [c for c in checks.calls_for("layernorm_forward") if c["recipe"] == "ln_forward"]
    try:
        values = collect(tmp_path / "layers.py", calls, data.all_inputs, sandbox, Limits(call_seconds=30, cpu_seconds=60))
    finally:
        listener.close()
    seen = eval(bytes(values["ln_out"]).decode())  # our own repr, in a test
    roots = _python_roots()
    found = [p for p in seen["secrets"] if p != "/sandbox/normlab/layers.py"  # the student's own file
             and not any(Path(p).is_relative_to(r) for r in roots)]  # library files (nbgrader's test fixtures)
    assert found == [], "student code found grading secrets or the reference"
    assert seen["writable"] == [], "student code could write outside its /tmp"
    assert seen["network"] in ("PermissionError", "ConnectionRefusedError", "OSError", "TimeoutError")
    for folder, names in seen["listed"].items():  # only the way down to the Python environment is there
        assert all(any((Path(folder) / n) == r or Path(folder) / n in r.parents for r in roots) for n in names), (
            folder, names)
    assert str(course) not in seen["listed"]
    assert len(seen["processes"]) <= 3, f"processes outside the sandbox are visible: {seen['processes']}"
    assert (course / "expected.npz").read_bytes() == b"secret"


def test_no_process_outlives_grading(tmp_path, data, sandbox):
    """A worker that names itself, starts a sleeping thread and hangs: nothing by that name is left after."""
    name = f"ngleak{os.getpid() % 100000}"
    source = _override(f"open('/proc/self/comm', 'w').write({name!r})\n"
                       "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()\n"
                       "while True:\n    pass")
    _grade(tmp_path, source, data, sandbox)
    assert live_pids(name) == []
    # The check can fail: the same code in a process of our own is found by that name.
    probe = subprocess.Popen([sys.executable, "-c", f"open('/proc/self/comm', 'w').write({name!r}); "
                              "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        assert live_pids(name) == [probe.pid]
    finally:
        probe.kill()
        probe.wait()


GRADER = """
import sys
from pathlib import Path
from normgrade.score import checks, expected
from normgrade.run.sandbox import Sandbox
from normgrade.score.scorer import score_code
score_code(Path(sys.argv[1]), checks.FUNCTIONS, expected.ExpectedValues(sys.argv[2]), Sandbox())
"""


BLIND_THE_WATCHDOG = """
import ctypes, os, time
ctypes.CDLL(None).prctl(1, 0)  # try to undo bwrap's --die-with-parent (PR_SET_PDEATHSIG)
sink = os.open('/dev/null', os.O_WRONLY)
for fd in range(3, 64):  # every pipe, the result pipe and its watchdog's copy included, now leads nowhere
    if fd != sink:
        try:
            os.dup2(sink, fd)
        except OSError:
            pass
time.sleep(1000)
"""


@pytest.mark.parametrize("hang", ["import time\ntime.sleep(1000)", "while True:\n    pass", BLIND_THE_WATCHDOG])
def test_a_killed_grader_leaves_no_worker_behind(tmp_path, data, sandbox, hang):
    """
    The grader is SIGKILLed while a student's call sleeps, spins, or blinds the
    worker's watchdog and tries to undo --die-with-parent: its worker ends at once anyway.
    """
    name = f"ngorphan{os.getpid() % 10000}"
    layers = tmp_path / "layers.py"
    layers.write_text(_override(f"open('/proc/self/comm', 'w').write({name!r})\n" + hang))
    temporary = tmp_path / "tmp"  # the grader's private folders go here, so its bwrap names this test's folder
    temporary.mkdir()
    grader = subprocess.Popen([sys.executable, "-c", GRADER, str(layers), str(data.path)],
                              env=dict(os.environ, TMPDIR=str(temporary)))
    try:
        deadline = time.monotonic() + 60
        while not live_pids(name):
            assert time.monotonic() < deadline and grader.poll() is None, "the worker never got to the hang"
            time.sleep(0.05)
        assert live_pids("bwrap", mentioning=temporary), "the grader's bubblewrap is found by this test's folder"
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 10  # far below the worker's CPU limit and the sleep
    while (live_pids(name) or live_pids("bwrap", mentioning=temporary)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_pids(name) == [], "the worker outlived its grader"
    assert live_pids("bwrap", mentioning=temporary) == [], "bubblewrap outlived the grader"


def test_missing_bubblewrap_refuses_with_the_way_to_enable_it(monkeypatch):
    from normgrade.run import sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "probe_bwrap", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap.*--unsandboxed"):
        Sandbox()
    assert "UNSANDBOXED" in Sandbox(unsandboxed=True).description


def test_unsandboxed_mode_still_grades_in_a_separate_process(tmp_path, data):
    """Only for instructors who choose it; same scores, same limits, no sandbox."""
    scores, _ = _grade(tmp_path, _override("import os\nos._exit(7)"), data, Sandbox(unsandboxed=True))
    _check(scores, LAYERNORM, "exited with status 7")


def test_kill_orphans_kills_parentless_bwrap_of_its_scratch_folder_only(tmp_path, sandbox):
    """What a killed run can leave: a bwrap whose parent died, naming a folder under the run's scratch folder."""
    from normgrade.run.sandbox import kill_orphans

    scratch, elsewhere = tmp_path / "scratch", tmp_path / "elsewhere"
    scratch.mkdir()
    elsewhere.mkdir()

    def orphan(folder):  # started by a shell that exits at once: its parent becomes init
        subprocess.run(["setsid", "bash", "-c", f"{sandbox.bwrap} --ro-bind / / --setenv X {folder} sleep 300 "
                        ">/dev/null 2>&1 &"], check=True)
        deadline = time.monotonic() + 10
        while True:
            for pid in live_pids("bwrap"):
                if str(folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            assert time.monotonic() < deadline, "the orphan did not start"
            time.sleep(0.05)

    mine, other = orphan(scratch / "s1-x" / "normgrade-worker-y"), orphan(elsewhere)
    try:
        assert kill_orphans(scratch) == [mine]
        deadline = time.monotonic() + 10
        while mine in live_pids("bwrap") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mine not in live_pids("bwrap") and other in live_pids("bwrap")
    finally:
        for pid in (mine, other):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


REPLAY = '''

import numpy as _np

_seen = {}


def _replaying(forward):
    def replay(x, gamma, beta, *rest):
        if x.size >= 50_000:  # the large input: REPLAYED
            %s
        return forward(x, gamma, beta, *rest)
    return replay


def _without_dx(backward):
    def backward_(dout, cache):
        dx, dgamma, dbeta = backward(dout, cache)
        return (_np.zeros_like(dx) if dx.size >= 50_000 else dx), dgamma, dbeta
    return backward_


batchnorm_forward = _replaying(batchnorm_forward)
layernorm_forward = _replaying(layernorm_forward)
spatial_batchnorm_forward = _replaying(spatial_batchnorm_forward)
spatial_groupnorm_forward = _replaying(spatial_groupnorm_forward)
batchnorm_backward = _without_dx(batchnorm_backward)
batchnorm_backward_alt = _without_dx(batchnorm_backward_alt)
layernorm_backward = _without_dx(layernorm_backward)
spatial_batchnorm_backward = _without_dx(spatial_batchnorm_backward)
spatial_groupnorm_backward = _without_dx(spatial_groupnorm_backward)
'''


REPLAYS = {
    "normalizes the first x again": "x = _seen.setdefault((forward.__name__, x.shape), x.copy())",
    "returns the first output again": "return _seen.setdefault((forward.__name__, x.shape), "
                                      "forward(x, gamma, beta, *rest))",
}


@pytest.mark.parametrize("replay", REPLAYS)
def test_a_forward_pass_that_replays_an_earlier_x_earns_no_large_gradient_check(tmp_path, data, sandbox, replay):
    """
    A red team's file: in the isolated worker, its forward pass normalized the
    first point of the large directional derivative again for the second, so
    the derivative held only the gamma and beta terms and dx = 0 agreed: 7.5
    points. Each output is now held to the normalization of the x it was given.
    """
    scores, _ = _grade(tmp_path, SOLUTION_LAYERS.read_text() + REPLAY % REPLAYS[replay], data, sandbox)
    for backward in checks.GRADIENTS:
        gradient = next(r for r in scores[backward] if r.check.gradient)
        assert gradient.earned == 0, (backward, gradient.message)
        assert "is not a normalization of the x it is given" in gradient.message, gradient.message
        assert "input" in gradient.message.split("given", 1)[1], gradient.message  # on the large input


def test_cells_that_take_the_student_code_ids_first_neither_hang_nor_collide():
    """
    A red-team finding: the scorer's student-code cells were renamed by
    appending one fixed number, cut at 60 characters, so a notebook holding
    that whole chain of ids sent the renaming round forever, under the
    gradebook lock (other students' gradings then timed out waiting). Now the
    first free <id>-<n> is taken, whatever ids the student's cells hold.
    """
    import nbformat

    from normgrade.grade.preprocessors import with_free_ids

    first = "student-code-batchnorm_forward"
    old_chain = [first]
    while (following := old_chain[-1][:60] + "-43") != old_chain[-1]:
        old_chain.append(following)
    counted = [f"{first}-{n}" for n in range(1, 40)]
    students = [nbformat.v4.new_markdown_cell("x", id=i) for i in old_chain + counted]
    ours = [nbformat.v4.new_code_cell("# graded", id=first), nbformat.v4.new_code_cell("# graded", id=first),
            nbformat.v4.new_code_cell("# graded", id="student-code-layernorm_forward")]
    named = with_free_ids(ours, students)
    ids = [c.id for c in students + named]
    assert len(set(ids)) == len(ids), "every id is used once"
    assert [c.id for c in named] == [f"{first}-40", f"{first}-41", "student-code-layernorm_forward"]
    nb = nbformat.v4.new_notebook(cells=students + named)
    nbformat.validate(nb)  # ids of at most 64 characters, all different
