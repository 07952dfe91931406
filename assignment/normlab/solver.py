"""Solver: trains a classification model with minibatch gradient descent (provided)."""
import copy

import numpy as np

try:  # in a notebook tqdm's bar is an ipywidgets widget; without ipywidgets tqdm.auto would warn
    import ipywidgets  # noqa: F401
    from tqdm.auto import tqdm
except ImportError:
    from tqdm.std import tqdm

from . import optim


class Solver:
    """
    A Solver encapsulates the logic for training classification models, as in
    CS231n. Give it a model and data, call train(), then read model.params for
    the best parameters on the validation set and the histories below.

    Example usage:

        data = load_digits_data()
        model = FullyConnectedNet([100, 100], input_dim=64, normalization="batchnorm")
        solver = Solver(model, data, update_rule="adam",
                        optim_config={"learning_rate": 1e-3},
                        num_epochs=10, batch_size=100)
        solver.train()

    Attributes after training:
    - loss_history: the loss of every iteration
    - train_acc_history, val_acc_history: accuracies at the end of every epoch

    The model must have:
    - model.params: a dictionary mapping parameter names to arrays
    - model.loss(X, y): returns (loss, grads) in training mode, with grads
      keyed like model.params, and class scores when y is None.
    """

    def __init__(self, model, data, **kwargs):
        """
        Construct a new Solver instance.

        Required arguments:
        - model: A model object conforming to the API described above
        - data: A dictionary with X_train, y_train, X_val, y_val.

        Optional arguments:
        - update_rule: 'sgd', 'sgd_momentum' or 'adam' (default 'sgd').
        - optim_config: Hyperparameters passed to the update rule.
        - lr_decay: Learning rate multiplier applied after each epoch.
        - batch_size: Size of minibatches used to compute loss and gradient.
        - num_epochs: The number of epochs to run for during training.
        - print_every: Print the training loss every print_every iterations.
        - verbose: If False, print nothing during training.
        - progress: Show a progress bar; None (default) shows one on long runs
          (at least 200 iterations) when verbose.
        - num_train_samples: Training samples used to check accuracy per epoch.
        - num_val_samples: Validation samples used per epoch (None: all).
        - seed: Seed for the minibatch sampling.
        """
        self.model = model
        self.X_train, self.y_train = data["X_train"], data["y_train"]
        self.X_val, self.y_val = data["X_val"], data["y_val"]

        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = kwargs.pop("batch_size", 100)
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.num_train_samples = kwargs.pop("num_train_samples", 1000)
        self.num_val_samples = kwargs.pop("num_val_samples", None)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)
        self.progress = kwargs.pop("progress", None)
        self.rng = np.random.default_rng(kwargs.pop("seed", None))
        if kwargs:
            raise ValueError(f"unrecognized arguments: {', '.join(sorted(kwargs))}")
        if self.update_rule not in optim.UPDATE_RULES:
            raise ValueError(
                f"invalid update_rule {self.update_rule!r}; expected one of {sorted(optim.UPDATE_RULES)}"
            )
        self.update = optim.UPDATE_RULES[self.update_rule]
        self._reset()

    def _reset(self):
        """Set up book-keeping variables for optimization."""
        self.epoch = 0
        self.best_val_acc = -1.0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        # Each parameter gets its own copy of the optimizer configuration.
        self.optim_configs = {p: copy.deepcopy(self.optim_config) for p in self.model.params}

    def _step(self):
        """Make a single gradient update, on a random minibatch."""
        batch = self.rng.choice(self.X_train.shape[0], self.batch_size)
        loss, grads = self.model.loss(self.X_train[batch], self.y_train[batch])
        self.loss_history.append(loss)
        for name, w in self.model.params.items():
            self.model.params[name], self.optim_configs[name] = self.update(
                w, grads[name], self.optim_configs[name]
            )

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """
        Check accuracy of the model on the provided data.

        Inputs:
        - X: Array of data, of shape (N, d_1, ..., d_k)
        - y: Array of labels, of shape (N,)
        - num_samples: If not None, subsample the data and only test the model
          on num_samples datapoints.
        - batch_size: Split X and y into batches of this size to avoid using
          too much memory.

        Returns:
        - acc: Scalar giving the fraction of instances correctly classified.
        """
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = self.rng.choice(N, num_samples)
            X, y, N = X[mask], y[mask], num_samples
        y_pred = [
            np.argmax(self.model.loss(X[start : start + batch_size]), axis=1)
            for start in range(0, N, batch_size)
        ]
        return float(np.mean(np.concatenate(y_pred) == y))

    def train(self):
        """Run optimization to train the model."""
        iterations_per_epoch = max(self.X_train.shape[0] // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        show_bar = self.progress if self.progress is not None else (self.verbose and num_iterations >= 200)

        bar = tqdm(range(num_iterations), disable=not show_bar, desc="training", leave=False)
        for t in bar:
            self._step()
            if self.verbose and not show_bar and t % self.print_every == 0:
                print(f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")
            bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", refresh=False)

            epoch_end = (t + 1) % iterations_per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for config in self.optim_configs.values():
                    config["learning_rate"] *= self.lr_decay
            if t == 0 or t == num_iterations - 1 or epoch_end:
                train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples)
                val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples)
                self.train_acc_history.append(train_acc)
                self.val_acc_history.append(val_acc)
                if self.verbose and not show_bar:
                    print(f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
                if val_acc > self.best_val_acc:
                    self.best_val_acc = val_acc
                    self.best_params = {k: v.copy() for k, v in self.model.params.items()}
        bar.close()
        # At the end of training swap the best params into the model.
        self.model.params = self.best_params
