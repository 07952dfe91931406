"""The reference against an implementation nobody here wrote: PyTorch (CPU, float64).

Convention mapping:
- PyTorch's batch_norm momentum weighs the *new* statistic:
  running = (1 - m_torch) * running + m_torch * batch, so m_torch = 1 - momentum.
- PyTorch's running_var uses the unbiased (N - 1) batch variance; ours is the
  biased one. We recover torch's batch variance from its update and rescale it.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

SEEDS = range(12)


def _shape_2d(rng):
    return int(rng.integers(2, 40)), int(rng.integers(1, 30))


def _shape_4d(rng, groups=False):
    G = int(rng.integers(1, 5))
    C = G * int(rng.integers(1, 5)) if groups else int(rng.integers(1, 9))
    return (int(rng.integers(1, 6)), C, int(rng.integers(1, 6)), int(rng.integers(1, 6))), G


def _torch_forward_backward(fn, x, gamma, beta, dout):
    """Run fn in float64 with autograd; return out and the gradients for x, gamma, beta."""
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = fn(tx, tg, tb)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), tx.grad.numpy(), tg.grad.numpy(), tb.grad.numpy()


def _assert_close(ours, theirs, what, atol=1e-10, rtol=1e-8):
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("backward", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_batchnorm_train_matches_torch(ref, seed, backward):
    rng = np.random.default_rng(seed)
    N, D = _shape_2d(rng)
    x = 3 * rng.standard_normal((N, D)) + rng.standard_normal(D)
    gamma, beta, dout = rng.standard_normal(D), rng.standard_normal(D), rng.standard_normal((N, D))
    eps, momentum = float(rng.choice([1e-5, 1e-3])), float(rng.choice([0.9, 0.5]))
    rm0, rv0 = rng.standard_normal(D), rng.random(D) + 0.5
    bn_param = {"mode": "train", "eps": eps, "momentum": momentum, "running_mean": rm0.copy(), "running_var": rv0.copy()}

    out, cache = ref.batchnorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = getattr(ref, backward)(dout, cache)

    t_rm, t_rv = torch.tensor(rm0), torch.tensor(rv0)
    t_out, t_dx, t_dg, t_db = _torch_forward_backward(
        lambda tx, tg, tb: F.batch_norm(tx, t_rm, t_rv, tg, tb, training=True, momentum=1 - momentum, eps=eps),
        x, gamma, beta, dout,
    )
    for ours, theirs, what in [(out, t_out, "out"), (dx, t_dx, "dx"), (dgamma, t_dg, "dgamma"), (dbeta, t_db, "dbeta")]:
        _assert_close(ours, theirs, what)
    _assert_close(bn_param["running_mean"], t_rm.numpy(), "running_mean")
    # torch: rv = momentum * rv0 + (1 - momentum) * var_unbiased; ours uses var_biased = var_unbiased * (N-1)/N.
    var_unbiased = (t_rv.numpy() - momentum * rv0) / (1 - momentum)
    expected_rv = momentum * rv0 + (1 - momentum) * var_unbiased * (N - 1) / N
    _assert_close(bn_param["running_var"], expected_rv, "running_var")


@pytest.mark.parametrize("seed", SEEDS)
def test_batchnorm_test_mode_matches_torch_eval(ref, seed):
    rng = np.random.default_rng(100 + seed)
    N, D = _shape_2d(rng)
    x, gamma, beta = rng.standard_normal((N, D)), rng.standard_normal(D), rng.standard_normal(D)
    rm, rv = rng.standard_normal(D), rng.random(D) + 0.1
    bn_param = {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy()}
    out, _ = ref.batchnorm_forward(x, gamma, beta, bn_param)
    expected = F.batch_norm(torch.tensor(x), torch.tensor(rm), torch.tensor(rv), torch.tensor(gamma),
                            torch.tensor(beta), training=False, eps=1e-5).numpy()
    _assert_close(out, expected, "out")
    np.testing.assert_array_equal(bn_param["running_mean"], rm)
    np.testing.assert_array_equal(bn_param["running_var"], rv)


@pytest.mark.parametrize("seed", SEEDS)
def test_layernorm_matches_torch(ref, seed):
    rng = np.random.default_rng(200 + seed)
    N, D = _shape_2d(rng)
    x = 2 * rng.standard_normal((N, D)) + rng.standard_normal((N, 1))
    gamma, beta, dout = rng.standard_normal(D), rng.standard_normal(D), rng.standard_normal((N, D))
    eps = float(rng.choice([1e-5, 1e-2]))
    out, cache = ref.layernorm_forward(x, gamma, beta, {"eps": eps})
    grads = ref.layernorm_backward(dout, cache)
    expected = _torch_forward_backward(lambda tx, tg, tb: F.layer_norm(tx, (D,), tg, tb, eps), x, gamma, beta, dout)
    for ours, theirs, what in zip((out, *grads), expected, ("out", "dx", "dgamma", "dbeta")):
        _assert_close(ours, theirs, what)


@pytest.mark.parametrize("seed", SEEDS)
def test_spatial_batchnorm_matches_torch(ref, seed):
    rng = np.random.default_rng(300 + seed)
    (N, C, H, W), _ = _shape_4d(rng)
    if N * H * W == 1:  # torch refuses a single value per channel in training
        N = 2
    x = rng.standard_normal((N, C, H, W)) + rng.standard_normal((1, C, 1, 1))
    gamma, beta, dout = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal((N, C, H, W))
    bn_param = {"mode": "train", "momentum": 0.8}
    out, cache = ref.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    grads = ref.spatial_batchnorm_backward(dout, cache)
    t_rm, t_rv = torch.zeros(C, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    expected = _torch_forward_backward(
        lambda tx, tg, tb: F.batch_norm(tx, t_rm, t_rv, tg, tb, training=True, momentum=0.2, eps=1e-5),
        x, gamma, beta, dout,
    )
    for ours, theirs, what in zip((out, *grads), expected, ("out", "dx", "dgamma", "dbeta")):
        _assert_close(ours, theirs, what)
    _assert_close(bn_param["running_mean"], t_rm.numpy(), "running_mean")
    M = N * H * W
    _assert_close(bn_param["running_var"], t_rv.numpy() * (M - 1) / M, "running_var")


@pytest.mark.parametrize("seed", SEEDS)
def test_spatial_groupnorm_matches_torch(ref, seed):
    rng = np.random.default_rng(400 + seed)
    (N, C, H, W), G = _shape_4d(rng, groups=True)
    x = rng.standard_normal((N, C, H, W)) + rng.standard_normal((N, C, 1, 1))
    gamma, beta = rng.standard_normal((1, C, 1, 1)), rng.standard_normal((1, C, 1, 1))
    dout = rng.standard_normal((N, C, H, W))
    out, cache = ref.spatial_groupnorm_forward(x, gamma, beta, G, {"eps": 1e-5})
    grads = ref.spatial_groupnorm_backward(dout, cache)
    expected = _torch_forward_backward(
        lambda tx, tg, tb: F.group_norm(tx, G, tg.reshape(C), tb.reshape(C), 1e-5), x, gamma, beta, dout
    )
    for ours, theirs, what in zip((out, *grads), expected, ("out", "dx", "dgamma", "dbeta")):
        _assert_close(ours, theirs, what)
