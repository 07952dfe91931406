import numpy as np


# ---------------------------------------------------------------- helpers

def _to_f64(a):
    return np.asarray(a, dtype=np.float64)


def _normalize(x, axes, eps):
    """Standardize x (float64) over `axes`. Returns (x_hat, rstd), rstd kept with keepdims."""
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return centered * rstd, mean, var, rstd


def _normalize_backward(g_hat, x_hat, rstd, axes):
    """Given dL/dx_hat, return dL/dx for x_hat = _normalize(x, axes, eps)."""
    mean_g = np.mean(g_hat, axis=axes, keepdims=True)
    mean_gx = np.mean(g_hat * x_hat, axis=axes, keepdims=True)
    return rstd * (g_hat - mean_g - x_hat * mean_gx)


def _affine_grads(dout, x_hat, param_axes):
    """dgamma, dbeta of out = gamma * x_hat + beta with parameters broadcast over param_axes."""
    return np.sum(dout * x_hat, axis=param_axes), np.sum(dout, axis=param_axes)


def _nchw_to_rows(a):
    N, C, H, W = a.shape
    return a.transpose(0, 2, 3, 1).reshape(N * H * W, C)


def _rows_to_nchw(a, shape):
    N, C, H, W = shape
    return a.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def _ema(running, stat, momentum):
    return (momentum * _to_f64(running) + (1.0 - momentum) * stat).astype(running.dtype)


# ---------------------------------------------------------------- batch norm

def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    x64 = _to_f64(x)
    cache = None
    if mode == "train":
        x_hat, mean, var, rstd = _normalize(x64, 0, eps)
        running_mean = _ema(running_mean, mean.ravel(), momentum)
        running_var = _ema(running_var, var.ravel(), momentum)
        cache = (x_hat, rstd, gamma, x.dtype)
    elif mode == "test":
        x_hat = (x64 - _to_f64(running_mean)) / np.sqrt(_to_f64(running_var) + eps)
    else:
        raise ValueError("Invalid forward batchnorm mode %r" % mode)
    out = _to_f64(gamma) * x_hat + _to_f64(beta)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out.astype(x.dtype), cache


def batchnorm_backward(dout, cache):
    x_hat, rstd, gamma, xdt = cache
    d = _to_f64(dout)
    dgamma, dbeta = _affine_grads(d, x_hat, 0)
    g_hat = d * _to_f64(gamma)
    # staged: x_hat = c * r, c = x - mean, r = (v + eps)^-1/2, v = mean(c^2)
    N = d.shape[0]
    c = x_hat / rstd
    dr = np.sum(g_hat * c, axis=0, keepdims=True)
    dv = -0.5 * rstd ** 3 * dr
    dc = g_hat * rstd + dv * 2.0 * c / N
    dx = dc - np.mean(dc, axis=0, keepdims=True)
    return dx.astype(xdt), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


def batchnorm_backward_alt(dout, cache):
    x_hat, rstd, gamma, xdt = cache
    d = _to_f64(dout)
    dgamma, dbeta = _affine_grads(d, x_hat, 0)
    dx = _normalize_backward(d * _to_f64(gamma), x_hat, rstd, 0)
    return dx.astype(xdt), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


# ---------------------------------------------------------------- layer norm

def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    x_hat, _, _, rstd = _normalize(_to_f64(x), 1, eps)
    out = _to_f64(gamma) * x_hat + _to_f64(beta)
    return out.astype(x.dtype), (x_hat, rstd, gamma, x.dtype)


def layernorm_backward(dout, cache):
    x_hat, rstd, gamma, xdt = cache
    d = _to_f64(dout)
    dgamma, dbeta = _affine_grads(d, x_hat, 0)
    dx = _normalize_backward(d * _to_f64(gamma), x_hat, rstd, 1)
    return dx.astype(xdt), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


# ---------------------------------------------------------------- spatial batch norm

def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    out_rows, cache = batchnorm_forward(_nchw_to_rows(x), gamma, beta, bn_param)
    return _rows_to_nchw(out_rows, x.shape), (cache, x.shape)


def spatial_batchnorm_backward(dout, cache):
    bn_cache, shape = cache
    dx_rows, dgamma, dbeta = batchnorm_backward_alt(_nchw_to_rows(dout), bn_cache)
    return _rows_to_nchw(dx_rows, shape), dgamma, dbeta


# ---------------------------------------------------------------- spatial group norm

def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    # one row per (sample, group): shape (N*G, C//G*H*W)
    rows = _to_f64(x).reshape(N * G, -1)
    rows_hat, _, _, rstd = _normalize(rows, 1, eps)
    x_hat = rows_hat.reshape(N, C, H, W)
    out = _to_f64(gamma) * x_hat + _to_f64(beta)
    return out.astype(x.dtype), (x_hat, rstd, gamma, G, x.dtype)


def spatial_groupnorm_backward(dout, cache):
    x_hat, rstd, gamma, G, xdt = cache
    N, C, H, W = dout.shape
    d = _to_f64(dout)
    dgamma, dbeta = _affine_grads(d, x_hat, (0, 2, 3))
    g_hat_rows = (d * _to_f64(gamma)).reshape(N * G, -1)
    dx = _normalize_backward(g_hat_rows, x_hat.reshape(N * G, -1), rstd, 1)
    return (dx.reshape(N, C, H, W).astype(xdt),
            dgamma.reshape(1, C, 1, 1).astype(gamma.dtype),
            dbeta.reshape(1, C, 1, 1).astype(gamma.dtype))
