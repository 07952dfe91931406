"""
Diagnosis by probes: what a wrong value actually computes, stated only when confirmed.

The scorer holds the hidden inputs. For a quantity the student got wrong, this
module computes, in float64 NumPy, every hypothesis of a small model of how
that quantity can be computed (the parts below, alone and combined) on the
inputs the student's code saw, and keeps those whose output matches the
student's value as closely as a right answer must match the reference. The
hidden inputs separate the hypotheses (a feature with a tiny spread makes eps
visible, a single example makes the batch axis visible, G = 2 of 6 channels
makes groups visible; tests/test_diagnosis.py checks that different
hypotheses give different values), so a match says what the code does.

The diagnosis is the parts that every matching hypothesis shares: a part is
named only when no other explanation fits. Where nothing matches,
`describe_difference` says what differs (how many entries, where, a sample,
a pattern such as a constant factor) and guesses nothing.

The model computes every layer right too (its hypothesis without parts), so
it never reaches the students: their self-check gets the hypotheses' values
on the published examples only (normgrade.score.mistakes writes them into the
student package), which tell nothing about any other input.

Forward parts: statistics (the axes they are taken over, G read as the
size of a group; or only the mean's), variance (biased or unbiased), eps
(inside the square root, outside, missing, the default instead of the param
dict's), affine (gamma and beta applied or not, beta subtracted, along the
rows of a square batch, expanded in the wrong channel order), output (x
returned unchanged; a transposed view reshaped back without its
transpose); in test mode, which statistics, and the variance itself in place
of its square root; for the running statistics: momentum's direction or
momentum ignored, the variance they are updated with (or the standard
deviation), left unchanged (not updated, or not written back).
Backward parts (dx): eps, the terms of the closed form (the mean term, the
variance term, its sign, sums where means belong, sums divided by another
axis's size), the axis, gamma (missing, or outside the means), x uncentred
(in the variance term, or everywhere); and dgamma / dbeta.

Each hypothesis is a tuple of (part, choice) pairs that differ from the right
computation; `key` makes it the short text the class report counts.
"""
import collections
import functools
import hashlib
import inspect
import itertools
import threading
from dataclasses import dataclass

import numpy as np

from normgrade.language import N_, _, ngettext

DEFAULT_EPS = 1e-5  # the layers' documented defaults
DEFAULT_MOMENTUM = 0.9

# ---- layouts: the axes statistics are taken over ---------------------------------------

# name -> (view(x, G), axes of the view to reduce, in words). A view is a reshape of x, so that the
# statistics are one mean / var over `axes` of it, and .reshape(x.shape) undoes it.
def _same(x, G):
    return x


def _groups(x, G):
    return x.reshape(x.shape[0], G, -1, *x.shape[2:])


def _interleaved(x, G):
    return x.reshape(x.shape[0], -1, G, *x.shape[2:])


def _rows(x, G):
    return x.reshape(-1, x.shape[1])


def _channel_rows(x, G):
    return x.reshape(x.shape[1], -1)


_2D = {
    "per feature": (_same, (0,), N_("per feature, over the batch")),
    "per example": (_same, (1,), N_("per example, over its features")),
    "whole batch": (_same, (0, 1), N_("over the whole batch at once")),
}
_4D = {
    "per channel": (_same, (0, 2, 3), N_("per channel, over N, H and W")),
    "per position over N": (_same, (0,), N_("per (channel, position), over the batch only")),
    "per pixel over C": (_same, (1,), N_("per (example, position), over the channels")),
    "instance": (_same, (2, 3), N_("per example and channel, over H and W (instance norm)")),
    "layer": (_same, (1, 2, 3), N_("per example, over C, H and W (layer norm)")),
    "whole array": (_same, (0, 1, 2, 3), N_("over the whole array at once")),
    "no transpose": (_rows, (0,), N_("per column of a (N*H*W, C) reshape of x whose channels were not moved to "
                                     "the last axis first (each column mixes channels and positions)")),
    "groups": (_groups, (2, 3, 4), N_("per example and group of C // G contiguous channels")),
    "interleaved groups": (_interleaved, (1, 3, 4), N_("per example and interleaved group (channel c in group c % G)")),
    "pixel groups": (_groups, (2,), N_("per pixel over the group's C // G channels only (not over H and W)")),
    "interleaved pixel groups": (_interleaved, (1,), N_("per pixel over an interleaved group's channels only "
                                                        "(channel c in group c % G, not over H and W)")),
    "groups over N": (_groups, (0, 2, 3, 4), N_("per group over the whole batch")),
    "G channels per group": (_interleaved, (2, 3, 4), N_("per example over groups of G contiguous channels (G read "
                                                         "as the size of a group: there are G groups of C // G "
                                                         "channels)")),
}
# Spatial batch norm's own confusions: a channel's statistics split by column, or taken over the rows of a
# (C, N*H*W) reshape that never moved the channels first (with N == C, those rows are the examples: layer norm's
# statistics, which no output can tell from them there, so neither is named).
_SBN = {
    "per channel and column": (_same, (0, 2), N_("per (channel, column), over N and H only")),
    "channel rows": (_channel_rows, (1,), N_("per row of a (C, N*H*W) reshape of x whose channels were not moved to "
                                             "the first axis (each row mixes examples and channels)")),
}
LAYOUTS = {**_2D, **_4D, **_SBN}

# The right layout of each layer, and the layouts a student's code might use instead.
LAYER_LAYOUTS = {
    "batchnorm": ("per feature", tuple(_2D)),
    "layernorm": ("per example", tuple(_2D)),
    "spatial_batchnorm": ("per channel", tuple(k for k in _4D if "group" not in k) + tuple(_SBN)),
    "groupnorm": ("groups", tuple(_4D)),
}
# The layouts whose statistics have one value per channel: those running statistics can be kept with.
SBN_RUNNING_LAYOUTS = ("per channel", "no transpose", "channel rows")

EPS_PLACES = ("inside", "outside", "missing", "minus")
AFFINES = ("both", "gamma only", "beta only", "neither", "minus beta")


def _statistics(x, layout, G, unbiased=False):
    """(view of x, mean, var) over the layout's axes, keepdims."""
    view, axes, _words = LAYOUTS[layout]
    v = view(np.asarray(x, dtype=np.float64), G)
    count = int(np.prod([v.shape[a] for a in axes]))
    mean = v.mean(axis=axes, keepdims=True)
    var = ((v - mean) ** 2).sum(axis=axes, keepdims=True) / (count - 1 if unbiased else count)
    return v, mean, var


def _inv_std(var, eps, place):
    if place == "inside":
        return 1.0 / np.sqrt(var + eps)
    if place == "outside":
        return 1.0 / (np.sqrt(var) + eps)
    if place == "missing":
        return 1.0 / np.sqrt(var)
    return 1.0 / np.sqrt(var - eps)  # "minus"


def _affine(x_hat, gamma, beta, affine):
    if affine == "per row":  # gamma and beta along the rows of a square (N == D) batch
        return np.reshape(gamma, (-1, 1)) * x_hat + np.reshape(beta, (-1, 1))
    if affine == "tiled":  # entry k of an example's C * H * W values scaled by gamma[k % C] (np.tile for np.repeat)
        channel = np.arange(np.prod(x_hat.shape[1:])) % x_hat.shape[1]
        expand = lambda a: np.reshape(a, -1)[channel].reshape(x_hat.shape[1:])  # noqa: E731
        return expand(gamma) * x_hat + expand(beta)
    gamma = gamma if affine in ("both", "gamma only", "minus beta") else 1.0
    beta = beta if affine in ("both", "beta only") else -beta if affine == "minus beta" else 0.0
    return gamma * x_hat + beta


@dataclass(frozen=True)
class Hypothesis:
    parts: tuple  # ((part, choice), ...): how it differs from the right computation; () is the right one
    value: np.ndarray


def _content(value):
    """A hashable stand-in for an argument: an array by its dtype, shape and bytes; None where there is none."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return data.dtype.str, data.shape, hashlib.blake2b(data.tobytes(), digest_size=16).digest()
    try:
        hash(value)
    except TypeError:
        return None
    return type(value), value


def _read_only(value):
    """A read-only view of an array (the array itself, maybe a caller's input, stays as it is)."""
    if not isinstance(value, np.ndarray):
        return value
    view = value.view()
    view.flags.writeable = False
    return view


def _remembered(function, size=128):
    """
    `function` (its hypotheses, a list), answering a call it answered lately,
    with the same arguments (arrays by content), from what it gave then: one
    submission's checks ask the same hypotheses several times (a check's
    quantities, the edge cases). Each caller gets its own list; the values
    are read-only.
    """
    kept = collections.OrderedDict()
    lock = threading.Lock()
    signature = inspect.signature(function)

    @functools.wraps(function)
    def remembering(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple(_content(value) for value in bound.arguments.values())
        if None in key:
            return function(*args, **kwargs)
        with lock:
            found = kept.get(key)
            if found is not None:
                kept.move_to_end(key)
                return list(found)
        found = [Hypothesis(h.parts, _read_only(h.value)) for h in function(*args, **kwargs)]
        with lock:  # threads of one Dask worker share it
            kept[key] = tuple(found)
            while len(kept) > size:
                kept.popitem(last=False)
        return list(found)

    remembering.kept = kept  # what it holds, for the tests
    return remembering


def _parts(**chosen):
    """The (part, choice) pairs whose choice is not the right one (None)."""
    return tuple((part.replace("_", " "), choice) for part, choice in chosen.items() if choice is not None)


@_remembered
def forward_hypotheses(layer, x, gamma, beta, eps, G=None, eps_given=True):
    """Train-mode (or layer / group norm) outputs under every combination of the forward parts."""
    right, layouts = LAYER_LAYOUTS[layer]
    found = [Hypothesis(_parts(output="x"), np.asarray(x, dtype=np.float64))]
    eps_values = [(None, eps)] + ([("default", DEFAULT_EPS)]
                                  if eps_given and eps != DEFAULT_EPS else [])
    shape = np.shape(x)
    affines = AFFINES + (("per row",) if len(shape) == 2 and shape[0] == shape[1] else ()) + (
        ("tiled",) if len(shape) == 4 else ())
    statistics = {}  # (layout, mean_only, unbiased) -> (view of x, its mean, its var, the view's layout)
    for layout, unbiased in itertools.product(layouts, (False, True)):
        v, mean, var = _statistics(x, layout, G, unbiased)
        statistics[layout, False, unbiased] = (v, mean, var, layout)
        if layout != right:  # x centred with the wrong axes' mean, divided by the right axes' spread
            right_var = _statistics(x, right, G, unbiased)[2]
            statistics[layout, True, unbiased] = (LAYOUTS[right][0]((v - mean).reshape(shape), G), 0.0, right_var,
                                                  right)
    for (layout, mean_only, unbiased), place, (eps_part, eps_value), affine in itertools.product(
            statistics, EPS_PLACES[:3], eps_values, affines):
        v, mean, var, view_layout = statistics[layout, mean_only, unbiased]
        if view_layout in ("no transpose", "channel rows") and affine == "tiled":
            continue  # rows of C columns have no channel order to get wrong
        x_hat = (v - mean) * _inv_std(var, eps_value, place)
        parts = _parts(statistics=None if layout == right or mean_only else layout,
                       mean=layout if mean_only else None, variance="unbiased" if unbiased else None,
                       eps=None if place == "inside" else place, eps_value=eps_part if place != "missing" else None,
                       affine=None if affine == "both" else affine)
        found.append(Hypothesis(parts, _scaled(x_hat, gamma, beta, affine, view_layout, shape)))
        if layout == right and not mean_only:
            found += [Hypothesis(parts + (("output", "not transposed back"),), value)
                      for value in _not_transposed_back(layer, x_hat.reshape(shape), gamma, beta, affine, G)]
    return found


def _not_transposed_back(layer, x_hat, gamma, beta, affine, G):
    """
    Outputs of code that normalizes a transposed view of x (x.T for layer
    norm, the (N*H*W, C) rows for spatial batch norm, the (C//G*H*W, N*G)
    columns for group norm) and reshapes the result to x's shape without
    transposing it back; gamma and beta applied after that, or (spatial batch
    norm) before it, to the rows.
    """
    shape = x_hat.shape
    if layer == "layernorm":
        return [_affine(x_hat.T.reshape(shape), gamma, beta, affine)]
    if layer == "spatial_batchnorm":
        rows = lambda a: a.transpose(0, 2, 3, 1).reshape(shape)  # noqa: E731
        return [_affine(rows(x_hat), gamma, beta, affine), rows(_affine(x_hat, gamma, beta, affine))]
    if layer == "groupnorm":
        return [_affine(x_hat.reshape(shape[0] * G, -1).T.reshape(shape), gamma, beta, affine)]
    return []


def _scaled(x_hat, gamma, beta, affine, layout, shape):
    """The affine output of a normalized view: in x's layout, or in the rows' (C columns) without the transpose."""
    if layout == "no transpose":  # gamma and beta then scale the columns of the wrongly reshaped rows
        return _affine(x_hat, np.reshape(gamma, -1), np.reshape(beta, -1), affine).reshape(shape)
    if layout == "channel rows":  # ... or its rows
        return _affine(x_hat.T, np.reshape(gamma, -1), np.reshape(beta, -1), affine).T.reshape(shape)
    return _affine(x_hat.reshape(shape), gamma, beta, affine)


def test_mode_hypotheses(x, gamma, beta, running_mean, running_var, eps, layouts=("per feature",), eps_given=True,
                         momentum=DEFAULT_MOMENTUM):
    """
    Batch norm test-mode outputs: running or batch statistics (or the
    running ones first updated with the test batch, as in a train step),
    eps, affine; the first layout is the right one (the running statistics
    have one value per column of its view).
    """
    found = [Hypothesis(_parts(output="x"), np.asarray(x, dtype=np.float64))]
    shape = np.shape(x)
    eps_values = [(None, eps)] + ([("default", DEFAULT_EPS)] if eps_given and eps != DEFAULT_EPS else [])
    batch = {layout: _statistics(x, layout, None) for layout in layouts}
    for layout, stats, place, (eps_part, eps_value), affine, root in itertools.product(
            layouts, ("running", "batch", "updated"), EPS_PLACES[:3], eps_values, AFFINES, (True, False)):
        if not root and place == "outside":
            continue
        v, batch_mean, batch_var = batch[layout]
        axes = LAYOUTS[layout][1]
        keep = [1 if a in axes else n for a, n in enumerate(v.shape)]
        mean, var = np.reshape(running_mean, keep), np.reshape(running_var, keep)
        if stats == "batch":
            mean, var = batch_mean, batch_var
        elif stats == "updated":
            mean, var = momentum * mean + (1 - momentum) * batch_mean, momentum * var + (1 - momentum) * batch_var
        # Without the square root: divided by the variance itself (code whose running "variance" holds a std).
        x_hat = (v - mean) * (_inv_std(var, eps_value, place) if root else
                              1.0 / (var + (eps_value if place == "inside" else 0.0)))
        parts = _parts(statistics=None if layout == layouts[0] else layout,
                       test_statistics={"running": None, "batch": "test batch", "updated": "updated"}[stats],
                       eps=None if place == "inside" else place, eps_value=eps_part if place != "missing" else None,
                       affine=None if affine == "both" else affine, square_root=None if root else "missing")
        found.append(Hypothesis(parts, _scaled(x_hat, gamma, beta, affine, layout, shape)))
    return found


def train_with_running_hypotheses(x, gamma, beta, momentum, eps, layouts=("per feature",), eps_given=True):
    """
    Train-mode outputs of code that normalizes a train batch with the running
    statistics, updated from zero by this batch (momentum * 0 + (1 - momentum)
    * the batch's), as test mode would: every test-mode variant of them.
    """
    _view, mean, var = _statistics(x, layouts[0], None)
    running_mean, running_var = (1 - momentum) * mean.reshape(-1), (1 - momentum) * var.reshape(-1)
    return [Hypothesis(tuple(sorted((("train statistics", "running"),) + h.parts)), h.value)
            for h in test_mode_hypotheses(x, gamma, beta, running_mean, running_var, eps, layouts, eps_given)
            if not any(part == "test statistics" for part, _choice in h.parts) and ("output", "x") not in h.parts]


def running_hypotheses(xs, running_mean, running_var, momentum, eps, which, layouts=("per feature",)):
    """
    The running mean (which="mean") or variance after a train step on each x in
    xs, starting from (running_mean, running_var): momentum's direction, the
    variance used, whether the result was written back at all, and (after the
    right one) the layouts whose statistics have the same shape.
    """
    start = running_mean if which == "mean" else running_var
    # Unchanged: not updated, or not written back; the value cannot tell which.
    found = [Hypothesis(_parts(running_statistics="unchanged"), np.asarray(start, dtype=np.float64))]
    weights = {None: momentum, "reversed": 1 - momentum, "ignored": 0.0}  # "ignored": overwritten by the batch's
    for layout, use, variance in itertools.product(layouts, weights, ("biased", "unbiased", "var + eps", "std",
                                                                      "sqrt(var + eps)")):
        if which == "mean" and variance != "biased":
            continue
        value = np.asarray(start, dtype=np.float64)
        for x in xs:
            v, mean, var = _statistics(x, layout, None, unbiased=variance == "unbiased")
            stat = mean if which == "mean" else {"std": np.sqrt(var), "sqrt(var + eps)": np.sqrt(var + eps),
                                                 "var + eps": var + eps}.get(variance, var)
            value = weights[use] * value + (1 - weights[use]) * stat.reshape(-1)
        found.append(Hypothesis(_parts(statistics=None if layout == layouts[0] else layout, momentum=use,
                                       running_variance=None if variance == "biased" else variance), value))
    return found


# Closed forms garbled in ways that are tried with the right axes only.
GARBLED_TERMS = ("count", "variance term without x_hat", "variance term unscaled")

# The layout whose means a backward pass most often takes instead of the right one.
CONFUSED_LAYOUT = {"batchnorm": "per example", "layernorm": "per feature",
                   "spatial_batchnorm": "per position over N", "groupnorm": "instance"}


@_remembered
def backward_hypotheses(layer, x, gamma, dout, eps, G=None, eps_given=False):
    """
    dx under every combination of the backward parts, for a right forward
    pass; and where the forward pass was given an eps other than the default
    (eps_given), dx right but with the default eps in its place (a backward
    pass whose cache carries no eps, and that takes its own).
    """
    right, _layouts = LAYER_LAYOUTS[layer]
    shape = np.shape(x)
    found = [Hypothesis(_parts(dx="dout"), np.asarray(dout, dtype=np.float64))]
    # With one channel a group, groups are instances: the confusion left to name is layer norm's axes.
    other = "layer" if layer == "groupnorm" and G == shape[1] else CONFUSED_LAYOUT[layer]
    layouts = (right, other)
    # gamma taken out of the means is a mistake only where gamma varies along the normalized axes.
    gammas = ("inside", "missing") + (("outside",) if layer == "layernorm" or (layer == "groupnorm" and G != shape[1])
                                      else ())
    # The forward's statistics (the right ones); every view is a reshape, so .reshape(shape) undoes it.
    v, mean, var = _statistics(x, right, G)
    other_count = int(np.prod([LAYOUTS[other][0](np.asarray(x), G).shape[a] for a in LAYOUTS[other][1]]))
    terms_choices = ("all", "no mean term", "no variance term", "variance term sign", "sums", "count",
                     "variance term without x_hat", "variance term unscaled")
    for layout, place, everywhere, terms, use_gamma, centring in itertools.product(
            layouts, EPS_PLACES, (True, False), terms_choices, gammas, ("centred", "uncentred", "everywhere")):
        if (place == "inside" and not everywhere) or (terms in GARBLED_TERMS and layout != right):
            continue
        # eps misplaced everywhere (a step-by-step backward), or only in the outer 1 / std (x_hat from the cache).
        inv_std = _inv_std(var, eps, place)
        x_hat = ((v - mean) * (inv_std if everywhere else _inv_std(var, eps, "inside"))).reshape(shape)
        x_plain = (v * inv_std).reshape(shape)  # x / std: (x - mean) written x
        x_inner = x_hat if centring == "centred" else x_plain  # in the variance term's mean
        x_outer = x_plain if centring == "everywhere" else x_hat  # the variance term's factor
        inv = np.broadcast_to(inv_std, v.shape).reshape(shape)
        dx_hat = dout * gamma if use_gamma == "inside" else np.asarray(dout, dtype=np.float64)
        view, axes, _words = LAYOUTS[layout]
        dxh, xo, xin, inv = (view(a, G) for a in (dx_hat, x_outer, x_inner, inv))
        if terms == "sums":
            reduce = lambda a: a.sum(axis=axes, keepdims=True)  # noqa: E731
        elif terms == "count":  # summed over the right axes, divided by the other layout's count (N for D)
            reduce = lambda a: a.sum(axis=axes, keepdims=True) / other_count  # noqa: E731
        else:
            reduce = lambda a: a.mean(axis=axes, keepdims=True)  # noqa: E731
        mean_term = 0.0 if terms == "no mean term" else reduce(dxh)
        var_term = 0.0 if terms == "no variance term" else xo * reduce(dxh * xin)
        if terms == "variance term without x_hat":  # x_hat * mean(dx_hat)
            var_term = xo * reduce(dxh)
        elif terms == "variance term unscaled":  # x_hat * mean(dx_hat * (x - mean)): x - mean not divided by std
            var_term = xo * reduce(dxh * xin / inv)
        sign = -1.0 if terms == "variance term sign" else 1.0
        dx = (inv * (dxh - mean_term - sign * var_term)).reshape(shape)
        if use_gamma == "outside":
            dx = gamma * dx
        parts = _parts(eps=None if place == "inside" else place, dx_axis=None if layout == right else layout,
                       dx_terms=None if terms == "all" else terms, gamma=None if use_gamma == "inside" else use_gamma,
                       centring={"centred": None, "uncentred": "uncentred", "everywhere": "uncentred everywhere"}[
                           centring])
        found.append(Hypothesis(parts, dx))
    if eps_given and eps != DEFAULT_EPS:
        right_dx = next(h.value for h in backward_hypotheses(layer, x, gamma, dout, DEFAULT_EPS, G) if not h.parts)
        found.append(Hypothesis(_parts(dx_eps="default"), right_dx))
    return found


def right_x_hat(layer, x, eps, G=None):
    """The right normalized x of a layer (before gamma and beta)."""
    v, mean, var = _statistics(x, LAYER_LAYOUTS[layer][0], G)
    return ((v - mean) / np.sqrt(var + eps)).reshape(np.shape(x))


def parameter_hypotheses(layer, x, dout, eps, G, which):
    """dgamma (which="dgamma") or dbeta, right and as typically mixed up, for a right forward pass."""
    x_hat = right_x_hat(layer, x, eps, G)
    axes = 0 if np.ndim(x) == 2 else (0, 2, 3)  # group norm's gamma has shape (1, C, 1, 1), the others (C,)
    dgamma = np.sum(dout * x_hat, axis=axes, keepdims=layer == "groupnorm")
    dbeta = np.sum(dout, axis=axes, keepdims=layer == "groupnorm")
    if which == "dgamma":
        return [Hypothesis((), dgamma), Hypothesis(_parts(dgamma="swapped"), dbeta)]
    return [Hypothesis((), dbeta), Hypothesis(_parts(dbeta="swapped"), dgamma)]


def gradient_hypotheses(layer, which, x, gamma, dout, eps, G=None, eps_given=False):
    """The hypotheses of one gradient (which: "dx", "dgamma" or "dbeta") of a layer, for a right forward pass."""
    if which == "dx":
        return backward_hypotheses(layer, x, gamma, dout, eps, G, eps_given)
    return parameter_hypotheses(layer, x, dout, eps, G, which)


# ---- matching and the words ----------------------------------------------------------------


def matches(value, hypothesis_value, rtol, atol):
    h = np.asarray(hypothesis_value)
    if np.shape(value) != h.shape:
        return False
    with np.errstate(all="ignore"):
        return bool(np.allclose(np.asarray(value, dtype=np.float64), h, rtol=rtol, atol=atol, equal_nan=True))


def confirmed(value, hypotheses, rtol, atol):
    """
    The parts every hypothesis matching `value` shares (a tuple), or None when
    none matches, or when the matching ones share nothing (more than one
    explanation fits, so none is stated). The right computation never counts.
    """
    wrong = [h for h in hypotheses if h.parts and np.shape(h.value) == np.shape(value)]
    if not wrong:
        return None
    with np.errstate(all="ignore"):  # all hypotheses at once: matches() for each, in one comparison
        close = np.isclose(np.asarray(value, dtype=np.float64), np.stack([h.value for h in wrong]),
                           rtol=rtol, atol=atol, equal_nan=True)
    found = [set(h.parts) for h, same in zip(wrong, close.reshape(len(wrong), -1).all(axis=1)) if same]
    if not found:
        return None
    shared = set.intersection(*found)
    return tuple(sorted(shared)) or None


PHRASES = {
    "shape": N_("the array has the wrong shape: {layout}"),
    "output x": N_("{function} returns x unchanged: not implemented yet?"),
    "dx dout": N_("dx is dout unchanged: not implemented yet?"),
    "statistics": N_("the mean and variance are taken {layout}; {function} takes them {right}"),
    "variance unbiased": N_("the variance is the unbiased one (dividing by N - 1); normalization divides by N"),
    "eps outside": N_("eps is added outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps"),
    "eps missing": N_("eps is missing (or far too small to matter): divide by sqrt(var + eps), not sqrt(var)"),
    "eps minus": N_("eps is subtracted: it is sqrt(var + eps), not sqrt(var - eps)"),
    "eps value default": N_("eps is always the default 1e-5; use the value the param dict gives"),
    "dx eps default": N_("dx uses an eps of its own (the default 1e-5), not the one the forward pass was given in its "
                         "param dict: keep the forward pass's eps in the cache and use that"),
    "affine gamma only": N_("beta is not added: out = gamma * x_hat + beta"),
    "affine beta only": N_("gamma is not applied: out = gamma * x_hat + beta"),
    "affine neither": N_("neither gamma nor beta is applied: out = gamma * x_hat + beta"),
    "test statistics test batch": N_("test mode normalizes with the statistics of the test batch; it must use the "
                                     "running mean and variance"),
    "test mode updates": N_("test mode changes the running statistics; only train mode updates them"),
    "test statistics updated": N_("test mode first updates the running statistics with the test batch, then "
                                  "normalizes with them; only train mode updates them, test mode uses them as they "
                                  "are"),
    "train statistics running": N_("train mode normalizes with the running statistics; it must use the batch's own "
                                   "mean and variance (the running ones are for test mode)"),
    "momentum reversed": N_("the momentum is reversed: running = momentum * running + (1 - momentum) * batch "
                            "statistic"),
    "running variance unbiased": N_("the running variance is updated with the unbiased variance; use the biased "
                                    "one, as in the normalization"),
    "running variance var + eps": N_("the running variance is updated with var + eps; eps belongs in the "
                                     "normalization only"),
    "running variance std": N_("the running variance is updated with the standard deviation (np.std, sqrt(var)); it "
                               "averages the variance var"),
    "running variance sqrt(var + eps)": N_("the running variance is updated with sqrt(var + eps), the standard "
                                           "deviation the normalization divides by; it averages the variance var"),
    "square root missing": N_("test mode divides by the running variance itself: divide by sqrt(running_var + eps)"),
    "write back missing": N_("the running statistics are not written back: bn_param['running_mean'] and "
                             "bn_param['running_var'] must hold the updated values after a train step"),
    "running statistics unchanged": N_("the running statistics are unchanged after a train step: they are not "
                                       "updated, or not written back into bn_param"),
    "mean": N_("the mean is taken {layout}, the variance {right}: both are taken {right}"),
    "dx axis": N_("the means in dx are taken {layout}; they must be taken {right}, like the statistics"),
    "dx terms no mean term": N_("dx lacks the term that comes through the mean (- mean(dx_hat))"),
    "dx terms no variance term": N_("dx lacks the term that comes through the variance "
                                    "(- x_hat * mean(dx_hat * x_hat))"),
    "dx terms variance term sign": N_("the variance term of dx has the wrong sign: "
                                      "dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))"),
    "dx terms sums": N_("dx uses sums where means belong (a factor of N): "
                        "dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))"),
    "gamma missing": N_("dx does not multiply dout by gamma: dx_hat = dout * gamma"),
    "dx terms variance term without x_hat": N_("the variance term of dx is x_hat * mean(dx_hat), without x_hat "
                                               "inside the mean: dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * "
                                               "mean(dx_hat * x_hat))"),
    "dx terms variance term unscaled": N_("the variance term of dx takes mean(dx_hat * (x - mean)) where "
                                          "mean(dx_hat * x_hat) belongs (x - mean not divided by the standard "
                                          "deviation): dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * "
                                          "mean(dx_hat * x_hat))"),
    "gamma outside": N_("dx multiplies by gamma outside the means, but gamma varies along the axes they are taken "
                        "over: dx_hat = dout * gamma goes inside them, "
                        "dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))"),
    "dx terms count": N_("the means in dx divide their sums by the wrong count (the size of another axis, such as N "
                         "where D belongs): divide by the number of entries each statistic is taken over"),
    "centring uncentred": N_("the variance term of dx uses x where it needs x - mean"),
    "centring uncentred everywhere": N_("dx uses x where it needs x - mean, in the variance term and in its factor: "
                                        "x_hat = (x - mean) / std"),
    "affine minus beta": N_("beta is subtracted: out = gamma * x_hat + beta"),
    "affine tiled": N_("gamma and beta are expanded with the channels in the wrong order: entry k of an example's "
                       "C * H * W values gets gamma[k % C] (as np.tile(gamma, H * W) would give); each channel's H * W "
                       "entries take that channel's gamma"),
    "affine per row": N_("gamma and beta are applied per example (along the rows), which only a square batch (N = D) "
                         "allows: they belong to the features, out = gamma * x_hat + beta with gamma of shape (D,)"),
    "output not transposed back": N_("the normalized array is reshaped back to x's shape without undoing its "
                                     "transpose, which scrambles the entries: transpose it back, then reshape"),
    "momentum ignored": N_("the running statistics are overwritten by the batch's (momentum is ignored): "
                           "running = momentum * running + (1 - momentum) * batch statistic"),
    "precision float32": N_("right for float64 input, wrong for float32 input with a large mean: the statistics lose "
                            "their precision in float32 (E[x^2] - E[x]^2 cancels); compute them in float64 "
                            "(x.astype(np.float64)) and cast the output back to x's dtype"),
    "dgamma swapped": N_("dgamma is the sum of dout, dbeta's value: dgamma = sum(dout * x_hat)"),
    "dbeta swapped": N_("dbeta is the sum of dout * x_hat, dgamma's value: dbeta = sum(dout)"),
}


def named(value, hypotheses, rtol=1e-6, atol=1e-8):
    """The parts every hypothesis that fits `value` shares (as `confirmed`), or () where none is sure."""
    with np.errstate(all="ignore"):
        return confirmed(value, hypotheses, rtol, atol) or ()


def right_value(hypotheses):
    """The value of the right computation among `hypotheses`."""
    return next(h.value for h in hypotheses if not h.parts)


def key(parts):
    """The short text of a diagnosis, as the class report counts it: 'eps: outside; variance: unbiased'."""
    return "; ".join(f"{part}: {choice}" for part, choice in parts)


def words(text, function):
    """The sentence a student reads for the key `text` (key's output) of a mistake of `function`."""
    parts = [tuple(clause.split(": ", 1)) for clause in text.split("; ") if ": " in clause]
    if not parts:  # a key of one word ("not implemented") says it already
        return text
    layer = next((layer for prefix, layer in (("spatial_groupnorm", "groupnorm"), ("spatial_batchnorm",
                  "spatial_batchnorm"), ("batchnorm", "batchnorm"), ("layernorm", "layernorm"))
                  if function.startswith(prefix)), None)
    return sentence(parts, function, layer)


PLAIN = "{part}: {choice}"  # a part without words of its own


def clause(part, choice, function="", layer=None):
    """
    One part of a diagnosis as (template, fields): the template is an English
    message of the catalogs, and so are the fields `layout` and `right` (the
    layouts' words); `function` is a name. normlab.check rebuilds the clause
    from mistakes.npz in the student's language the way `sentence` does here.
    """
    template = PHRASES.get(f"{part} {choice}", PHRASES.get(part))
    if template is None:  # a part without words of its own: said as it is (no catalog message)
        return PLAIN, {"part": part, "choice": choice}
    layout = LAYOUTS[choice][2] if choice in LAYOUTS else choice
    right = LAYOUTS[LAYER_LAYOUTS[layer][0]][2] if layer else ""
    return template, {"layout": layout, "function": function, "right": right}


def sentence(parts, function="", layer=None):
    """The diagnosis in words, one clause per part, in the current language (normgrade.language.speaking)."""
    clauses = []
    for part, choice in parts:
        template, fields = clause(part, choice, function, layer)
        words = {name: _(value) if name in ("layout", "right") and value else value for name, value in fields.items()}
        clauses.append((template if template == PLAIN else _(template)).format(**words))
    return _("; ").join(clauses)


AXIS_NAMES = {2: (N_("example (row)"), N_("feature (column)")),
              4: (N_("example"), N_("channel"), N_("row"), N_("column"))}


def describe_difference(value, expected, rtol, atol):
    """What differs between two arrays of one shape, in a few words, without a diagnosis (in the current language)."""
    value, expected = np.asarray(value, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    with np.errstate(all="ignore"):
        bad = ~np.isclose(value, expected, rtol=rtol, atol=atol)
        count = int(bad.sum())
        words = [ngettext("{count} of {size} entries differ", "{count} of {size} entries differ", count).format(
            count=count, size=bad.size)]
        names = AXIS_NAMES.get(value.ndim)
        if names and bad.any():
            for axis, name in enumerate(names):
                others = tuple(a for a in range(value.ndim) if a != axis)
                where = np.flatnonzero(bad.any(axis=others))
                if len(where) < value.shape[axis] and len(where) <= 3:
                    words.append(_("only in {axis} {indices} of {count}").format(
                        axis=_(name), indices=", ".join(map(str, where)), count=value.shape[axis]))
        if np.all(np.isfinite(value)) and not value.any():
            words.append(_("yours is all zeros"))
        elif np.all(np.isfinite(value)) and np.any(expected):
            factor = float(np.sum(value * expected) / np.sum(expected * expected))
            offset = float(np.mean(value - expected))
            if abs(factor - 1) > 1e-6 and np.allclose(value, factor * expected, rtol=rtol, atol=atol):
                words.append(_("yours is the expected value times {factor:.4g}").format(factor=factor))
            elif np.allclose(value, expected + offset, rtol=rtol, atol=atol):
                words.append(_("yours is the expected value plus {offset:.4g}").format(offset=offset))
        finite = np.isfinite(value)
        if not finite.all():
            index = tuple(int(i) for i in np.argwhere(~finite)[0])
            count = int((~finite).sum())
            words.append(ngettext("{count} entries are NaN or inf, e.g. at {index}",
                                  "{count} entries are NaN or inf, e.g. at {index}", count).format(
                count=count, index=list(index)))
        elif bad.any():
            index = np.unravel_index(np.argmax(np.abs(value - expected)), value.shape)
            words.append(_("the largest difference is at {index}: expected {expected:.6g}, got {got:.6g}").format(
                index=[int(i) for i in index], expected=expected[index], got=value[index]))
    return _("; ").join(words)


# ---- which probe explains which graded quantity ----------------------------------------------
# The inputs and parameters are those of the recipe that produced the quantity (normgrade.run.worker,
# with the call's arguments); tests/test_diagnosis.py checks that each probe's right hypothesis
# reproduces the reference's expected value, so the two cannot drift apart.

FORWARD_OF = {  # a backward quantity -> the forward output its cache came from
    "batchnorm_backward_dx": "bn_train_out", "batchnorm_backward_alt_dx": "bn_train_out",
    "batchnorm_backward_dgamma": "bn_train_out", "batchnorm_backward_alt_dgamma": "bn_train_out",
    "batchnorm_backward_dbeta": "bn_train_out", "batchnorm_backward_alt_dbeta": "bn_train_out",
    "ln_dx": "ln_out", "ln_dgamma": "ln_out", "ln_dbeta": "ln_out",
    "sbn_dx": "sbn_train_out", "sbn_dgamma": "sbn_train_out", "sbn_dbeta": "sbn_train_out",
    "gn_G2_dx": "gn_G2_out", "gn_G2_dgamma": "gn_G2_out", "gn_G2_dbeta": "gn_G2_out",
    "gn_G1_dx": "gn_G1_out", "gn_G6_dx": "gn_G6_out",
}
RUNNING = ("bn_train_running_", "bn_steps_running_", "sbn_running_")  # running statistics after train steps
# The train-mode output whose absence makes a train step's running statistics mean nothing (a stub's).
MAIN_OUTPUT = {"batchnorm_forward": "bn_train_out", "spatial_batchnorm_forward": "sbn_train_out"}
FLOAT64_OF = {"bn_f32_out": "bn_train_out", "ln_f32_out": "ln_out", "sbn_f32_out": "sbn_train_out",
              "gn_f32_out": "gn_G2_out"}  # the same computation on float64 input


def _channels(a):
    return np.asarray(a, dtype=np.float64).reshape(1, -1, 1, 1)


def probe(quantity, i, call):
    """
    (hypotheses, layer) for a graded quantity, from the hidden inputs `i` and
    the call that produced it; None where no probe applies.
    """
    with np.errstate(all="ignore"):  # a wrong hypothesis may well divide by zero
        return _probe(quantity, i, call)


LAYER_OF_BACKWARD = {"batchnorm_backward": "batchnorm", "batchnorm_backward_alt": "batchnorm",
                     "layernorm_backward": "layernorm", "spatial_batchnorm_backward": "spatial_batchnorm",
                     "spatial_groupnorm_backward": "groupnorm"}


@dataclass(frozen=True)
class BackwardInputs:
    """What a backward quantity was computed from (the recipe's inputs, as the probes see them)."""

    layer: str
    which: str  # "dx", "dgamma", "dbeta", or "out" (an edge case's forward output)
    x: np.ndarray
    gamma: np.ndarray  # broadcastable to x
    beta: np.ndarray
    dout: np.ndarray
    eps: float
    G: int = None
    eps_given: bool = False  # the forward pass was given eps in its param dict


def backward_inputs(quantity, i, call):
    """The BackwardInputs of a backward pass's quantity (or an edge case's forward output); None for any other."""
    if call.get("recipe") == "backward_at":  # an edge case (normgrade.score.checks.EDGES): the call names its inputs
        layer = LAYER_OF_BACKWARD[call["backward"]]
        dtype = np.float32 if call.get("float32") else np.float64
        x, gamma, beta, dout = (np.asarray(i[call[k]], dtype=dtype) for k in ("x", "gamma", "beta", "dout"))
        G = call["extra"][0] if call["extra"] else None
        eps, eps_given = call["param"].get("eps", DEFAULT_EPS), "eps" in call["param"]
    else:
        main = {  # quantity prefix -> (layer, inputs' prefix, G)
            "batchnorm_backward": ("batchnorm", "bn", None), "batchnorm_backward_alt": ("batchnorm", "bn", None),
            "ln": ("layernorm", "ln", None), "sbn": ("spatial_batchnorm", "sbn", None),
            "gn_G2": ("groupnorm", "gn", 2), "gn_G1": ("groupnorm", "gn", 1), "gn_G6": ("groupnorm", "gn", 6),
        }
        prefix, _sep, which = quantity.rpartition("_")
        if prefix not in main or which not in ("dx", "dgamma", "dbeta"):
            return None
        layer, name, G = main[prefix]
        x, gamma, beta, dout = (i[f"{name}_{k}"] for k in ("x", "gamma", "beta", "dout"))
        eps, eps_given = call.get("eps", DEFAULT_EPS), "eps" in call
    if layer == "spatial_batchnorm":
        gamma, beta = _channels(gamma), _channels(beta)
    return BackwardInputs(layer, quantity.rsplit("_", 1)[1], x, gamma, beta, dout, eps, G, eps_given)


def repeated_dx(b, layout):
    """
    dx of a backward pass that is the exact gradient of a forward pass with
    its statistics taken `layout` (a LAYOUTS name) instead of the layer's own:
    a backward pass that repeats its forward pass's mistake of axes.
    """
    view, axes, _words = LAYOUTS[layout]
    v, mean, var = _statistics(b.x, layout, b.G)
    inv_std = 1.0 / np.sqrt(var + b.eps)
    x_hat = (v - mean) * inv_std
    shape = np.shape(b.x)
    if layout == "no transpose":  # gamma scales the columns of the wrongly reshaped rows, as in that forward pass
        dx_hat = view(np.asarray(b.dout, dtype=np.float64), b.G) * np.reshape(b.gamma, -1)
    elif layout == "channel rows":  # ... or the rows
        dx_hat = view(np.asarray(b.dout, dtype=np.float64), b.G) * np.reshape(b.gamma, (-1, 1))
    else:
        dx_hat = view(np.asarray(b.dout * b.gamma, dtype=np.float64), b.G)
    mean_of = lambda a: a.mean(axis=axes, keepdims=True)  # noqa: E731
    return (inv_std * (dx_hat - mean_of(dx_hat) - x_hat * mean_of(dx_hat * x_hat))).reshape(shape)


def _probe(quantity, i, call):
    b = backward_inputs(quantity, i, call)
    if b and b.which == "out":
        return forward_hypotheses(b.layer, b.x, b.gamma, b.beta, b.eps, G=b.G, eps_given=b.eps_given), b.layer
    if b:
        return gradient_hypotheses(b.layer, b.which, b.x, b.gamma, b.dout, b.eps, b.G, b.eps_given), b.layer
    eps = call.get("eps", DEFAULT_EPS)
    bn = ("batchnorm", i.get("bn_gamma"), i.get("bn_beta"))
    if quantity in ("bn_train_out", "bn_n1_out", "bn_f32_out"):
        x = {"bn_train_out": i["bn_x"], "bn_n1_out": i["bn_n1_x"],
             "bn_f32_out": i["bn_big_x"].astype(np.float32)}[quantity]
        found = forward_hypotheses(bn[0], x, bn[1], bn[2], eps, eps_given="eps" in call)
        if quantity == "bn_train_out":  # bn_param starts without running statistics: they start at zero
            found += train_with_running_hypotheses(x, bn[1], bn[2], call.get("momentum", DEFAULT_MOMENTUM), eps,
                                                   eps_given="eps" in call)
        return found, "batchnorm"
    if quantity == "bn_square_out":
        return forward_hypotheses("batchnorm", i["bn_square_x"], bn[1], bn[2], eps, eps_given="eps" in call), "batchnorm"
    if quantity == "ln_square_out":
        return forward_hypotheses("layernorm", i["ln_square_x"], i["ln_gamma"], i["ln_beta"], eps,
                                  eps_given="eps" in call), "layernorm"
    if quantity == "sbn_square_out":
        return forward_hypotheses("spatial_batchnorm", i["sbn_square_x"], _channels(i["sbn_gamma"]),
                                  _channels(i["sbn_beta"]), call["square_eps"]), "spatial_batchnorm"
    if quantity == "gn_square_out":
        return forward_hypotheses("groupnorm", i["gn_square_x"], i["gn_square_gamma"], i["gn_square_beta"], eps, G=2,
                                  eps_given="eps" in call), "groupnorm"
    if quantity == "bn_d1_out":
        return forward_hypotheses("batchnorm", i["bn_d1_x"], i["bn_d1_gamma"], i["bn_d1_beta"], eps,
                                  eps_given="eps" in call), "batchnorm"
    if quantity.startswith(RUNNING):
        which = quantity.rsplit("_", 1)[1]
        if quantity.startswith("bn_steps"):
            xs, start = i["bn_steps_x"], (i["bn_steps_rm"], i["bn_steps_rv"])
        else:
            xs = [i["bn_x"]] if quantity.startswith("bn_train") else [i["sbn_x"]]
            start = (np.zeros(xs[0].shape[1]),) * 2
        layouts = SBN_RUNNING_LAYOUTS if quantity.startswith("sbn") else ("per feature",)
        momentum = call.get("momentum", DEFAULT_MOMENTUM)
        return running_hypotheses(xs, *start, momentum, eps, which, layouts), None
    if quantity.startswith("bn_test_running_"):
        which = quantity.rsplit("_", 1)[1]
        found = running_hypotheses([i["bn_test_x"]], i["bn_test_rm"], i["bn_test_rv"], DEFAULT_MOMENTUM, eps,
                                         which)
        unchanged = i["bn_test_rm"] if which == "mean" else i["bn_test_rv"]
        return [Hypothesis((), np.asarray(unchanged, dtype=np.float64))] + [
            Hypothesis((("test mode", "updates"),) + h.parts, h.value) for h in found
            if ("running statistics", "unchanged") not in h.parts], None
    if quantity == "bn_test_out":
        return test_mode_hypotheses(i["bn_test_x"], bn[1], bn[2], i["bn_test_rm"], i["bn_test_rv"], eps,
                                    eps_given="eps" in call), "batchnorm"
    if quantity == "sbn_test_out":
        return test_mode_hypotheses(i["sbn_test_x"], _channels(i["sbn_gamma"]), _channels(i["sbn_beta"]),
                                    i["sbn_test_rm"], i["sbn_test_rv"], eps, SBN_RUNNING_LAYOUTS,
                                    eps_given="eps" in call), "spatial_batchnorm"
    if quantity in ("ln_out", "ln_f32_out", "ln_single_out"):
        x = {"ln_out": i["ln_x"], "ln_f32_out": i["ln_big_x"].astype(np.float32), "ln_single_out": i["ln_single_x"]}
        return forward_hypotheses("layernorm", x[quantity], i["ln_gamma"], i["ln_beta"], eps,
                                  eps_given="eps" in call), "layernorm"
    if quantity in ("sbn_train_out", "sbn_f32_out"):
        x = i["sbn_x"] if quantity == "sbn_train_out" else i["sbn_big_x"].astype(np.float32)
        gamma, beta = _channels(i["sbn_gamma"]), _channels(i["sbn_beta"])
        found = forward_hypotheses("spatial_batchnorm", x, gamma, beta, eps, eps_given="eps" in call)
        if quantity == "sbn_train_out":
            found += train_with_running_hypotheses(x, gamma, beta, call.get("momentum", DEFAULT_MOMENTUM), eps,
                                                   SBN_RUNNING_LAYOUTS, eps_given="eps" in call)
        return found, "spatial_batchnorm"
    if quantity == "gn_f32_out":
        return forward_hypotheses("groupnorm", i["gn_big_x"].astype(np.float32), i["gn_gamma"], i["gn_beta"], eps,
                                  G=call["groups"]), "groupnorm"
    if quantity.startswith("gn_G") and quantity.endswith("_out"):
        G = int(quantity[len("gn_G"):-len("_out")])
        return forward_hypotheses("groupnorm", i["gn_x"], i["gn_gamma"], i["gn_beta"], eps, G=G,
                                  eps_given="eps" in call), "groupnorm"
    return None
