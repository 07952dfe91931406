"""The provided parts of the student package: layers, gradient checks, net, solver, data."""
import pickle

import numpy as np
import pytest

from normgrade.build.submission import assemble_reference, imported_package
from normlab import layers
from normlab.data import get_cifar10_data, load_cifar10, load_digits_data
from normlab.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error


@pytest.fixture(scope="module")
def reference_normlab(tmp_path_factory):
    """The student package with the reference layers, imported in isolation."""
    parent = tmp_path_factory.mktemp("reference")
    assemble_reference(parent)
    with imported_package(parent) as package:
        import normlab.fc_net
        import normlab.gradient_check
        import normlab.solver

        yield package


# ---- gradient checks ----------------------------------------------------------


def test_numerical_gradient_passes_the_perturbed_argument_and_leaves_x_alone(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    grad = eval_numerical_gradient(lambda a: np.sum(a**3), x, verbose=False)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_array_works_with_lambdas_that_ignore_outer_state(rng):
    w, x, dout = rng.standard_normal((4, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    numeric = eval_numerical_gradient_array(lambda v: v @ w, x, dout)
    np.testing.assert_allclose(numeric, dout @ w.T, rtol=1e-7)


def test_rel_error_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(3,\) and \(1, 3\)"):
        rel_error(np.ones(3), np.ones((1, 3)))
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)


# ---- provided layers ----------------------------------------------------------


@pytest.mark.parametrize("which", ["affine", "relu", "softmax"])
def test_provided_layer_gradients(rng, which):
    x = rng.standard_normal((5, 2, 3))
    if which == "affine":
        w, b, dout = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal((5, 4))
        _, cache = layers.affine_forward(x, w, b)
        dx, dw, db = layers.affine_backward(dout, cache)
        assert rel_error(dx, eval_numerical_gradient_array(lambda v: layers.affine_forward(v, w, b)[0], x, dout)) < 1e-8
        assert rel_error(dw, eval_numerical_gradient_array(lambda v: layers.affine_forward(x, v, b)[0], w, dout)) < 1e-8
        assert rel_error(db, eval_numerical_gradient_array(lambda v: layers.affine_forward(x, w, v)[0], b, dout)) < 1e-8
    elif which == "relu":
        dout = rng.standard_normal(x.shape)
        _, cache = layers.relu_forward(x)
        numeric = eval_numerical_gradient_array(lambda v: layers.relu_forward(v)[0], x, dout)
        assert rel_error(layers.relu_backward(dout, cache), numeric) < 1e-8
    else:
        scores, y = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
        loss, dx = layers.softmax_loss(scores, y)
        assert loss == pytest.approx(-np.mean(np.log(np.exp(scores[np.arange(7), y]) / np.exp(scores).sum(1))))
        numeric = eval_numerical_gradient(lambda v: layers.softmax_loss(v, y)[0], scores, verbose=False)
        assert rel_error(dx, numeric) < 1e-7


def test_inverted_dropout_keeps_probability_p_and_the_expected_value(rng):
    x = rng.random((500, 500)) + 10
    out, cache = layers.dropout_forward(x, {"mode": "train", "p": 0.3, "seed": 1})
    assert np.mean(out != 0) == pytest.approx(0.3, abs=0.01)
    assert out.mean() == pytest.approx(x.mean(), rel=0.02)
    test_out, _ = layers.dropout_forward(x, {"mode": "test", "p": 0.3})
    np.testing.assert_array_equal(test_out, x)
    dout = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layers.dropout_backward(dout, cache), dout * (out / x), rtol=1e-12)
    with pytest.raises(ValueError, match="keep probability"):
        layers.dropout_forward(x, {"mode": "train", "p": 0})


# ---- the network and the solver (on the reference layers) -----------------------


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
def test_fully_connected_net_gradients(reference_normlab, rng, normalization):
    # Hidden layers wide enough that ReLU + dropout never zero a whole row: a
    # zero row normalized by layer norm lands exactly on the ReLU kink.
    net = reference_normlab.fc_net.FullyConnectedNet(
        [12, 10], input_dim=5, num_classes=4, normalization=normalization, reg=0.1,
        weight_scale=0.5, dtype=np.float64, seed=3, dropout_keep_ratio=0.7,
    )
    X, y = rng.standard_normal((8, 5)), rng.integers(0, 4, 8)
    errors = reference_normlab.gradient_check.check_model_gradients(net, X, y)
    expected = {"W1", "b1", "W2", "b2", "W3", "b3"} | ({"gamma1", "beta1", "gamma2", "beta2"} if normalization else set())
    assert set(errors) == expected
    assert max(errors.values()) < 1e-5, errors


def test_fully_connected_net_test_mode_leaves_running_statistics(reference_normlab, rng):
    net = reference_normlab.fc_net.FullyConnectedNet([6], input_dim=5, num_classes=3, normalization="batchnorm", seed=0)
    X, y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    net.loss(X, y)
    running = net.bn_params[0]["running_mean"].copy()
    scores = net.loss(X)
    assert scores.shape == (10, 3)
    np.testing.assert_array_equal(net.bn_params[0]["running_mean"], running)


def test_bad_network_arguments_are_refused():
    from normlab.fc_net import FullyConnectedNet

    with pytest.raises(ValueError, match="normalization"):
        FullyConnectedNet([5], normalization="groupnorm")
    with pytest.raises(ValueError, match="dropout_keep_ratio"):
        FullyConnectedNet([5], dropout_keep_ratio=0)


@pytest.mark.parametrize("update_rule", ["sgd", "sgd_momentum", "adam"])
def test_solver_learns_the_digits(reference_normlab, update_rule):
    data = load_digits_data()
    net = reference_normlab.fc_net.FullyConnectedNet(
        [64], input_dim=64, normalization="batchnorm", weight_scale=0.05, seed=0
    )
    lr = {"sgd": 0.1, "sgd_momentum": 0.05, "adam": 1e-2}[update_rule]
    solver = reference_normlab.solver.Solver(
        net, data, update_rule=update_rule, optim_config={"learning_rate": lr},
        num_epochs=3, batch_size=50, verbose=False, seed=0,
    )
    solver.train()
    assert len(solver.loss_history) == 3 * (data["X_train"].shape[0] // 50)
    assert solver.best_val_acc > 0.85
    assert solver.loss_history[-1] < solver.loss_history[0]


def test_solver_rejects_unknown_arguments(reference_normlab):
    data = load_digits_data()
    net = reference_normlab.fc_net.FullyConnectedNet([4], input_dim=64)
    with pytest.raises(ValueError, match="unrecognized arguments: lr"):
        reference_normlab.solver.Solver(net, data, lr=1)
    with pytest.raises(ValueError, match="invalid update_rule"):
        reference_normlab.solver.Solver(net, data, update_rule="rmsprop")


# ---- data -----------------------------------------------------------------------


def test_digits_splits_are_disjoint_and_centered():
    data = load_digits_data(num_validation=100, num_test=150, images=True)
    assert data["X_train"].shape == (1797 - 250, 1, 8, 8)
    assert data["X_val"].shape == (100, 1, 8, 8) and data["y_test"].shape == (150,)
    np.testing.assert_allclose(data["X_train"].mean(axis=0), 0, atol=1e-12)
    assert set(np.unique(data["y_train"])) == set(range(10))


def _write_cifar_batch(path, n, rng):
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    return batch


def test_cifar10_loader_reads_python_batches(tmp_path, rng):
    batches = [_write_cifar_batch(tmp_path / f"data_batch_{i}", 4, rng) for i in range(1, 6)]
    _write_cifar_batch(tmp_path / "test_batch", 3, rng)
    X_train, y_train, X_test, y_test = load_cifar10(tmp_path)
    assert X_train.shape == (20, 3, 32, 32) and X_test.shape == (3, 3, 32, 32)
    # Rows are channel-major: the first 1024 values are the red plane.
    np.testing.assert_array_equal(X_train[0, 0].ravel(), batches[0][b"data"][0, :1024])
    np.testing.assert_array_equal(y_train[4:8], batches[1][b"labels"])
    data = get_cifar10_data(tmp_path, num_training=15, num_validation=5, num_test=2)
    assert data["X_val"].shape == (5, 3, 32, 32) and data["X_test"].shape == (2, 3, 32, 32)


def test_cifar10_loader_explains_missing_or_broken_files(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10(tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)


def test_the_network_trains_with_batchnorm_backward_before_the_alt_version_is_written(tmp_path, rng):
    """A student who wrote batchnorm_backward but not yet batchnorm_backward_alt can run the experiments."""
    from normgrade.paths import SOLUTION_LAYERS

    package = assemble_reference(tmp_path)
    source = SOLUTION_LAYERS.read_text()
    start = source.index("def batchnorm_backward_alt(")
    body = source.index('    """', source.index('"""', start) + 3) + len('    """')  # after its docstring
    end = source.index("\ndef ", body)
    stubbed = source[:body] + '\n    raise NotImplementedError("batchnorm_backward_alt is not implemented yet")\n' + source[end:]
    (package / "layers.py").write_text(stubbed)
    with imported_package(tmp_path) as normlab:
        import normlab.fc_net
        import normlab.gradient_check

        with pytest.raises(NotImplementedError):
            normlab.layers.batchnorm_backward_alt(np.ones((2, 3)), None)
        net = normlab.fc_net.FullyConnectedNet([6], input_dim=5, num_classes=3, normalization="batchnorm",
                                               dtype=np.float64, seed=0)
        errors = normlab.gradient_check.check_model_gradients(net, rng.standard_normal((8, 5)), rng.integers(0, 3, 8))
        assert max(errors.values()) < 1e-5, errors
