import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)

    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))

    out, cache = None, None
    xd = np.asarray(x, dtype=np.float64)   # work in double precision
    if mode == 'train':
        # step 1: mean
        mu = 1. / N * np.sum(xd, axis=0)
        # step 2: subtract mean
        xmu = xd - mu
        # step 3: square
        sq = xmu ** 2
        # step 4: variance (biased)
        var = 1. / N * np.sum(sq, axis=0)
        # step 5: add eps and take the square root
        sqrtvar = np.sqrt(var + eps)
        # step 6: invert
        ivar = 1. / sqrtvar
        # step 7: normalize
        xhat = xmu * ivar
        # step 8: scale
        gammax = gamma * xhat
        # step 9: shift
        out = gammax + beta

        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        running_mean = running_mean.astype(bn_param.get('running_mean', x).dtype)
        running_var = running_var.astype(bn_param.get('running_var', x).dtype)

        cache = (xhat, gamma, xmu, ivar, sqrtvar, var, eps, x.dtype)
    elif mode == 'test':
        xhat = (xd - running_mean) / np.sqrt(running_var.astype(np.float64) + eps)
        out = gamma * xhat + beta
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out.astype(x.dtype), cache


def batchnorm_backward(dout, cache):
    xhat, gamma, xmu, ivar, sqrtvar, var, eps, xdtype = cache
    dout = np.asarray(dout, dtype=np.float64)
    N, D = dout.shape

    # step 9
    dbeta = np.sum(dout, axis=0)
    dgammax = dout
    # step 8
    dgamma = np.sum(dgammax * xhat, axis=0)
    dxhat = dgammax * gamma
    # step 7
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu1 = dxhat * ivar
    # step 6
    dsqrtvar = -1. / (sqrtvar ** 2) * divar
    # step 5
    dvar = 0.5 * 1. / np.sqrt(var + eps) * dsqrtvar
    # step 4
    dsq = 1. / N * np.ones((N, D)) * dvar
    # step 3
    dxmu2 = 2 * xmu * dsq
    # step 2
    dx1 = dxmu1 + dxmu2
    dmu = -1 * np.sum(dx1, axis=0)
    # step 1
    dx2 = 1. / N * np.ones((N, D)) * dmu
    dx = dx1 + dx2

    return dx.astype(xdtype), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


def batchnorm_backward_alt(dout, cache):
    xhat, gamma, xmu, ivar, sqrtvar, var, eps, xdtype = cache
    dout = np.asarray(dout, dtype=np.float64)
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = (gamma * ivar / N) * (N * dout - dbeta - xhat * dgamma)
    return dx.astype(xdtype), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


def layernorm_forward(x, gamma, beta, ln_param):
    # Layer norm is batch norm on the transposed data, without gamma/beta
    # (those are per feature, i.e. per column of the original x).
    eps = ln_param.get('eps', 1e-5)
    N, D = x.shape
    xt = np.asarray(x, dtype=np.float64).T          # (D, N)
    tmp_param = {'mode': 'train', 'eps': eps}
    ones = np.ones(N)
    zeros = np.zeros(N)
    xhat_t, bn_cache = batchnorm_forward(xt, ones, zeros, tmp_param)
    xhat = xhat_t.T
    out = gamma * xhat + beta
    cache = (bn_cache, xhat, gamma, x.dtype)
    return out.astype(x.dtype), cache


def layernorm_backward(dout, cache):
    bn_cache, xhat, gamma, xdtype = cache
    dout = np.asarray(dout, dtype=np.float64)
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dxt, _, _ = batchnorm_backward(dxhat.T, bn_cache)
    dx = dxt.T
    return dx.astype(xdtype), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    x_flat = np.transpose(x, (0, 2, 3, 1)).reshape(N * H * W, C)
    out_flat, cache = batchnorm_forward(x_flat, gamma, beta, bn_param)
    out = np.transpose(out_flat.reshape(N, H, W, C), (0, 3, 1, 2))
    return out, (cache, (N, C, H, W))


def spatial_batchnorm_backward(dout, cache):
    bn_cache, (N, C, H, W) = cache
    dout_flat = np.transpose(dout, (0, 2, 3, 1)).reshape(N * H * W, C)
    dx_flat, dgamma, dbeta = batchnorm_backward(dout_flat, bn_cache)
    dx = np.transpose(dx_flat.reshape(N, H, W, C), (0, 3, 1, 2))
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get('eps', 1e-5)
    N, C, H, W = x.shape
    xg = np.asarray(x, dtype=np.float64).reshape(N, G, C // G, H, W)
    M = (C // G) * H * W
    ax = (2, 3, 4)

    mu = 1. / M * np.sum(xg, axis=ax, keepdims=True)
    xmu = xg - mu
    sq = xmu ** 2
    var = 1. / M * np.sum(sq, axis=ax, keepdims=True)
    sqrtvar = np.sqrt(var + eps)
    ivar = 1. / sqrtvar
    xhat = (xmu * ivar).reshape(N, C, H, W)
    gammax = gamma * xhat
    out = gammax + beta

    cache = (xhat, gamma, xmu, ivar, sqrtvar, var, eps, G, x.dtype)
    return out.astype(x.dtype), cache


def spatial_groupnorm_backward(dout, cache):
    xhat, gamma, xmu, ivar, sqrtvar, var, eps, G, xdtype = cache
    dout = np.asarray(dout, dtype=np.float64)
    N, C, H, W = dout.shape
    M = (C // G) * H * W
    ax = (2, 3, 4)

    dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)
    dgamma = np.sum(dout * xhat, axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, G, C // G, H, W)

    divar = np.sum(dxhat * xmu, axis=ax, keepdims=True)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1. / (sqrtvar ** 2) * divar
    dvar = 0.5 / np.sqrt(var + eps) * dsqrtvar
    dsq = 1. / M * np.ones_like(xmu) * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -1 * np.sum(dx1, axis=ax, keepdims=True)
    dx2 = 1. / M * np.ones_like(xmu) * dmu
    dx = (dx1 + dx2).reshape(N, C, H, W)

    return dx.astype(xdtype), dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)
