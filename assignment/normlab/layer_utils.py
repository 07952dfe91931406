"""Convenience layers that chain the layers of normlab.layers (provided)."""
from .layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
)

NORMALIZATIONS = (None, "batchnorm", "layernorm")


def affine_relu_forward(x, w, b):
    """
    Convenience layer that performs an affine transform followed by a ReLU.

    Inputs:
    - x: Input to the affine layer, of shape (N, d_1, ..., d_k)
    - w, b: Weights (D, M) and biases (M,) for the affine layer

    Returns a tuple of:
    - out: Output from the ReLU, of shape (N, M)
    - cache: Object to give to the backward pass
    """
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Backward pass for the affine-relu convenience layer: returns (dx, dw, db)."""
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return affine_backward(da, fc_cache)


def affine_norm_relu_forward(x, w, b, gamma, beta, norm_param, normalization):
    """
    Affine transform, then batch or layer normalization, then a ReLU.

    Inputs:
    - x: Input of shape (N, d_1, ..., d_k)
    - w, b: Weights (D, M) and biases (M,) for the affine layer
    - gamma, beta: Scale and shift, of shape (M,)
    - norm_param: bn_param (for 'batchnorm') or ln_param (for 'layernorm')
    - normalization: 'batchnorm' or 'layernorm'

    Returns a tuple of:
    - out: Output of shape (N, M)
    - cache: Object to give to the backward pass
    """
    a, fc_cache = affine_forward(x, w, b)
    if normalization == "batchnorm":
        a_norm, norm_cache = batchnorm_forward(a, gamma, beta, norm_param)
    elif normalization == "layernorm":
        a_norm, norm_cache = layernorm_forward(a, gamma, beta, norm_param)
    else:
        raise ValueError(f"normalization must be 'batchnorm' or 'layernorm', got {normalization!r}")
    out, relu_cache = relu_forward(a_norm)
    return out, (fc_cache, norm_cache, relu_cache, normalization)


def affine_norm_relu_backward(dout, cache):
    """
    Backward pass for affine_norm_relu_forward: returns (dx, dw, db, dgamma, dbeta).
    Batch norm's gradients come from batchnorm_backward_alt, or from
    batchnorm_backward while the _alt version is not implemented yet.
    """
    fc_cache, norm_cache, relu_cache, normalization = cache
    da_norm = relu_backward(dout, relu_cache)
    if normalization == "batchnorm":
        try:
            da, dgamma, dbeta = batchnorm_backward_alt(da_norm, norm_cache)
        except NotImplementedError:  # the same gradients: training works with whichever of the two is written
            da, dgamma, dbeta = batchnorm_backward(da_norm, norm_cache)
    else:
        da, dgamma, dbeta = layernorm_backward(da_norm, norm_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta

