"""A fully-connected network with optional batch / layer normalization and dropout (provided)."""
import numpy as np

from .layer_utils import (
    NORMALIZATIONS,
    affine_norm_relu_backward,
    affine_norm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from .layers import affine_backward, affine_forward, dropout_backward, dropout_forward, softmax_loss


class FullyConnectedNet:
    """
    A fully-connected neural network with an arbitrary number of hidden layers,
    ReLU nonlinearities, and a softmax loss function. For a network with L
    layers, the architecture is

    {affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax

    where batch/layer normalization and dropout are optional, and the {...}
    block is repeated L - 1 times.

    Learnable parameters are stored in self.params: W1, b1, ..., WL, bL and,
    with normalization, gamma1, beta1, ..., gamma(L-1), beta(L-1).
    """

    def __init__(
        self,
        hidden_dims,
        input_dim=3 * 32 * 32,
        num_classes=10,
        dropout_keep_ratio=1,
        normalization=None,
        reg=0.0,
        weight_scale=1e-2,
        dtype=np.float32,
        seed=None,
    ):
        """
        Initialize a new FullyConnectedNet.

        Inputs:
        - hidden_dims: A list of integers giving the size of each hidden layer.
        - input_dim: An integer giving the size of the input.
        - num_classes: An integer giving the number of classes to classify.
        - dropout_keep_ratio: Scalar between 0 and 1 giving the probability of
          keeping a unit in dropout. If dropout_keep_ratio=1 there is no dropout.
        - normalization: None, 'batchnorm' or 'layernorm'.
        - reg: Scalar giving L2 regularization strength.
        - weight_scale: Standard deviation of the normal initialization of the
          weights.
        - dtype: A numpy datatype object; all computations are performed in it.
          float32 is faster; use float64 for numeric gradient checking.
        - seed: If not None, seeds the weight initialization and the dropout
          masks, which makes the model deterministic.
        """
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if not 0 < dropout_keep_ratio <= 1:
            raise ValueError(f"dropout_keep_ratio must be in (0, 1], got {dropout_keep_ratio!r}")
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}

        rng = np.random.default_rng(seed)
        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(1, self.num_layers + 1):
            self.params[f"W{i}"] = (weight_scale * rng.standard_normal((dims[i - 1], dims[i]))).astype(dtype)
            self.params[f"b{i}"] = np.zeros(dims[i], dtype=dtype)
            if normalization and i < self.num_layers:
                self.params[f"gamma{i}"] = np.ones(dims[i], dtype=dtype)
                self.params[f"beta{i}"] = np.zeros(dims[i], dtype=dtype)

        # The dropout layers need to know the mode; passing the same
        # dropout_param to every layer is fine (the seed varies per layer).
        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
            if seed is not None:
                self.dropout_param["seed"] = seed
        # Batch norm keeps running statistics per layer, so each layer gets its
        # own parameter dictionary; layer norm only needs eps.
        self.bn_params = []
        if normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        if normalization == "layernorm":
            self.bn_params = [{} for _ in range(self.num_layers - 1)]

    def loss(self, X, y=None):
        """
        Compute loss and gradient for the fully-connected net.

        Inputs:
        - X: Array of input data of shape (N, d_1, ..., d_k)
        - y: Array of labels, of shape (N,). y[i] gives the label for X[i].

        Returns:
        If y is None, then run a test-time forward pass of the model and return:
        - scores: Array of shape (N, C) giving classification scores, where
          scores[i, c] is the classification score for X[i] and class c.

        If y is not None, then run a training-time forward and backward pass and
        return a tuple of:
        - loss: Scalar value giving the loss
        - grads: Dictionary with the same keys as self.params, mapping parameter
          names to gradients of the loss with respect to those parameters.
        """
        X = X.astype(self.dtype)
        mode = "test" if y is None else "train"
        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if self.normalization == "batchnorm":
            for bn_param in self.bn_params:
                bn_param["mode"] = mode

        caches = []
        h = X
        for i in range(1, self.num_layers):
            W, b = self.params[f"W{i}"], self.params[f"b{i}"]
            if self.normalization:
                gamma, beta = self.params[f"gamma{i}"], self.params[f"beta{i}"]
                h, cache = affine_norm_relu_forward(
                    h, W, b, gamma, beta, self.bn_params[i - 1], self.normalization
                )
            else:
                h, cache = affine_relu_forward(h, W, b)
            dropout_cache = None
            if self.use_dropout:
                layer_param = dict(self.dropout_param)
                if "seed" in layer_param:
                    layer_param["seed"] = layer_param["seed"] + i
                h, dropout_cache = dropout_forward(h, layer_param)
            caches.append((cache, dropout_cache))
        L = self.num_layers
        scores, scores_cache = affine_forward(h, self.params[f"W{L}"], self.params[f"b{L}"])

        if mode == "test":
            return scores

        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dh, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, scores_cache)
        for i in range(L - 1, 0, -1):
            cache, dropout_cache = caches[i - 1]
            if self.use_dropout:
                dh = dropout_backward(dh, dropout_cache)
            if self.normalization:
                dh, dW, db, dgamma, dbeta = affine_norm_relu_backward(dh, cache)
                grads[f"gamma{i}"], grads[f"beta{i}"] = dgamma, dbeta
            else:
                dh, dW, db = affine_relu_backward(dh, cache)
            grads[f"W{i}"], grads[f"b{i}"] = dW, db

        for i in range(1, L + 1):
            W = self.params[f"W{i}"]
            loss += 0.5 * self.reg * np.sum(W * W)
            grads[f"W{i}"] = grads[f"W{i}"] + self.reg * W
        return loss, grads
