import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    xf = np.array(x, dtype=np.float64)
    if mode == "train":
        mu = xf.mean(axis=0)
        xc = xf - mu
        var = (xc ** 2).mean(axis=0)
        istd = 1.0 / np.sqrt(var + eps)
        xn = xc * istd
        bn_param["running_mean"] = (momentum * running_mean + (1.0 - momentum) * mu).astype(x.dtype)
        bn_param["running_var"] = (momentum * running_var + (1.0 - momentum) * var).astype(x.dtype)
    elif mode == "test":
        xc = xf - running_mean
        istd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
        xn = xc * istd
    else:
        raise ValueError("bad mode: " + str(mode))

    out = xn * gamma + beta
    cache = {"xn": xn, "istd": istd, "gamma": gamma, "dtype": x.dtype}
    return out.astype(x.dtype), cache


def batchnorm_backward(dout, cache):
    xn, istd, gamma = cache["xn"], cache["istd"], cache["gamma"]
    n = xn.shape[0]
    dout = np.array(dout, dtype=np.float64)

    dbeta = dout.sum(axis=0)
    dgamma = (dout * xn).sum(axis=0)

    dxn = dout * gamma                           # out = xn * gamma + beta
    dxc = dxn * istd                             # xn = xc * istd
    distd = (dxn * xn / istd).sum(axis=0)        #   (xc = xn / istd)
    dvar = distd * (-0.5) * istd ** 3            # istd = (var + eps) ** -0.5
    dxc = dxc + dvar * 2.0 * (xn / istd) / n     # var = mean(xc ** 2)
    dmu = -dxc.sum(axis=0)                       # xc = x - mu
    dx = dxc + dmu / n                           # mu = mean(x)

    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)


def batchnorm_backward_alt(dout, cache):
    xn, istd, gamma = cache["xn"], cache["istd"], cache["gamma"]
    dout = np.array(dout, dtype=np.float64)
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xn).sum(axis=0)
    dx = gamma * istd * (dout - dout.mean(axis=0) - xn * (dout * xn).mean(axis=0))
    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)


# Layer norm = batch norm on the transpose (features become the "batch"),
# with the real gamma/beta applied outside since they are per-feature.

def layernorm_forward(x, gamma, beta, ln_param):
    xt = np.array(x, dtype=np.float64).T
    n = xt.shape[1]
    tmp_param = {"mode": "train", "eps": ln_param.get("eps", 1e-5)}
    xn_t, bn_cache = batchnorm_forward(xt, np.ones(n), np.zeros(n), tmp_param)
    xn = xn_t.T
    out = xn * gamma + beta
    return out.astype(x.dtype), (bn_cache, xn, gamma, x.dtype)


def layernorm_backward(dout, cache):
    bn_cache, xn, gamma, t = cache
    dout = np.array(dout, dtype=np.float64)
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xn).sum(axis=0)
    dxt, _, _ = batchnorm_backward((dout * gamma).T, bn_cache)
    return dxt.T.astype(t), dgamma.astype(t), dbeta.astype(t)


# Spatial batch norm = batch norm on (N*H*W, C).

def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    x2 = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out2, cache = batchnorm_forward(x2, gamma, beta, bn_param)
    out = out2.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx2, dgamma, dbeta = batchnorm_backward(d2, cache)
    dx = dx2.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


# Group norm: each (sample, group) is one row of a (N*G, C//G*H*W) matrix,
# and each row is normalized on its own -- which is exactly layer norm.

def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    N, C, H, W = x.shape
    rows = np.array(x, dtype=np.float64).reshape(N * G, -1)
    k = rows.shape[1]
    rows_n, ln_cache = layernorm_forward(rows, np.ones(k), np.zeros(k),
                                         {"eps": gn_param.get("eps", 1e-5)})
    xn = rows_n.reshape(N, C, H, W)
    out = xn * gamma + beta
    return out.astype(x.dtype), (ln_cache, xn, gamma, G, x.dtype)


def spatial_groupnorm_backward(dout, cache):
    ln_cache, xn, gamma, G, t = cache
    N, C, H, W = dout.shape
    dout = np.array(dout, dtype=np.float64)
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xn).sum(axis=(0, 2, 3), keepdims=True)
    drows, _, _ = layernorm_backward((dout * gamma).reshape(N * G, -1), ln_cache)
    return drows.reshape(N, C, H, W).astype(t), dgamma.astype(t), dbeta.astype(t)
