# KNOWN BUGS (deliberate, for calibration):
#  1. batchnorm_forward (train mode, hence also spatial batch norm) puts eps
#     outside the square root: x_hat = (x - m) / (sqrt(v) + eps) instead of
#     (x - m) / sqrt(v + eps). Test mode is unaffected.
#  2. spatial_groupnorm_backward drops the variance term of dx: it returns
#     r * (g - mean(g)) and omits "- x_hat * mean(g * x_hat)".
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    md = bn_param['mode']
    e = bn_param.get('eps', 1e-5)
    p = bn_param.get('momentum', 0.9)
    n, d = x.shape
    rm = bn_param.get('running_mean', np.zeros(d, dtype=x.dtype))
    rv = bn_param.get('running_var', np.zeros(d, dtype=x.dtype))
    X = x.astype(np.float64)
    c = None
    if md == 'train':
        o = np.ones(n)
        m = o @ X / n
        z = X - m
        v = np.einsum('nd,nd->d', z, z) / n
        r = 1 / (np.sqrt(v) + e)
        h = z * r
        y = gamma * h + beta
        rm = (p * rm + (1 - p) * m).astype(rm.dtype)
        rv = (p * rv + (1 - p) * v).astype(rv.dtype)
        c = (h, z, r, v, e, gamma, x.dtype)
    elif md == 'test':
        y = gamma * (X - rm) / np.sqrt(rv + e) + beta
    else:
        raise ValueError('bad mode %s' % md)
    bn_param['running_mean'] = rm
    bn_param['running_var'] = rv
    return y.astype(x.dtype), c


def batchnorm_backward(dout, cache):
    h, z, r, v, e, g, t = cache
    G = dout.astype(np.float64)
    n = G.shape[0]
    db = G.sum(0)
    dg = np.einsum('nd,nd->d', G, h)
    dh = G * g
    dr = np.einsum('nd,nd->d', dh, z)
    dv = -0.5 * r ** 3 * dr
    dz = dh * r + 2 * z * dv / n
    dx = dz - dz.sum(0) / n
    return dx.astype(t), dg.astype(g.dtype), db.astype(g.dtype)


def batchnorm_backward_alt(dout, cache):
    h, z, r, v, e, g, t = cache
    G = dout.astype(np.float64)
    n = G.shape[0]
    db = G.sum(0)
    dg = np.einsum('nd,nd->d', G, h)
    dx = g * r / n * (n * G - db - h * dg)
    return dx.astype(t), dg.astype(g.dtype), db.astype(g.dtype)


def layernorm_forward(x, gamma, beta, ln_param):
    e = ln_param.get('eps', 1e-5)
    X = x.astype(np.float64)
    d = X.shape[1]
    m = X @ np.ones(d) / d
    z = X - m[:, None]
    v = np.einsum('nd,nd->n', z, z) / d
    r = 1 / np.sqrt(v + e)
    h = z * r[:, None]
    return (gamma * h + beta).astype(x.dtype), (h, r, gamma, x.dtype)


def layernorm_backward(dout, cache):
    h, r, g, t = cache
    G = dout.astype(np.float64)
    d = G.shape[1]
    db = G.sum(0)
    dg = np.einsum('nd,nd->d', G, h)
    q = G * g
    a = q.sum(1) / d
    b = np.einsum('nd,nd->n', q, h) / d
    dx = r[:, None] * (q - a[:, None] - h * b[:, None])
    return dx.astype(t), dg.astype(g.dtype), db.astype(g.dtype)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    y, c = batchnorm_forward(np.moveaxis(x, 1, -1).reshape(-1, C), gamma, beta, bn_param)
    return np.moveaxis(y.reshape(N, H, W, C), -1, 1), c


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx, dg, db = batchnorm_backward_alt(np.moveaxis(dout, 1, -1).reshape(-1, C), cache)
    return np.moveaxis(dx.reshape(N, H, W, C), -1, 1), dg, db


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    e = gn_param.get('eps', 1e-5)
    N, C, H, W = x.shape
    X = x.astype(np.float64).reshape(N, G, -1)
    k = X.shape[2]
    m = X.sum(2) / k
    z = X - m[..., None]
    v = np.einsum('ngk,ngk->ng', z, z) / k
    r = 1 / np.sqrt(v + e)
    h = (z * r[..., None]).reshape(N, C, H, W)
    return (gamma * h + beta).astype(x.dtype), (h, r, gamma, G, x.dtype)


def spatial_groupnorm_backward(dout, cache):
    h, r, g, G, t = cache
    N, C, H, W = dout.shape
    D = dout.astype(np.float64)
    db = D.sum((0, 2, 3), keepdims=True)
    dg = np.einsum('nchw,nchw->c', D, h).reshape(1, C, 1, 1)
    q = (D * g).reshape(N, G, -1)
    k = q.shape[2]
    dx = r[..., None] * (q - q.sum(2, keepdims=True) / k)
    return dx.reshape(N, C, H, W).astype(t), dg.astype(g.dtype), db.astype(g.dtype)
