"""
Layers of a small fully-connected / convolutional network, CS231n style.

Each forward function takes inputs and parameters and returns (out, cache);
each backward function takes the upstream derivative dout and that cache and
returns the gradients with respect to the forward function's inputs.

The normalization layers (batch, layer, spatial batch and spatial group
normalization) are yours to implement. The affine, ReLU and dropout layers and
the softmax loss are provided.

Conventions shared by every normalization layer:
- Outputs and gradients keep the dtype of the array they belong to
  (out and dx: x's dtype; dgamma and dbeta: gamma's and beta's).
- Statistics of float32 inputs should be accumulated in float64, so that
  inputs with a large mean (x = 1e4 + randn) stay accurate.
- Bad input raises ValueError naming what was expected; the checks at the top
  of each function are provided.
- `xp = namespace_of(...)` is the array library of the inputs (NumPy for NumPy
  arrays, CuPy for CuPy arrays). For NumPy inputs you may use np.* directly.
"""
import numpy as np
from array_api_compat import device

from .backend import namespace_of

NORM_MODES = ("train", "test")


def _check_ndim(name, a, layout):
    """Raise ValueError unless `a` is an array with len(layout) dimensions."""
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != len(layout):
        got = "an object of type " + type(a).__name__ if shape is None else f"shape {tuple(shape)}"
        raise ValueError(f"{name} must be a {len(layout)}-D array of shape {layout}, got {got}")


def _check_shape(name, a, expected):
    """Raise ValueError unless `a` is an array of exactly the shape `expected`."""
    shape = getattr(a, "shape", None)
    if shape is None or tuple(shape) != tuple(expected):
        got = "an object of type " + type(a).__name__ if shape is None else f"shape {tuple(shape)}"
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {got}")


def _check_mode(bn_param):
    """Return bn_param['mode'], raising ValueError unless it is 'train' or 'test'."""
    mode = bn_param.get("mode") if isinstance(bn_param, dict) else None
    if mode not in NORM_MODES:
        raise ValueError(f"bn_param['mode'] must be 'train' or 'test', got {mode!r}")
    return mode


def affine_forward(x, w, b):
    """
    Forward pass for an affine (fully connected) layer.

    Inputs:
    - x: Array of shape (N, d_1, ..., d_k); each example is reshaped to a
      vector of dimension D = d_1 * ... * d_k
    - w: Weights of shape (D, M)
    - b: Biases of shape (M,)

    Returns a tuple of:
    - out: Output of shape (N, M)
    - cache: (x, w, b)
    """
    out = x.reshape(x.shape[0], -1) @ w + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    """
    Backward pass for an affine layer.

    Inputs:
    - dout: Upstream derivative of shape (N, M)
    - cache: (x, w, b) from affine_forward

    Returns a tuple of:
    - dx: Gradient with respect to x, of shape (N, d_1, ..., d_k)
    - dw: Gradient with respect to w, of shape (D, M)
    - db: Gradient with respect to b, of shape (M,)
    """
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    """
    Forward pass for a layer of rectified linear units (ReLUs).

    Input:
    - x: Inputs, of any shape

    Returns a tuple of:
    - out: Output, of the same shape as x
    - cache: x
    """
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    """
    Backward pass for a layer of ReLUs.

    Input:
    - dout: Upstream derivatives, of any shape
    - cache: Input x, of the same shape as dout

    Returns:
    - dx: Gradient with respect to x
    """
    x = cache
    return dout * (x > 0)


def dropout_forward(x, dropout_param):
    """
    Forward pass for inverted dropout.

    Note that p is the probability of *keeping* a neuron output, as in CS231n.

    Inputs:
    - x: Input data, of any shape
    - dropout_param: A dictionary with the following keys:
      - p: Dropout parameter. We keep each neuron output with probability p.
      - mode: 'test' or 'train'. If the mode is train, then perform dropout;
        if the mode is test, then just return the input.
      - seed: Seed for the random number generator. Passing seed makes this
        function deterministic, which is needed for gradient checking.

    Outputs:
    - out: Array of the same shape as x.
    - cache: tuple (dropout_param, mask). In training mode, mask is the dropout
      mask that was used to multiply the input; in test mode, mask is None.
    """
    p, mode = dropout_param["p"], dropout_param["mode"]
    if not 0 < p <= 1:
        raise ValueError(f"dropout_param['p'] is a keep probability in (0, 1], got {p!r}")
    if mode not in NORM_MODES:
        raise ValueError(f"dropout_param['mode'] must be 'train' or 'test', got {mode!r}")
    mask = None
    if mode == "train":
        rng = np.random.default_rng(dropout_param.get("seed"))
        mask = (rng.random(x.shape) < p) / p
        out = x * mask
    else:
        out = x
    cache = (dropout_param, mask)
    return out.astype(x.dtype, copy=False), cache


def dropout_backward(dout, cache):
    """
    Backward pass for inverted dropout.

    Inputs:
    - dout: Upstream derivatives, of any shape
    - cache: (dropout_param, mask) from dropout_forward.

    Returns:
    - dx: Gradient with respect to x, of the same shape as dout
    """
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        return dout * mask
    return dout


def softmax_loss(x, y):
    """
    Computes the loss and gradient for softmax classification.

    Inputs:
    - x: Input data, of shape (N, C) where x[i, j] is the score for the jth
      class for the ith input.
    - y: Vector of labels, of shape (N,) where y[i] is the label for x[i] and
      0 <= y[i] < C

    Returns a tuple of:
    - loss: Scalar giving the loss
    - dx: Gradient of the loss with respect to x
    """
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    loss = -log_probs[np.arange(N), y].mean()
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def batchnorm_forward(x, gamma, beta, bn_param):
    """
    Forward pass for batch normalization.

    During training the sample mean and (uncorrected, i.e. biased) sample
    variance are computed from minibatch statistics and used to normalize the
    incoming data. During training we also keep an exponentially decaying
    running mean of the mean and variance of each feature, and these averages
    are used to normalize data at test-time:

    running_mean = momentum * running_mean + (1 - momentum) * sample_mean
    running_var = momentum * running_var + (1 - momentum) * sample_var

    Test mode uses only the running statistics and never changes them.

    Input:
    - x: Data of shape (N, D)
    - gamma: Scale parameter of shape (D,)
    - beta: Shift parameter of shape (D,)
    - bn_param: Dictionary with the following keys:
      - mode: 'train' or 'test'; required
      - eps: Constant for numeric stability (default 1e-5)
      - momentum: Constant for running mean / variance (default 0.9)
      - running_mean: Array of shape (D,) giving running mean of features
        (zeros in x's dtype when absent)
      - running_var: Array of shape (D,) giving running variance of features
        (zeros in x's dtype when absent)
      The updated running_mean and running_var are written back into bn_param.

    Returns a tuple of:
    - out: Output of shape (N, D), in x's dtype
    - cache: A tuple or dict of values needed in the backward pass
    """
    xp = namespace_of(x, gamma, beta)
    _check_ndim("x", x, ("N", "D"))
    N, D = x.shape
    _check_shape("gamma", gamma, (D,))
    _check_shape("beta", beta, (D,))
    mode = _check_mode(bn_param)
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    running_mean = bn_param.get("running_mean", xp.zeros(D, dtype=x.dtype, device=device(x)))
    running_var = bn_param.get("running_var", xp.zeros(D, dtype=x.dtype, device=device(x)))

    out, cache = None, None
    ### BEGIN SOLUTION
    x_dtype = x.dtype
    if x_dtype not in (xp.float32, xp.float64):  # integers and float16 are normalized in float64
        x = xp.astype(x, xp.float64)
    if mode == "train":
        # The statistics are summed in float64 (with no float64 copy of x);
        # the arrays of N x D values stay in x's dtype.
        sample_mean = xp.sum(x, axis=0, dtype=xp.float64) / N
        rounded_mean = xp.astype(sample_mean, x.dtype)
        x_hat = x - rounded_mean  # centered here, normalized below
        if x.dtype != xp.float64:
            # Also take off what rounding the mean lost (float32 keeps 3 decimals at 1e4).
            x_hat -= xp.astype(sample_mean - rounded_mean, x.dtype)
        sample_var = xp.sum(x_hat**2, axis=0, dtype=xp.float64) / N  # biased: divides by N
        std = xp.sqrt(sample_var + eps)
        inv_std = 1.0 / std
        x_hat *= xp.astype(inv_std, x.dtype)
        out = x_hat * xp.astype(gamma, x.dtype)
        out += xp.astype(beta, x.dtype)
        running_mean = xp.astype(
            momentum * running_mean + (1 - momentum) * sample_mean, running_mean.dtype
        )
        running_var = xp.astype(
            momentum * running_var + (1 - momentum) * sample_var, running_var.dtype
        )
        cache = {
            "x_hat": x_hat,
            "std": std,
            "inv_std": inv_std,
            "gamma": gamma,
            "beta_dtype": beta.dtype,
            "x_dtype": x_dtype,
        }
    else:
        x_hat = (x - running_mean) / xp.sqrt(running_var + eps)
        out = gamma * x_hat + beta
    out = xp.astype(out, x_dtype, copy=False)
    ### END SOLUTION

    # Store the updated running means back into bn_param
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var

    return out, cache


def batchnorm_backward(dout, cache):
    """
    Backward pass for batch normalization, step by step.

    Draw the computational graph of batchnorm_forward on paper and propagate
    gradients backward through each intermediate node (mean, centered x,
    variance, standard deviation, its inverse, x_hat, the affine output).

    Inputs:
    - dout: Upstream derivatives, of shape (N, D)
    - cache: Variable of intermediates from batchnorm_forward (train mode).

    Returns a tuple of:
    - dx: Gradient with respect to inputs x, of shape (N, D), in x's dtype
    - dgamma: Gradient with respect to scale parameter gamma, of shape (D,)
    - dbeta: Gradient with respect to shift parameter beta, of shape (D,)
    """
    xp = namespace_of(dout)
    dx, dgamma, dbeta = None, None, None
    ### BEGIN SOLUTION
    x_hat, std, inv_std, gamma = cache["x_hat"], cache["std"], cache["inv_std"], cache["gamma"]
    N = dout.shape[0]
    dout = xp.astype(dout, xp.float64)
    x_centered = x_hat * std  # the forward pass keeps x_hat = x_centered * inv_std

    # out = gamma * x_hat + beta
    dbeta = xp.sum(dout, axis=0)
    dgamma = xp.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    # x_hat = x_centered * inv_std
    dinv_std = xp.sum(dx_hat * x_centered, axis=0)
    dx_centered = dx_hat * inv_std
    # inv_std = 1 / std, std = sqrt(var + eps)
    dstd = -dinv_std / std**2
    dvar = dstd / (2 * std)
    # var = mean(x_centered ** 2)
    dx_centered = dx_centered + 2 * x_centered * dvar / N
    # x_centered = x - mean, mean = sum(x) / N
    dmean = -xp.sum(dx_centered, axis=0)
    dx = dx_centered + dmean / N

    dx = xp.astype(dx, cache["x_dtype"])
    dgamma = xp.astype(dgamma, gamma.dtype)
    dbeta = xp.astype(dbeta, cache["beta_dtype"])
    ### END SOLUTION

    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """
    Alternative backward pass for batch normalization.

    Work out the derivative of the loss with respect to x on paper and
    simplify it as much as you can: the result fits on one line. Accepts the
    same cache as batchnorm_backward and returns the same values.

    Inputs / outputs: Same as batchnorm_backward
    """
    xp = namespace_of(dout)
    dx, dgamma, dbeta = None, None, None
    ### BEGIN SOLUTION
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    work_dtype = x_hat.dtype  # x's dtype; float64 for integer or float16 x
    N = dout.shape[0]

    dbeta = xp.sum(dout, axis=0, dtype=xp.float64)
    dgamma = xp.sum(dout * x_hat, axis=0, dtype=xp.float64)
    # dx = gamma * inv_std * (dout - mean(dout) - x_hat * mean(dout * x_hat)),
    # where mean(dout) = dbeta / N and mean(dout * x_hat) = dgamma / N.
    dx = x_hat * xp.astype(-dgamma / N, work_dtype)
    dx += dout
    dx -= xp.astype(dbeta / N, work_dtype)
    dx *= xp.astype(gamma * inv_std, work_dtype)

    dx = xp.astype(dx, cache["x_dtype"], copy=False)
    dgamma = xp.astype(dgamma, gamma.dtype)
    dbeta = xp.astype(dbeta, cache["beta_dtype"])
    ### END SOLUTION

    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """
    Forward pass for layer normalization.

    During both training and test-time, the incoming data is normalized per
    data-point (each row of x over its D features), before being scaled by
    gamma and shifted by beta. There are no running statistics: train and
    test behave the same.

    Input:
    - x: Data of shape (N, D)
    - gamma: Scale parameter of shape (D,)
    - beta: Shift parameter of shape (D,)
    - ln_param: Dictionary with the following keys:
        - eps: Constant for numeric stability (default 1e-5)

    Returns a tuple of:
    - out: Output of shape (N, D), in x's dtype
    - cache: A tuple or dict of values needed in the backward pass
    """
    xp = namespace_of(x, gamma, beta)
    _check_ndim("x", x, ("N", "D"))
    N, D = x.shape
    _check_shape("gamma", gamma, (D,))
    _check_shape("beta", beta, (D,))
    eps = ln_param.get("eps", 1e-5)

    out, cache = None, None
    ### BEGIN SOLUTION
    x_dtype = x.dtype
    if x_dtype not in (xp.float32, xp.float64):  # integers and float16 are normalized in float64
        x = xp.astype(x, xp.float64)
    # As in batchnorm_forward, with the statistics of each row.
    mean = xp.sum(x, axis=1, keepdims=True, dtype=xp.float64) / D
    rounded_mean = xp.astype(mean, x.dtype)
    x_hat = x - rounded_mean  # centered here, normalized below
    if x.dtype != xp.float64:  # what rounding the mean lost, as in batchnorm_forward
        x_hat -= xp.astype(mean - rounded_mean, x.dtype)
    var = xp.sum(x_hat**2, axis=1, keepdims=True, dtype=xp.float64) / D
    inv_std = 1.0 / xp.sqrt(var + eps)
    x_hat *= xp.astype(inv_std, x.dtype)
    out = x_hat * xp.astype(gamma, x.dtype)
    out += xp.astype(beta, x.dtype)
    out = xp.astype(out, x_dtype, copy=False)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "gamma": gamma,
        "beta_dtype": beta.dtype,
        "x_dtype": x_dtype,
    }
    ### END SOLUTION
    return out, cache


def layernorm_backward(dout, cache):
    """
    Backward pass for layer normalization.

    Inputs:
    - dout: Upstream derivatives, of shape (N, D)
    - cache: Variable of intermediates from layernorm_forward.

    Returns a tuple of:
    - dx: Gradient with respect to inputs x, of shape (N, D), in x's dtype
    - dgamma: Gradient with respect to scale parameter gamma, of shape (D,)
    - dbeta: Gradient with respect to shift parameter beta, of shape (D,)
    """
    xp = namespace_of(dout)
    dx, dgamma, dbeta = None, None, None
    ### BEGIN SOLUTION
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    work_dtype = x_hat.dtype  # x's dtype; float64 for integer or float16 x
    D = dout.shape[1]

    dbeta = xp.sum(dout, axis=0, dtype=xp.float64)
    dgamma = xp.sum(dout * x_hat, axis=0, dtype=xp.float64)
    dx_hat = dout * xp.astype(gamma, work_dtype)
    # The batch norm closed form, with the means taken over each row instead:
    # dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)).
    mean_dx_hat = xp.sum(dx_hat, axis=1, keepdims=True, dtype=xp.float64) / D
    mean_dx_hat_x_hat = xp.sum(dx_hat * x_hat, axis=1, keepdims=True, dtype=xp.float64) / D
    dx = x_hat * xp.astype(-mean_dx_hat_x_hat, work_dtype)
    dx += dx_hat
    dx -= xp.astype(mean_dx_hat, work_dtype)
    dx *= xp.astype(inv_std, work_dtype)

    dx = xp.astype(dx, cache["x_dtype"], copy=False)
    dgamma = xp.astype(dgamma, gamma.dtype)
    dbeta = xp.astype(dbeta, cache["beta_dtype"])
    ### END SOLUTION
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """
    Forward pass for spatial batch normalization.

    Each channel is normalized with statistics over the batch and both spatial
    dimensions (N, H, W). Hint: this is batchnorm_forward applied to x
    rearranged as (N*H*W, C).

    Inputs:
    - x: Input data of shape (N, C, H, W)
    - gamma: Scale parameter, of shape (C,)
    - beta: Shift parameter, of shape (C,)
    - bn_param: Dictionary with the same keys as for batchnorm_forward; the
      running statistics have shape (C,).

    Returns a tuple of:
    - out: Output data, of shape (N, C, H, W), in x's dtype
    - cache: Values needed for the backward pass
    """
    xp = namespace_of(x, gamma, beta)
    _check_ndim("x", x, ("N", "C", "H", "W"))
    N, C, H, W = x.shape
    _check_shape("gamma", gamma, (C,))
    _check_shape("beta", beta, (C,))
    _check_mode(bn_param)

    out, cache = None, None
    ### BEGIN SOLUTION
    x_rows = xp.reshape(xp.permute_dims(x, (0, 2, 3, 1)), (N * H * W, C))
    out_rows, cache = batchnorm_forward(x_rows, gamma, beta, bn_param)
    out = xp.permute_dims(xp.reshape(out_rows, (N, H, W, C)), (0, 3, 1, 2))
    ### END SOLUTION
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    """
    Backward pass for spatial batch normalization.

    Inputs:
    - dout: Upstream derivatives, of shape (N, C, H, W)
    - cache: Values from the forward pass

    Returns a tuple of:
    - dx: Gradient with respect to inputs, of shape (N, C, H, W)
    - dgamma: Gradient with respect to scale parameter, of shape (C,)
    - dbeta: Gradient with respect to shift parameter, of shape (C,)
    """
    xp = namespace_of(dout)
    dx, dgamma, dbeta = None, None, None
    ### BEGIN SOLUTION
    N, C, H, W = dout.shape
    dout_rows = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (N * H * W, C))
    dx_rows, dgamma, dbeta = batchnorm_backward_alt(dout_rows, cache)
    dx = xp.permute_dims(xp.reshape(dx_rows, (N, H, W, C)), (0, 3, 1, 2))
    ### END SOLUTION
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """
    Forward pass for spatial group normalization.

    The C channels are split into G groups of C // G contiguous channels
    (group g holds channels g*C//G ... (g+1)*C//G - 1). Each sample is
    normalized per group, with statistics over that group's channels and both
    spatial dimensions; then each channel is scaled and shifted. Train and
    test behave the same.

    Inputs:
    - x: Input data of shape (N, C, H, W)
    - gamma: Scale parameter, of shape (1, C, 1, 1)
    - beta: Shift parameter, of shape (1, C, 1, 1)
    - G: Integer number of groups to split into, must divide C
    - gn_param: Dictionary with the following keys:
      - eps: Constant for numeric stability (default 1e-5)

    Returns a tuple of:
    - out: Output data, of shape (N, C, H, W), in x's dtype
    - cache: Values needed for the backward pass
    """
    xp = namespace_of(x, gamma, beta)
    _check_ndim("x", x, ("N", "C", "H", "W"))
    N, C, H, W = x.shape
    _check_shape("gamma", gamma, (1, C, 1, 1))
    _check_shape("beta", beta, (1, C, 1, 1))
    if isinstance(G, bool) or not isinstance(G, (int, np.integer)) or G < 1 or C % G:
        raise ValueError(f"G must be a positive integer that divides C={C}, got {G!r}")
    eps = gn_param.get("eps", 1e-5)

    out, cache = None, None
    ### BEGIN SOLUTION
    x_dtype = x.dtype
    if x_dtype not in (xp.float32, xp.float64):  # integers and float16 are normalized in float64
        x = xp.astype(x, xp.float64)
    # As in layernorm_forward, with the rows of x viewed as (N, G, C // G * H * W).
    M = (C // G) * H * W
    x_groups = xp.reshape(x, (N, G, M))
    mean = xp.sum(x_groups, axis=2, keepdims=True, dtype=xp.float64) / M
    rounded_mean = xp.astype(mean, x.dtype)
    x_hat = x_groups - rounded_mean  # centered here, normalized below
    if x.dtype != xp.float64:  # what rounding the mean lost, as in batchnorm_forward
        x_hat -= xp.astype(mean - rounded_mean, x.dtype)
    var = xp.sum(x_hat**2, axis=2, keepdims=True, dtype=xp.float64) / M
    inv_std = 1.0 / xp.sqrt(var + eps)
    x_hat *= xp.astype(inv_std, x.dtype)
    x_hat = xp.reshape(x_hat, (N, C, H, W))
    out = x_hat * xp.astype(gamma, x.dtype)
    out += xp.astype(beta, x.dtype)
    out = xp.astype(out, x_dtype, copy=False)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "gamma": gamma,
        "beta_dtype": beta.dtype,
        "x_dtype": x_dtype,
        "G": G,
    }
    ### END SOLUTION
    return out, cache


def spatial_groupnorm_backward(dout, cache):
    """
    Backward pass for spatial group normalization.

    Inputs:
    - dout: Upstream derivatives, of shape (N, C, H, W)
    - cache: Values from the forward pass

    Returns a tuple of:
    - dx: Gradient with respect to inputs, of shape (N, C, H, W)
    - dgamma: Gradient with respect to scale parameter, of shape (1, C, 1, 1)
    - dbeta: Gradient with respect to shift parameter, of shape (1, C, 1, 1)
    """
    xp = namespace_of(dout)
    dx, dgamma, dbeta = None, None, None
    ### BEGIN SOLUTION
    x_hat, inv_std, gamma, G = cache["x_hat"], cache["inv_std"], cache["gamma"], cache["G"]
    work_dtype = x_hat.dtype  # x's dtype; float64 for integer or float16 x
    N, C, H, W = dout.shape
    M = (C // G) * H * W

    # Sums over each sample's channels, of shape (N, C, 1, 1): summed over the
    # batch they are dbeta and dgamma, weighted by gamma and summed over a
    # group's channels they give the group means of dx_hat and dx_hat * x_hat.
    dout_sums = xp.sum(dout, axis=(2, 3), keepdims=True, dtype=xp.float64)
    dout_x_hat_sums = xp.sum(dout * x_hat, axis=(2, 3), keepdims=True, dtype=xp.float64)
    dbeta = xp.sum(dout_sums, axis=0, keepdims=True)
    dgamma = xp.sum(dout_x_hat_sums, axis=0, keepdims=True)
    mean_dx_hat = xp.sum(xp.reshape(gamma * dout_sums, (N, G, -1)), axis=2, keepdims=True) / M
    mean_dx_hat_x_hat = (
        xp.sum(xp.reshape(gamma * dout_x_hat_sums, (N, G, -1)), axis=2, keepdims=True) / M
    )
    # Per sample and group, the layer norm closed form over the group's values:
    # dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)).
    dx = xp.reshape(dout * xp.astype(gamma, work_dtype), (N, G, M))  # dx_hat
    dx -= xp.reshape(x_hat, (N, G, M)) * xp.astype(mean_dx_hat_x_hat, work_dtype)
    dx -= xp.astype(mean_dx_hat, work_dtype)
    dx *= xp.astype(inv_std, work_dtype)
    dx = xp.reshape(dx, (N, C, H, W))

    dx = xp.astype(dx, cache["x_dtype"], copy=False)
    dgamma = xp.astype(dgamma, gamma.dtype)
    dbeta = xp.astype(dbeta, cache["beta_dtype"])
    ### END SOLUTION
    return dx, dgamma, dbeta
