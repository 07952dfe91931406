"""
Expected values: the hidden grading inputs and what the reference returns on them.

`normgrade expected --out FILE` writes one .npz file with
- inputs/<name>:      the hidden inputs, deterministic from HIDDEN_SEED (and
                      different from the public ones in the notebooks);
- expected/<q>:       every graded quantity q, computed by the reference;
- mutant/<m>/<q>:     the same quantities from each known-wrong implementation
                      (normgrade.mutants), to name the likely mistake;
- answer_keys:        the keys of the auto-graded inline questions, as JSON,
                      read from the source notebooks.

The file is staff-only: `normgrade release` puts it into source/ (so that
autograde copies it next to each submission) and proves it is not in release/.
"""
import argparse
import json
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .mutants import MUTANTS, mutate
from .paths import SOLUTION_LAYERS
from .reference import load_layers

HIDDEN_SEED = 20261122
EXPECTED_NAME = "normgrade_expected.npz"


class Failure:
    """A quantity the implementation under test did not produce: it raised, or timed out."""

    def __init__(self, error):
        self.error = error

    def __repr__(self):
        return f"Failure({self.error!r})"

    @property
    def message(self):
        if isinstance(self.error, NotImplementedError):
            return f"raised NotImplementedError ({self.error})"
        return f"raised {type(self.error).__name__}: {self.error}"


def build_inputs(seed=HIDDEN_SEED):
    """The hidden inputs, as a flat dict of NumPy arrays."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal
    # One feature / channel / row has a tiny spread, so that eps matters.
    feature_scale = np.array([1.0, 4.0, 0.003, 0.5, 2.0, 1.0])
    bn_x = normal((12, 6)) * feature_scale + normal(6) * 5
    steps = np.stack([normal((12, 6)) * feature_scale + normal(6) * 5 for _ in range(3)])
    ln_x = normal((5, 8)) * np.array([[1.0], [3.0], [0.002], [0.5], [2.0]]) + normal((5, 1)) * 5
    sbn_x = normal((4, 3, 3, 2)) * np.array([1.0, 0.003, 2.0])[:, None, None] + normal((3, 1, 1)) * 4
    gn_x = normal((3, 6, 2, 3)) * rng.uniform(0.5, 3, (1, 6, 1, 1)) + normal((1, 6, 1, 1)) * 3
    gn_x[1, :3] *= 0.002  # one tiny group
    return {
        "bn_x": bn_x, "bn_gamma": normal(6), "bn_beta": normal(6), "bn_dout": normal((12, 6)),
        "bn_steps_x": steps, "bn_steps_rm": normal(6), "bn_steps_rv": rng.uniform(0.5, 2, 6),
        "bn_test_x": normal((7, 6)) * 2 + 1, "bn_test_rm": normal(6), "bn_test_rv": rng.uniform(0.1, 3, 6),
        "ln_x": ln_x, "ln_gamma": normal(8), "ln_beta": normal(8), "ln_dout": normal((5, 8)),
        "ln_single_x": normal((1, 8)) * 3 + 2,
        "sbn_x": sbn_x, "sbn_gamma": normal(3), "sbn_beta": normal(3), "sbn_dout": normal((4, 3, 3, 2)),
        "sbn_test_x": normal((2, 3, 3, 2)) * 2, "sbn_test_rm": normal(3), "sbn_test_rv": rng.uniform(0.2, 2, 3),
        "gn_x": gn_x, "gn_gamma": normal((1, 6, 1, 1)), "gn_beta": normal((1, 6, 1, 1)),
        "gn_dout": normal((3, 6, 2, 3)),
        # Small inputs for the numerical-gradient consistency checks.
        "num_bn_x": normal((5, 3)) * 2 + 1, "num_bn_gamma": normal(3), "num_bn_beta": normal(3),
        "num_bn_dout": normal((5, 3)),
        "num_ln_x": normal((3, 4)) * 2 + 1, "num_ln_gamma": normal(4), "num_ln_beta": normal(4),
        "num_ln_dout": normal((3, 4)),
        "num_sbn_x": normal((2, 2, 2, 2)) * 2 + 1, "num_sbn_gamma": normal(2), "num_sbn_beta": normal(2),
        "num_sbn_dout": normal((2, 2, 2, 2)),
        "num_gn_x": normal((2, 4, 2, 1)) * 2 + 1, "num_gn_gamma": normal((1, 4, 1, 1)),
        "num_gn_beta": normal((1, 4, 1, 1)), "num_gn_dout": normal((2, 4, 2, 1)),
    }


# ---- the graded quantities ------------------------------------------------------
# Each group runs one or more calls of the implementation and returns the
# quantities it declares; a group that raises yields a Failure for each name.


def produces(*names):
    """Declare the quantity names a group returns."""
    def declare(group):
        group.names = names
        return group
    return declare


@produces("bn_train_out", "bn_train_running_mean", "bn_train_running_var")
def _bn_train(L, i):
    bn_param = {"mode": "train"}
    out, _ = L.batchnorm_forward(i["bn_x"].copy(), i["bn_gamma"], i["bn_beta"], bn_param)
    return {"bn_train_out": out, "bn_train_running_mean": bn_param.get("running_mean"),
            "bn_train_running_var": bn_param.get("running_var")}


@produces("bn_steps_running_mean", "bn_steps_running_var")
def _bn_steps(L, i):
    bn_param = {"mode": "train", "momentum": 0.75, "eps": 1e-3,
                "running_mean": i["bn_steps_rm"].copy(), "running_var": i["bn_steps_rv"].copy()}
    for x in i["bn_steps_x"]:
        L.batchnorm_forward(x.copy(), i["bn_gamma"], i["bn_beta"], bn_param)
    return {"bn_steps_running_mean": bn_param.get("running_mean"),
            "bn_steps_running_var": bn_param.get("running_var")}


@produces("bn_test_out", "bn_test_running_mean", "bn_test_running_var")
def _bn_test(L, i):
    bn_param = {"mode": "test", "running_mean": i["bn_test_rm"].copy(), "running_var": i["bn_test_rv"].copy()}
    out, _ = L.batchnorm_forward(i["bn_test_x"].copy(), i["bn_gamma"], i["bn_beta"], bn_param)
    return {"bn_test_out": out, "bn_test_running_mean": bn_param.get("running_mean"),
            "bn_test_running_var": bn_param.get("running_var")}


@produces("bn_f32_out")
def _bn_float32(L, i):
    f32 = lambda k: i[k].astype(np.float32)  # noqa: E731
    out, _ = L.batchnorm_forward(f32("bn_x"), f32("bn_gamma"), f32("bn_beta"), {"mode": "train"})
    return {"bn_f32_out": out}


def _bn_backward(name):
    @produces(f"{name}_dx", f"{name}_dgamma", f"{name}_dbeta")
    def group(L, i):
        _, cache = L.batchnorm_forward(i["bn_x"].copy(), i["bn_gamma"], i["bn_beta"], {"mode": "train"})
        dx, dgamma, dbeta = getattr(L, name)(i["bn_dout"].copy(), cache)
        return {f"{name}_dx": dx, f"{name}_dgamma": dgamma, f"{name}_dbeta": dbeta}
    return group


@produces("ln_out")
def _ln_forward(L, i):
    out, _ = L.layernorm_forward(i["ln_x"].copy(), i["ln_gamma"], i["ln_beta"], {})
    return {"ln_out": out}


@produces("ln_f32_out")
def _ln_float32(L, i):
    f32 = lambda k: i[k].astype(np.float32)  # noqa: E731
    out, _ = L.layernorm_forward(f32("ln_x"), f32("ln_gamma"), f32("ln_beta"), {})
    return {"ln_f32_out": out}


@produces("ln_single_out")
def _ln_single(L, i):
    out, _ = L.layernorm_forward(i["ln_single_x"].copy(), i["ln_gamma"], i["ln_beta"], {"eps": 1e-3})
    return {"ln_single_out": out}


@produces("ln_dx", "ln_dgamma", "ln_dbeta")
def _ln_backward(L, i):
    _, cache = L.layernorm_forward(i["ln_x"].copy(), i["ln_gamma"], i["ln_beta"], {})
    dx, dgamma, dbeta = L.layernorm_backward(i["ln_dout"].copy(), cache)
    return {"ln_dx": dx, "ln_dgamma": dgamma, "ln_dbeta": dbeta}


@produces("sbn_train_out", "sbn_running_mean", "sbn_running_var")
def _sbn_train(L, i):
    bn_param = {"mode": "train", "momentum": 0.8}
    out, _ = L.spatial_batchnorm_forward(i["sbn_x"].copy(), i["sbn_gamma"], i["sbn_beta"], bn_param)
    return {"sbn_train_out": out, "sbn_running_mean": bn_param.get("running_mean"),
            "sbn_running_var": bn_param.get("running_var")}


@produces("sbn_test_out")
def _sbn_test(L, i):
    bn_param = {"mode": "test", "running_mean": i["sbn_test_rm"].copy(), "running_var": i["sbn_test_rv"].copy()}
    out, _ = L.spatial_batchnorm_forward(i["sbn_test_x"].copy(), i["sbn_gamma"], i["sbn_beta"], bn_param)
    return {"sbn_test_out": out}


@produces("sbn_dx", "sbn_dgamma", "sbn_dbeta")
def _sbn_backward(L, i):
    _, cache = L.spatial_batchnorm_forward(i["sbn_x"].copy(), i["sbn_gamma"], i["sbn_beta"], {"mode": "train"})
    dx, dgamma, dbeta = L.spatial_batchnorm_backward(i["sbn_dout"].copy(), cache)
    return {"sbn_dx": dx, "sbn_dgamma": dgamma, "sbn_dbeta": dbeta}


def _gn_forward(G):
    @produces(f"gn_G{G}_out")
    def group(L, i):
        out, _ = L.spatial_groupnorm_forward(i["gn_x"].copy(), i["gn_gamma"], i["gn_beta"], G, {})
        return {f"gn_G{G}_out": out}
    return group


@produces("gn_dx", "gn_dgamma", "gn_dbeta")
def _gn_backward(L, i):
    _, cache = L.spatial_groupnorm_forward(i["gn_x"].copy(), i["gn_gamma"], i["gn_beta"], 2, {})
    dx, dgamma, dbeta = L.spatial_groupnorm_backward(i["gn_dout"].copy(), cache)
    return {"gn_dx": dx, "gn_dgamma": dgamma, "gn_dbeta": dbeta}


# student function -> the groups that exercise it
GROUPS = {
    "batchnorm_forward": (_bn_train, _bn_steps, _bn_test, _bn_float32),
    "batchnorm_backward": (_bn_backward("batchnorm_backward"),),
    "batchnorm_backward_alt": (_bn_backward("batchnorm_backward_alt"),),
    "layernorm_forward": (_ln_forward, _ln_float32, _ln_single),
    "layernorm_backward": (_ln_backward,),
    "spatial_batchnorm_forward": (_sbn_train, _sbn_test),
    "spatial_batchnorm_backward": (_sbn_backward,),
    "spatial_groupnorm_forward": (_gn_forward(2), _gn_forward(1), _gn_forward(6)),
    "spatial_groupnorm_backward": (_gn_backward,),
}
FUNCTIONS = tuple(GROUPS)


@contextmanager
def time_limit(seconds):
    """Raise TimeoutError in the block after `seconds` (main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_quantities(layers, inputs, functions=FUNCTIONS, seconds=20.0):
    """
    Run the groups of `functions` on `layers` and return {quantity: value or Failure}.

    A group that raises (or runs longer than `seconds`) yields a Failure for
    each quantity the reference would have produced in it.
    """
    results = {}
    for function in functions:
        for group in GROUPS[function]:
            try:
                with time_limit(seconds), np.errstate(all="ignore"):
                    values = group(layers, inputs)
            except (Exception, SystemExit) as err:  # the student's code may raise anything, exit included
                values = {name: Failure(err) for name in group.names}
            results.update(values)
    return results


def generate(keys=None, backend="numpy", seed=HIDDEN_SEED):
    """
    Compute the contents of the expected-values file as a flat dict of arrays.

    backend 'cupy' runs the reference on the GPU (inputs copied there and
    results copied back explicitly); the mutants always run on NumPy.
    """
    inputs = build_inputs(seed)
    reference = _run_reference(inputs, backend)
    declared = {name for groups in GROUPS.values() for group in groups for name in group.names}
    if set(reference) != declared:
        raise RuntimeError(f"groups returned {sorted(reference)}, but declare {sorted(declared)}")
    failed = {k: v for k, v in reference.items() if isinstance(v, Failure)}
    if failed:
        raise RuntimeError(f"the reference failed on the hidden inputs: {failed}")
    data = {f"inputs/{k}": v for k, v in inputs.items()}
    data.update({f"expected/{k}": np.asarray(v) for k, v in reference.items()})
    source = SOLUTION_LAYERS.read_text()
    for mutant in MUTANTS:
        layers = _load_source(mutant.name, mutate(source, mutant))
        for name, value in run_quantities(layers, inputs).items():
            if value is not None and not isinstance(value, Failure):
                data[f"mutant/{mutant.name}/{name}"] = np.asarray(value)
    data["answer_keys"] = np.array(json.dumps(keys or {}, sort_keys=True))
    data["seed"] = np.array(seed)
    return data


def _run_reference(inputs, backend):
    """The reference's quantities, computed on the named backend and returned as NumPy arrays."""
    layers = load_layers()
    if backend == "numpy":
        return run_quantities(layers, inputs)
    from normlab.backend import get_backend, to_numpy

    xp = get_backend(backend)  # raises BackendUnavailable with the reason
    on_device = {k: xp.asarray(v) for k, v in inputs.items()}
    results = run_quantities(layers, on_device)
    return {k: v if v is None or isinstance(v, Failure) else to_numpy(v) for k, v in results.items()}


def _load_source(name, source):
    """Import layers source text through a private file, as a module of the student package."""
    with tempfile.TemporaryDirectory(prefix=f"normgrade-{name}-") as folder:
        path = Path(folder) / "layers.py"
        path.write_text(source)
        return load_layers(path)


class ExpectedValues:
    """Read access to an expected-values file."""

    def __init__(self, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no expected-values file at {path} (run `normgrade expected`)")
        with np.load(path, allow_pickle=False) as npz:
            self._data = {k: npz[k] for k in npz.files}
        self.path = path
        self.inputs = {k[len("inputs/"):]: v for k, v in self._data.items() if k.startswith("inputs/")}
        self.answer_keys = json.loads(str(self._data["answer_keys"]))

    def expected(self, quantity):
        return self._data[f"expected/{quantity}"]

    def signatures(self, quantity):
        """{mutant name: its value of `quantity`} for every mutant that produced one."""
        suffix = f"/{quantity}"
        return {
            k[len("mutant/"):-len(suffix)]: v
            for k, v in self._data.items()
            if k.startswith("mutant/") and k.endswith(suffix)
        }


def write(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "expected", help="compute the expected values from the reference",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path(EXPECTED_NAME), help=f"output file (default {EXPECTED_NAME})")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.set_defaults(run=run)


def run(args):
    from .notebooks import answer_keys

    data = generate(answer_keys(), backend=args.backend)
    write(args.out, data)
    n_expected = sum(k.startswith("expected/") for k in data)
    n_mutant = sum(k.startswith("mutant/") for k in data)
    print(f"wrote {args.out}: {n_expected} expected quantities, {n_mutant} mutant signatures "
          f"({len(MUTANTS)} mutants), {len(json.loads(str(data['answer_keys'])))} answer keys "
          f"(backend {args.backend})")
    return 0

