# KNOWN BUGS (deliberate, for the calibration set):
#   1. batchnorm_forward / spatial_batchnorm_forward: the running variance is
#      updated with the UNBIASED sample variance (divides by N - 1, or
#      N*H*W - 1 in the spatial layer) instead of the biased variance that is
#      used for normalizing the batch.
#   2. spatial_groupnorm_forward / _backward: channel c is put in group
#      c % G (interleaved channels) instead of the contiguous group
#      c // (C // G).  Forward and backward agree with each other, so a
#      gradient check still passes, but the groups are the wrong ones.
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    if "eps" in bn_param:
        eps = bn_param["eps"]
    else:
        eps = 1e-5
    if "momentum" in bn_param:
        momentum = bn_param["momentum"]
    else:
        momentum = 0.9

    N = x.shape[0]
    D = x.shape[1]

    if "running_mean" in bn_param:
        running_mean = bn_param["running_mean"]
    else:
        running_mean = np.zeros(D, dtype=x.dtype)
    if "running_var" in bn_param:
        running_var = bn_param["running_var"]
    else:
        running_var = np.zeros(D, dtype=x.dtype)

    out = np.zeros((N, D))
    x_hat = np.zeros((N, D))

    if mode == "train":
        sample_mean = np.zeros(D)
        sample_var = np.zeros(D)
        for j in range(D):
            total = 0.0
            for i in range(N):
                total = total + float(x[i, j])
            sample_mean[j] = total / N
        for j in range(D):
            total_sq = 0.0
            for i in range(N):
                diff = float(x[i, j]) - sample_mean[j]
                total_sq = total_sq + diff * diff
            sample_var[j] = total_sq / N
        std = np.zeros(D)
        for j in range(D):
            std[j] = np.sqrt(sample_var[j] + eps)
        for i in range(N):
            for j in range(D):
                x_hat[i, j] = (float(x[i, j]) - sample_mean[j]) / std[j]
                out[i, j] = gamma[j] * x_hat[i, j] + beta[j]

        # running statistics
        unbiased_var = np.zeros(D)
        for j in range(D):
            unbiased_var[j] = sample_var[j] * N / (N - 1)
        new_running_mean = np.zeros(D)
        new_running_var = np.zeros(D)
        for j in range(D):
            new_running_mean[j] = momentum * running_mean[j] + (1 - momentum) * sample_mean[j]
            new_running_var[j] = momentum * running_var[j] + (1 - momentum) * unbiased_var[j]
        bn_param["running_mean"] = new_running_mean.astype(x.dtype)
        bn_param["running_var"] = new_running_var.astype(x.dtype)

        cache = {}
        cache["x"] = x
        cache["x_hat"] = x_hat
        cache["mean"] = sample_mean
        cache["var"] = sample_var
        cache["std"] = std
        cache["gamma"] = gamma
        cache["eps"] = eps
    elif mode == "test":
        for i in range(N):
            for j in range(D):
                x_hat[i, j] = (float(x[i, j]) - running_mean[j]) / np.sqrt(running_var[j] + eps)
                out[i, j] = gamma[j] * x_hat[i, j] + beta[j]
        cache = {}
        cache["x"] = x
        cache["x_hat"] = x_hat
        cache["gamma"] = gamma
    else:
        raise ValueError("mode must be train or test")

    out = out.astype(x.dtype)
    return out, cache


def batchnorm_backward(dout, cache):
    x = cache["x"]
    x_hat = cache["x_hat"]
    mean = cache["mean"]
    var = cache["var"]
    std = cache["std"]
    gamma = cache["gamma"]
    eps = cache["eps"]
    N = x.shape[0]
    D = x.shape[1]

    dgamma = np.zeros(D)
    dbeta = np.zeros(D)
    for i in range(N):
        for j in range(D):
            dgamma[j] = dgamma[j] + float(dout[i, j]) * x_hat[i, j]
            dbeta[j] = dbeta[j] + float(dout[i, j])

    dx_hat = np.zeros((N, D))
    for i in range(N):
        for j in range(D):
            dx_hat[i, j] = float(dout[i, j]) * gamma[j]

    dvar = np.zeros(D)
    for j in range(D):
        for i in range(N):
            dvar[j] = dvar[j] + dx_hat[i, j] * (float(x[i, j]) - mean[j])
        dvar[j] = dvar[j] * (-0.5) * (var[j] + eps) ** (-1.5)

    dmean = np.zeros(D)
    for j in range(D):
        part1 = 0.0
        part2 = 0.0
        for i in range(N):
            part1 = part1 - dx_hat[i, j] / std[j]
            part2 = part2 - 2.0 * (float(x[i, j]) - mean[j])
        dmean[j] = part1 + dvar[j] * part2 / N

    dx = np.zeros((N, D))
    for i in range(N):
        for j in range(D):
            term1 = dx_hat[i, j] / std[j]
            term2 = dvar[j] * 2.0 * (float(x[i, j]) - mean[j]) / N
            term3 = dmean[j] / N
            dx[i, j] = term1 + term2 + term3

    dx = dx.astype(x.dtype)
    dgamma = dgamma.astype(x.dtype)
    dbeta = dbeta.astype(x.dtype)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    x = cache["x"]
    x_hat = cache["x_hat"]
    std = cache["std"]
    gamma = cache["gamma"]
    N = x.shape[0]
    D = x.shape[1]

    dgamma = np.zeros(D)
    dbeta = np.zeros(D)
    for j in range(D):
        for i in range(N):
            dbeta[j] += float(dout[i, j])
            dgamma[j] += float(dout[i, j]) * x_hat[i, j]

    dx = np.zeros((N, D))
    for i in range(N):
        for j in range(D):
            dx[i, j] = (gamma[j] / (N * std[j])) * (N * float(dout[i, j]) - dbeta[j] - x_hat[i, j] * dgamma[j])

    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def layernorm_forward(x, gamma, beta, ln_param):
    if "eps" in ln_param:
        eps = ln_param["eps"]
    else:
        eps = 1e-5
    N = x.shape[0]
    D = x.shape[1]

    mean = np.zeros(N)
    var = np.zeros(N)
    std = np.zeros(N)
    x_hat = np.zeros((N, D))
    out = np.zeros((N, D))

    for i in range(N):
        s = 0.0
        for j in range(D):
            s = s + float(x[i, j])
        mean[i] = s / D
        s2 = 0.0
        for j in range(D):
            d = float(x[i, j]) - mean[i]
            s2 = s2 + d * d
        var[i] = s2 / D
        std[i] = np.sqrt(var[i] + eps)
        for j in range(D):
            x_hat[i, j] = (float(x[i, j]) - mean[i]) / std[i]
            out[i, j] = gamma[j] * x_hat[i, j] + beta[j]

    cache = {"x": x, "x_hat": x_hat, "mean": mean, "var": var, "std": std,
             "gamma": gamma, "eps": eps}
    out = out.astype(x.dtype)
    return out, cache


def layernorm_backward(dout, cache):
    x = cache["x"]
    x_hat = cache["x_hat"]
    std = cache["std"]
    gamma = cache["gamma"]
    N = x.shape[0]
    D = x.shape[1]

    dgamma = np.zeros(D)
    dbeta = np.zeros(D)
    for i in range(N):
        for j in range(D):
            dgamma[j] = dgamma[j] + float(dout[i, j]) * x_hat[i, j]
            dbeta[j] = dbeta[j] + float(dout[i, j])

    dx = np.zeros((N, D))
    for i in range(N):
        # the gradient w.r.t. x_hat for this example
        dx_hat_row = np.zeros(D)
        for j in range(D):
            dx_hat_row[j] = float(dout[i, j]) * gamma[j]
        sum_dx_hat = 0.0
        sum_dx_hat_x_hat = 0.0
        for j in range(D):
            sum_dx_hat = sum_dx_hat + dx_hat_row[j]
            sum_dx_hat_x_hat = sum_dx_hat_x_hat + dx_hat_row[j] * x_hat[i, j]
        for j in range(D):
            dx[i, j] = (1.0 / (D * std[i])) * (D * dx_hat_row[j] - sum_dx_hat - x_hat[i, j] * sum_dx_hat_x_hat)

    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    if "eps" in bn_param:
        eps = bn_param["eps"]
    else:
        eps = 1e-5
    if "momentum" in bn_param:
        momentum = bn_param["momentum"]
    else:
        momentum = 0.9

    N, C, H, W = x.shape
    M = N * H * W

    if "running_mean" in bn_param:
        running_mean = bn_param["running_mean"]
    else:
        running_mean = np.zeros(C, dtype=x.dtype)
    if "running_var" in bn_param:
        running_var = bn_param["running_var"]
    else:
        running_var = np.zeros(C, dtype=x.dtype)

    out = np.zeros((N, C, H, W))
    x_hat = np.zeros((N, C, H, W))

    if mode == "train":
        mean = np.zeros(C)
        var = np.zeros(C)
        std = np.zeros(C)
        for c in range(C):
            channel = x[:, c, :, :].astype(np.float64)
            total = 0.0
            for n in range(N):
                for h in range(H):
                    for w in range(W):
                        total = total + channel[n, h, w]
            mean[c] = total / M
            total_sq = 0.0
            for n in range(N):
                for h in range(H):
                    for w in range(W):
                        diff = channel[n, h, w] - mean[c]
                        total_sq = total_sq + diff * diff
            var[c] = total_sq / M
            std[c] = np.sqrt(var[c] + eps)
            x_hat[:, c, :, :] = (channel - mean[c]) / std[c]
            out[:, c, :, :] = gamma[c] * x_hat[:, c, :, :] + beta[c]

        new_running_mean = np.zeros(C)
        new_running_var = np.zeros(C)
        for c in range(C):
            unbiased = var[c] * M / (M - 1)
            new_running_mean[c] = momentum * running_mean[c] + (1 - momentum) * mean[c]
            new_running_var[c] = momentum * running_var[c] + (1 - momentum) * unbiased
        bn_param["running_mean"] = new_running_mean.astype(x.dtype)
        bn_param["running_var"] = new_running_var.astype(x.dtype)

        cache = {"x_hat": x_hat, "std": std, "gamma": gamma, "dtype": x.dtype}
    elif mode == "test":
        for c in range(C):
            channel = x[:, c, :, :].astype(np.float64)
            x_hat[:, c, :, :] = (channel - running_mean[c]) / np.sqrt(running_var[c] + eps)
            out[:, c, :, :] = gamma[c] * x_hat[:, c, :, :] + beta[c]
        cache = {"x_hat": x_hat, "gamma": gamma, "dtype": x.dtype}
    else:
        raise ValueError("mode must be train or test")

    return out.astype(x.dtype), cache


def spatial_batchnorm_backward(dout, cache):
    x_hat = cache["x_hat"]
    std = cache["std"]
    gamma = cache["gamma"]
    N, C, H, W = x_hat.shape
    M = N * H * W

    dx = np.zeros((N, C, H, W))
    dgamma = np.zeros(C)
    dbeta = np.zeros(C)
    for c in range(C):
        dout_c = dout[:, c, :, :].astype(np.float64)
        x_hat_c = x_hat[:, c, :, :]
        dbeta[c] = np.sum(dout_c)
        dgamma[c] = np.sum(dout_c * x_hat_c)
        dx_hat_c = dout_c * gamma[c]
        sum1 = np.sum(dx_hat_c)
        sum2 = np.sum(dx_hat_c * x_hat_c)
        dx[:, c, :, :] = (1.0 / (M * std[c])) * (M * dx_hat_c - sum1 - x_hat_c * sum2)

    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    if "eps" in gn_param:
        eps = gn_param["eps"]
    else:
        eps = 1e-5
    N, C, H, W = x.shape

    x_hat = np.zeros((N, C, H, W))
    out = np.zeros((N, C, H, W))
    std = np.zeros((N, G))

    for n in range(N):
        for g in range(G):
            channels = []
            for c in range(C):
                if c % G == g:
                    channels.append(c)
            block = x[n, channels, :, :].astype(np.float64)
            count = block.size
            mean = np.sum(block) / count
            var = np.sum((block - mean) ** 2) / count
            std[n, g] = np.sqrt(var + eps)
            x_hat[n, channels, :, :] = (block - mean) / std[n, g]

    for c in range(C):
        out[:, c, :, :] = gamma[0, c, 0, 0] * x_hat[:, c, :, :] + beta[0, c, 0, 0]

    cache = {"x_hat": x_hat, "std": std, "gamma": gamma, "G": G, "dtype": x.dtype}
    return out.astype(x.dtype), cache


def spatial_groupnorm_backward(dout, cache):
    x_hat = cache["x_hat"]
    std = cache["std"]
    gamma = cache["gamma"]
    G = cache["G"]
    N, C, H, W = x_hat.shape

    dout64 = dout.astype(np.float64)
    dgamma = np.zeros((1, C, 1, 1))
    dbeta = np.zeros((1, C, 1, 1))
    for c in range(C):
        dgamma[0, c, 0, 0] = np.sum(dout64[:, c, :, :] * x_hat[:, c, :, :])
        dbeta[0, c, 0, 0] = np.sum(dout64[:, c, :, :])

    dx_hat = np.zeros((N, C, H, W))
    for c in range(C):
        dx_hat[:, c, :, :] = dout64[:, c, :, :] * gamma[0, c, 0, 0]

    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for g in range(G):
            channels = []
            for c in range(C):
                if c % G == g:
                    channels.append(c)
            dxh = dx_hat[n, channels, :, :]
            xh = x_hat[n, channels, :, :]
            count = dxh.size
            sum1 = np.sum(dxh)
            sum2 = np.sum(dxh * xh)
            dx[n, channels, :, :] = (1.0 / (count * std[n, g])) * (count * dxh - sum1 - xh * sum2)

    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)
