"""
Expected values: the hidden grading inputs and what the reference returns on them.

`normgrade expected --out FILE` writes one .npz file with
- inputs/<name>:      the hidden inputs, deterministic from `seed` (and
                      different from the public ones in the notebooks);
- seed:               that seed: drawn afresh for each course by `normgrade
                      release` (secrets.randbits), or given with --seed, so
                      values collected in one term tell nothing of the next;
- expected/<q>:       every graded quantity q, computed by the reference;
- answer_keys:        the keys of the auto-graded inline questions, as JSON,
                      read from the source notebooks;
- secret/direction_seed: drawn anew for each file (os entropy): the direction
                      of the large backward passes' directional derivatives
                      (checks.gradient_inputs), which no worker is ever sent.

The file is staff-only: `normgrade release` writes it to the course's
normgrade/expected.npz, beside source/ (nbgrader copies source/ next to each
notebook, never this), and only the trusted scorer reads it.
"""
import argparse
import json
import secrets
from pathlib import Path

import numpy as np

from normgrade.run import worker
from normgrade.score.checks import FUNCTIONS, REFERENCE_CALLS, Failure, gradient_inputs
from normgrade.score.reference import load_layers

FIXED_SEED = 20261122  # the demo's and the tests' seed, for output that can be compared; a course draws its own
DIRECTION_KEY = "secret/direction_seed"  # the large directional derivatives' direction (checks.gradient_inputs)
EXPECTED_NAME = "expected.npz"


def new_seed():
    """A fresh seed for a course's hidden inputs (63 bits from the OS's entropy)."""
    return secrets.randbits(63)


def build_inputs(seed):
    """
    The hidden inputs, as a flat dict of NumPy arrays. Their structure (the
    shapes, the feature of tiny spread, the exact variances of the gradient
    checks' inputs) is the same for every seed, only the draws differ;
    tests/test_diagnosis.py checks the probes on several seeds.
    """
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
    inputs = {
        "bn_x": bn_x, "bn_gamma": normal(6), "bn_beta": normal(6), "bn_dout": normal((12, 6)),
        "bn_steps_x": steps, "bn_steps_rm": normal(6), "bn_steps_rv": rng.uniform(0.5, 2, 6),
        "bn_test_x": normal((7, 6)) * 2 + 1, "bn_test_rm": normal(6), "bn_test_rv": rng.uniform(0.1, 3, 6),
        "ln_x": ln_x, "ln_gamma": normal(8), "ln_beta": normal(8), "ln_dout": normal((5, 8)),
        "ln_single_x": normal((1, 8)) * 3 + 2,
        "sbn_x": sbn_x, "sbn_gamma": normal(3), "sbn_beta": normal(3), "sbn_dout": normal((4, 3, 3, 2)),
        "sbn_test_x": normal((2, 3, 3, 2)) * 2, "sbn_test_rm": normal(3), "sbn_test_rv": rng.uniform(0.2, 2, 3),
        "gn_x": gn_x, "gn_gamma": normal((1, 6, 1, 1)), "gn_beta": normal((1, 6, 1, 1)),
        "gn_dout": normal((3, 6, 2, 3)),
        # Small inputs for the numerical-gradient consistency checks. One feature / row / channel / group
        # has a spread of 0.01 (variance 1e-4), so that a backward pass that treats eps differently from
        # its forward pass is seen; group norm has C // G != G, so that swapped group axes are seen.
        "num_bn_x": normal((5, 3)) * np.array([2.0, 0.01, 1.0]) + 1, "num_bn_gamma": normal(3),
        "num_bn_beta": normal(3), "num_bn_dout": normal((5, 3)),
        "num_ln_x": normal((3, 4)) * np.array([[2.0], [0.01], [1.0]]) + 1, "num_ln_gamma": normal(4),
        "num_ln_beta": normal(4), "num_ln_dout": normal((3, 4)),
        "num_sbn_x": normal((2, 2, 2, 2)) * np.array([2.0, 0.01])[:, None, None] + 1, "num_sbn_gamma": normal(2),
        "num_sbn_beta": normal(2), "num_sbn_dout": normal((2, 2, 2, 2)),
        "num_gn_x": normal((2, 6, 2, 1)) * np.array([1.0, 1.0, 1.0, 0.01, 0.01, 0.01])[:, None, None] + 1,
        "num_gn_gamma": normal((1, 6, 1, 1)), "num_gn_beta": normal((1, 6, 1, 1)), "num_gn_dout": normal((2, 6, 2, 1)),
    }
    # Where the maths branches: one example, one feature; float32 with a large mean (no tiny spread
    # here: float32 cannot resolve 0.003 at 1e4).
    inputs.update({
        "bn_n1_x": normal((1, 6)) * 3 + 1, "bn_d1_x": normal((12, 1)) * 2 - 1,
        "bn_d1_gamma": normal(1), "bn_d1_beta": normal(1),
        "bn_big_x": normal((12, 6)) * np.array([1.0, 4.0, 0.5, 0.5, 2.0, 1.0]) + 1e4,
        "ln_big_x": normal((5, 8)) * np.array([[1.0], [3.0], [0.5], [0.5], [2.0]]) + 1e4,
    })
    _shape_gradient_inputs(inputs)
    inputs.update(_large_inputs(np.random.default_rng([seed, 1])))
    inputs.update(_coinciding_inputs(np.random.default_rng([seed, 2])))
    inputs.update(_float32_backward_inputs(np.random.default_rng([seed, 3])))
    return inputs


def _coinciding_inputs(rng):
    """
    Inputs whose sizes coincide, where code that tells axes apart by their
    sizes goes wrong: batch and layer norm with N == D, spatial batch norm with
    N == C and H == W, group norm with C == G * G (G = 2) and H == W. Each has
    a feature, row, channel or group of tiny spread, as the main inputs.
    """
    normal = rng.standard_normal
    bn_x = normal((6, 6)) * np.array([1.0, 3.0, 0.003, 0.5, 2.0, 1.0]) + normal(6) * 4
    ln_x = normal((8, 8)) * np.array([[1.0], [2.0], [0.002], [0.5], [3.0], [1.0], [0.7], [1.5]]) + normal((8, 1)) * 4
    sbn_x = normal((3, 3, 2, 2)) * np.array([1.0, 0.003, 2.0])[:, None, None] + normal((3, 1, 1)) * 4
    gn_x = normal((2, 4, 3, 3)) * rng.uniform(0.5, 3, (1, 4, 1, 1)) + normal((1, 4, 1, 1)) * 3
    gn_x[0, 2:] *= 0.002
    found = {"bn_square_x": bn_x, "ln_square_x": ln_x, "sbn_square_x": sbn_x, "gn_square_x": gn_x,
             "gn_square_gamma": normal((1, 4, 1, 1)), "gn_square_beta": normal((1, 4, 1, 1))}
    # The backward passes' upstream gradients there (drawn after the rest, which stays as it was).
    found.update({f"{layer}_square_dout": normal(found[f"{layer}_square_x"].shape) for layer in ("bn", "ln", "sbn", "gn")})
    return found


def _float32_backward_inputs(rng):
    """
    The backward passes' float32 inputs (checks.EDGES): the main inputs'
    shapes, every feature / row / channel of a spread of 0.5 to 3 around a
    mean of a few units, so that float32 arithmetic (about 1e-7) stays far
    inside the float32 tolerance: what is checked is the dtype and the maths,
    not precision (the forward passes' float32 checks, with a mean of 1e4,
    check that).
    """
    normal = rng.standard_normal
    shapes = {"bn": ((12, 6), (1, 6)), "ln": ((5, 8), (5, 1)), "sbn": ((4, 3, 3, 2), (1, 3, 1, 1)),
              "gn": ((3, 6, 2, 3), (1, 6, 1, 1))}
    found = {}
    for layer, (shape, spread) in shapes.items():
        found[f"f32_{layer}_x"] = normal(shape) * rng.uniform(0.5, 3, spread) + normal(spread) * 3
        found[f"f32_{layer}_dout"] = normal(shape)
    # The spatial forward passes' float32 checks, as batch and layer norm's: a mean of 1e4 (checks.CHECKS).
    found["sbn_big_x"] = normal((4, 3, 3, 2)) * rng.uniform(0.5, 3, (1, 3, 1, 1)) + 1e4
    found["gn_big_x"] = normal((3, 6, 2, 3)) * rng.uniform(0.5, 3, (1, 6, 1, 1)) + 1e4
    return found


def _shape_gradient_inputs(inputs):
    """
    The gradient checks' inputs, made exact where the checks rely on them (no
    draw changes, so every other input stays as it was): gamma at least 0.5
    away from zero (checks.gradient_problems divides the output by it),
    and the tiny feature / row / channel / group of variance exactly 1e-4, so
    that a normalization's x_hat has variance 1e-4 / (1e-4 + eps) = 0.91 there.
    """
    for prefix in ("num_bn", "num_ln", "num_sbn", "num_gn"):
        gamma = inputs[f"{prefix}_gamma"]
        inputs[f"{prefix}_gamma"] = np.where(gamma < 0, -1.0, 1.0) * (0.5 + np.abs(gamma))
    tiny = {"num_bn": lambda x: [x[:, 1]], "num_ln": lambda x: [x[1]], "num_sbn": lambda x: [x[:, 1]],
            "num_gn": lambda x: [x[n, 3:] for n in range(x.shape[0])]}  # group 1 of G = 2, in each example
    for prefix, slices in tiny.items():
        for part in slices(inputs[f"{prefix}_x"]):  # views: scaled in place
            part[...] = part.mean() + (part - part.mean()) * np.sqrt(1e-4 / part.var())


def _large_inputs(rng):
    """
    Inputs of about 100,000 entries for each backward pass (checks.LARGE): an
    analytic, vectorized backward pass takes milliseconds on them, finite
    differences of the forward pass some 200,000 forward passes. Batch and
    layer norm share one (500, 200) input, spatial batch and group norm one
    (2, 8, 50, 125) input.
    """
    normal = rng.standard_normal

    def gamma(shape):  # away from zero, as the gradient checks' gamma
        return np.where(rng.random(shape) < 0.5, -1.0, 1.0) * rng.uniform(0.5, 2.0, shape)

    x2 = normal((500, 200)) * rng.uniform(0.5, 3, 200) * rng.uniform(0.5, 2, (500, 1)) + normal(200) * 3 \
        + normal((500, 1))
    x4 = normal((2, 8, 50, 125)) * rng.uniform(0.5, 3, (1, 8, 1, 1)) + normal((1, 8, 1, 1)) * 3
    return {
        "large_2d_x": x2, "large_2d_gamma": gamma(200), "large_2d_beta": normal(200),
        "large_2d_dout": normal(x2.shape),
        "large_4d_x": x4, "large_sbn_gamma": gamma(8), "large_sbn_beta": normal(8),
        "large_gn_gamma": gamma((1, 8, 1, 1)), "large_gn_beta": normal((1, 8, 1, 1)),
        "large_4d_dout": normal(x4.shape),
    }


def run_quantities(layers, inputs, functions=FUNCTIONS):
    """
    Run the value calls of `functions` (normgrade.run.worker's recipes; for a
    backward pass, its large call too) on a trusted layers module, in this
    process: the reference, or a mutant of it. Returns
    {quantity: value or Failure}; a call that raises yields a Failure for each
    quantity it declares.
    """
    results = {}
    for function in functions:
        for call in REFERENCE_CALLS[function]:
            try:
                values = worker.run_call(layers, inputs, call)
            except Exception as err:  # a mutant may raise on some inputs
                values = {name: Failure(worker.error_text(err)) for name in call["produces"]}
            results.update({name: values.get(name) for name in call["produces"]})
    return results


def generate(keys=None, backend="numpy", *, seed):
    """
    Compute the contents of the expected-values file as a flat dict of arrays.

    backend 'cupy' runs the reference on the GPU (inputs copied there and
    results copied back explicitly); the mutants always run on NumPy.
    """
    inputs = build_inputs(seed)
    reference = _run_reference(inputs, backend)
    failed = {k: v for k, v in reference.items() if isinstance(v, Failure)}
    if failed:
        raise RuntimeError(f"the reference failed on the hidden inputs: {failed}")
    data = {f"inputs/{k}": v for k, v in inputs.items()}
    data.update({f"expected/{k}": np.asarray(v) for k, v in reference.items()})
    data["answer_keys"] = np.array(json.dumps(keys or {}, sort_keys=True))
    data["seed"] = np.array(seed)
    data[DIRECTION_KEY] = np.array(secrets.randbits(62))  # drawn anew for each file; see checks.gradient_inputs
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
        if DIRECTION_KEY not in self._data:
            raise ValueError(f"{path} was made by an older normgrade (no {DIRECTION_KEY}): build the course "
                             "again with `normgrade release`, or run `normgrade expected`")
        direction_seed = int(self._data[DIRECTION_KEY])
        self.all_inputs = {**self.inputs, **gradient_inputs(self.inputs, direction_seed)}  # the workers' inputs
        self.answer_keys = json.loads(str(self._data["answer_keys"]))

    def expected(self, quantity):
        return self._data[f"expected/{quantity}"]

    @property
    def seed(self):
        """The seed the hidden inputs were drawn from."""
        return int(self._data["seed"])


def file_seed(path):
    """The seed of an expected-values file, read alone (not the megabytes of values ExpectedValues loads)."""
    with np.load(path, allow_pickle=False) as npz:
        return int(npz["seed"])


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
    parser.add_argument("--seed", type=seed_argument, help="the hidden inputs' seed (default: a fresh random one)")
    parser.set_defaults(run=run)


def seed_argument(text):
    """argparse type of --seed: a whole number from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: give a whole number from 0 to 2**63 - 1")
    return value


def run(args):
    from normgrade.score.notebooks import answer_keys

    data = generate(answer_keys(), backend=args.backend, seed=new_seed() if args.seed is None else args.seed)
    write(args.out, data)
    n_expected = sum(k.startswith("expected/") for k in data)
    print(f"wrote {args.out}: {n_expected} expected quantities, "
          f"{len(json.loads(str(data['answer_keys'])))} answer keys "
          f"(backend {args.backend})")
    return 0

