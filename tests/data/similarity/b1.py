import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)

    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    x64 = x.astype(np.float64)

    if mode == "train":
        mean = np.mean(x64, axis=0)
        var = np.mean((x64 - mean) ** 2, axis=0)
        std = np.sqrt(var + eps)
        x_hat = (x64 - mean) / std
        out = gamma * x_hat + beta

        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var
        bn_param["running_mean"] = running_mean.astype(x.dtype)
        bn_param["running_var"] = running_var.astype(x.dtype)

        cache = (x64, x_hat, mean, var, std, gamma, eps, x.dtype)
    elif mode == "test":
        x_hat = (x64 - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
        cache = None
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    return out.astype(x.dtype), cache


def batchnorm_backward(dout, cache):
    x, x_hat, mean, var, std, gamma, eps, dtype = cache
    N = x.shape[0]
    dout = dout.astype(np.float64)

    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)

    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mean), axis=0) * (-0.5) * (var + eps) ** (-1.5)
    dmean = np.sum(-dx_hat / std, axis=0) + dvar * np.mean(-2.0 * (x - mean), axis=0)
    dx = dx_hat / std + dvar * 2.0 * (x - mean) / N + dmean / N

    return dx.astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)


def batchnorm_backward_alt(dout, cache):
    x, x_hat, mean, var, std, gamma, eps, dtype = cache
    N = x.shape[0]
    dout = dout.astype(np.float64)

    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx = gamma / (N * std) * (N * dout - dbeta - x_hat * dgamma)

    return dx.astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    x64 = x.astype(np.float64)

    mean = np.mean(x64, axis=1, keepdims=True)
    var = np.mean((x64 - mean) ** 2, axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = (x64 - mean) / std
    out = gamma * x_hat + beta

    cache = (x64, x_hat, mean, var, std, gamma, eps, x.dtype)
    return out.astype(x.dtype), cache


def layernorm_backward(dout, cache):
    x, x_hat, mean, var, std, gamma, eps, dtype = cache
    D = x.shape[1]
    dout = dout.astype(np.float64)

    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)

    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mean), axis=1, keepdims=True) * (-0.5) * (var + eps) ** (-1.5)
    dmean = (np.sum(-dx_hat / std, axis=1, keepdims=True)
             + dvar * np.mean(-2.0 * (x - mean), axis=1, keepdims=True))
    dx = dx_hat / std + dvar * 2.0 * (x - mean) / D + dmean / D

    return dx.astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)

    N, C, H, W = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(C, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(C, dtype=x.dtype))

    x64 = x.astype(np.float64)
    g = gamma.reshape(1, C, 1, 1)
    b = beta.reshape(1, C, 1, 1)

    if mode == "train":
        mean = np.mean(x64, axis=(0, 2, 3), keepdims=True)
        var = np.mean((x64 - mean) ** 2, axis=(0, 2, 3), keepdims=True)
        std = np.sqrt(var + eps)
        x_hat = (x64 - mean) / std
        out = g * x_hat + b

        running_mean = momentum * running_mean + (1 - momentum) * mean.reshape(C)
        running_var = momentum * running_var + (1 - momentum) * var.reshape(C)
        bn_param["running_mean"] = running_mean.astype(x.dtype)
        bn_param["running_var"] = running_var.astype(x.dtype)

        cache = (x64, x_hat, mean, var, std, g, eps, x.dtype)
    elif mode == "test":
        mean = np.asarray(running_mean).reshape(1, C, 1, 1)
        var = np.asarray(running_var).reshape(1, C, 1, 1)
        x_hat = (x64 - mean) / np.sqrt(var + eps)
        out = g * x_hat + b
        cache = None
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    return out.astype(x.dtype), cache


def spatial_batchnorm_backward(dout, cache):
    x, x_hat, mean, var, std, gamma, eps, dtype = cache
    N, C, H, W = x.shape
    M = N * H * W
    dout = dout.astype(np.float64)

    dbeta = np.sum(dout, axis=(0, 2, 3))
    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3))

    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mean), axis=(0, 2, 3), keepdims=True) * (-0.5) * (var + eps) ** (-1.5)
    dmean = (np.sum(-dx_hat / std, axis=(0, 2, 3), keepdims=True)
             + dvar * np.mean(-2.0 * (x - mean), axis=(0, 2, 3), keepdims=True))
    dx = dx_hat / std + dvar * 2.0 * (x - mean) / M + dmean / M

    return dx.astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape

    x64 = x.astype(np.float64)
    x_grouped = x64.reshape(N, G, -1)

    mean = np.mean(x_grouped, axis=2, keepdims=True)
    var = np.mean((x_grouped - mean) ** 2, axis=2, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat_grouped = (x_grouped - mean) / std
    x_hat = x_hat_grouped.reshape(N, C, H, W)
    out = gamma * x_hat + beta

    cache = (x_grouped, x_hat, mean, var, std, gamma, eps, G, x.dtype)
    return out.astype(x.dtype), cache


def spatial_groupnorm_backward(dout, cache):
    x_grouped, x_hat, mean, var, std, gamma, eps, G, dtype = cache
    N, C, H, W = x_hat.shape
    M = x_grouped.shape[2]
    dout = dout.astype(np.float64)

    dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)
    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3), keepdims=True)

    dx_hat = (dout * gamma).reshape(N, G, -1)
    dvar = np.sum(dx_hat * (x_grouped - mean), axis=2, keepdims=True) * (-0.5) * (var + eps) ** (-1.5)
    dmean = (np.sum(-dx_hat / std, axis=2, keepdims=True)
             + dvar * np.mean(-2.0 * (x_grouped - mean), axis=2, keepdims=True))
    dx = dx_hat / std + dvar * 2.0 * (x_grouped - mean) / M + dmean / M

    return dx.reshape(N, C, H, W).astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)
