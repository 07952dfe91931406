"""
The grading checks: what each student function is graded on, worth how much.

This is the scorer's side: it decides points from raw values the sandboxed
worker returned (normgrade.run.worker runs the calls listed in CALLS), and never
runs student code.

- A value check compares quantities the student's code produced on the hidden
  inputs with the reference's (normgrade.score.expected): exact shape, exact dtype,
  then values. A wrong value's message says what differs and, where a probe
  confirms it (normgrade.score.diagnosis), what the code actually computes; a
  backward pass whose forward pass is wrong is told to fix the forward first.
- A gradient check takes central differences of the student's own forward
  pass, from forward outputs at perturbed points this module chose, and
  compares them normwise with the student's backward pass. It earns nothing
  when the forward does not respond to x, gamma or beta (a constant forward
  has a "consistent" zero gradient) or is not a normalization: its output
  changes when x is scaled (`x + c` has a consistent gradient too), or, at
  any of the very points the numerical gradient is taken from, its
  (out - beta) / gamma is not standardized along some axes
  (gradient_problems: `gamma * x / x.flat[0] + beta` is scale invariant).
  Judged point by point on those outputs, state kept between calls or
  recognising some points gains nothing. A normalization over the wrong axes,
  with eps misplaced or with the unbiased variance still earns it. dbeta,
  dout summed whatever the forward pass, earns only with such a forward pass.
  A backward pass whose every value check passes (exact gradients on the
  hidden inputs and the large one) earns its gradient check whatever its
  forward pass does: it is judged on what it can be judged on, and a forward
  pass's wrong output shape costs the forward pass alone.
- Each backward pass is also run on an input of about 100,000 entries
  (LARGE), last of its calls: its dx, dgamma and dbeta there are part of its
  value checks, and its gradient check compares a directional derivative of
  the forward pass there. Finite differences (a forward pass per entry) do not
  finish in a call's time; a vectorized analytic backward pass takes
  milliseconds. A call that runs out of time says so.
- Invariants are checked together with the output they belong to: "test
  mode leaves the running statistics unchanged" proves nothing from code
  that does nothing, so it is part of the test-mode output check.
"""
import functools
import itertools
import textwrap
from dataclasses import dataclass

import numpy as np

from normgrade.language import N_, _
from normgrade.score import diagnosis


@dataclass(frozen=True)
class Check:
    function: str
    label: str  # in English, as the class report and the ledger name the check; `said` gives it in words
    points: float
    quantities: tuple = ()  # value check: all of these must match the reference
    gradient: str = ""  # gradient check of this backward function (see GRADIENTS)
    gated: bool = False  # right for any forward pass (dbeta): earns only when the forward pass normalizes
    finishes: tuple = ()  # large quantities another check compares: here they need only have come back in time
    # The label as a message of the catalogs with its fields ((name, value), ...), where it is made of one
    # (_edges): a str value is a message too, a number is formatted as it is.
    template: str = ""
    fields: tuple = ()

    def said(self):
        """The label in the current language (normgrade.language.speaking)."""
        if not self.template:
            return _(self.label)
        return _(self.template).format(**{name: _(value) if isinstance(value, str) else value
                                          for name, value in self.fields})


# (rtol, atol) of values, by the expected value's dtype. Float32 with a mean of 1e4: the two-pass statistics
# honest code takes in float32 (CS231n's solutions, np.var) lose up to 0.7 of (1e-3, 2e-2) on 2000 seeds of the
# hidden inputs (an atol of 5e-3 failed them on 1 to 2 % of seeds), and E[x^2] - E[x]^2 misses by 0.06 at the
# least (tests/test_grading.py). Shape and dtype are always exact.
TOLERANCE = {np.dtype(np.float64): (1e-6, 1e-8), np.dtype(np.float32): (1e-3, 2e-2)}


def tolerance(expected):
    """(rtol, atol) a value must match `expected` to: float32 results loosely, float64 ones closely."""
    return TOLERANCE.get(np.asarray(expected).dtype, TOLERANCE[np.dtype(np.float64)])


def _value(function, label, points, *quantities, gated=False, finishes=()):
    return Check(function, label, points, quantities=quantities, gated=gated, finishes=finishes)


def _gradient(function, points=1.0):
    return Check(function, N_("gradients agree with numerical gradients of your forward pass"), points,
                 gradient=function)


EDGE_LABEL = N_("dx, dgamma and dbeta with eps = {eps:g} from {where}, and for float32 input (dtype and values)")


def _edges(function, where, points=0.5):
    """The check of a backward pass at its edges (EDGES): another eps, coinciding sizes, float32 input."""
    prefix = EDGE_PREFIX[function]
    fields = (("eps", EDGE_EPS), ("where", where))
    return Check(function, EDGE_LABEL.format(**dict(fields)), points,
                 quantities=tuple(f"{prefix}_{case}_{g}" for case in EDGE_CASES for g in ("dx", "dgamma", "dbeta")),
                 template=EDGE_LABEL, fields=fields)


# A backward pass is checked where its forward pass is (EDGES): with eps from the param dict, which a backward
# pass with an eps of its own gets wrong; where sizes coincide, where code that tells axes apart by their sizes
# picks the wrong branch; and on float32 input, whose dtype dx, dgamma and dbeta keep.
EDGE_EPS = 1e-2
EDGE_CASES = ("eps", "square", "f32")
EDGE_PREFIX = {"batchnorm_backward": "bn_bw", "batchnorm_backward_alt": "bn_alt_bw", "layernorm_backward": "ln_bw",
               "spatial_batchnorm_backward": "sbn_bw", "spatial_groupnorm_backward": "gn_bw"}


CHECKS = (
    _value("batchnorm_forward", N_("train-mode output"), 1.5, "bn_train_out"),
    _value("batchnorm_forward", N_("train-mode output for a single example (N = 1), a single feature (D = 1) and a "
                                   "square batch (N = D), with eps from bn_param"), 0.5,
           "bn_n1_out", "bn_d1_out", "bn_square_out"),
    _value("batchnorm_forward", N_("output for float32 input with a large mean (x = 1e4 + noise): dtype, shape, "
                                   "values"), 0.5, "bn_f32_out"),
    _value("batchnorm_forward", N_("running mean and variance in bn_param after one train step"), 0.5,
           "bn_train_running_mean", "bn_train_running_var"),
    _value("batchnorm_forward", N_("running mean and variance after 3 train steps with momentum 0.75"), 1,
           "bn_steps_running_mean", "bn_steps_running_var"),
    _value("batchnorm_forward", N_("test-mode output with eps from bn_param, the running statistics left unchanged"), 2,
           "bn_test_out", "bn_test_running_mean", "bn_test_running_var"),
    # A backward pass's value checks include its large input (LARGE), computed last. ("dx" alone is a name: no message.)
    _value("batchnorm_backward", "dx", 1.5, "batchnorm_backward_dx", "batchnorm_backward_large_dx"),
    _value("batchnorm_backward", N_("dgamma (shape (D,))"), 0.5, "batchnorm_backward_dgamma",
           "batchnorm_backward_large_dgamma"),
    _value("batchnorm_backward", N_("dbeta (shape (D,))"), 0.5, "batchnorm_backward_dbeta",
           "batchnorm_backward_large_dbeta", gated=True),
    _edges("batchnorm_backward", N_("bn_param, for a square batch (N = D)")),
    _gradient("batchnorm_backward"),
    _value("batchnorm_backward_alt", "dx", 1, "batchnorm_backward_alt_dx", "batchnorm_backward_alt_large_dx"),
    _value("batchnorm_backward_alt", N_("dgamma and dbeta (shape (D,))"), 0.5,
           "batchnorm_backward_alt_dgamma", "batchnorm_backward_alt_dbeta",
           "batchnorm_backward_alt_large_dgamma", "batchnorm_backward_alt_large_dbeta"),
    _edges("batchnorm_backward_alt", N_("bn_param, for a square batch (N = D)")),
    _gradient("batchnorm_backward_alt"),
    _value("layernorm_forward", N_("output"), 2, "ln_out"),
    _value("layernorm_forward", N_("output for float32 input with a large mean (x = 1e4 + noise): dtype, shape, "
                                   "values"), 0.5, "ln_f32_out"),
    _value("layernorm_forward", N_("output for a single example and for a square batch (N = D), with eps from "
                                   "ln_param"), 0.5, "ln_single_out", "ln_square_out"),
    _value("layernorm_backward", "dx", 1, "ln_dx", "ln_large_dx"),
    _value("layernorm_backward", N_("dgamma and dbeta (shape (D,))"), 0.5, "ln_dgamma", "ln_dbeta",
           "ln_large_dgamma", "ln_large_dbeta"),
    _edges("layernorm_backward", N_("ln_param, for a square batch (N = D)")),
    _gradient("layernorm_backward"),
    _value("spatial_batchnorm_forward", N_("train-mode output, also with N == C and H == W and eps from bn_param"), 1.5,
           "sbn_train_out", "sbn_square_out"),
    _value("spatial_batchnorm_forward", N_("running mean and variance of shape (C,) in bn_param"), 0.5,
           "sbn_running_mean", "sbn_running_var"),
    _value("spatial_batchnorm_forward", N_("test-mode output with eps from bn_param"), 0.5, "sbn_test_out"),
    _value("spatial_batchnorm_forward", N_("output for float32 input with a large mean (x = 1e4 + noise): dtype, "
                                           "shape, values"), 0.5, "sbn_f32_out"),
    _value("spatial_batchnorm_backward", "dx", 1, "sbn_dx", "sbn_large_dx"),
    _value("spatial_batchnorm_backward", N_("dgamma and dbeta (shape (C,))"), 0.5, "sbn_dgamma", "sbn_dbeta",
           "sbn_large_dgamma", "sbn_large_dbeta"),
    _edges("spatial_batchnorm_backward", N_("bn_param, with N == C and H == W")),
    _gradient("spatial_batchnorm_backward"),
    _value("spatial_groupnorm_forward", N_("output with G=2 groups, also with C == G * G and H == W"), 1.5, "gn_G2_out",
           "gn_square_out"),
    _value("spatial_groupnorm_forward", N_("output with G=1 (layer norm over C, H, W) and eps from gn_param"), 0.5,
           "gn_G1_out"),
    _value("spatial_groupnorm_forward", N_("output with G=C (instance norm)"), 0.5, "gn_G6_out"),
    _value("spatial_groupnorm_forward", N_("output for float32 input with a large mean (x = 1e4 + noise), G=2: dtype, "
                                           "shape, values"), 0.5, "gn_f32_out"),
    _value("spatial_groupnorm_backward", N_("dx with G=2 groups"), 0.5, "gn_G2_dx", "gn_large_dx"),
    _value("spatial_groupnorm_backward", N_("dx with G=1 and with G=C"), 0.5, "gn_G1_dx", "gn_G6_dx",
           finishes=("gn_large_dx",)),  # G = 2 there: its value is the first check's
    _value("spatial_groupnorm_backward", N_("dgamma and dbeta (shape (1, C, 1, 1))"), 0.5, "gn_G2_dgamma",
           "gn_G2_dbeta", "gn_large_dgamma", "gn_large_dbeta"),
    _edges("spatial_groupnorm_backward", N_("gn_param, with C == G * G and H == W")),
    _gradient("spatial_groupnorm_backward"),
)
FUNCTIONS = tuple(dict.fromkeys(c.function for c in CHECKS))


def checks_for(function):
    found = tuple(c for c in CHECKS if c.function == function)
    if not found:
        raise ValueError(f"no checks for {function!r}; graded functions: {sorted(FUNCTIONS)}")
    return found


def total_points(function):
    return sum(c.points for c in checks_for(function))


# ---- the calls the worker runs (recipes of normgrade.run.worker) -----------------------------------


def _call(recipe, produces, **arguments):
    return {"recipe": recipe, "produces": tuple(produces), **arguments}


def _bn_backward_call(name):
    return _call("bn_backward", (f"{name}_dx", f"{name}_dgamma", f"{name}_dbeta"), function=name)


VALUE_CALLS = {
    "batchnorm_forward": (
        _call("bn_train", ("bn_train_out", "bn_train_running_mean", "bn_train_running_var")),
        _call("bn_edge", ("bn_n1_out", "bn_d1_out", "bn_square_out"), eps=1e-3),
        _call("bn_steps", ("bn_steps_running_mean", "bn_steps_running_var"), momentum=0.75, eps=1e-3),
        _call("bn_test", ("bn_test_out", "bn_test_running_mean", "bn_test_running_var"), eps=1e-3),
        _call("bn_float32", ("bn_f32_out",)),
    ),
    "batchnorm_backward": (_bn_backward_call("batchnorm_backward"),),
    "batchnorm_backward_alt": (_bn_backward_call("batchnorm_backward_alt"),),
    "layernorm_forward": (_call("ln_forward", ("ln_out",)), _call("ln_float32", ("ln_f32_out",)),
                          _call("ln_single", ("ln_single_out", "ln_square_out"), eps=1e-3)),
    "layernorm_backward": (_call("ln_backward", ("ln_dx", "ln_dgamma", "ln_dbeta")),),
    "spatial_batchnorm_forward": (_call("sbn_train", ("sbn_train_out", "sbn_running_mean", "sbn_running_var",
                                                      "sbn_square_out"), momentum=0.8, square_eps=1e-3),
                                  _call("sbn_test", ("sbn_test_out",), eps=1e-3),
                                  _call("sbn_float32", ("sbn_f32_out",))),
    "spatial_batchnorm_backward": (_call("sbn_backward", ("sbn_dx", "sbn_dgamma", "sbn_dbeta")),),
    "spatial_groupnorm_forward": (_call("gn_forward", ("gn_G2_out", "gn_square_out"), groups=2, square=True),
                                  _call("gn_forward", ("gn_G1_out",), groups=1, eps=1e-3),
                                  _call("gn_forward", ("gn_G6_out",), groups=6),
                                  _call("gn_float32", ("gn_f32_out",), groups=2)),
    "spatial_groupnorm_backward": (_call("gn_backward", ("gn_G2_dx", "gn_G2_dgamma", "gn_G2_dbeta"), groups=2),
                                   *(_call("gn_backward", (f"gn_G{G}_dx",), groups=G) for G in (1, 6))),
}

# backward function -> (forward function, extra forward arguments, param dict, prefix of its hidden inputs)
GRADIENTS = {
    "batchnorm_backward": ("batchnorm_forward", [], {"mode": "train"}, "num_bn"),
    "batchnorm_backward_alt": ("batchnorm_forward", [], {"mode": "train"}, "num_bn"),
    "layernorm_backward": ("layernorm_forward", [], {}, "num_ln"),
    "spatial_batchnorm_backward": ("spatial_batchnorm_forward", [], {"mode": "train"}, "num_sbn"),
    "spatial_groupnorm_backward": ("spatial_groupnorm_forward", [2], {}, "num_gn"),
}
STEP = 1e-5  # central differences

# backward function -> the (x, gamma, beta, dout) of its edge cases (EDGE_CASES): eps, coinciding sizes, float32
EDGES = {
    "batchnorm_backward": (("bn_x", "bn_gamma", "bn_beta", "bn_dout"),
                           ("bn_square_x", "bn_gamma", "bn_beta", "bn_square_dout"),
                           ("f32_bn_x", "bn_gamma", "bn_beta", "f32_bn_dout")),
    "layernorm_backward": (("ln_x", "ln_gamma", "ln_beta", "ln_dout"),
                           ("ln_square_x", "ln_gamma", "ln_beta", "ln_square_dout"),
                           ("f32_ln_x", "ln_gamma", "ln_beta", "f32_ln_dout")),
    "spatial_batchnorm_backward": (("sbn_x", "sbn_gamma", "sbn_beta", "sbn_dout"),
                                   ("sbn_square_x", "sbn_gamma", "sbn_beta", "sbn_square_dout"),
                                   ("f32_sbn_x", "sbn_gamma", "sbn_beta", "f32_sbn_dout")),
    "spatial_groupnorm_backward": (("gn_x", "gn_gamma", "gn_beta", "gn_dout"),
                                   ("gn_square_x", "gn_square_gamma", "gn_square_beta", "gn_square_dout"),
                                   ("f32_gn_x", "gn_gamma", "gn_beta", "f32_gn_dout")),
}
EDGES["batchnorm_backward_alt"] = EDGES["batchnorm_backward"]


def _edge_calls(backward):
    """
    The backward pass's edge cases, each a forward then backward pass at one
    point: eps = EDGE_EPS in the forward pass's param dict (the backward pass
    gets it only through the cache), the coinciding sizes, float32 input. Each
    call also returns the forward pass's output there, `<prefix>_<case>_out`,
    so that a wrong value is put down to the forward pass where it is wrong.
    """
    forward, extra, param, _prefix = GRADIENTS[backward]
    prefix = EDGE_PREFIX[backward]
    calls = []
    for case, (x, gamma, beta, dout) in zip(EDGE_CASES, EDGES[backward]):
        quantity = f"{prefix}_{case}"
        calls.append(_call("backward_at", [f"{quantity}_{g}" for g in ("out", "dx", "dgamma", "dbeta")],
                           backward=backward, quantity=quantity, x=x, gamma=gamma, beta=beta, dout=dout,
                           forward=forward, extra=extra, param=dict(param, eps=EDGE_EPS) if case == "eps" else param,
                           out=True, float32=case == "f32"))
    return tuple(calls)
GRADIENT_FLOOR = 1e-7  # per entry: central differences are accurate to about 1e-10 here

VALUE_CALLS.update({backward: VALUE_CALLS[backward] + _edge_calls(backward) for backward in EDGES})
# a backward quantity -> the forward output its cache came from (diagnosis.FORWARD_OF, and the edge cases')
FORWARD_OF = {**diagnosis.FORWARD_OF, **{f"{prefix}_{case}_{g}": f"{prefix}_{case}_out" for prefix in EDGE_PREFIX.values()
                                         for case in EDGE_CASES for g in ("dx", "dgamma", "dbeta")}}

# backward function -> its large inputs (x, gamma, beta, dout: about 100,000 entries, normgrade.score.expected)
# and the prefix of its large quantities. Its value checks include dx, dgamma and dbeta there, and its
# gradient check a directional derivative there: finite differences of the forward pass (one forward pass
# per entry) cannot finish within a call's time limit, an analytic vectorized backward pass takes milliseconds.
LARGE = {
    "batchnorm_backward": (("large_2d_x", "large_2d_gamma", "large_2d_beta", "large_2d_dout"),
                           "batchnorm_backward_large"),
    "batchnorm_backward_alt": (("large_2d_x", "large_2d_gamma", "large_2d_beta", "large_2d_dout"),
                               "batchnorm_backward_alt_large"),
    "layernorm_backward": (("large_2d_x", "large_2d_gamma", "large_2d_beta", "large_2d_dout"), "ln_large"),
    "spatial_batchnorm_backward": (("large_4d_x", "large_sbn_gamma", "large_sbn_beta", "large_4d_dout"),
                                   "sbn_large"),
    "spatial_groupnorm_backward": (("large_4d_x", "large_gn_gamma", "large_gn_beta", "large_4d_dout"), "gn_large"),
}
LARGE_STEP = 1e-5  # the directional derivative's step, times a random direction of unit variance per entry


def _gradient_calls(backward):
    forward, extra, param, prefix = GRADIENTS[backward]
    base = {"forward": forward, "extra": extra, "param": param}
    return (
        _call("backward_at", [f"grad_{backward}_{g}" for g in ("dx", "dgamma", "dbeta")], backward=backward,
              quantity=f"grad_{backward}", x=f"{prefix}_x", gamma=f"{prefix}_gamma", beta=f"{prefix}_beta",
              dout=f"{prefix}_dout", **base),
        _call("forward_many", [f"grad_{backward}_outputs"], quantity=f"grad_{backward}_outputs",
              x=f"{prefix}_stack_x", gamma=f"{prefix}_stack_gamma", beta=f"{prefix}_stack_beta", **base),
    )


def _large_calls(backward):
    """
    The forward pass at the two points of the directional derivative, and the
    backward pass (the function's last call). The forward pass is "isolated":
    the scorer runs it in a worker of its own, after the backward pass, sent
    only those two points (scorer.worker_runs), and their direction is a
    secret of the course's expected values (gradient_inputs): the backward
    pass can neither read the direction nor leave state for the forward pass.
    """
    forward, extra, param, _prefix = GRADIENTS[backward]
    (x, gamma, beta, dout), quantity = LARGE[backward]
    base = {"forward": forward, "extra": extra, "param": param}
    return (
        _call("forward_many", [f"{quantity}_outputs"], quantity=f"{quantity}_outputs", x=f"{x}_stack",
              gamma=f"{gamma}_stack", beta=f"{beta}_stack", isolated=True, **base),
        _call("backward_at", [f"{quantity}_{g}" for g in ("dx", "dgamma", "dbeta")], backward=backward,
              quantity=quantity, x=x, gamma=gamma, beta=beta, dout=dout, **base),
    )


def calls_for(function):
    """
    The calls that produce everything `function`'s checks need, each with an
    id. A backward pass's large call comes last: after a call stops on its
    time limit, the scorer runs none of the function's later calls.
    """
    calls = VALUE_CALLS[function]
    if function in GRADIENTS:
        calls += _gradient_calls(function) + _large_calls(function)
    return [dict(call, id=f"{function}/{index}") for index, call in enumerate(calls)]


# The calls whose quantities the reference's values are stored for (normgrade.score.expected).
REFERENCE_CALLS = {f: VALUE_CALLS[f] + ((_large_calls(f)[-1],) if f in LARGE else ()) for f in VALUE_CALLS}
LARGE_QUANTITIES = {name: backward for backward in LARGE for name in _large_calls(backward)[-1]["produces"]}


SCALE = 3.0  # a normalization's output does not change when x is scaled ...
SPREAD = 100.0  # ... where eps is negligible: x * SPREAD has no feature of variance near eps


def gradient_inputs(inputs, direction_seed):
    """
    The points of the gradient checks, {name: stack}: for each prefix, x,
    gamma and beta stacks of 2 * (x.size + gamma.size + beta.size) points, each
    entry of one argument moved by +STEP then -STEP, then two more for the
    scale test: the base point with x multiplied by SPREAD, and by SPREAD * SCALE;
    and for each large input (LARGE) a stack `<name>_stack` of two points, the
    input plus and minus LARGE_STEP times a random direction drawn from
    direction_seed: a secret of the expected-values file, drawn anew for each
    one (normgrade.score.expected), never sent to a worker.
    """
    stacks = {}
    for prefix in sorted({g[3] for g in GRADIENTS.values()}):
        base = [inputs[f"{prefix}_{k}"] for k in ("x", "gamma", "beta")]
        points = {k: [] for k in ("x", "gamma", "beta")}
        for which, array in enumerate(base):
            for index in np.ndindex(array.shape):
                for sign in (1, -1):
                    moved = [a.copy() for a in base]
                    moved[which][index] += sign * STEP
                    for k, value in zip(("x", "gamma", "beta"), moved):
                        points[k].append(value)
        for factor in (SPREAD, SPREAD * SCALE):
            for k, value in zip(("x", "gamma", "beta"), (base[0] * factor, base[1], base[2])):
                points[k].append(value)
        stacks.update({f"{prefix}_stack_{k}": np.stack(v) for k, v in points.items()})
    for name in sorted({n for names, _quantity in LARGE.values() for n in names[:3]}):
        direction = np.random.default_rng([direction_seed, *name.encode()]).standard_normal(inputs[name].shape)
        stacks[f"{name}_stack"] = np.stack([inputs[name] + LARGE_STEP * direction,
                                            inputs[name] - LARGE_STEP * direction])
    return stacks


# ---- values as the scorer holds them ---------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A quantity the student's code did not produce; the message says what happened (in the current language)."""

    message: str
    seconds: float = 0.0  # the time limit its call ran out of (0: it did not run out of time)
    raised: str = ""  # the call raised: the exception's type name as the worker gave it ("?" unknown; "" not raised)


@dataclass(frozen=True)
class Other:
    """A value that is not a numeric array (a list, a tuple, a CuPy array, ...)."""

    type_name: str


def compare(value, expected):
    """None if `value` matches `expected` (shape, dtype, values), else a short reason."""
    if isinstance(value, Failure):
        return value.message
    if value is None:
        return _("is missing (None)")
    if isinstance(value, Other) or not isinstance(value, np.ndarray):
        name = value.type_name if isinstance(value, Other) else type(value).__name__
        return _("is a {type}, expected an array of shape {shape}").format(type=name, shape=expected.shape)
    if tuple(value.shape) != expected.shape:
        return _("has shape {shape}, expected {expected}").format(shape=tuple(value.shape), expected=expected.shape)
    if value.dtype != expected.dtype:
        return _("has dtype {dtype}, expected {expected}").format(dtype=value.dtype, expected=expected.dtype)
    if not np.all(np.isfinite(value)):
        return _("contains NaN or inf")
    rtol, atol = tolerance(expected)
    if not np.allclose(value, expected, rtol=rtol, atol=atol):
        return _("differs from the expected values")
    return None


CALL_OF = {quantity: call for calls in VALUE_CALLS.values() for call in calls for quantity in call["produces"]}


def prepare_diagnosis(data):
    """
    Compute, once, the hypotheses of every probe at the hidden inputs of
    `data` (they depend on nothing else), so that the processes forked after
    it diagnose a wrong value from memory (diagnosis._remembered): about 0.5 s
    here, and 0.2 s less in each forked grading of a submission with typical
    mistakes (measured on 2 cores).
    """
    for quantity, call in CALL_OF.items():
        diagnosis.probe(quantity, data.inputs, call)


# Mistake keys that are not a diagnosis of the function's own code (the class report leaves them out).
NOT_IMPLEMENTED, FORWARD_WRONG, CONSISTENT = "not implemented", "forward: wrong", "backward: consistent with it"
NOT_OWN_MISTAKES = (NOT_IMPLEMENTED, FORWARD_WRONG, CONSISTENT)


def explain(function, quantity, value, values, data, check, gradient_reason=None):
    """
    (text to add to the reason, mistake key, diagnosed) for a quantity that
    failed its check: a diagnosis confirmed by a probe (normgrade.score.diagnosis;
    diagnosed is then True), else what differs. A train step's running statistics are not diagnosed in a function
    that has no train-mode output yet (a stub that only writes them back); a
    backward pass whose forward pass is wrong is told so first, and whether it
    matches that forward pass (gradient_reason: its gradient check's outcome).
    """
    expected = data.expected(quantity)
    note, keys, consistent, repeated = "", [], False, None
    forward = FORWARD_OF.get(quantity)
    # What the backward's own output explains (no array, the wrong shape or dtype, an exception) is its own
    # reason: the student is not sent to the forward pass for it.
    own_fact = not isinstance(value, np.ndarray) or value.shape != expected.shape or value.dtype != expected.dtype
    if forward and not own_fact and isinstance(values.get(forward), np.ndarray) and \
            compare(values[forward], data.expected(forward)):
        consistent = gradient_reason is None
        names = {"forward": GRADIENTS[function][0], "function": function}
        note = _(". Your {forward} is wrong on these inputs (see its own checks), and {function} works from its "
                 "cache: fix the forward pass first").format(**names)
        keys = [FORWARD_WRONG]
        if consistent:  # the backward is right for its forward: whatever dx lacks is the forward's, not diagnosed
            note = _(". Your {forward} is wrong on these inputs (see its own checks), and {function} works from its "
                     "cache: fix the forward pass first; your backward pass does match your forward pass (the "
                     "gradient check passes)").format(**names)
            keys.append(CONSISTENT)
        repeated = _repeated(quantity, value, values[forward], data)
        if repeated:  # ... but where dx repeats the forward's axes, fixing the forward pass alone will not do
            note += _(". Diagnosis: dx repeats that mistake: {diagnosis}").format(diagnosis=repeated[0])
            keys.append(repeated[1])
            consistent = True  # said: no other diagnosis of dx
    text, key, diagnosed = _explain_value(function, quantity, value, values, data, check, expected,
                                          diagnose=not consistent)
    return text + note, "; ".join(keys + ([key] if key else [])), diagnosed or bool(repeated)


def _repeated(quantity, value, forward_value, data):
    """
    (words, key) where a backward pass's dx is the exact gradient of its
    forward pass, whose statistics are diagnosed as taken over the wrong axes:
    the backward pass takes its means over those axes too, a mistake of its own
    that fixing the forward pass will not fix. None otherwise.
    """
    forward = FORWARD_OF[quantity]
    b = diagnosis.backward_inputs(quantity, data.inputs, CALL_OF[quantity])
    probed = diagnosis.probe(forward, data.inputs, CALL_OF[forward])
    if b is None or b.which != "dx" or probed is None:
        return None
    layout = dict(diagnosis.named(forward_value, probed[0], *tolerance(data.expected(forward)))).get("statistics")
    if layout is None or not diagnosis.matches(value, diagnosis.repeated_dx(b, layout),
                                               *tolerance(data.expected(quantity))):
        return None
    parts = (("dx axis", layout),)
    return diagnosis.sentence(parts, "", b.layer), diagnosis.key(parts)


def _squeezed(shape):
    return tuple(n for n in shape if n != 1)


def _explain_value(function, quantity, value, values, data, check, expected, diagnose=True):
    """(text to add to the reason, mistake key, whether the text states a diagnosis) of one wrong value."""
    if isinstance(value, Failure):
        if value.raised.startswith("NotImplementedError"):  # the exception's type, whatever its message's language
            return "", NOT_IMPLEMENTED, False
        return "", "raises" if value.raised else "", False
    main = diagnosis.MAIN_OUTPUT.get(function)
    if quantity.startswith(diagnosis.RUNNING) and main and not isinstance(values.get(main), np.ndarray):
        return (_(". {function} returns no train-mode output yet ({main} {problem}), so its running statistics mean "
                  "nothing: implement the forward pass first").format(
                    function=function, main=main, problem=compare(values.get(main), expected)), NOT_IMPLEMENTED, False)
    if value is None and quantity.startswith(diagnosis.RUNNING):
        parts = (("write back", "missing"),)  # bn_param has no running statistics after a train step
        return _(". Diagnosis: {diagnosis}").format(diagnosis=diagnosis.sentence(parts)), diagnosis.key(parts), True
    if value is None:
        return _(". Not implemented yet?"), NOT_IMPLEMENTED, False
    if not isinstance(value, np.ndarray):
        return "", "", False
    if value.shape != expected.shape:
        if _squeezed(value.shape) == _squeezed(expected.shape) and np.allclose(
                value.reshape(expected.shape), expected, *tolerance(expected)):
            if value.ndim > expected.ndim:
                how = N_("axes of size 1 added")
                text = _(": its values are right, in an array with extra axes of size 1 (keepdims, a reshape or an "
                         "index with None adds them); it must have shape {shape}")
            elif value.ndim < expected.ndim:
                how = N_("axes of size 1 dropped")
                text = _(": its values are right, in an array with fewer axes of size 1 (a sum without "
                         "keepdims=True drops them); it must have shape {shape}")
            else:
                how = N_("axes of size 1 moved")
                text = _(": its values are right, in an array with its axes of size 1 elsewhere; it must have shape "
                         "{shape}")
            return text.format(shape=expected.shape), f"shape: {how}", False  # the report says `how` translated
        return "", f"shape: {tuple(value.shape)} for {expected.shape}", False
    if value.dtype != expected.dtype:
        hint = (_(": outputs and gradients keep their input's dtype (an array made without dtype=x.dtype, such as "
                  "np.zeros((N, D)) or np.ones((N, D)), is float64, and so is whatever it is added to or multiplied "
                  "by)") if value.dtype == np.float64 and expected.dtype == np.float32 else "")
        return hint, f"dtype: {value.dtype} for {expected.dtype}", False
    rtol, atol = tolerance(expected)
    difference = diagnosis.describe_difference(value, expected, rtol, atol)
    if not diagnose:
        return _(": {difference}").format(difference=difference), "", False
    float64 = diagnosis.FLOAT64_OF.get(quantity)
    if float64 and float64 in values and compare(values[float64], data.expected(float64)) is None:
        parts = (("precision", "float32"),)  # the maths is right (float64 passes): what is lost is precision
        return (_(": {difference}. Diagnosis: {diagnosis}").format(difference=difference,
                                                                    diagnosis=diagnosis.sentence(parts)),
                diagnosis.key(parts), True)
    probed = diagnosis.probe(quantity, data.inputs, CALL_OF.get(quantity, {}))
    parts = diagnosis.confirmed(value, probed[0], rtol, atol) if probed else None
    if parts:
        return (_(": {difference}. Diagnosis: {diagnosis}").format(
                    difference=difference, diagnosis=diagnosis.sentence(parts, function, probed[1])),
                diagnosis.key(parts), True)
    return _(": {difference}").format(difference=difference), "", False


# What a normalization's x_hat = (out - beta) / gamma is: along some axes (candidate_axes), every slice has
# mean 0 and, where x's slice has n entries and variance s2, a variance of s2 / (s2 + eps) with eps inside the
# square root, (n - 1) / n of about that with the unbiased variance, 1 / (1 + eps / sqrt(s2))^2 with eps
# outside, 1 with eps missing: at most 1, and at least 0.99 (n - 1) / n s2 / (s2 + EPS_MAX) for every
# eps up to EPS_MAX. x / x.flat[0], x - mean(x), (x - mean(x)) / (2 std(x)) or eps subtracted do not pass.
# (The gradient checks' inputs give the slice of variance 1e-4 an x_hat variance of 0.91 with eps = 1e-5.)
MEAN_TOLERANCE = 1e-6  # x_hat is recovered to about 1e-14 (|gamma| >= 0.5)
VARIANCE_TOLERANCE = 1e-6
EPS_MAX = 1e-4  # ten times the layers' default
# Normwise, per slice: float64 arithmetic leaves about 1e-15, a float32 one about 1e-7; the normalization of
# the other point of a directional derivative (x -+ 2e-5 d, |d| ~ 1, slices of spread 0.25 to 6) is off by 3e-6
# or more.
AFFINE_TOLERANCE = 1e-6


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@functools.lru_cache(maxsize=None)
def candidate_axes(shape):
    """
    The ways a normalization may slice an array of `shape`, as (shape of a
    reshape, axes of one slice), one per distinct partition: 2-D, per column,
    per row, all; 4-D, every nonempty set of axes of the array reshaped (N, g,
    C // g, H, W) and (N, C // g, g, H, W) for each divisor g of C (per
    channel, per example, instance, contiguous and interleaved groups, ...),
    and the columns of the (N * H * W, C) reshape without the transpose.
    """
    if len(shape) == 2:
        views = [(shape, axes) for axes in ((0,), (1,), (0, 1))]
    else:
        N, C, H, W = shape
        views = [(view, axes) for g in _divisors(C) for view in ((N, g, C // g, H, W), (N, C // g, g, H, W))
                 for r in range(1, 6) for axes in itertools.combinations(range(5), r)]
        views.append(((N * H * W, C), (0,)))
    found = {}
    for view, axes in views:  # a partition is the sequence of (size, reduced) with size-1 axes dropped, merged
        merged = []
        for axis, size in enumerate(view):
            if size == 1:
                continue
            if merged and merged[-1][1] == (axis in axes):
                merged[-1][0] *= size
            else:
                merged.append([size, axis in axes])
        if any(reduced for _size, reduced in merged):
            found.setdefault(tuple(map(tuple, merged)), None)
    return tuple((tuple(size for size, _reduced in key), tuple(i for i, (_size, reduced) in enumerate(key) if reduced))
                 for key in found)


def standardizes(x_hat, x):
    """
    True if x_hat[p] is a normalization of x[p] at every point p (the first
    axis), along one candidate set of axes: every slice has mean ~0, the
    variance a normalization of that slice of x gives (see EPS_MAX), and is an
    affine function of that very slice of x (AFFINE_TOLERANCE): a forward pass
    that normalizes another x than the one it was given (one it remembered)
    is standardized, but not this x's normalization.
    """
    points = x_hat.shape[0]
    for view, axes in candidate_axes(tuple(x_hat.shape[1:])):
        v = x_hat.reshape(points, *view)
        axes = tuple(a + 1 for a in axes)
        mean = v.mean(axis=axes, keepdims=True)
        if not np.all(np.abs(mean) <= MEAN_TOLERANCE):
            continue
        var = ((v - mean) ** 2).mean(axis=axes)
        n = np.prod([v.shape[a] for a in axes])
        given = np.asarray(x, dtype=np.float64).reshape(v.shape)
        spread = given.var(axis=axes)
        low = 0.99 * (n - 1) / n * spread / (spread + EPS_MAX)
        if np.all((var >= low) & (var <= 1 + VARIANCE_TOLERANCE)) and _affine_in(v - mean, given, axes):
            return True
    return False


def _affine_in(centred, x, axes):
    """Whether each slice of `centred` (mean 0) is a multiple of that slice of x less its mean, to AFFINE_TOLERANCE."""
    x_centred = x - x.mean(axis=axes, keepdims=True)
    with np.errstate(all="ignore"):
        slope = np.nan_to_num((centred * x_centred).sum(axis=axes, keepdims=True)
                              / (x_centred ** 2).sum(axis=axes, keepdims=True))
        residual = np.sqrt(((centred - slope * x_centred) ** 2).sum(axis=axes))
        size = np.maximum(np.sqrt((centred ** 2).sum(axis=axes)), 1e-300)
    return bool(np.all(residual / size <= AFFINE_TOLERANCE))


def _x_hat(outputs, gamma, beta):
    """(out - beta) / gamma at each stacked point, gamma and beta broadcast as the layer does ((D,) or per channel)."""
    shape = (outputs.shape[0], 1, -1) + (1,) * (outputs.ndim - 3)
    with np.errstate(all="ignore"):
        return (outputs - beta.reshape(shape)) / gamma.reshape(shape)


def _not_standardized(forward, shape=None):
    """Why a gradient check earns nothing where the forward pass does not normalize (on the large input: `shape`)."""
    if shape is None:
        return _("not credited: your {forward} is not a normalization of the x it is given: its output less beta, "
                 "divided by gamma, is not that x standardized along any axes (in every slice, that x less its mean, "
                 "scaled to variance x's variance / (x's variance + eps), or a little less with the unbiased "
                 "variance) at the points of the numerical gradient, so a backward pass consistent with it proves "
                 "little").format(forward=forward)
    return _("not credited: your {forward} is not a normalization of the x it is given: its output less beta, "
             "divided by gamma, is not that x standardized along any axes (in every slice, that x less its mean, "
             "scaled to variance x's variance / (x's variance + eps), or a little less with the unbiased "
             "variance) on a {shape} input, so a backward pass consistent with it proves little").format(
        forward=forward, shape=shape)


def _large_failure(backward, value, inputs):
    """What a failed call on the large input says: a time-out is the sign of numerical or entry-by-entry gradients."""
    shape = inputs[LARGE[backward][0][0]].shape
    if value.seconds:
        return _("{backward} did not finish in {seconds:g} s on a {shape} input: a vectorized analytic backward pass "
                 "takes milliseconds; loops over entries or numerical differences are not credited").format(
            backward=backward, seconds=value.seconds, shape=shape)
    return _("{function} on a {shape} input: {why}").format(function=backward, shape=shape, why=value.message)


def _numerical(backward, values, inputs):
    """(why not, None) or (None, the numerical dx, dgamma, dbeta of the student's forward pass, from its outputs)."""
    forward, _extra, _param, prefix = GRADIENTS[backward]
    outputs = values.get(f"grad_{backward}_outputs")
    if isinstance(outputs, Failure):
        return _("{forward} on the perturbed inputs: {why}").format(forward=forward, why=outputs.message), None
    dout = inputs[f"{prefix}_dout"]
    if not isinstance(outputs, np.ndarray) or outputs.shape[1:] != dout.shape:
        shape = getattr(outputs, "shape", (None,))[1:]
        return _("{forward} returned output of shape {shape}, expected {expected}").format(
            forward=forward, shape=tuple(shape), expected=dout.shape), None
    outputs, (at_base, at_scaled) = outputs[:-2], outputs[-2:]
    differences = np.sum((outputs[0::2] - outputs[1::2]) * dout, axis=tuple(range(1, outputs.ndim))) / (2 * STEP)
    sizes = [inputs[f"{prefix}_{k}"].size for k in ("x", "gamma", "beta")]
    numeric = [part.reshape(inputs[f"{prefix}_{k}"].shape)
               for part, k in zip(np.split(differences, np.cumsum(sizes)[:-1]), ("x", "gamma", "beta"))]
    for name, n in zip(("dx", "dgamma", "dbeta"), numeric):
        if not np.all(np.isfinite(n)):
            return _("the numerical gradient {name} of your {forward} is not finite").format(name=name,
                                                                                              forward=forward), None
        if np.linalg.norm(n) <= 1e-9:
            return _("your {forward} does not respond to {argument} (its numerical gradient is zero), so there is "
                     "nothing to check the backward pass against").format(forward=forward, argument=name[1:]), None
    if not np.linalg.norm(at_scaled - at_base) <= 1e-3 * np.linalg.norm(at_base):
        return _("not credited: your {forward} is not a normalization (its output changes when x is multiplied by "
                 "{scale:g}), so a backward pass consistent with it proves little").format(forward=forward,
                                                                                            scale=SCALE), None
    return None, numeric


def gradient_problems(backward, values, inputs):
    """
    (normalization problem, gradient-check problem) of a backward pass, each
    None or why not. The first: unless the student's forward pass normalizes
    at every point its numerical gradient is taken from (its outputs in
    `values`), judged on those very outputs, point by point: a forward pass
    that recognises some points, or remembers earlier calls, gains nothing
    unless it normalizes at all of them. The second: the first, else the
    backward pass against the numerical gradients on the small input, entry
    by entry, then a directional derivative on the large input (LARGE), where
    the backward pass must finish in time.
    """
    forward, _extra, _param, prefix = GRADIENTS[backward]
    problem, numeric = _numerical(backward, values, inputs)
    if not problem:
        stacks = [inputs[f"{prefix}_stack_{k}"] for k in ("x", "gamma", "beta")]
        if not standardizes(_x_hat(values[f"grad_{backward}_outputs"], *stacks[1:]), stacks[0]):
            problem = _not_standardized(forward)  # at the points of the numerical gradient
    return problem, problem or _consistency_problem(backward, values, inputs, numeric)


def _consistency_problem(backward, values, inputs, numeric):
    """The backward pass against `numeric` (the numerical dx, dgamma, dbeta on the small input), then on the large."""
    forward = GRADIENTS[backward][0]
    analytic = [values.get(f"grad_{backward}_{g}") for g in ("dx", "dgamma", "dbeta")]
    failed = next((a for a in analytic if isinstance(a, Failure)), None)
    if failed:
        return failed.message
    for name, a, n in zip(("dx", "dgamma", "dbeta"), analytic, numeric):
        problem = _array_problem(name, a, n.shape)
        if problem:
            return problem
        # Normwise, on the scale of the whole array (an entry near zero has no relative error of its own),
        # with a floor below which both are zero to the accuracy of central differences.
        error = np.linalg.norm(a - n) / max(np.linalg.norm(n), np.linalg.norm(a), GRADIENT_FLOOR * np.sqrt(n.size))
        if not error < 1e-5:
            return _("{name} from {backward} disagrees with the numerical gradient of your {forward} (normwise "
                     "relative error {error:.2g})").format(name=name, backward=backward, forward=forward, error=error)
    return _large_gradient_problem(backward, values, inputs)


def _array_problem(name, a, shape):
    if a is None:
        return _("{name} is missing (None)").format(name=name)
    if not isinstance(a, np.ndarray):
        return _("{name} is not an array").format(name=name)
    if a.shape != shape:
        return _("{name} has shape {shape}, expected {expected}").format(name=name, shape=a.shape, expected=shape)
    if not np.all(np.isfinite(a)):
        return _("{name} contains NaN or inf").format(name=name)
    return None


def _large_gradient_problem(backward, values, inputs):
    """
    On the large input: the backward pass finished, the forward pass normalizes
    at both points, and <dout, out(p + d) - out(p - d)> = <(dx, dgamma, dbeta),
    2 d> for the random step d, to a relative error of 1e-5 of |(dx, dgamma,
    dbeta)| |2 d| / sqrt(n) (what a normwise error of 1e-5 gives in a random
    direction; central differences are accurate to about 1e-10 here).
    """
    forward = GRADIENTS[backward][0]
    names, quantity = LARGE[backward]
    analytic = [values.get(f"{quantity}_{g}", Failure(_("was not returned"))) for g in ("dx", "dgamma", "dbeta")]
    failed = next((a for a in analytic if isinstance(a, Failure)), None)
    if failed:
        return _large_failure(backward, failed, inputs)
    shape = inputs[names[0]].shape
    outputs = values.get(f"{quantity}_outputs", Failure(_("was not returned")))
    if isinstance(outputs, Failure):
        return _("{function} on a {shape} input: {why}").format(function=forward, shape=shape, why=outputs.message)
    if not isinstance(outputs, np.ndarray) or outputs.shape != (2, *shape):
        return _("{forward} returned output of shape {shape}, expected {expected}").format(
            forward=forward, shape=tuple(getattr(outputs, "shape", (None,))[1:]), expected=shape)
    stacks = [inputs[f"{name}_stack"] for name in names[:3]]
    if not standardizes(_x_hat(outputs, stacks[1], stacks[2]), stacks[0]):
        return _not_standardized(forward, shape)
    for name, a, stack in zip(("dx", "dgamma", "dbeta"), analytic, stacks):
        problem = _array_problem(name, a, stack.shape[1:])
        if problem:
            return _("on a {shape} input, {problem}").format(shape=shape, problem=problem)
    steps = [stack[0] - stack[1] for stack in stacks]
    numeric = float(np.sum((outputs[0] - outputs[1]) * inputs[names[3]]))
    exact = float(sum(np.sum(a * step) for a, step in zip(analytic, steps)))
    size = sum(step.size for step in steps)
    scale = np.sqrt(sum(np.sum(a ** 2) for a in analytic) * sum(np.sum(step ** 2) for step in steps) / size)
    error = abs(numeric - exact) / max(scale, abs(numeric), GRADIENT_FLOOR * LARGE_STEP)
    if not error < 1e-5:
        return _("on a {shape} input, the gradients from {backward} disagree with the numerical directional "
                 "derivative of your {forward} (relative error {error:.2g})").format(
            shape=shape, backward=backward, forward=forward, error=error)
    return None


@dataclass(frozen=True)
class Result:
    check: Check
    earned: float
    message: str  # empty when the check passed
    mistake: str = ""  # the diagnosis (normgrade.score.diagnosis.key) of a wrong value, if one was confirmed


def score(function, values, data):
    """
    Score one student function from raw values: a list of Results.

    values: {quantity: array, None, Other or Failure}, as the worker returned
    them (for every graded function); data: an ExpectedValues (expected
    values and the hidden inputs).
    """
    gate, gradient_reason = (gradient_problems(function, values, data.all_inputs) if function in GRADIENTS
                             else (None, None))
    found = {id(c): _value_reason(c, function, values, data, gradient_reason)
             for c in checks_for(function) if not c.gradient}
    if function in GRADIENTS and not any(reason for reason, _mistake in found.values()):
        gate = gradient_reason = None  # exact gradients on every input: nothing is left to take on trust
    results = []
    for check in checks_for(function):
        reason, mistake = (gradient_reason, "") if check.gradient else found[id(check)]
        if check.gated and not reason and gate:
            reason = _("not credited: {quantity} is dout summed over the batch whatever the forward pass computes, "
                       "so it counts only with a forward pass that normalizes; the gradient check says: {why}").format(
                quantity=", ".join(check.quantities[:1]), why=gate)
        results.append(Result(check, 0.0 if reason else check.points, reason or "", mistake))
    return results


def _value_reason(check, function, values, data, gradient_reason):
    """
    (why a value check fails or None, the mistake keys) of one value check:
    its first wrong quantity, and each later one whose diagnosis or dtype (a
    key not said yet) adds a mistake of its own (a running mean of the wrong
    shape and a running variance updated with the standard deviation; dx
    wrong with eps = 0.01 and float64 for float32 input).
    """
    reasons, keys = [], []
    for quantity in check.quantities:
        value = values.get(quantity, Failure(_("was not returned")))
        if quantity in LARGE_QUANTITIES and isinstance(value, Failure):
            return (reasons[0], "; ".join(keys)) if reasons else (_large_failure(function, value, data.all_inputs), "")
        problem = compare(value, data.expected(quantity))
        if problem:
            text, mistake, diagnosed = explain(function, quantity, value, values, data, check, gradient_reason)
            new = [k for k in mistake.split("; ") if k and k not in keys]
            own = diagnosed or mistake.startswith("dtype: ")  # a diagnosis, or a dtype it lost (mistake: a key)
            if not reasons or (own and new and not set(new) & set(NOT_OWN_MISTAKES)):
                # `text` carries its own punctuation (". Diagnosis: ...", ": 3 of 6 entries differ"), as a message
                reasons.append(_("{quantity} {problem}").format(quantity=quantity, problem=problem) + text)
                keys += new
    if reasons:
        return _("; and ").join(reasons), "; ".join(keys)
    for quantity in check.finishes:
        value = values.get(quantity, Failure(_("was not returned")))
        if not isinstance(value, np.ndarray):
            failure = value if isinstance(value, Failure) else Failure(
                _("{quantity} is not an array").format(quantity=quantity))
            return _large_failure(function, failure, data.all_inputs), ""
    return None, ""


def report(function, results):
    """A readable report of one function's results, one line per lost point."""
    earned = sum(r.earned for r in results)
    total = sum(r.check.points for r in results)
    lines = [_("{function}: {earned:g} / {total:g} points").format(function=function, earned=earned, total=total)]
    for r in results:
        if r.message:
            text = _("- lost {points:g} on '{check}': {why}").format(points=r.check.points, check=r.check.said(),
                                                                   why=r.message)
            lines.append(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    "))
    if earned == total:
        lines.append("  " + _("all checks passed"))
    return "\n".join(lines)
