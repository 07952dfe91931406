# A red team's backward passes, appended to the reference (tests/test_hostile.py): no analytic backward
# pass anywhere, every one is finite differences of the forward pass. On the large inputs they know the
# layers' structure (batch norm's columns, layer norm's rows are independent: one forward pass per row or
# column) and, for spatial batch and group norm, try to learn the directional derivative's direction from
# forward calls seen just before (state kept between calls).
import numpy as _np

_REF = {"bn": batchnorm_forward, "ln": layernorm_forward, "sbn": spatial_batchnorm_forward,
        "gn": spatial_groupnorm_forward}
_SEEN = []
_DEPTH = []  # (x, gamma, beta) of the last forward calls: the scorer's large stack p+d, p-d comes just before p


def _wrap(kind):
    ref = _REF[kind]

    def forward(x, gamma, beta, *rest):
        extra, param = list(rest[:-1]), rest[-1]
        saved = dict(param)
        _DEPTH.append(1)
        try:
            out, _ = ref(x, gamma, beta, *rest)
        finally:
            _DEPTH.pop()
        if x.size > 20000 and not _DEPTH:
            _SEEN.append((x.copy(), _np.array(gamma, copy=True), _np.array(beta, copy=True)))
            del _SEEN[:-3]
        return out, (kind, x.copy(), _np.array(gamma, copy=True), _np.array(beta, copy=True), extra, saved)
    return forward


batchnorm_forward = _wrap("bn")
layernorm_forward = _wrap("ln")
spatial_batchnorm_forward = _wrap("sbn")
spatial_groupnorm_forward = _wrap("gn")
_H = 1e-5


def _f(cache, x, g, b):
    kind, _, _, _, extra, param = cache
    _DEPTH.append(1)
    try:
        return _REF[kind](x.copy(), g.copy(), b.copy(), *extra, dict(param))[0]
    finally:
        _DEPTH.pop()


def _fd_param(cache, dout, which):
    kind, x, g, b, extra, param = cache
    arrays = [x, g, b]
    grad = _np.zeros_like(arrays[which], dtype=float)
    for idx in _np.ndindex(arrays[which].shape):
        plus = [a.copy() for a in arrays]; minus = [a.copy() for a in arrays]
        plus[which][idx] += _H; minus[which][idx] -= _H
        grad[idx] = _np.sum((_f(cache, *plus) - _f(cache, *minus)) * dout) / (2 * _H)
    return grad


def _fd_dx_columns(cache, dout, axis):
    """Entries along `axis` that never share a normalization slice are moved together (one forward per index)."""
    kind, x, g, b, extra, param = cache
    dx = _np.zeros_like(x, dtype=float)
    other = 1 - axis
    for i in range(x.shape[axis]):
        plus, minus = x.copy(), x.copy()
        sl = [slice(None)] * 2; sl[axis] = i
        plus[tuple(sl)] += _H; minus[tuple(sl)] -= _H
        delta = (_f(cache, plus, g, b) - _f(cache, minus, g, b)) * dout
        dx[tuple(sl)] = delta.sum(axis=axis) / (2 * _H)
    return dx


def _backward(dout, cache):
    kind, x, g, b, extra, param = cache
    dgamma, dbeta = _fd_param(cache, dout, 1), _fd_param(cache, dout, 2)
    if x.size <= 20000:
        return _fd_param(cache, dout, 0), dgamma, dbeta
    if kind == "bn":  # one forward per row: rows of one column share a slice, columns never do
        return _fd_dx_columns(cache, dout, 0), dgamma, dbeta
    if kind == "ln":
        return _fd_dx_columns(cache, dout, 1), dgamma, dbeta
    # the large input: the scorer called the forward at p + d and p - d just before p
    (xp, gp, bp), (xm, gm, bm) = _SEEN[-3], _SEEN[-2]
    numeric = _np.sum((_f(cache, xp, gp, bp) - _f(cache, xm, gm, bm)) * dout)
    rest = _np.sum(dgamma * (gp - gm)) + _np.sum(dbeta * (bp - bm))
    step = xp - xm
    return step * (numeric - rest) / _np.sum(step * step), dgamma, dbeta


batchnorm_backward = batchnorm_backward_alt = layernorm_backward = _backward
spatial_batchnorm_backward = spatial_groupnorm_backward = _backward
