"""
The nine graded functions written with PyTorch (float64, autograd): an oracle nobody here wrote the maths of.

It has the graded functions' signatures, so the worker's recipes
(normgrade.score.expected.run_quantities) run on it as on a student's layers.py, and
every graded quantity has a PyTorch value (`quantities`). The statistics,
normalizations and gradients are PyTorch's (F.batch_norm, F.layer_norm,
F.group_norm, autograd); only the conventions of the assignment are mapped:
- the running statistics: running = momentum * running + (1 - momentum) * stat,
  with the biased batch variance (PyTorch's own update uses 1 - momentum and
  the unbiased one);
- a batch of one example normalizes to beta (F.batch_norm refuses it in train
  mode; layer norm of each feature's column gives it);
- outputs and gradients keep their array's dtype (computed in float64).
"""
import numpy as np
import torch

F = torch.nn.functional


def _tensor(a, grad=True):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _numpy(t, like):
    return t.detach().numpy().astype(np.asarray(like).dtype)


def _cache(out, x, gamma, beta, like):
    return {"out": out, "inputs": (x, gamma, beta), "dtypes": tuple(np.asarray(a).dtype for a in like)}


def _backward(dout, cache):
    grads = torch.autograd.grad(cache["out"], cache["inputs"], _tensor(dout, grad=False), retain_graph=True)
    return tuple(g.numpy().astype(dtype) for g, dtype in zip(grads, cache["dtypes"]))


def _running(bn_param, stat_mean, stat_var, size, dtype):
    momentum = bn_param.get("momentum", 0.9)
    running_mean = bn_param.get("running_mean", np.zeros(size, dtype=dtype))
    running_var = bn_param.get("running_var", np.zeros(size, dtype=dtype))
    bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * stat_mean.detach().numpy()
    bn_param["running_var"] = momentum * running_var + (1 - momentum) * stat_var.detach().numpy()


def _batch_norm(x, gamma, beta, bn_param, axes):
    """Batch norm over `axes` (0 for (N, D), (0, 2, 3) for (N, C, H, W)), in PyTorch."""
    eps = bn_param.get("eps", 1e-5)
    tx, tg, tb = _tensor(x), _tensor(gamma), _tensor(beta)
    if bn_param["mode"] == "train":
        if x.shape[0] > 1:
            out = F.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
        else:  # one example: each feature's column normalized on its own
            out = F.layer_norm(tx.transpose(0, 1), (1,), eps=eps).transpose(0, 1) * tg + tb
        _running(bn_param, tx.mean(dim=axes), tx.var(dim=axes, unbiased=False), x.shape[1], x.dtype)
    else:
        out = F.batch_norm(tx, _tensor(bn_param["running_mean"], False), _tensor(bn_param["running_var"], False),
                           tg, tb, training=False, eps=eps)
    return _numpy(out, x), _cache(out, tx, tg, tb, (x, gamma, beta))


def batchnorm_forward(x, gamma, beta, bn_param):
    return _batch_norm(x, gamma, beta, bn_param, 0)


def batchnorm_backward(dout, cache):
    return _backward(dout, cache)


batchnorm_backward_alt = batchnorm_backward


def layernorm_forward(x, gamma, beta, ln_param):
    tx, tg, tb = _tensor(x), _tensor(gamma), _tensor(beta)
    out = F.layer_norm(tx, (x.shape[1],), tg, tb, eps=ln_param.get("eps", 1e-5))
    return _numpy(out, x), _cache(out, tx, tg, tb, (x, gamma, beta))


layernorm_backward = batchnorm_backward


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    return _batch_norm(x, gamma, beta, bn_param, (0, 2, 3))


spatial_batchnorm_backward = batchnorm_backward


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    tx, tg, tb = _tensor(x), _tensor(gamma), _tensor(beta)
    C = x.shape[1]
    out = F.group_norm(tx, G, tg.reshape(C), tb.reshape(C), eps=gn_param.get("eps", 1e-5))
    return _numpy(out, x), _cache(out, tx, tg, tb, (x, gamma, beta))


spatial_groupnorm_backward = batchnorm_backward


def quantities(inputs):
    """{quantity: PyTorch's value} of every graded quantity, through the worker's recipes."""
    import sys

    from normgrade.score.expected import run_quantities

    return run_quantities(sys.modules[__name__], inputs)
