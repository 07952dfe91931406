"""
First-order update rules (provided), CS231n style.

Each rule has the interface

    def update(w, dw, config=None) -> (next_w, config)

where w and dw are arrays of the same shape and config holds the
hyperparameters and any state (such as moving averages) the rule keeps.
"""
import numpy as np


def sgd(w, dw, config=None):
    """
    Vanilla stochastic gradient descent.

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    return w - config["learning_rate"] * dw, config


def sgd_momentum(w, dw, config=None):
    """
    Stochastic gradient descent with momentum.

    config format:
    - learning_rate: Scalar learning rate (default 1e-2).
    - momentum: Scalar between 0 and 1 giving the momentum value (default 0.9).
    - velocity: An array of the same shape as w and dw, the moving average of
      the gradients.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config


def adam(w, dw, config=None):
    """
    Adam: moving averages of the gradient and of its square, with bias correction.

    config format:
    - learning_rate: Scalar learning rate (default 1e-3).
    - beta1: Decay rate for the moving average of the first moment (0.9).
    - beta2: Decay rate for the moving average of the second moment (0.999).
    - epsilon: Small scalar to avoid dividing by zero (1e-8).
    - m: Moving average of the gradient.
    - v: Moving average of the squared gradient.
    - t: Iteration number.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)

    beta1, beta2 = config["beta1"], config["beta2"]
    config["t"] += 1
    config["m"] = beta1 * config["m"] + (1 - beta1) * dw
    config["v"] = beta2 * config["v"] + (1 - beta2) * dw**2
    m_hat = config["m"] / (1 - beta1 ** config["t"])
    v_hat = config["v"] / (1 - beta2 ** config["t"])
    next_w = w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"])
    return next_w.astype(w.dtype, copy=False), config


UPDATE_RULES = {"sgd": sgd, "sgd_momentum": sgd_momentum, "adam": adam}
