"""
The public checks of every function you implement in normlab/layers.py, and a self-check table.

From the folder that holds normlab/ (your copy of the assignment):

    python -m normlab.check

or in a notebook cell:

    from normlab.check import check, self_check
    check("batchnorm_forward")   # one function's checks, one line each; fails the cell if one fails
    self_check()                  # the table of all functions

The checks use small published examples and properties that every correct
implementation has (means and standard deviations, identities between the
layers, analytic gradients against central differences of your own forward
pass). They never see the autograder's hidden inputs or expected values:
passing them is a good sign, not a guarantee that the hidden checks pass.

Where a published example or a gradient check fails, the check names the
mistake when exactly one explanation fits your values, in the autograder's
words: normlab/mistakes.npz holds what each mistake the autograder's model
knows returns on these checks' own inputs (and only on those; the course's
staff tooling writes it). Otherwise the check says what the right
computation is.
"""
import ast
import functools
import importlib
import importlib.util
import json
import re
import sys
import textwrap
import unicodedata
from pathlib import Path

import numpy as np

from .gradient_check import eval_numerical_gradient_array, rel_error
from .i18n import N_, _, ngettext

FUNCTIONS = (
    "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_groupnorm_forward",
    "spatial_groupnorm_backward",
)
PUBLIC_CHECKS = {name: [] for name in FUNCTIONS}  # function -> its checks, in order


def public_check(function, description):
    """
    Register a check of `function`: it takes the layers module, returns a
    short detail, raises AssertionError; `description` (an English message of
    the catalogs, marked N_) says what it checks.
    """
    def register(check_function):
        check_function.description = description
        PUBLIC_CHECKS[function].append(check_function)
        return check_function
    return register


def _errors(names, got, expected):
    """{name: relative error} of each array in `got` against `expected`; a wrong shape fails at once."""
    errors = {}
    for name, a, b in zip(names, got, expected):
        shape = getattr(a, "shape", None)
        assert shape == b.shape, _("{name} has shape {shape}, expected {expected}").format(
            name=name, shape=shape, expected=b.shape)
        errors[name] = rel_error(a, b)
    return errors


# ---- the checks' inputs, and what the autograder's model of mistakes says about them ---------------

SMALL_X = np.array([[1., 2., 3.], [4., 0., -1.], [2., 2., 5.], [0., 1., 1.]])
SMALL_GAMMA, SMALL_BETA = np.array([1., 2., 0.5]), np.array([0., -1., 1.])
SPATIAL_X = np.arange(24, dtype=float).reshape(2, 4, 3, 1) ** 1.5 / 10
SPATIAL_GAMMA, SPATIAL_BETA = np.array([1., 2., 0.5, 1.]), np.array([0., 1., 0., -1.])
# Group norm's own: C = 6 channels in G = 2 groups of 3, so that G and the size of a group differ.
GROUP_X = np.arange(36, dtype=float).reshape(2, 6, 3, 1) ** 1.5 / 10
GROUP_GAMMA = np.array([1., 2., 0.5, 1., -1., 1.5]).reshape(1, 6, 1, 1)
GROUP_BETA = np.array([0., 1., 0., -1., 0.5, 2.]).reshape(1, 6, 1, 1)
EPS = 1e-5  # the layers' default: the checks pass no eps


def gradient_inputs(seed, shape, parameter_shape):
    """(x, gamma, beta, dout) of a gradient check: x with a large mean, dout always from seed 0."""
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal(shape) + 12
    gamma, beta = rng.standard_normal(parameter_shape), rng.standard_normal(parameter_shape)
    return x, gamma, beta, np.random.default_rng(0).standard_normal(shape)


# The probes: function -> (layer, G, its check's inputs: (x, gamma, beta) or (x, gamma, beta, dout)). The
# autograder computes, with its model of mistakes, what every mistake it knows returns on exactly these inputs,
# into mistakes.npz; tests/test_self_check.py checks it is current.
PROBES = {
    "batchnorm_forward": ("batchnorm", None, (SMALL_X, SMALL_GAMMA, SMALL_BETA)),
    "layernorm_forward": ("layernorm", None, (SMALL_X, SMALL_GAMMA, SMALL_BETA)),
    "spatial_batchnorm_forward": ("spatial_batchnorm", None, (SPATIAL_X, SPATIAL_GAMMA, SPATIAL_BETA)),
    "spatial_groupnorm_forward": ("groupnorm", 2, (GROUP_X, GROUP_GAMMA, GROUP_BETA)),
    "batchnorm_backward": ("batchnorm", None, gradient_inputs(2, (4, 5), (5,))),
    "batchnorm_backward_alt": ("batchnorm", None, gradient_inputs(3, (8, 5), (5,))),
    "layernorm_backward": ("layernorm", None, gradient_inputs(6, (4, 5), (5,))),
    "spatial_batchnorm_backward": ("spatial_batchnorm", None, gradient_inputs(1, (2, 3, 2, 3), (3,))),
    "spatial_groupnorm_backward": ("groupnorm", 3, gradient_inputs(3, (2, 6, 2, 2), (1, 6, 1, 1))),
}
for *_unused, _inputs in PROBES.values():
    for _array in _inputs:
        _array.setflags(write=False)  # the published inputs themselves are never handed to a student's function


def probe_inputs(probe):
    """
    Fresh copies of a probe's inputs for one check: a function that changes
    its arguments in place, or a numerical gradient stopped half-way by an
    exception, never changes what the next check (or mistakes.npz) sees.
    """
    return tuple(np.array(array, copy=True) for array in PROBES[probe][2])
MISTAKES_FILE = Path(__file__).with_name("mistakes.npz")


class Named(AssertionError):
    """A failed check whose mistake the autograder's model named: `parts` holds its (part, choice) pairs."""

    def __init__(self, message, parts):
        super().__init__(message)
        self.parts = parts


@functools.lru_cache(maxsize=None)
def mistakes_table(path=MISTAKES_FILE):
    """{key: array} of mistakes.npz, or {} where it cannot be read (the checks then name nothing)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError):
        return {}


def named_parts(value, probe, which, rtol=1e-6, atol=1e-8):
    """
    The (part, choice) pairs every modelled mistake that returns `value` on
    the probe's inputs shares (which: "out" for a forward pass, else "dx",
    "dgamma", "dbeta"), or () where none or several unrelated ones fit: as
    the autograder's diagnosis.confirmed decides it on its hidden inputs.
    """
    table = mistakes_table()
    values, parts = table.get(f"{probe}/{which}/values"), table.get(f"{probe}/{which}/parts")
    value = np.asarray(value) if isinstance(value, np.ndarray) else None
    if values is None or parts is None or value is None or value.shape != values.shape[1:]:
        return ()
    with np.errstate(all="ignore"):
        close = np.isclose(value.astype(np.float64), values.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
    found = [set(map(tuple, json.loads(text))) for text, same in
             zip(parts, close.reshape(len(values), -1).all(axis=1)) if same]
    return tuple(sorted(set.intersection(*found))) if found else ()


PLAIN = "{part}: {choice}"  # a part without words of its own (as the autograder says it): not a message


def sentence(parts, probe):
    """
    The autograder's words for `parts` on the probe's function: its clauses
    (an English template and its fields each, translated here), joined.
    """
    clauses = json.loads(str(mistakes_table().get(f"{probe}/clauses", "{}")))
    said = []
    for part, choice in parts:
        template, fields = clauses.get(f"{part}|{choice}", [PLAIN, {"part": part, "choice": choice}])
        words = {name: _(value) if name in ("layout", "right") and value else value for name, value in fields.items()}
        said.append((template if template == PLAIN else _(template)).format(**words))
    return _("; ").join(said)


# Over what a forward probe's output, less beta and divided by gamma, has mean 0 and standard deviation 1:
# (the groups its channels fall into, or None; the axes; in words).
STANDARDIZED = {
    "batchnorm_forward": (None, (0,), N_("in each column (feature), over the batch")),
    "layernorm_forward": (None, (1,), N_("in each row (sample), over its features")),
    "spatial_batchnorm_forward": (None, (0, 2, 3), N_("in each channel, over the batch and both spatial axes")),
    "spatial_groupnorm_forward": (2, (2, 3, 4), N_("in each group of channels of each sample, over its channels "
                                                   "and positions")),
}


def _published(out, expected, probe, sample=...):
    """
    Check out[sample] against a published example's values; on failure name
    the mistake (from the whole of `out`) where the autograder's model is
    sure of it, or else say what differs, as facts (never a guessed cause).
    """
    error = rel_error(out[sample], expected)
    if error >= 1e-6:
        message = _("differs from the published output (relative error {error:.1e}): {why}")
        parts = named_parts(out, probe, "out")
        if parts:
            raise Named(message.format(error=error, why=sentence(parts, probe)), parts)
        raise AssertionError(message.format(error=error, why=what_differs(out, probe, sample, expected)))
    return _("relative error {error:.1e}").format(error=error)


def what_differs(out, probe, sample, expected):
    """
    What is true of `out` on the probe's inputs and differs from what it must
    be: (out - beta) / gamma must have mean 0, and the standard deviation x
    has there with eps added to its variance (just under 1), over the probe's
    STANDARDIZED axes; where it has both, the first value that differs.
    """
    x, gamma, beta = PROBES[probe][2][:3]
    if np.shape(out) != x.shape:
        return _("out has shape {shape}; it must have the shape of x, {x_shape}").format(
            shape=np.shape(out), x_shape=x.shape)
    groups, axes, words = STANDARDIZED[probe]
    words = _(words)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)

    def grouped(a):
        return a if groups is None else a.reshape(a.shape[0], groups, -1, *a.shape[2:])

    with np.errstate(all="ignore"):
        z = grouped((np.asarray(out, dtype=np.float64) - beta.reshape(shape)) / gamma.reshape(shape))
        means, stds = z.mean(axis=axes), z.std(axis=axes)
        variance = grouped(x).var(axis=axes)
        wanted = np.sqrt(variance / (variance + EPS))
    facts = []
    if not np.allclose(means, 0, atol=1e-4):
        facts.append(_("(out - beta) / gamma must have mean 0 {where}; yours has means as far as {far:.3g} from 0"
                       ).format(where=words, far=np.nanmax(np.abs(means))))
    if not np.allclose(stds, wanted, rtol=1e-4):
        facts.append(_("(out - beta) / gamma must have standard deviation {low:.6g} to {high:.6g} {where} (1 but for "
                       "eps); yours has {lowest:.6g} to {highest:.6g}").format(
            low=np.min(wanted), high=np.max(wanted), where=words, lowest=np.nanmin(stds), highest=np.nanmax(stds)))
    if facts:
        return _("; ").join(facts)
    given = np.asarray(out)[sample]
    where = np.unravel_index(np.nanargmax(np.abs(given - expected)), expected.shape)
    return _("(out - beta) / gamma has mean 0 and standard deviation 1 {where}, as it must, but not the published "
             "values: at {index} of the example it is {got:.6g}, not {expected:.6g}").format(
        where=words, index=tuple(int(i) for i in where), got=given[where], expected=expected[where])


def _gradients(probe, forward, backward, tolerance=1e-7):
    """
    Check backward's gradients against central differences of forward(x,
    gamma, beta) on the probe's inputs. Where some disagree and the forward
    pass is right there, they are named when the model is sure of each.
    """
    x, gamma, beta, dout = probe_inputs(probe)
    out, cache = forward(x, gamma, beta)
    analytic = backward(dout, cache)
    numeric = (eval_numerical_gradient_array(lambda v: forward(v, gamma, beta)[0], x, dout),
               eval_numerical_gradient_array(lambda v: forward(x, v, beta)[0], gamma.copy(), dout),
               eval_numerical_gradient_array(lambda v: forward(x, gamma, v)[0], beta.copy(), dout))
    errors = _errors(("dx", "dgamma", "dbeta"), analytic, numeric)
    wrong = [name for name, error in errors.items() if not error < tolerance]
    if not wrong:
        return _errors_text(errors)
    message = ngettext("{names} disagrees with the numerical gradient ({errors}): {why}",
                       "{names} disagree with the numerical gradient ({errors}): {why}", len(wrong))
    names, errors_text = ", ".join(wrong), _errors_text(errors)
    parts = _gradient_mistakes(probe, out, dict(zip(errors, analytic)), wrong)
    if parts:
        raise Named(message.format(names=names, errors=errors_text, why=sentence(parts, probe)), parts)
    right = mistakes_table().get(f"{probe}/right_out")
    if right is not None and (np.shape(out) != right.shape or not np.allclose(out, right, rtol=1e-6, atol=1e-8)):
        forward = probe.replace("_backward_alt", "_forward").replace("_backward", "_forward")
        why = _("{forward} is wrong on these inputs, and this check differentiates it: fix {forward} first").format(
            forward=forward)
        raise AssertionError(message.format(names=names, errors=errors_text, why=why))
    raise AssertionError(message.format(names=names, errors=errors_text, why=_("check that node of the graph")))


def _gradient_mistakes(probe, out, gradients, wrong):
    """The parts named for the `wrong` gradients, when the forward pass is right on the probe's x; else ()."""
    right = mistakes_table().get(f"{probe}/right_out")
    if right is None or np.shape(out) != right.shape or not np.allclose(out, right, rtol=1e-6, atol=1e-8):
        return ()
    named = [named_parts(gradients[name], probe, name) for name in wrong]
    return tuple(part for parts in named for part in parts) if all(named) else ()  # all, or none is named


def _errors_text(errors):
    return ", ".join(f"{name} {error:.1e}" for name, error in errors.items())


# ---- batch normalization ------------------------------------------------------------------------

@public_check("batchnorm_forward", N_("a small published example (gamma and beta not trivial)"))
def batchnorm_published_example(layers):
    out, _cache = layers.batchnorm_forward(*probe_inputs("batchnorm_forward"), {"mode": "train"})
    expected = np.array([[-0.50709139, 0.80905491, 1.22360657],
                         [1.52127418, -4.01509152, 0.32918028],
                         [0.16903046, 0.80905491, 1.67081972],
                         [-1.18321325, -1.60301830, 0.77639343]])
    return _published(out, expected, "batchnorm_forward")


@public_check("batchnorm_forward",
              N_("after batch norm the features have the means beta and the standard deviations gamma"))
def batchnorm_moments(layers):
    rng = np.random.default_rng(0)
    x = 5 * rng.standard_normal((200, 3)) + 12
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    out, _cache = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    assert out.shape == x.shape and out.dtype == x.dtype, _("out keeps the shape and dtype of x")
    assert np.allclose(out.mean(axis=0), beta, atol=1e-6), _("per-feature means are {means}, not beta").format(
        means=out.mean(axis=0))
    assert np.allclose(out.std(axis=0), gamma, atol=1e-4), _("per-feature stds are {stds}, not gamma").format(
        stds=out.std(axis=0))
    return _("means beta, stds gamma")


@public_check("batchnorm_forward",
              N_("test mode after many training steps uses the running statistics and leaves them alone"))
def batchnorm_test_mode(layers):
    rng = np.random.default_rng(1)
    W1, W2 = rng.standard_normal((50, 60)), rng.standard_normal((60, 3))
    bn_param = {"mode": "train"}
    for _step in range(50):
        a = np.maximum(0, rng.standard_normal((200, 50)) @ W1) @ W2
        layers.batchnorm_forward(a, np.ones(3), np.zeros(3), bn_param)
    assert "running_mean" in bn_param and "running_var" in bn_param, (
        _("write the running statistics back into bn_param (bn_param['running_mean'], bn_param['running_var'])"))
    running_mean = bn_param["running_mean"].copy()
    bn_param["mode"] = "test"
    a = np.maximum(0, rng.standard_normal((200, 50)) @ W1) @ W2
    out, _cache = layers.batchnorm_forward(a, np.ones(3), np.zeros(3), bn_param)
    assert np.allclose(out.mean(axis=0), 0, atol=0.2), _("test mode should normalize with the running mean")
    assert np.allclose(out.std(axis=0), 1, atol=0.2), _("test mode should normalize with the running variance")
    assert np.array_equal(bn_param["running_mean"], running_mean), _(
        "test mode must not change the running statistics")
    return _("means near 0, stds near 1")


@public_check("batchnorm_backward", N_("analytic gradients against central differences"))
def batchnorm_gradients(layers):
    forward = lambda x, g, b: layers.batchnorm_forward(x, g, b, {"mode": "train"})  # noqa: E731
    return _gradients("batchnorm_backward", forward, layers.batchnorm_backward)


@public_check("batchnorm_backward_alt", N_("the same gradients as batchnorm_backward"))
def batchnorm_alt_matches(layers):
    x, gamma, beta, dout = probe_inputs("batchnorm_backward_alt")
    out, cache = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    names, shapes = ("dx", "dgamma", "dbeta"), (x.shape, gamma.shape, beta.shape)
    got, expected = layers.batchnorm_backward_alt(dout, cache), layers.batchnorm_backward(dout, cache)
    for name, shape, a, b in zip(names, shapes, got, expected):
        assert getattr(a, "shape", None) == getattr(b, "shape", None) == shape, _(
            "{name} must have shape {shape}: batchnorm_backward_alt gives {alt}, batchnorm_backward {plain}").format(
            name=name, shape=shape, alt=getattr(a, "shape", None), plain=getattr(b, "shape", None))
    errors = _errors(names, got, expected)
    wrong = [name for name, error in errors.items() if not error < 1e-7]
    if not wrong:
        return _errors_text(errors)
    message = _("batchnorm_backward_alt must return the same gradients as batchnorm_backward ({errors})").format(
        errors=_errors_text(errors))
    parts = _gradient_mistakes("batchnorm_backward_alt", out, dict(zip(names, got)), wrong)
    if parts:
        raise Named(_("{message}: {why}").format(message=message, why=sentence(parts, "batchnorm_backward_alt")),
                    parts)
    raise AssertionError(message)


# ---- layer normalization ------------------------------------------------------------------------

@public_check("layernorm_forward", N_("the same small published example, normalized per row"))
def layernorm_published_example(layers):
    out, _cache = layers.layernorm_forward(*probe_inputs("layernorm_forward"), {})
    expected = np.array([[-1.22473569, -1.00000000, 1.61236784],
                         [1.38872866, -1.92581911, 0.53709045],
                         [-0.70710501, -2.41421003, 1.70710501],
                         [-1.41418174, 0.41418174, 1.35354544]])
    return _published(out, expected, "layernorm_forward")


@public_check("layernorm_forward", N_("each row of the output has mean 0 and standard deviation 1"))
def layernorm_rows_standardized(layers):
    rng = np.random.default_rng(5)
    x = 3 * rng.standard_normal((4, 50)) + rng.standard_normal((4, 1)) * 10
    out, _cache = layers.layernorm_forward(x, np.ones(50), np.zeros(50), {})
    assert np.allclose(out.mean(axis=1), 0, atol=1e-6) and np.allclose(out.std(axis=1), 1, atol=1e-3), (
        _("each row should be standardized on its own"))
    return _("rows standardized")


@public_check("layernorm_backward", N_("analytic gradients against central differences"))
def layernorm_gradients(layers):
    return _gradients("layernorm_backward", lambda x, g, b: layers.layernorm_forward(x, g, b, {}),
                      layers.layernorm_backward)


# ---- spatial batch and group normalization ------------------------------------------------------

@public_check("spatial_batchnorm_forward", N_("a small published example"))
def spatial_batchnorm_published_example(layers):
    out, _cache = layers.spatial_batchnorm_forward(*probe_inputs("spatial_batchnorm_forward"), {"mode": "train"})
    assert out.shape == SPATIAL_X.shape, _("out has shape {shape}; it must have the shape of x, {x_shape}").format(
        shape=out.shape, x_shape=SPATIAL_X.shape)
    expected_sample0 = np.array([[-1.04548152, -1.00211644, -0.92282656],
                                 [-1.18860914, -0.99000226, -0.76472704],
                                 [-0.55574671, -0.49680432, -0.43348613],
                                 [-2.12098476, -1.99294462, -1.85833128]])
    return _published(out, expected_sample0, "spatial_batchnorm_forward", (0, ..., 0))


@public_check("spatial_batchnorm_forward", N_("per-channel means beta and standard deviations gamma"))
def spatial_batchnorm_moments(layers):
    rng = np.random.default_rng(0)
    x = 4 * rng.standard_normal((6, 3, 5, 5)) + 10
    gamma, beta = np.array([3., 4., 5.]), np.array([6., 7., 8.])
    out, _cache = layers.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    assert np.allclose(out.mean(axis=(0, 2, 3)), beta, atol=1e-6) and np.allclose(
        out.std(axis=(0, 2, 3)), gamma, atol=1e-4), _(
        "each channel should have mean beta and std gamma over (N, H, W)")
    return _("means beta, stds gamma")


@public_check("spatial_batchnorm_backward", N_("analytic gradients against central differences"))
def spatial_batchnorm_gradients(layers):
    forward = lambda x, g, b: layers.spatial_batchnorm_forward(x, g, b, {"mode": "train"})  # noqa: E731
    return _gradients("spatial_batchnorm_backward", forward, layers.spatial_batchnorm_backward, tolerance=1e-6)


@public_check("spatial_groupnorm_forward", N_("a small published example (G = 2 groups of 3 channels)"))
def spatial_groupnorm_published_example(layers):
    x, gamma, beta = probe_inputs("spatial_groupnorm_forward")
    out, _cache = layers.spatial_groupnorm_forward(x, gamma, beta, 2, {})
    expected_sample1 = np.array([[-1.50690177, -1.15151175, -0.78664190],  # PyTorch's F.group_norm
                                 [0.17493520, 0.94118788, 1.72505941],
                                 [0.38154058, 0.58603341, 0.79465810],
                                 [-2.51945109, -2.15455029, -1.78307382],
                                 [0.90513609, 0.52084572, 0.13030604],
                                 [3.14957674, 3.75369794, 4.36676990]])
    return _published(out, expected_sample1, "spatial_groupnorm_forward", (1, ..., 0))


def _standardized(x, axes, eps=1e-5):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


@public_check("spatial_groupnorm_forward", N_("G = 1 is layer norm over (C, H, W); G = C is instance norm"))
def spatial_groupnorm_identities(layers):
    rng = np.random.default_rng(2)
    N, C, H, W = 3, 6, 4, 5
    x = 3 * rng.standard_normal((N, C, H, W)) + 2
    ones, zeros = np.ones((1, C, 1, 1)), np.zeros((1, C, 1, 1))
    one_group, _cache = layers.spatial_groupnorm_forward(x, ones, zeros, 1, {})
    error = rel_error(one_group, _standardized(x, (1, 2, 3)))
    assert error < 1e-6, _("with G = 1, group norm must equal layer norm over (C, H, W) (relative error {error:.1e})"
                           ).format(error=error)
    per_channel, _cache = layers.spatial_groupnorm_forward(x, ones, zeros, C, {})
    error = rel_error(per_channel, _standardized(x, (2, 3)))
    assert error < 1e-6, _("with G = C, group norm must equal instance norm (relative error {error:.1e})").format(
        error=error)
    return _("G = 1 and G = C as expected")


@public_check("spatial_groupnorm_backward", N_("analytic gradients against central differences (G = 3)"))
def spatial_groupnorm_gradients(layers):
    return _gradients("spatial_groupnorm_backward", lambda x, g, b: layers.spatial_groupnorm_forward(x, g, b, 3, {}),
                      layers.spatial_groupnorm_backward, tolerance=1e-6)


# ---- imports ------------------------------------------------------------------------------------

# Besides the standard library, all that normlab/layers.py can import when it is graded.
GRADED_IMPORTS = ("numpy", "array_api_compat", "normlab")


def _layers_tree(path=None):
    """The syntax tree of normlab/layers.py (or `path`), or None where there is none to read."""
    try:
        return ast.parse(Path(path or importlib.util.find_spec("normlab.layers").origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, AttributeError):  # no file to read: the checks say what is wrong
        return None


def _forbidden_nodes(tree):
    """
    [(node, top-level module, name bound)] of each import in `tree` of what the
    autograder does not offer (anything but the standard library and
    GRADED_IMPORTS); a dynamic import (__import__, importlib.import_module)
    binds None.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [(alias.name, alias.asname or alias.name.partition(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [(node.module, alias.asname or alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                in ("__import__", "import_module"):
            names = [(node.args[0].value, None)]
        else:
            continue
        for name, bound in names:
            top = name.partition(".")[0]
            if top and top not in GRADED_IMPORTS and top not in sys.stdlib_module_names:
                found.append((node, top, bound))
    return found


def forbidden_imports(path=None):
    """
    [(line, module, used)] of the imports in normlab/layers.py (or `path`)
    of what the autograder does not offer: anything but the standard library
    and GRADED_IMPORTS. When graded, such an import costs nothing while the
    name it binds is unused (used is False: an editor's auto-import); each
    call that uses it fails, and every function if it is used at the top of
    the file. A dynamic import (__import__, importlib.import_module) counts
    as used.
    """
    tree = _layers_tree(path)
    if tree is None:
        return []
    loaded = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return [(node.lineno, top, bound is None or bound == "*" or bound in loaded)
            for node, top, bound in _forbidden_nodes(tree)]


def import_failures(path=None):
    """
    {function: why it fails when graded} for the graded functions that an
    import of what the autograder does not offer breaks: every one where the
    file uses it at its top (the module then cannot be imported), else each
    function that uses it, and each that calls such a function (in this file).
    """
    tree = _layers_tree(path)
    if tree is None:
        return {}
    nodes = _forbidden_nodes(tree)
    where = _("{module} (line {line})")
    forbidden = {bound: where.format(module=top, line=node.lineno) for node, top, bound in nodes
                 if bound not in (None, "*")}
    dynamic = {id(node): where.format(module=top, line=node.lineno) for node, top, bound in nodes if bound is None}

    def used(statements):
        """The first forbidden module the statements use, or None."""
        for statement in statements:
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in forbidden:
                    return forbidden[node.id]
                if id(node) in dynamic:
                    return dynamic[id(node)]
        return None

    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    top = used(node for node in tree.body if not isinstance(node, (ast.FunctionDef, ast.Import, ast.ImportFrom)))
    if top:
        why = _("normlab/layers.py uses {module} at its top: when graded it cannot be imported, so every function "
                "earns 0").format(module=top)
        return {function: why for function in FUNCTIONS}
    module_of = {name: module for name, node in functions.items() if (module := used(node.body))}
    through = {}  # function -> the failing function of this file it calls
    changed = True
    while changed:  # what calls a failing function fails with it
        changed = False
        for name, node in functions.items():
            callee = next((n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in module_of), None)
            if name not in module_of and callee:
                module_of[name], through[name], changed = module_of[callee], callee, True
    calls = _("calls {function}, which uses {module}: fails when graded")
    uses = _("uses {module}, which the autograder does not have: its calls fail when graded")
    return {function: (calls.format(function=through[function], module=module) if function in through
                       else uses.format(module=module))
            for function, module in module_of.items() if function in FUNCTIONS}


def imports_message(path=None):
    """(a sentence on layers.py's imports of what the autograder does not have, or "", whether one is used)."""
    found = forbidden_imports(path)
    where = _("{module} (line {line})")
    used = [where.format(module=module, line=line) for line, module, use in found if use]
    unused = [where.format(module=module, line=line) for line, module, use in found if not use]
    said = []
    if used:
        said.append(_("normlab/layers.py uses {modules}: the autograder offers only the standard library and "
                      "{offered}, so each call that uses it fails when graded (used at the top of the file, every "
                      "function then earns 0); use NumPy instead").format(
            modules=", ".join(used), offered=", ".join(GRADED_IMPORTS)))
    if unused:
        said.append(_("normlab/layers.py imports {modules} without using it: the autograder does not have it, and an "
                      "unused import costs nothing when graded; delete it all the same").format(
            modules=", ".join(unused)))
    return _(". ").join(said), bool(used)


# ---- running the checks -------------------------------------------------------------------------

# The statuses (English: they are also what summary() returns; the table shows them translated).
NOT_STARTED, FAILS, PASSES = N_("not started"), N_("fails here"), N_("passes the public checks")
FAILS_GRADED = N_("fails when graded")  # passes here, but an import the autograder does not offer breaks it


def _run(check_function, layers):
    """(status, detail or message) of one check."""
    try:
        return PASSES, check_function(layers)
    except NotImplementedError as err:
        return NOT_STARTED, f"{err}"
    except AssertionError as err:
        return FAILS, f"{err}"
    except Exception as err:  # noqa: BLE001 - whatever the code under test raises is reported
        return FAILS, _("raised {error_type}: {error}").format(error_type=type(err).__name__, error=err)


def results(function, layers=None):
    """[(check description, status, detail or message)] of one function's public checks (in the chosen language)."""
    layers = layers or importlib.import_module("normlab.layers")
    return [(_(c.description), *_run(c, layers)) for c in PUBLIC_CHECKS[function]]


class ChecksFailed(AssertionError):
    """
    A function does not pass its public checks: what to fix first, in lines
    of at most WIDTH characters, and no traceback (IPython shows
    _render_traceback_'s lines instead, so nbgrader's Validate, which cuts
    lines at 90 characters, and JupyterLab's Validate dialog show them whole).
    """

    WIDTH = 80

    def __init__(self, function, problem):
        self.lines = [_("{function} does not pass its public checks. Fix this first:").format(function=function)]
        self.lines += _wrap(" ".join(problem.split()), self.WIDTH, indent="  ")
        super().__init__("\n".join(self.lines))

    def _render_traceback_(self):
        return self.lines


class AnswerFormat(ChecksFailed):
    """An inline answer not in its format: what the format is, in short lines, and no traceback."""

    def __init__(self, name, wanted):
        self.lines = [_("{name} is not an answer in its format. It must be:").format(name=name)]
        self.lines += _wrap(wanted, self.WIDTH, indent="  ")
        AssertionError.__init__(self, "\n".join(self.lines))


def check_format(name, ok, wanted):
    """An inline answer's format check (its key is graded outside the notebook): raise AnswerFormat unless ok."""
    if not ok:
        raise AnswerFormat(name, wanted)
    print(_("{name}: in its format").format(name=name))


def check(function, layers=None):
    """Run one function's public checks and print a line each; raise ChecksFailed if one does not pass."""
    outcome = results(function, layers)
    for description, status, detail in outcome:
        line = _("passed: {description}: {detail}") if status == PASSES else _("FAILED: {description}: {detail}")
        print(line.format(description=description, detail=detail))
    problems = [detail for _description, status, detail in outcome if status != PASSES]
    path = getattr(layers, "__file__", None)
    graded = import_failures(path).get(function)
    if graded:
        print(_("FAILED: when graded: {why}").format(why=graded))
        problems.append(graded)
    imports, _used = imports_message(path)
    if imports and not graded:
        print(_("warning: imports: {imports}").format(imports=imports))
    if problems:
        raise ChecksFailed(function, problems[0])


def summary(layers=None):
    """[(function, status, first message to act on)] for every function, in the notebooks' order."""
    rows = []
    graded = import_failures(getattr(layers, "__file__", None))
    for function in FUNCTIONS:
        outcome = results(function, layers)
        statuses = [status for _description, status, _detail in outcome]
        status = NOT_STARTED if NOT_STARTED in statuses else FAILS if FAILS in statuses else PASSES
        message = next((m if s == NOT_STARTED else _("{description}: {message}").format(description=d, message=m)
                        for d, s, m in outcome if s != PASSES), "")
        if status == PASSES and function in graded:  # said on its own row, not only below the table
            status, message = FAILS_GRADED, graded[function]
        rows.append((function, status, message))
    return rows


def _width(text):
    """The columns `text` takes in a terminal (a Chinese character takes two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text, width):
    return text + " " * max(width - _width(text), 0)


def _wrap(text, width, indent=""):
    """
    Lines of at most `width` columns: textwrap's, but for a text with wide
    (Chinese) characters, which breaks at spaces and between any two
    characters of a word that does not fit.
    """
    if _width(text) == len(text):
        return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent)
    lines, line = [], ""
    for word in re.findall(r"\S+\s*", text):
        pieces = [word] if _width(word) <= width - len(indent) else list(word)  # a long word (or Chinese) by character
        for piece in pieces:
            if line and _width(indent + line + piece.rstrip()) > width:
                lines.append(indent + line.rstrip())
                line = ""
            line += piece.lstrip() if not line else piece
    if line.strip():
        lines.append(indent + line.rstrip())
    return lines


def self_check(layers=None, width=110):
    """Print the table of every function's status; return True if all pass the public checks."""
    rows = summary(layers)
    name_width = max(len(f) for f in FUNCTIONS)
    status_width = max(_width(_(status)) for status in (NOT_STARTED, FAILS, PASSES, FAILS_GRADED))
    indent = " " * (name_width + 2 + status_width + 2)
    headings = _("function"), _("status"), _("first thing to fix")
    print(f"{_pad(headings[0], name_width)}  {_pad(headings[1], status_width)}  {headings[2]}".rstrip())
    for function, status, message in rows:
        lines = _wrap(" ".join(message.split()), max(width - len(indent), 30)) or [""]
        print(f"{function:<{name_width}}  {_pad(_(status), status_width)}  {lines[0]}".rstrip())
        for line in lines[1:]:
            print(indent + line)
    done = sum(status == PASSES for _function, status, _message in rows)
    imports, fails = imports_message(getattr(layers, "__file__", None))
    if imports:
        print()
        print("\n".join(_wrap(imports, width)))
    print()
    print("\n".join(_wrap(_("{done} of {total} functions pass the public checks. These checks use small published "
                            "examples and properties of the maths, never the autograder's hidden inputs: passing them "
                            "does not guarantee the hidden checks pass.").format(done=done, total=len(rows)), width)))
    return done == len(rows) and not fails


def main():
    return 0 if self_check() else 1


if __name__ == "__main__":
    sys.exit(main())
