import numpy as np


# ---------------------------------------------------------------------------
# shared machinery: every layer below is "normalize over some axes, then
# apply a per-channel affine", so the normalization is written only once.
# ---------------------------------------------------------------------------

def _normalize(v, axes, eps):
    """Standardize v over `axes` (float64 inside). Returns (v_hat, state)."""
    v = np.asarray(v, dtype=np.float64)
    mu = v.mean(axis=axes, keepdims=True)
    centered = v - mu
    sigma2 = (centered * centered).mean(axis=axes, keepdims=True)
    inv_sigma = 1.0 / np.sqrt(sigma2 + eps)
    v_hat = centered * inv_sigma
    count = v.size // mu.size
    state = {"axes": axes, "centered": centered, "inv_sigma": inv_sigma,
             "count": count, "mu": mu, "sigma2": sigma2, "v_hat": v_hat}
    return v_hat, state


def _normalize_backward(g_hat, state):
    """Walk back through v_hat = centered * inv_sigma, one node at a time."""
    axes, n = state["axes"], state["count"]
    centered, inv_sigma = state["centered"], state["inv_sigma"]
    g_hat = np.asarray(g_hat, dtype=np.float64)

    # v_hat = centered * inv_sigma
    g_centered = g_hat * inv_sigma
    g_inv_sigma = (g_hat * centered).sum(axis=axes, keepdims=True)
    # inv_sigma = (sigma2 + eps) ** -1/2
    g_sigma2 = -0.5 * inv_sigma ** 3 * g_inv_sigma
    # sigma2 = mean(centered ** 2)
    g_centered = g_centered + (2.0 / n) * centered * g_sigma2
    # centered = v - mu, mu = mean(v)
    g_mu = -g_centered.sum(axis=axes, keepdims=True)
    return g_centered + g_mu / n


def _affine(v_hat, gamma, beta, shape):
    return v_hat * np.reshape(gamma, shape) + np.reshape(beta, shape)


def _affine_backward(dout, v_hat, gamma, shape, param_axes):
    dout = np.asarray(dout, dtype=np.float64)
    dgamma = (dout * v_hat).sum(axis=param_axes)
    dbeta = dout.sum(axis=param_axes)
    return dout * np.reshape(gamma, shape), dgamma, dbeta


def _update_running(bn_param, mu, sigma2, dtype, size):
    m = bn_param.get("momentum", 0.9)
    old_mu = bn_param.get("running_mean", np.zeros(size, dtype=dtype))
    old_var = bn_param.get("running_var", np.zeros(size, dtype=dtype))
    bn_param["running_mean"] = (m * old_mu + (1 - m) * mu.ravel()).astype(dtype)
    bn_param["running_var"] = (m * old_var + (1 - m) * sigma2.ravel()).astype(dtype)


def _bn_like_forward(x, gamma, beta, bn_param, axes, pshape):
    eps = bn_param.get("eps", 1e-5)
    C = x.shape[1]
    if bn_param["mode"] == "train":
        x_hat, state = _normalize(x, axes, eps)
        _update_running(bn_param, state["mu"], state["sigma2"], x.dtype, C)
    elif bn_param["mode"] == "test":
        mu = np.reshape(bn_param.get("running_mean", np.zeros(C, dtype=x.dtype)), pshape)
        s2 = np.reshape(bn_param.get("running_var", np.zeros(C, dtype=x.dtype)), pshape)
        x_hat = (x.astype(np.float64) - mu) / np.sqrt(s2 + eps)
        state = None
    else:
        raise ValueError("unknown mode %r" % bn_param["mode"])
    out = _affine(x_hat, gamma, beta, pshape)
    return out.astype(x.dtype), {"state": state, "x_hat": x_hat, "gamma": gamma,
                                  "pshape": pshape, "axes": axes, "dtype": x.dtype}


def _generic_backward(dout, cache):
    dx_hat, dgamma, dbeta = _affine_backward(dout, cache["x_hat"], cache["gamma"],
                                             cache["pshape"], cache["axes"])
    dx = _normalize_backward(dx_hat, cache["state"])
    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)


# ---------------------------------------------------------------------------
# the nine public layers
# ---------------------------------------------------------------------------

def batchnorm_forward(x, gamma, beta, bn_param):
    return _bn_like_forward(x, gamma, beta, bn_param, (0,), (1, -1))


def batchnorm_backward(dout, cache):
    return _generic_backward(dout, cache)


def batchnorm_backward_alt(dout, cache):
    xh, g, inv = cache["x_hat"], cache["gamma"], cache["state"]["inv_sigma"]
    d = np.asarray(dout, dtype=np.float64)
    dgamma, dbeta = (d * xh).sum(0), d.sum(0)
    dx = g * inv * (d - dbeta / len(d) - xh * dgamma / len(d))
    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)


def layernorm_forward(x, gamma, beta, ln_param):
    x_hat, state = _normalize(x, (1,), ln_param.get("eps", 1e-5))
    out = _affine(x_hat, gamma, beta, (1, -1))
    return out.astype(x.dtype), {"state": state, "x_hat": x_hat, "gamma": gamma,
                                  "pshape": (1, -1), "axes": (0,), "dtype": x.dtype}


def layernorm_backward(dout, cache):
    return _generic_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    return _bn_like_forward(x, gamma, beta, bn_param, (0, 2, 3), (1, -1, 1, 1))


def spatial_batchnorm_backward(dout, cache):
    return _generic_backward(dout, cache)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    N, C, H, W = x.shape
    xg = x.reshape(N, G, C // G, H, W)
    xg_hat, state = _normalize(xg, (2, 3, 4), gn_param.get("eps", 1e-5))
    x_hat = xg_hat.reshape(N, C, H, W)
    out = _affine(x_hat, gamma, beta, (1, C, 1, 1))
    return out.astype(x.dtype), {"state": state, "x_hat": x_hat, "gamma": gamma,
                                  "pshape": (1, C, 1, 1), "G": G, "dtype": x.dtype}


def spatial_groupnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    G = cache["G"]
    dx_hat, dgamma, dbeta = _affine_backward(dout, cache["x_hat"], cache["gamma"],
                                             (1, C, 1, 1), (0, 2, 3))
    dx = _normalize_backward(dx_hat.reshape(N, G, C // G, H, W), cache["state"])
    t = cache["dtype"]
    return (dx.reshape(N, C, H, W).astype(t),
            dgamma.reshape(1, C, 1, 1).astype(t), dbeta.reshape(1, C, 1, 1).astype(t))
