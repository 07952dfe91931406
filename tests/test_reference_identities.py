"""The reference against mathematical identities, numerical gradients and edge cases (no oracle needed)."""
import numpy as np
import pytest

from normlab.gradient_check import eval_numerical_gradient_array, rel_error


def _gn_inputs(rng, N=3, C=6, H=4, W=5):
    x = 2 * rng.standard_normal((N, C, H, W)) + 1
    return x, rng.standard_normal((1, C, 1, 1)), rng.standard_normal((1, C, 1, 1)), rng.standard_normal((N, C, H, W))


def test_groupnorm_with_one_group_is_layernorm_over_chw(ref, rng):
    x, gamma, beta, dout = _gn_inputs(rng)
    N, C, H, W = x.shape
    ones = np.ones((1, C, 1, 1))
    out, cache = ref.spatial_groupnorm_forward(x, ones, np.zeros_like(ones), 1, {})
    dx, _, _ = ref.spatial_groupnorm_backward(dout, cache)
    ln_out, ln_cache = ref.layernorm_forward(x.reshape(N, -1), np.ones(C * H * W), np.zeros(C * H * W), {})
    ln_dx, _, _ = ref.layernorm_backward(dout.reshape(N, -1), ln_cache)
    np.testing.assert_allclose(out.reshape(N, -1), ln_out, atol=1e-12)
    np.testing.assert_allclose(dx.reshape(N, -1), ln_dx, atol=1e-12)


def test_groupnorm_with_one_channel_per_group_is_instance_norm(ref, rng):
    x, gamma, beta, _ = _gn_inputs(rng)
    N, C, H, W = x.shape
    out, _ = ref.spatial_groupnorm_forward(x, gamma, beta, C, {"eps": 1e-5})
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(out, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta, atol=1e-12)


def test_groupnorm_groups_are_contiguous_channels(ref, rng):
    x, gamma, beta, _ = _gn_inputs(rng)
    out, _ = ref.spatial_groupnorm_forward(x, np.ones_like(gamma), np.zeros_like(beta), 2, {})
    # Channels 0..2 form group 0: normalized together, mean 0 and variance ~1 over them.
    group0 = out[:, :3].reshape(x.shape[0], -1)
    np.testing.assert_allclose(group0.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(group0.var(axis=1), 1, atol=1e-4)


def test_spatial_batchnorm_is_batchnorm_on_transposed_input(ref, rng):
    N, C, H, W = 4, 3, 5, 2
    x = rng.standard_normal((N, C, H, W)) * 3 + 2
    gamma, beta, dout = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal((N, C, H, W))
    p_spatial, p_flat = {"mode": "train"}, {"mode": "train"}
    out, cache = ref.spatial_batchnorm_forward(x, gamma, beta, p_spatial)
    grads = ref.spatial_batchnorm_backward(dout, cache)
    rows = lambda a: a.transpose(0, 2, 3, 1).reshape(-1, C)
    flat_out, flat_cache = ref.batchnorm_forward(rows(x), gamma, beta, p_flat)
    flat_grads = ref.batchnorm_backward(rows(dout), flat_cache)
    np.testing.assert_allclose(rows(out), flat_out, atol=1e-12)
    np.testing.assert_allclose(rows(grads[0]), flat_grads[0], atol=1e-12)
    for ours, theirs in zip(grads[1:], flat_grads[1:]):
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(p_spatial["running_var"], p_flat["running_var"], atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 1), (1, 5), (17, 9), (64, 3)])
def test_backward_and_backward_alt_agree(ref, rng, shape):
    x = rng.standard_normal(shape) * 5 + 3
    gamma, beta, dout = rng.standard_normal(shape[1]), rng.standard_normal(shape[1]), rng.standard_normal(shape)
    _, cache = ref.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    # dx is a difference of terms of size |dout * gamma| / std; with N = 2 the
    # result is a tiny residue, so the error is measured against that term size.
    term_scale = np.linalg.norm(dout * gamma / np.sqrt(x.var(axis=0) + 1e-5))
    names = ("dx", "dgamma", "dbeta")
    pairs = zip(names, ref.batchnorm_backward(dout, cache), ref.batchnorm_backward_alt(dout, cache))
    for name, a, b in pairs:
        scale = max(np.linalg.norm(a), np.linalg.norm(b), term_scale if name == "dx" else 0, 1e-300)
        assert np.linalg.norm(a - b) / scale <= 1e-10, name


def _check_gradients(forward, backward, x, gamma, beta, dout, tol=1e-7):
    _, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)
    numeric = {
        "dx": eval_numerical_gradient_array(lambda v: forward(v, gamma, beta)[0], x, dout),
        "dgamma": eval_numerical_gradient_array(lambda v: forward(x, v, beta)[0], gamma, dout),
        "dbeta": eval_numerical_gradient_array(lambda v: forward(x, gamma, v)[0], beta, dout),
    }
    for name, analytic in (("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)):
        assert rel_error(numeric[name], analytic) < tol, name


@pytest.mark.parametrize("backward", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_batchnorm_gradients_match_central_differences(ref, rng, backward):
    x, gamma, beta, dout = 4 * rng.standard_normal((6, 5)) + 2, rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((6, 5))
    forward = lambda x, g, b: ref.batchnorm_forward(x, g, b, {"mode": "train"})
    _check_gradients(forward, getattr(ref, backward), x, gamma, beta, dout)


def test_layernorm_gradients_match_central_differences(ref, rng):
    x, gamma, beta, dout = 4 * rng.standard_normal((4, 7)) + 2, rng.standard_normal(7), rng.standard_normal(7), rng.standard_normal((4, 7))
    forward = lambda x, g, b: ref.layernorm_forward(x, g, b, {})
    _check_gradients(forward, ref.layernorm_backward, x, gamma, beta, dout)


def test_spatial_batchnorm_gradients_match_central_differences(ref, rng):
    x = 4 * rng.standard_normal((2, 3, 4, 3)) + 2
    gamma, beta, dout = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(x.shape)
    forward = lambda x, g, b: ref.spatial_batchnorm_forward(x, g, b, {"mode": "train"})
    _check_gradients(forward, ref.spatial_batchnorm_backward, x, gamma, beta, dout)


def test_spatial_groupnorm_gradients_match_central_differences(ref, rng):
    x, gamma, beta, dout = _gn_inputs(rng, N=2, C=6, H=3, W=2)
    forward = lambda x, g, b: ref.spatial_groupnorm_forward(x, g, b, 3, {})
    _check_gradients(forward, ref.spatial_groupnorm_backward, x, gamma, beta, dout)


# ---- conventions --------------------------------------------------------------


def test_running_statistics_follow_the_documented_update(ref, rng):
    D = 4
    bn_param = {"mode": "train", "momentum": 0.7}
    rm, rv = np.zeros(D), np.zeros(D)
    for _ in range(3):
        x = rng.standard_normal((10, D)) * 2 + 1
        ref.batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)
        rm = 0.7 * rm + 0.3 * x.mean(axis=0)
        rv = 0.7 * rv + 0.3 * x.var(axis=0)  # biased
    np.testing.assert_allclose(bn_param["running_mean"], rm, atol=1e-14)
    np.testing.assert_allclose(bn_param["running_var"], rv, atol=1e-14)


def test_running_statistics_default_to_zeros_in_x_dtype(ref, rng):
    bn_param = {"mode": "test"}
    x = rng.standard_normal((3, 2)).astype(np.float32)
    out, _ = ref.batchnorm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32), bn_param)
    assert bn_param["running_mean"].dtype == np.float32 and bn_param["running_mean"].shape == (2,)
    np.testing.assert_allclose(out, x / np.sqrt(1e-5), rtol=1e-6)


def test_test_mode_uses_running_statistics_and_keeps_them(ref, rng):
    rm, rv = rng.standard_normal(3), rng.random(3) + 1
    bn_param = {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy()}
    x, gamma, beta = rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(3)
    out, _ = ref.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out, gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta, atol=1e-14)
    np.testing.assert_array_equal(bn_param["running_mean"], rm)
    np.testing.assert_array_equal(bn_param["running_var"], rv)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_and_gradients_keep_dtypes_and_shapes(ref, rng, dtype):
    x = rng.standard_normal((4, 6, 2, 3)).astype(dtype)
    g1, b1 = np.ones(6, dtype), np.zeros(6, dtype)
    g4, b4 = np.ones((1, 6, 1, 1), dtype), np.zeros((1, 6, 1, 1), dtype)
    x2, dout2, dout4 = x.reshape(4, -1), x.reshape(4, -1), x
    g2, b2 = np.ones(36, dtype), np.zeros(36, dtype)
    cases = [
        (ref.batchnorm_forward(x2, g2, b2, {"mode": "train"}), ref.batchnorm_backward, dout2, (36,)),
        (ref.batchnorm_forward(x2, g2, b2, {"mode": "train"}), ref.batchnorm_backward_alt, dout2, (36,)),
        (ref.layernorm_forward(x2, g2, b2, {}), ref.layernorm_backward, dout2, (36,)),
        (ref.spatial_batchnorm_forward(x, g1, b1, {"mode": "train"}), ref.spatial_batchnorm_backward, dout4, (6,)),
        (ref.spatial_groupnorm_forward(x, g4, b4, 3, {}), ref.spatial_groupnorm_backward, dout4, (1, 6, 1, 1)),
    ]
    for (out, cache), backward, dout, param_shape in cases:
        assert out.dtype == dtype and out.shape == dout.shape
        dx, dgamma, dbeta = backward(dout, cache)
        assert dx.dtype == dtype and dx.shape == dout.shape, backward.__name__
        assert dgamma.shape == dbeta.shape == param_shape, backward.__name__
        assert dgamma.dtype == dbeta.dtype == dtype, backward.__name__


@pytest.mark.parametrize("x_dtype, dout_dtype", [(np.float16, np.float16), (np.int32, np.float64),
                                                   (np.float32, np.float64), (np.float64, np.float32)])
def test_other_dtypes_keep_theirs_and_the_float64_values(ref, rng, x_dtype, dout_dtype):
    """A red-team finding: integer and float16 x, and float32 x with float64 dout, broke the dtype convention."""
    if np.issubdtype(x_dtype, np.integer):
        x = rng.integers(-50, 50, (4, 6, 2, 3)).astype(x_dtype)
    else:
        x = (300 * rng.standard_normal((4, 6, 2, 3))).astype(x_dtype)  # float16 squares would overflow
    dout = rng.standard_normal(x.shape).astype(dout_dtype)
    x2, dout2 = x.reshape(4, -1), dout.reshape(4, -1)
    g2, b2, g1, b1 = np.ones(36), np.zeros(36), np.ones(6), np.zeros(6)
    g4, b4 = np.ones((1, 6, 1, 1)), np.zeros((1, 6, 1, 1))
    layers = [
        (lambda x: ref.batchnorm_forward(x, g2, b2, {"mode": "train"}), ref.batchnorm_backward, x2, dout2),
        (lambda x: ref.batchnorm_forward(x, g2, b2, {"mode": "train"}), ref.batchnorm_backward_alt, x2, dout2),
        (lambda x: ref.layernorm_forward(x, g2, b2, {}), ref.layernorm_backward, x2, dout2),
        (lambda x: ref.spatial_batchnorm_forward(x, g1, b1, {"mode": "train"}), ref.spatial_batchnorm_backward, x,
         dout),
        (lambda x: ref.spatial_groupnorm_forward(x, g4, b4, 3, {}), ref.spatial_groupnorm_backward, x, dout),
    ]
    tolerance = 1e-2 if x_dtype == np.float16 else 1e-5
    for forward, backward, x_in, dout_in in layers:
        out, cache = forward(x_in)
        dx, _, _ = backward(dout_in, cache)
        exact_out, exact_cache = forward(x_in.astype(np.float64))
        exact_dx, _, _ = backward(dout_in.astype(np.float64), exact_cache)
        assert out.dtype == dx.dtype == x_dtype, backward.__name__
        if np.issubdtype(x_dtype, np.floating):
            np.testing.assert_allclose(out, exact_out, atol=tolerance * 4, err_msg=backward.__name__)
            np.testing.assert_allclose(dx, exact_dx, atol=tolerance * np.abs(exact_dx).max(),
                                       err_msg=backward.__name__)
        else:  # the float64 values, cast to the integer dtype
            np.testing.assert_array_equal(out, exact_out.astype(x_dtype), err_msg=backward.__name__)
            np.testing.assert_array_equal(dx, exact_dx.astype(x_dtype), err_msg=backward.__name__)


# ---- edge cases ---------------------------------------------------------------


def test_batchnorm_single_example_gives_beta(ref, rng):
    x, gamma, beta = rng.standard_normal((1, 4)), rng.standard_normal(4), rng.standard_normal(4)
    out, cache = ref.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out, beta[None], atol=1e-12)
    dx, dgamma, dbeta = ref.batchnorm_backward_alt(np.ones((1, 4)), cache)
    np.testing.assert_allclose(dx, 0, atol=1e-12)


def test_layernorm_single_feature_gives_beta(ref, rng):
    x, gamma, beta = rng.standard_normal((5, 1)), rng.standard_normal(1), rng.standard_normal(1)
    out, cache = ref.layernorm_forward(x, gamma, beta, {})
    np.testing.assert_allclose(out, np.broadcast_to(beta, (5, 1)), atol=1e-12)
    dx, _, dbeta = ref.layernorm_backward(np.ones((5, 1)), cache)
    np.testing.assert_allclose(dx, 0, atol=1e-12)
    np.testing.assert_allclose(dbeta, [5.0])


def test_one_pixel_images(ref, rng):
    x = rng.standard_normal((6, 4, 1, 1))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    out, _ = ref.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    flat, _ = ref.batchnorm_forward(x.reshape(6, 4), gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out.reshape(6, 4), flat, atol=1e-12)
    out, cache = ref.spatial_groupnorm_forward(x, gamma.reshape(1, 4, 1, 1), beta.reshape(1, 4, 1, 1), 2, {})
    assert out.shape == x.shape and np.isfinite(out).all()


LARGE_MEAN_CASES = {
    "batchnorm": lambda ref, x: ref.batchnorm_forward(x, np.ones(8, x.dtype), np.zeros(8, x.dtype), {"mode": "train"}),
    "layernorm": lambda ref, x: ref.layernorm_forward(x, np.ones(8, x.dtype), np.zeros(8, x.dtype), {}),
    "spatial_batchnorm": lambda ref, x: ref.spatial_batchnorm_forward(
        x.reshape(16, 2, 2, 2), np.ones(2, x.dtype), np.zeros(2, x.dtype), {"mode": "train"}
    ),
    "spatial_groupnorm": lambda ref, x: ref.spatial_groupnorm_forward(
        x.reshape(16, 2, 2, 2), np.ones((1, 2, 1, 1), x.dtype), np.zeros((1, 2, 1, 1), x.dtype), 2, {}
    ),
}


@pytest.mark.parametrize("layer", LARGE_MEAN_CASES)
def test_float32_with_large_mean_stays_accurate(ref, rng, layer):
    x32 = (1e4 + rng.standard_normal((16, 8))).astype(np.float32)
    out32, _ = LARGE_MEAN_CASES[layer](ref, x32)
    out64, _ = LARGE_MEAN_CASES[layer](ref, x32.astype(np.float64))
    assert out32.dtype == np.float32
    assert np.linalg.norm(out32 - out64) / np.linalg.norm(out64) <= 1e-4


# ---- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), {"mode": "eval"}), "'train' or 'test'"),
        (lambda r: r.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), {}), "'train' or 'test'"),
        (lambda r: r.batchnorm_forward(np.ones((2, 3)), np.ones((1, 3)), np.zeros(3), {"mode": "train"}), r"gamma must have shape \(3,\)"),
        (lambda r: r.batchnorm_forward(np.ones((2, 3, 1)), np.ones(3), np.zeros(3), {"mode": "train"}), r"x must be a 2-D array"),
        (lambda r: r.layernorm_forward(np.ones(3), np.ones(3), np.zeros(3), {}), r"x must be a 2-D array"),
        (lambda r: r.layernorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(4), {}), r"beta must have shape \(3,\)"),
        (lambda r: r.spatial_batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), {"mode": "train"}), r"4-D array of shape \('N', 'C', 'H', 'W'\)"),
        (lambda r: r.spatial_batchnorm_forward(np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3), {"mode": "x"}), "'train' or 'test'"),
        (lambda r: r.spatial_groupnorm_forward(np.ones((2, 6, 2, 2)), np.ones((1, 6, 1, 1)), np.zeros((1, 6, 1, 1)), 4, {}), "divides C=6"),
        (lambda r: r.spatial_groupnorm_forward(np.ones((2, 6, 2, 2)), np.ones(6), np.zeros((1, 6, 1, 1)), 3, {}), r"gamma must have shape \(1, 6, 1, 1\)"),
        (lambda r: r.spatial_groupnorm_forward(np.ones((2, 6, 2, 2)), np.ones((1, 6, 1, 1)), np.zeros((1, 6, 1, 1)), 0, {}), "positive integer"),
        (lambda r: r.batchnorm_forward([[1.0, 2.0]], np.ones(2), np.zeros(2), {"mode": "train"}), "one array library|x must be"),
    ],
)
def test_bad_input_gets_a_clear_value_error(ref, call, message):
    with pytest.raises(ValueError, match=message):
        call(ref)
