"""The reference runs unchanged on any array-API library; CuPy where a CUDA GPU is present."""
import numpy as np
import pytest

from normlab.backend import BackendUnavailable, get_backend, namespace_of, to_backend, to_numpy

# Each case: (forward name, backward name, x shape, parameter shape, extra forward args, param dict)
CASES = {
    "batchnorm": ("batchnorm_forward", "batchnorm_backward", (6, 5), (5,), (), {"mode": "train"}),
    "batchnorm_alt": ("batchnorm_forward", "batchnorm_backward_alt", (6, 5), (5,), (), {"mode": "train"}),
    "layernorm": ("layernorm_forward", "layernorm_backward", (6, 5), (5,), (), {}),
    "spatial_batchnorm": ("spatial_batchnorm_forward", "spatial_batchnorm_backward", (3, 4, 2, 3), (4,), (), {"mode": "train"}),
    "spatial_groupnorm": ("spatial_groupnorm_forward", "spatial_groupnorm_backward", (3, 4, 2, 3), (1, 4, 1, 1), (2,), {}),
}


def _run(ref, case, convert, dtype=np.float64):
    forward, backward, x_shape, p_shape, extra, param = CASES[case]
    rng = np.random.default_rng(7)
    x = (3 * rng.standard_normal(x_shape) + 1).astype(dtype)
    gamma, beta = rng.standard_normal(p_shape).astype(dtype), rng.standard_normal(p_shape).astype(dtype)
    dout = rng.standard_normal(x_shape).astype(dtype)
    param = dict(param)
    out, cache = getattr(ref, forward)(convert(x), convert(gamma), convert(beta), *extra, param)
    grads = getattr(ref, backward)(convert(dout), cache)
    running = [param[k] for k in ("running_mean", "running_var") if k in param]
    return [out, *grads, *running]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_runs_on_array_api_strict(ref, case, dtype):
    xps = pytest.importorskip("array_api_strict")
    on_numpy = _run(ref, case, lambda a: a, dtype)
    on_strict = _run(ref, case, xps.asarray, dtype)
    for expected, got in zip(on_numpy, on_strict):
        assert type(got).__module__.startswith("array_api_strict"), "result left the array-API namespace"
        got = np.asarray(got)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)


def test_mixing_array_libraries_is_refused(ref):
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="one array library"):
        ref.batchnorm_forward(xps.asarray(np.ones((2, 3))), np.ones(3), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match="one array library"):
        namespace_of(np.ones(2), xps.asarray(np.ones(2)))


def test_backend_selection_errors_are_clear():
    assert get_backend("numpy") is np
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        get_backend("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="needs CuPy"):
            get_backend("cupy")


def _cupy_or_skip():
    try:
        return get_backend("cupy")
    except BackendUnavailable as err:
        pytest.skip(f"no usable CuPy: {err}")


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_on_cupy_matches_numpy(ref, case, dtype):
    cp = _cupy_or_skip()
    on_numpy = _run(ref, case, lambda a: a, dtype)
    on_gpu = _run(ref, case, lambda a: to_backend(a, "cupy"), dtype)
    for expected, got in zip(on_numpy, on_gpu):
        assert isinstance(got, cp.ndarray), "result was copied off the GPU"
        got = to_numpy(got)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)


@pytest.mark.gpu
def test_cupy_and_numpy_are_not_mixed_silently(ref):
    _cupy_or_skip()
    with pytest.raises(ValueError, match="one array library"):
        ref.batchnorm_forward(to_backend(np.ones((2, 3)), "cupy"), np.ones(3), np.zeros(3), {"mode": "train"})


def test_numpy_arrays_get_numpy_itself_without_the_compat_wrapper():
    """NumPy 2.1+ is its own array-API namespace; array_api_compat's wrapper imports every NumPy submodule."""
    import subprocess
    import sys

    assert namespace_of(np.ones(2), None, np.zeros(3)) is np
    assert namespace_of(np.ma.ones(2)) is not np  # a subclass keeps array_api_compat's rules
    code = ("import sys, numpy as np; from normgrade.score.reference import load_layers; L = load_layers(); "
            "x = np.ones((4, 3)); out, cache = L.layernorm_forward(x, np.ones(3), np.zeros(3), {}); "
            "L.layernorm_backward(x, cache); print(sorted(m for m in ('array_api_compat.numpy', 'numpy.f2py') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
