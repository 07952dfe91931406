"""
The grading checks: what each student function is graded on, worth how much.

This is the scorer's side: it decides points from raw values the sandboxed
worker returned (normgrade.worker runs the calls listed in CALLS), and never
runs student code.

- A value check compares quantities the student's code produced on the hidden
  inputs with the reference's (normgrade.expected): exact shape, exact dtype,
  then values. A wrong value's message says what differs and, where a probe
  confirms it (normgrade.diagnosis), what the code actually computes; a
  backward pass whose forward pass is wrong is told to fix the forward first.
- A gradient check takes central differences of the student's own forward
  pass, from forward outputs at perturbed points this module chose, and
  compares them normwise with the student's backward pass. It earns nothing
  when the forward does not respond to x, gamma or beta (a constant forward
  has a "consistent" zero gradient) or is not a normalization at all (its
  output changes when x is scaled: `x + c` has a consistent gradient too);
  a normalization over the wrong axes, or with eps misplaced, still earns it.
- Invariants are checked together with the output they belong to: "test
  mode leaves the running statistics unchanged" proves nothing from code
  that does nothing, so it is part of the test-mode output check.
"""
import textwrap
from dataclasses import dataclass

import numpy as np

from . import diagnosis


@dataclass(frozen=True)
class Check:
    function: str
    label: str
    points: float
    quantities: tuple = ()  # value check: all of these must match the reference
    gradient: str = ""  # gradient check of this backward function (see GRADIENTS)
    loose: bool = False  # float32 results: compare values loosely (dtype and shape stay exact)

    @property
    def tolerance(self):
        return TOLERANCE[self.loose]


# (rtol, atol) of values; loose: float32 with a large mean loses about 1e-3 with two-pass statistics, and
# orders of magnitude more with E[x^2] - E[x]^2.
TOLERANCE = {False: (1e-6, 1e-8), True: (1e-3, 5e-3)}


def _value(function, label, points, *quantities, loose=False):
    return Check(function, label, points, quantities=quantities, loose=loose)


def _gradient(function, points):
    return Check(function, "gradients agree with numerical gradients of your forward pass", points, gradient=function)


CHECKS = (
    _value("batchnorm_forward", "train-mode output", 1.5, "bn_train_out"),
    _value("batchnorm_forward", "train-mode output for a single example (N = 1) and a single feature (D = 1), "
                                "with eps from bn_param", 0.5,
           "bn_n1_out", "bn_d1_out"),
    _value("batchnorm_forward", "output for float32 input with a large mean (x = 1e4 + noise): dtype, shape, values",
           0.5, "bn_f32_out", loose=True),
    _value("batchnorm_forward", "running mean and variance in bn_param after one train step", 0.5,
           "bn_train_running_mean", "bn_train_running_var"),
    _value("batchnorm_forward", "running mean and variance after 3 train steps with momentum 0.75", 1,
           "bn_steps_running_mean", "bn_steps_running_var"),
    _value("batchnorm_forward", "test-mode output with eps from bn_param, the running statistics left unchanged", 2,
           "bn_test_out", "bn_test_running_mean", "bn_test_running_var"),
    _value("batchnorm_backward", "dx", 1.5, "batchnorm_backward_dx"),
    _value("batchnorm_backward", "dgamma (shape (D,))", 0.5, "batchnorm_backward_dgamma"),
    _value("batchnorm_backward", "dbeta (shape (D,))", 0.5, "batchnorm_backward_dbeta"),
    _gradient("batchnorm_backward", 1.5),
    _value("batchnorm_backward_alt", "dx", 1, "batchnorm_backward_alt_dx"),
    _value("batchnorm_backward_alt", "dgamma and dbeta (shape (D,))", 0.5,
           "batchnorm_backward_alt_dgamma", "batchnorm_backward_alt_dbeta"),
    _gradient("batchnorm_backward_alt", 1.5),
    _value("layernorm_forward", "output", 2, "ln_out"),
    _value("layernorm_forward", "output for float32 input with a large mean (x = 1e4 + noise): dtype, shape, values",
           0.5, "ln_f32_out", loose=True),
    _value("layernorm_forward", "output for a single example with eps from ln_param", 0.5, "ln_single_out"),
    _value("layernorm_backward", "dx", 1, "ln_dx"),
    _value("layernorm_backward", "dgamma and dbeta (shape (D,))", 0.5, "ln_dgamma", "ln_dbeta"),
    _gradient("layernorm_backward", 1.5),
    _value("spatial_batchnorm_forward", "train-mode output", 1.5, "sbn_train_out"),
    _value("spatial_batchnorm_forward", "running mean and variance of shape (C,) in bn_param", 0.5,
           "sbn_running_mean", "sbn_running_var"),
    _value("spatial_batchnorm_forward", "test-mode output", 1, "sbn_test_out"),
    _value("spatial_batchnorm_backward", "dx", 1, "sbn_dx"),
    _value("spatial_batchnorm_backward", "dgamma and dbeta (shape (C,))", 0.5, "sbn_dgamma", "sbn_dbeta"),
    _gradient("spatial_batchnorm_backward", 1.5),
    _value("spatial_groupnorm_forward", "output with G=2 groups", 2, "gn_G2_out"),
    _value("spatial_groupnorm_forward", "output with G=1 (layer norm over C, H, W) and eps from gn_param", 0.5,
           "gn_G1_out"),
    _value("spatial_groupnorm_forward", "output with G=C (instance norm)", 0.5, "gn_G6_out"),
    _value("spatial_groupnorm_backward", "dx with G=2 groups", 0.5, "gn_G2_dx"),
    _value("spatial_groupnorm_backward", "dx with G=1 and with G=C", 0.5, "gn_G1_dx", "gn_G6_dx"),
    _value("spatial_groupnorm_backward", "dgamma and dbeta (shape (1, C, 1, 1))", 0.5, "gn_G2_dgamma", "gn_G2_dbeta"),
    _gradient("spatial_groupnorm_backward", 1.5),
)
FUNCTIONS = tuple(dict.fromkeys(c.function for c in CHECKS))


def checks_for(function):
    found = tuple(c for c in CHECKS if c.function == function)
    if not found:
        raise ValueError(f"no checks for {function!r}; graded functions: {sorted(FUNCTIONS)}")
    return found


def total_points(function):
    return sum(c.points for c in checks_for(function))


# ---- the calls the worker runs (recipes of normgrade.worker) -----------------------------------


def _call(recipe, produces, **arguments):
    return {"recipe": recipe, "produces": tuple(produces), **arguments}


def _bn_backward_call(name):
    return _call("bn_backward", (f"{name}_dx", f"{name}_dgamma", f"{name}_dbeta"), function=name)


VALUE_CALLS = {
    "batchnorm_forward": (
        _call("bn_train", ("bn_train_out", "bn_train_running_mean", "bn_train_running_var")),
        _call("bn_edge", ("bn_n1_out", "bn_d1_out"), eps=1e-3),
        _call("bn_steps", ("bn_steps_running_mean", "bn_steps_running_var"), momentum=0.75, eps=1e-3),
        _call("bn_test", ("bn_test_out", "bn_test_running_mean", "bn_test_running_var"), eps=1e-3),
        _call("bn_float32", ("bn_f32_out",)),
    ),
    "batchnorm_backward": (_bn_backward_call("batchnorm_backward"),),
    "batchnorm_backward_alt": (_bn_backward_call("batchnorm_backward_alt"),),
    "layernorm_forward": (_call("ln_forward", ("ln_out",)), _call("ln_float32", ("ln_f32_out",)),
                          _call("ln_single", ("ln_single_out",), eps=1e-3)),
    "layernorm_backward": (_call("ln_backward", ("ln_dx", "ln_dgamma", "ln_dbeta")),),
    "spatial_batchnorm_forward": (_call("sbn_train", ("sbn_train_out", "sbn_running_mean", "sbn_running_var"),
                                        momentum=0.8),
                                  _call("sbn_test", ("sbn_test_out",))),
    "spatial_batchnorm_backward": (_call("sbn_backward", ("sbn_dx", "sbn_dgamma", "sbn_dbeta")),),
    "spatial_groupnorm_forward": (_call("gn_forward", ("gn_G2_out",), groups=2),
                                  _call("gn_forward", ("gn_G1_out",), groups=1, eps=1e-3),
                                  _call("gn_forward", ("gn_G6_out",), groups=6)),
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
GRADIENT_FLOOR = 1e-7  # per entry: central differences are accurate to about 1e-10 here


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


def calls_for(function):
    """The calls that produce everything `function`'s checks need, each with an id."""
    calls = VALUE_CALLS[function] + (_gradient_calls(function) if function in GRADIENTS else ())
    return [dict(call, id=f"{function}/{index}") for index, call in enumerate(calls)]


SCALE = 3.0  # a normalization's output does not change when x is scaled ...
SPREAD = 100.0  # ... where eps is negligible: x * SPREAD has no feature of variance near eps


def gradient_inputs(inputs):
    """
    The points of the gradient checks, {name: stack}: for each prefix, x,
    gamma and beta stacks of 2 * (x.size + gamma.size + beta.size) points, each
    entry of one argument moved by +STEP then -STEP, then two more for the
    scale test: the base point with x multiplied by SPREAD, and by SPREAD * SCALE.
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
    return stacks


# ---- values as the scorer holds them ---------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A quantity the student's code did not produce; the message says what happened."""

    message: str


@dataclass(frozen=True)
class Other:
    """A value that is not a numeric array (a list, a tuple, a CuPy array, ...)."""

    type_name: str


def compare(value, expected, loose=False):
    """None if `value` matches `expected` (shape, dtype, values), else a short reason."""
    if isinstance(value, Failure):
        return value.message
    if value is None:
        return "is missing (None)"
    if isinstance(value, Other) or not isinstance(value, np.ndarray):
        name = value.type_name if isinstance(value, Other) else type(value).__name__
        return f"is a {name}, expected an array of shape {expected.shape}"
    if tuple(value.shape) != expected.shape:
        return f"has shape {tuple(value.shape)}, expected {expected.shape}"
    if value.dtype != expected.dtype:
        return f"has dtype {value.dtype}, expected {expected.dtype}"
    if not np.all(np.isfinite(value)):
        return "contains NaN or inf"
    rtol, atol = TOLERANCE[loose]
    if not np.allclose(value, expected, rtol=rtol, atol=atol):
        return "differs from the expected values"
    return None


CALL_OF = {quantity: call for calls in VALUE_CALLS.values() for call in calls for quantity in call["produces"]}


# Mistake keys that are not a diagnosis of the function's own code (the class report leaves them out).
NOT_IMPLEMENTED, FORWARD_WRONG, CONSISTENT = "not implemented", "forward: wrong", "backward: consistent with it"
NOT_OWN_MISTAKES = (NOT_IMPLEMENTED, FORWARD_WRONG, CONSISTENT)


def explain(function, quantity, value, values, data, check, gradient_reason=None):
    """
    (text to add to the reason, mistake key) for a quantity that failed its
    check: a diagnosis confirmed by a probe (normgrade.diagnosis), else what
    differs. A train step's running statistics are not diagnosed in a function
    that has no train-mode output yet (a stub that only writes them back); a
    backward pass whose forward pass is wrong is told so first, and whether it
    matches that forward pass (gradient_reason: its gradient check's outcome).
    """
    expected = data.expected(quantity)
    note, keys, consistent = "", [], False
    forward = diagnosis.FORWARD_OF.get(quantity)
    own_fact = isinstance(value, np.ndarray) and (value.shape != expected.shape or value.dtype != expected.dtype)
    if forward and not own_fact and isinstance(values.get(forward), np.ndarray) and \
            compare(values[forward], data.expected(forward)):
        consistent = gradient_reason is None
        note = (f". Your {GRADIENTS[function][0]} is wrong on these inputs (see its own checks), and {function} "
                "works from its cache: fix the forward pass first")
        keys = [FORWARD_WRONG]
        if consistent:  # the backward is right for its forward: whatever dx lacks is the forward's, not diagnosed
            note += "; your backward pass does match your forward pass (the gradient check passes)"
            keys.append(CONSISTENT)
    text, key = _explain_value(function, quantity, value, values, data, check, expected, diagnose=not consistent)
    return text + note, "; ".join(keys + ([key] if key else []))


def _explain_value(function, quantity, value, values, data, check, expected, diagnose=True):
    if isinstance(value, Failure):
        if value.message.startswith("raised NotImplementedError"):
            return "", NOT_IMPLEMENTED
        return "", "raises" if value.message.startswith("raised") else ""
    main = diagnosis.MAIN_OUTPUT.get(function)
    if quantity.startswith(diagnosis.RUNNING) and main and not isinstance(values.get(main), np.ndarray):
        return (f". {function} returns no train-mode output yet ({main} {compare(values.get(main), expected)}), "
                "so its running statistics mean nothing: implement the forward pass first", NOT_IMPLEMENTED)
    if value is None and quantity.startswith(diagnosis.RUNNING):
        parts = (("write back", "missing"),)  # bn_param has no running statistics after a train step
        return f". Diagnosis: {diagnosis.sentence(parts)}", diagnosis.key(parts)
    if value is None:
        return ". Not implemented yet?", NOT_IMPLEMENTED
    if not isinstance(value, np.ndarray):
        return "", ""
    if value.shape != expected.shape:
        return "", f"shape: {tuple(value.shape)} for {expected.shape}"
    if value.dtype != expected.dtype:
        return "", f"dtype: {value.dtype} for {expected.dtype}"
    rtol, atol = check.tolerance
    difference = diagnosis.describe_difference(value, expected, rtol, atol)
    if not diagnose:
        return f": {difference}", ""
    float64 = diagnosis.FLOAT64_OF.get(quantity)
    if float64 and float64 in values and compare(values[float64], data.expected(float64)) is None:
        parts = (("precision", "float32"),)  # the maths is right (float64 passes): what is lost is precision
        return f": {difference}. Diagnosis: {diagnosis.sentence(parts)}", diagnosis.key(parts)
    probed = diagnosis.probe(quantity, data.inputs, CALL_OF.get(quantity, {}))
    parts = diagnosis.confirmed(value, probed[0], rtol, atol) if probed else None
    if parts:
        return f": {difference}. Diagnosis: {diagnosis.sentence(parts, function, probed[1])}", diagnosis.key(parts)
    return f": {difference}", ""


def gradient_problem(backward, values, inputs):
    """None if the student's backward matches numerical gradients of the student's forward, else why not."""
    forward, _, _, prefix = GRADIENTS[backward]
    outputs = values.get(f"grad_{backward}_outputs")
    if isinstance(outputs, Failure):
        return f"{forward} on the perturbed inputs: {outputs.message}"
    analytic = [values.get(f"grad_{backward}_{g}") for g in ("dx", "dgamma", "dbeta")]
    failed = next((a for a in analytic if isinstance(a, Failure)), None)
    if failed:
        return failed.message
    dout = inputs[f"{prefix}_dout"]
    if not isinstance(outputs, np.ndarray) or outputs.shape[1:] != dout.shape:
        shape = getattr(outputs, "shape", (None,))[1:]
        return f"{forward} returned output of shape {tuple(shape)}, expected {dout.shape}"
    outputs, (at_base, at_scaled) = outputs[:-2], outputs[-2:]
    differences = np.sum((outputs[0::2] - outputs[1::2]) * dout, axis=tuple(range(1, outputs.ndim))) / (2 * STEP)
    sizes = [inputs[f"{prefix}_{k}"].size for k in ("x", "gamma", "beta")]
    numeric = [part.reshape(inputs[f"{prefix}_{k}"].shape)
               for part, k in zip(np.split(differences, np.cumsum(sizes)[:-1]), ("x", "gamma", "beta"))]
    for name, n in zip(("dx", "dgamma", "dbeta"), numeric):
        if not np.all(np.isfinite(n)):
            return f"the numerical gradient {name} of your {forward} is not finite"
        if np.linalg.norm(n) <= 1e-9:
            return (f"your {forward} does not respond to {name[1:]} (its numerical gradient is zero), "
                    "so there is nothing to check the backward pass against")
    if not np.linalg.norm(at_scaled - at_base) <= 1e-3 * np.linalg.norm(at_base):
        return (f"not credited: your {forward} is not a normalization (its output changes when x is "
                f"multiplied by {SCALE:g}), so a backward pass consistent with it proves little")
    for name, a, n in zip(("dx", "dgamma", "dbeta"), analytic, numeric):
        if not isinstance(a, np.ndarray):
            return f"{name} is {'missing (None)' if a is None else 'not an array'}"
        if a.shape != n.shape:
            return f"{name} has shape {a.shape}, expected {n.shape}"
        if not np.all(np.isfinite(a)):
            return f"{name} contains NaN or inf"
        # Normwise, on the scale of the whole array (an entry near zero has no relative error of its own),
        # with a floor below which both are zero to the accuracy of central differences.
        error = np.linalg.norm(a - n) / max(np.linalg.norm(n), np.linalg.norm(a), GRADIENT_FLOOR * np.sqrt(n.size))
        if not error < 1e-5:
            return (f"{name} from {backward} disagrees with the numerical gradient of your {forward} "
                    f"(normwise relative error {error:.2g})")
    return None


@dataclass(frozen=True)
class Result:
    check: Check
    earned: float
    message: str  # empty when the check passed
    mistake: str = ""  # the diagnosis (normgrade.diagnosis.key) of a wrong value, if one was confirmed


def score(function, values, data):
    """
    Score one student function from raw values: a list of Results.

    values: {quantity: array, None, Other or Failure}, as the worker returned
    them (for every graded function); data: an ExpectedValues (expected
    values and the hidden inputs).
    """
    results = []
    gradient_reason = gradient_problem(function, values, data.all_inputs) if function in GRADIENTS else None
    for check in checks_for(function):
        mistake = ""
        if check.gradient:
            reason = gradient_reason
        else:
            reason = None
            for quantity in check.quantities:
                value = values.get(quantity, Failure("was not returned"))
                problem = compare(value, data.expected(quantity), check.loose)
                if problem:
                    text, mistake = explain(function, quantity, value, values, data, check, gradient_reason)
                    reason = f"{quantity} {problem}{text}"
                    break
        results.append(Result(check, 0.0 if reason else check.points, reason or "", mistake))
    return results


def report(function, results):
    """A readable report of one function's results, one line per lost point."""
    earned = sum(r.earned for r in results)
    total = sum(r.check.points for r in results)
    lines = [f"{function}: {earned:g} / {total:g} points"]
    for r in results:
        if r.message:
            text = f"- lost {r.check.points:g} on '{r.check.label}': {r.message}"
            lines.append(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    "))
    if earned == total:
        lines.append("  all checks passed")
    return "\n".join(lines)
