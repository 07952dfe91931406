import numpy as np


def _acc(x):
    # accumulate in at least float64
    return x.astype(np.promote_types(x.dtype, np.float64), copy=False)


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    xa = _acc(x)

    if mode == "train":
        mu = xa.mean(axis=0, keepdims=True)
        var = ((xa - mu) ** 2).mean(axis=0, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = (xa - mu) * inv_std
        out = gamma * x_hat + beta
        running_mean = (momentum * running_mean + (1 - momentum) * mu[0]).astype(running_mean.dtype)
        running_var = (momentum * running_var + (1 - momentum) * var[0]).astype(running_var.dtype)
        cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma,
                 "x_dtype": x.dtype, "axis": 0}
    elif mode == "test":
        out = gamma * (xa - running_mean) / np.sqrt(_acc(running_var) + eps) + beta
        cache = None
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out.astype(x.dtype), cache


def _alt_backward(dout, cache):
    # dx = inv_std/M * (M*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat)), over the normalized axis
    ax = cache["axis"]
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    g = _acc(dout)
    dgamma = (g * x_hat).sum(axis=0)
    dbeta = g.sum(axis=0)
    dxh = g * gamma
    dx = inv_std * (dxh - dxh.mean(axis=ax, keepdims=True)
                    - x_hat * (dxh * x_hat).mean(axis=ax, keepdims=True))
    return (dx.astype(cache["x_dtype"]), dgamma.astype(gamma.dtype),
            dbeta.astype(gamma.dtype))


def batchnorm_backward(dout, cache):
    return _alt_backward(dout, cache)


def batchnorm_backward_alt(dout, cache):
    return _alt_backward(dout, cache)


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    xa = _acc(x)
    mu = xa.mean(axis=1, keepdims=True)
    var = ((xa - mu) ** 2).mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (xa - mu) * inv_std
    out = gamma * x_hat + beta
    cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma,
             "x_dtype": x.dtype, "axis": 1}
    return out.astype(x.dtype), cache


def layernorm_backward(dout, cache):
    return _alt_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    x2 = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out2, cache = batchnorm_forward(x2, gamma, beta, bn_param)
    return out2.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx2, dgamma, dbeta = _alt_backward(d2, cache)
    return dx2.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    xg = _acc(x).reshape(N, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    var = ((xg - mu) ** 2).mean(axis=2, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = ((xg - mu) * inv_std).reshape(N, C, H, W)
    out = gamma * x_hat + beta
    cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma,
             "x_dtype": x.dtype, "G": G}
    return out.astype(x.dtype), cache


def spatial_groupnorm_backward(dout, cache):
    x_hat, inv_std, gamma, G = cache["x_hat"], cache["inv_std"], cache["gamma"], cache["G"]
    N, C, H, W = dout.shape
    g = _acc(dout)
    dgamma = (g * x_hat).sum(axis=(0, 2, 3), keepdims=True)
    dbeta = g.sum(axis=(0, 2, 3), keepdims=True)
    dxh = (g * gamma).reshape(N, G, -1)
    xh = x_hat.reshape(N, G, -1)
    dx = inv_std * (dxh - dxh.mean(axis=2, keepdims=True)
                    - xh * (dxh * xh).mean(axis=2, keepdims=True))
    return (dx.reshape(N, C, H, W).astype(cache["x_dtype"]),
            dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype))
