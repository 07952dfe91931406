"""Normalization layers (batch, layer, spatial batch, spatial group norm).

All statistics are accumulated in float64 regardless of the input dtype, so
that inputs with a large common offset (e.g. float32 data around 1e4) are
still normalized accurately; results are cast back to the input dtype.
"""
from collections import namedtuple

import numpy as np

# x_hat: normalized input (float64), inv_std: 1/sqrt(var+eps) with the
# reduced axes kept, gamma: the scale broadcast to x's layout, axes: the
# axes the statistics were taken over, param_axes: the axes to sum for
# dgamma/dbeta, dtype: the input dtype, extra: layer-specific data.
NormCache = namedtuple("NormCache",
                       ["x_hat", "inv_std", "gamma", "axes", "param_axes",
                        "dtype", "extra"])


def _check_ndim(name, arr, ndim):
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim:
        raise ValueError("%s must be a %d-d numpy array, got %r"
                         % (name, ndim, getattr(arr, "shape", type(arr))))


def _check_param(name, arr, shape):
    if np.shape(arr) != tuple(shape):
        raise ValueError("%s must have shape %s, got %s"
                         % (name, tuple(shape), np.shape(arr)))


def _check_eps(eps):
    if not eps > 0:
        raise ValueError("eps must be positive, got %r" % (eps,))


def _standardize64(x64, axes, eps):
    """Return (x_hat, inv_std, mean, var) of float64 data over `axes`."""
    mean = np.mean(x64, axis=axes, keepdims=True)
    centered = x64 - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    return centered * inv_std, inv_std, mean, var


def _standardize64_backward(dx_hat, x_hat, inv_std, axes):
    """Gradient of x_hat = (x - mean(x)) / sqrt(var(x) + eps) w.r.t. x."""
    term_mean = np.mean(dx_hat, axis=axes, keepdims=True)
    term_proj = np.mean(dx_hat * x_hat, axis=axes, keepdims=True)
    return inv_std * (dx_hat - term_mean - x_hat * term_proj)


def _running_stats(bn_param, size, dtype):
    rm = bn_param.get("running_mean", np.zeros(size, dtype=dtype))
    rv = bn_param.get("running_var", np.zeros(size, dtype=dtype))
    _check_param("running_mean", rm, (size,))
    _check_param("running_var", rv, (size,))
    return np.asarray(rm), np.asarray(rv)


def _bn_forward_core(x, gamma, beta, bn_param, axes, bshape):
    """Batch-norm style forward shared by the 2-d and the spatial layer."""
    if "mode" not in bn_param:
        raise ValueError("bn_param needs a 'mode' key")
    mode = bn_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError("mode must be 'train' or 'test', got %r" % (mode,))
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    _check_eps(eps)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError("momentum must lie in [0, 1], got %r" % (momentum,))

    size = x.shape[1]
    running_mean, running_var = _running_stats(bn_param, size, x.dtype)
    x64 = x.astype(np.float64)
    g64 = np.asarray(gamma).astype(np.float64).reshape(bshape)
    b64 = np.asarray(beta).astype(np.float64).reshape(bshape)

    if mode == "train":
        x_hat, inv_std, mean, var = _standardize64(x64, axes, eps)
        new_mean = momentum * running_mean.astype(np.float64) + (1.0 - momentum) * mean.reshape(size)
        new_var = momentum * running_var.astype(np.float64) + (1.0 - momentum) * var.reshape(size)
        bn_param["running_mean"] = new_mean.astype(running_mean.dtype)
        bn_param["running_var"] = new_var.astype(running_var.dtype)
    else:
        mean = running_mean.astype(np.float64).reshape(bshape)
        inv_std = 1.0 / np.sqrt(running_var.astype(np.float64).reshape(bshape) + eps)
        x_hat = (x64 - mean) * inv_std

    out = g64 * x_hat + b64
    cache = NormCache(x_hat, inv_std, g64, axes, axes, x.dtype, mode)
    return out.astype(x.dtype), cache


def _backward_core(dout, cache, out_shape_param=None):
    if cache.extra == "test":
        raise ValueError("backward needs a cache from a train-mode forward pass")
    if np.shape(dout) != cache.x_hat.shape:
        raise ValueError("dout has shape %s, expected %s"
                         % (np.shape(dout), cache.x_hat.shape))
    d64 = np.asarray(dout).astype(np.float64)
    dbeta = np.sum(d64, axis=cache.param_axes)
    dgamma = np.sum(d64 * cache.x_hat, axis=cache.param_axes)
    dx = _standardize64_backward(d64 * cache.gamma, cache.x_hat,
                                 cache.inv_std, cache.axes)
    if out_shape_param is not None:
        dgamma = dgamma.reshape(out_shape_param)
        dbeta = dbeta.reshape(out_shape_param)
    return dx.astype(cache.dtype), dgamma.astype(cache.dtype), dbeta.astype(cache.dtype)


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm for (N, D) data.

    Train mode normalizes each column with the minibatch mean and biased
    variance and blends those into bn_param's running statistics with
    weight `momentum` on the old value; test mode uses the running
    statistics unchanged. Returns (out in x's dtype, NormCache).
    """
    _check_ndim("x", x, 2)
    N, D = x.shape
    if N < 1:
        raise ValueError("batch must hold at least one example")
    _check_param("gamma", gamma, (D,))
    _check_param("beta", beta, (D,))
    return _bn_forward_core(x, gamma, beta, bn_param, (0,), (1, D))


def batchnorm_backward(dout, cache):
    """Backward pass of batchnorm_forward, node by node through the graph.

    Nodes: mu = mean(x); c = x - mu; v = mean(c**2); s = sqrt(v + eps);
    r = 1 / s; x_hat = c * r; out = gamma * x_hat + beta.
    Returns (dx, dgamma, dbeta).
    """
    if cache.extra == "test":
        raise ValueError("backward needs a cache from a train-mode forward pass")
    if np.shape(dout) != cache.x_hat.shape:
        raise ValueError("dout has shape %s, expected %s"
                         % (np.shape(dout), cache.x_hat.shape))
    N = cache.x_hat.shape[0]
    d64 = np.asarray(dout).astype(np.float64)
    r = cache.inv_std                      # (1, D)
    c = cache.x_hat / r                    # centered input
    s = 1.0 / r

    dbeta = d64.sum(axis=0)
    dgamma = (d64 * cache.x_hat).sum(axis=0)
    dx_hat = d64 * cache.gamma
    dr = np.sum(dx_hat * c, axis=0, keepdims=True)
    dc = dx_hat * r
    ds = -dr / (s * s)
    dv = ds * 0.5 / s
    dc = dc + (2.0 / N) * c * dv
    dmu = -np.sum(dc, axis=0, keepdims=True)
    dx = dc + dmu / N
    t = cache.dtype
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)


def batchnorm_backward_alt(dout, cache):
    """Closed-form batch norm backward:
    dx = gamma * inv_std * (dout - mean(dout) - x_hat * mean(dout * x_hat)).
    """
    return _backward_core(dout, cache)


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer norm for (N, D) data: each row is normalized over its D
    features (biased variance), then scaled by gamma and shifted by beta.
    No running statistics. Returns (out in x's dtype, NormCache).
    """
    _check_ndim("x", x, 2)
    N, D = x.shape
    _check_param("gamma", gamma, (D,))
    _check_param("beta", beta, (D,))
    eps = ln_param.get("eps", 1e-5)
    _check_eps(eps)
    x_hat, inv_std, _, _ = _standardize64(x.astype(np.float64), (1,), eps)
    g64 = np.asarray(gamma).astype(np.float64).reshape(1, D)
    b64 = np.asarray(beta).astype(np.float64).reshape(1, D)
    out = g64 * x_hat + b64
    return out.astype(x.dtype), NormCache(x_hat, inv_std, g64, (1,), (0,), x.dtype, None)


def layernorm_backward(dout, cache):
    """Backward pass of layernorm_forward. Returns (dx, dgamma, dbeta)."""
    return _backward_core(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm for (N, C, H, W) data: one mean/variance per channel over
    the axes (N, H, W). gamma, beta and the running statistics have shape
    (C,). Returns (out in x's dtype, NormCache).
    """
    _check_ndim("x", x, 4)
    N, C, H, W = x.shape
    _check_param("gamma", gamma, (C,))
    _check_param("beta", beta, (C,))
    return _bn_forward_core(x, gamma, beta, bn_param, (0, 2, 3), (1, C, 1, 1))


def spatial_batchnorm_backward(dout, cache):
    """Backward pass of spatial_batchnorm_forward; dgamma, dbeta are (C,)."""
    return _backward_core(dout, cache)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group norm for (N, C, H, W) data: channels are split into G
    contiguous groups and each (sample, group) block is normalized over its
    channels and pixels. gamma and beta have shape (1, C, 1, 1).
    Returns (out in x's dtype, NormCache).
    """
    _check_ndim("x", x, 4)
    N, C, H, W = x.shape
    if not isinstance(G, (int, np.integer)) or G < 1 or C % G != 0:
        raise ValueError("G must be a positive integer dividing C=%d, got %r" % (C, G))
    _check_param("gamma", gamma, (1, C, 1, 1))
    _check_param("beta", beta, (1, C, 1, 1))
    eps = gn_param.get("eps", 1e-5)
    _check_eps(eps)

    xg = x.astype(np.float64).reshape(N, G, -1)
    xg_hat, inv_std, _, _ = _standardize64(xg, (2,), eps)
    x_hat = xg_hat.reshape(N, C, H, W)
    g64 = np.asarray(gamma).astype(np.float64)
    out = g64 * x_hat + np.asarray(beta).astype(np.float64)
    cache = NormCache(x_hat, inv_std, g64, (2,), (0, 2, 3), x.dtype, G)
    return out.astype(x.dtype), cache


def spatial_groupnorm_backward(dout, cache):
    """Backward pass of spatial_groupnorm_forward; dgamma, dbeta are
    (1, C, 1, 1)."""
    if np.shape(dout) != cache.x_hat.shape:
        raise ValueError("dout has shape %s, expected %s"
                         % (np.shape(dout), cache.x_hat.shape))
    N, C, H, W = cache.x_hat.shape
    G = cache.extra
    d64 = np.asarray(dout).astype(np.float64)
    dbeta = d64.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (d64 * cache.x_hat).sum(axis=(0, 2, 3), keepdims=True)
    dxg_hat = (d64 * cache.gamma).reshape(N, G, -1)
    dx = _standardize64_backward(dxg_hat, cache.x_hat.reshape(N, G, -1),
                                 cache.inv_std, (2,))
    t = cache.dtype
    return dx.reshape(N, C, H, W).astype(t), dgamma.astype(t), dbeta.astype(t)
