"""
The grading checks: what each student function is graded on, worth how much.

A value check compares quantities the student's code produced on the hidden
inputs (normgrade.expected) with the reference's: exact shape, exact dtype,
then values. A gradient check compares the student's backward pass with
central differences of the student's own forward pass. Every lost point comes
with a message; when the wrong value matches a known mistake (a mutant's
signature), the message names the mistake.
"""
import textwrap
from dataclasses import dataclass

import numpy as np

from .expected import Failure, run_quantities, time_limit
from .mutants import BY_NAME as MUTANTS_BY_NAME


@dataclass(frozen=True)
class Check:
    function: str
    label: str
    points: float
    quantities: tuple = ()  # value check: all of these must match the reference
    gradient: str = ""  # gradient check: a key of GRADIENT_CASES
    loose: bool = False  # float32 results: compare values loosely (dtype and shape stay exact)


def _value(function, label, points, *quantities, loose=False):
    return Check(function, label, points, quantities=quantities, loose=loose)


def _gradient(function, points):
    return Check(function, "gradients agree with numerical gradients of your forward pass", points, gradient=function)


CHECKS = (
    _value("batchnorm_forward", "train-mode output", 2, "bn_train_out"),
    _value("batchnorm_forward", "output dtype and shape for float32 input", 0.5, "bn_f32_out", loose=True),
    _value("batchnorm_forward", "running mean and variance in bn_param after one train step", 0.5,
           "bn_train_running_mean", "bn_train_running_var"),
    _value("batchnorm_forward", "running mean and variance after 3 train steps with momentum 0.75", 1,
           "bn_steps_running_mean", "bn_steps_running_var"),
    _value("batchnorm_forward", "test-mode output", 1.5, "bn_test_out"),
    _value("batchnorm_forward", "test mode leaves the running statistics unchanged", 0.5,
           "bn_test_running_mean", "bn_test_running_var"),
    _value("batchnorm_backward", "dx", 1.5, "batchnorm_backward_dx"),
    _value("batchnorm_backward", "dgamma (shape (D,))", 0.5, "batchnorm_backward_dgamma"),
    _value("batchnorm_backward", "dbeta (shape (D,))", 0.5, "batchnorm_backward_dbeta"),
    _gradient("batchnorm_backward", 1.5),
    _value("batchnorm_backward_alt", "dx", 1, "batchnorm_backward_alt_dx"),
    _value("batchnorm_backward_alt", "dgamma and dbeta (shape (D,))", 0.5,
           "batchnorm_backward_alt_dgamma", "batchnorm_backward_alt_dbeta"),
    _gradient("batchnorm_backward_alt", 1.5),
    _value("layernorm_forward", "output", 2, "ln_out"),
    _value("layernorm_forward", "output dtype and shape for float32 input", 0.5, "ln_f32_out", loose=True),
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
    _value("spatial_groupnorm_forward", "output with G=1 (layer norm over C, H, W)", 0.5, "gn_G1_out"),
    _value("spatial_groupnorm_forward", "output with G=C (instance norm)", 0.5, "gn_G6_out"),
    _value("spatial_groupnorm_backward", "dx", 1, "gn_dx"),
    _value("spatial_groupnorm_backward", "dgamma and dbeta (shape (1, C, 1, 1))", 0.5, "gn_dgamma", "gn_dbeta"),
    _gradient("spatial_groupnorm_backward", 1.5),
)


def checks_for(function):
    found = tuple(c for c in CHECKS if c.function == function)
    if not found:
        raise ValueError(f"no checks for {function!r}; graded functions: {sorted({c.function for c in CHECKS})}")
    return found


def total_points(function):
    return sum(c.points for c in checks_for(function))


# ---- gradient checks ----------------------------------------------------------

# backward function -> (forward name, extra forward args, param dict factory, input prefix)
GRADIENT_CASES = {
    "batchnorm_backward": ("batchnorm_forward", (), lambda: {"mode": "train"}, "num_bn"),
    "batchnorm_backward_alt": ("batchnorm_forward", (), lambda: {"mode": "train"}, "num_bn"),
    "layernorm_backward": ("layernorm_forward", (), dict, "num_ln"),
    "spatial_batchnorm_backward": ("spatial_batchnorm_forward", (), lambda: {"mode": "train"}, "num_sbn"),
    "spatial_groupnorm_backward": ("spatial_groupnorm_forward", (2,), dict, "num_gn"),
}


def _gradient_message(layers, gradient_check, backward, inputs):
    """None if the analytic gradients of `backward` match numerical ones of its forward, else why not."""
    forward_name, extra, make_param, prefix = GRADIENT_CASES[backward]
    forward = getattr(layers, forward_name)
    x, gamma, beta, dout = (inputs[f"{prefix}_{k}"] for k in ("x", "gamma", "beta", "dout"))

    def run(x, gamma, beta):
        return forward(x, gamma, beta, *extra, make_param())

    _, cache = run(x.copy(), gamma, beta)
    analytic = getattr(layers, backward)(dout.copy(), cache)
    numeric = (
        gradient_check.eval_numerical_gradient_array(lambda v: run(v, gamma, beta)[0], x, dout),
        gradient_check.eval_numerical_gradient_array(lambda v: run(x, v, beta)[0], gamma, dout),
        gradient_check.eval_numerical_gradient_array(lambda v: run(x, gamma, v)[0], beta, dout),
    )
    for name, a, n in zip(("dx", "dgamma", "dbeta"), analytic, numeric):
        shape = getattr(a, "shape", None)
        if shape != n.shape:
            return f"{name} has shape {shape}, expected {n.shape}"
        error = gradient_check.rel_error(n, a)
        if not error < 1e-6:
            return (f"{name} from {backward} disagrees with the numerical gradient of your "
                    f"{forward_name} (relative error {error:.2g})")
    return None


# ---- value checks -------------------------------------------------------------


def compare(value, expected, loose=False):
    """None if `value` matches `expected` (shape, dtype, values), else a short reason."""
    if isinstance(value, Failure):
        return value.message
    if value is None:
        return "is missing (None)"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return f"is a {type(value).__name__}, expected an array of shape {expected.shape}"
    if tuple(shape) != expected.shape:
        return f"has shape {tuple(shape)}, expected {expected.shape}"
    if dtype != expected.dtype:
        return f"has dtype {dtype}, expected {expected.dtype}"
    value = np.asarray(value)
    if not np.all(np.isfinite(value)):
        return "contains NaN or inf"
    rtol, atol = (1e-3, 1e-3) if loose else (1e-6, 1e-8)
    if not np.allclose(value, expected, rtol=rtol, atol=atol):
        return f"differs from the expected values (largest difference {np.max(np.abs(value - expected)):.3g})"
    return None


def diagnose(value, signatures, loose=False):
    """The message of the first known mistake whose signature `value` matches, or None."""
    if isinstance(value, Failure) or value is None:
        return None
    for mutant, signature in signatures.items():
        if compare(value, signature, loose) is None:
            return MUTANTS_BY_NAME[mutant].message
    return None


@dataclass(frozen=True)
class Result:
    check: Check
    earned: float
    message: str  # empty when the check passed


def evaluate(function, layers, gradient_check, data, seconds=20.0):
    """
    Grade one student function: run its checks and return a list of Results.

    layers: the student's normlab.layers module; gradient_check: the provided
    normlab.gradient_check module; data: an ExpectedValues.
    """
    values = run_quantities(layers, data.inputs, [function], seconds=seconds)
    results = []
    for check in checks_for(function):
        if check.gradient:
            try:
                with time_limit(seconds), np.errstate(all="ignore"):
                    reason = _gradient_message(layers, gradient_check, check.gradient, data.inputs)
            except (Exception, SystemExit) as err:  # the student's code may raise anything, exit included
                reason = Failure(err).message
        else:
            reason = None
            for quantity in check.quantities:
                value = values.get(quantity)
                problem = compare(value, data.expected(quantity), check.loose)
                if problem:
                    reason = f"{quantity} {problem}"
                    likely = diagnose(value, data.signatures(quantity), check.loose)
                    if likely:
                        reason += f". Likely mistake: {likely}"
                    break
        results.append(Result(check, 0.0 if reason else check.points, reason or ""))
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
