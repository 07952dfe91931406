"""Numerical gradients and error measures (provided).

Unlike CS231n's originals, `f` receives the perturbed argument: a lambda such as
`lambda g: batchnorm_forward(x, g, beta, bn_param)[0]` works, and nothing relies
on the caller's array being mutated in place (it is never touched).
"""
import numpy as np


def rel_error(x, y):
    """
    Maximum relative error max(|x - y| / max(1e-8, |x| + |y|)) between two arrays.

    Raises ValueError when the shapes differ: broadcasting (D,) against (1, D)
    would otherwise hide a wrong shape behind a small error.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"rel_error needs arrays of the same shape, got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _perturbed_values(f, x, h):
    """Yield (index, f(x + h e_i), f(x - h e_i)) for every index i of x, on a private copy."""
    x_work = np.array(x, copy=True)
    if x_work.dtype.kind != "f":
        x_work = x_work.astype(np.float64)
    for ix in np.ndindex(x_work.shape):
        old = x_work[ix]
        x_work[ix] = old + h
        plus = np.array(f(x_work), copy=True)
        x_work[ix] = old - h
        minus = np.array(f(x_work), copy=True)
        x_work[ix] = old
        yield ix, plus, minus


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """
    Numerical gradient of a scalar function f at x, by central differences.

    Inputs:
    - f: Function that takes one array (shaped like x) and returns a scalar
    - x: Point at which to evaluate the gradient (not modified)
    - verbose: If True, print each partial derivative as it is computed
    - h: Step size

    Returns:
    - grad: Array of the same shape as x
    """
    grad = np.zeros(np.shape(x), dtype=np.float64)
    for ix, plus, minus in _perturbed_values(f, x, h):
        grad[ix] = (float(plus) - float(minus)) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """
    Numerical gradient of sum(f(x) * df) at x, for a function f that returns an array.

    Inputs:
    - f: Function that takes one array (shaped like x) and returns an array
    - x: Point at which to evaluate the gradient (not modified)
    - df: Upstream derivative, of the shape f returns
    - h: Step size

    Returns:
    - grad: Array of the same shape as x
    """
    grad = np.zeros(np.shape(x), dtype=np.float64)
    for ix, plus, minus in _perturbed_values(f, x, h):
        grad[ix] = np.sum((plus - minus) * df) / (2 * h)
    return grad


def check_model_gradients(model, X, y, h=1e-6):
    """
    Compare a model's analytic gradients with numerical ones, parameter by parameter.

    The model's parameters are restored afterwards. Returns a dictionary that
    maps each parameter name to the relative error between the two gradients.
    """
    _, grads = model.loss(X, y)
    errors = {}
    for name in sorted(model.params):
        original = model.params[name]

        def loss_at(value, name=name):
            model.params[name] = value
            return model.loss(X, y)[0]

        try:
            numeric = eval_numerical_gradient(loss_at, original, verbose=False, h=h)
        finally:
            model.params[name] = original
        errors[name] = rel_error(numeric, grads[name])
    return errors
