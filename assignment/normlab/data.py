"""Data sets (provided): scikit-learn's bundled digits by default, CIFAR-10 where you have it.

The digits (1,797 images of 8x8 pixels, 10 classes) ship inside scikit-learn,
so nothing is downloaded. CIFAR-10 is read from the "python version" batches
(data_batch_1 ... data_batch_5, test_batch) if you have them on disk.
"""
import pickle
from pathlib import Path

import numpy as np


def _subtract_train_mean(data):
    """Subtract the mean training example from every split."""
    mean = data["X_train"].mean(axis=0)
    return {k: v - mean if k.startswith("X_") else v for k, v in data.items()}


def _split(X, y, num_validation, num_test, subtract_mean, rng):
    """Shuffle, split into train / val / test and subtract the training mean."""
    if num_validation + num_test >= X.shape[0]:
        raise ValueError(
            f"num_validation + num_test = {num_validation + num_test} leaves no training data "
            f"out of {X.shape[0]} examples"
        )
    order = rng.permutation(X.shape[0])
    X, y = X[order], y[order]
    n_train = X.shape[0] - num_validation - num_test
    data = {
        "X_train": X[:n_train],
        "y_train": y[:n_train],
        "X_val": X[n_train : n_train + num_validation], "y_val": y[n_train : n_train + num_validation],
        "X_test": X[n_train + num_validation :], "y_test": y[n_train + num_validation :],
    }
    return _subtract_train_mean(data) if subtract_mean else data


def load_digits_data(num_validation=200, num_test=200, subtract_mean=True, images=False, seed=0):
    """
    Load scikit-learn's digits as a dictionary of splits.

    Inputs:
    - num_validation, num_test: Sizes of the validation and test splits; the
      rest (1397 by default) is training data.
    - subtract_mean: Subtract the mean training image from every split.
    - images: If True, X arrays have shape (N, 1, 8, 8); else (N, 64).
    - seed: Seed of the shuffle before splitting.

    Returns a dictionary with X_train, y_train, X_val, y_val, X_test, y_test;
    X arrays are float64 with pixel values scaled to [0, 1] before centering,
    y arrays are int64 labels in 0..9.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    if images:
        X = X.reshape(-1, 1, 8, 8)
    return _split(X, y, num_validation, num_test, subtract_mean, np.random.default_rng(seed))


def _load_cifar_batch(path):
    """Load one CIFAR-10 python batch: X of shape (N, 3, 32, 32) float64, y (N,) int64."""
    with open(path, "rb") as f:
        try:
            batch = pickle.load(f, encoding="bytes")
            data, labels = batch[b"data"], batch[b"labels"]
        except Exception as err:
            raise ValueError(
                f"{path} is not a CIFAR-10 python batch (a pickled dict with b'data' and b'labels'): {err}"
            ) from err
    X = np.asarray(data, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 3 * 32 * 32 or X.shape[0] != len(labels):
        raise ValueError(f"{path}: expected data of shape (N, 3072) and N labels, got {X.shape} and {len(labels)}")
    return X.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(root):
    """
    Load all of CIFAR-10 from the python batches in folder `root`.

    Returns X_train (50000, 3, 32, 32), y_train, X_test (10000, 3, 32, 32), y_test
    (fewer rows if the batches are smaller).
    """
    root = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 python batches missing in {root}: {', '.join(missing)} "
            "(download 'CIFAR-10 python version' and extract it there)"
        )
    train = [_load_cifar_batch(root / n) for n in names[:5]]
    X_test, y_test = _load_cifar_batch(root / "test_batch")
    X_train = np.concatenate([X for X, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return X_train, y_train, X_test, y_test


def get_cifar10_data(root, num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True):
    """
    CIFAR-10 as a dictionary of splits, the CS231n way: the validation set is
    taken from the end of the training batches, the test set from test_batch.
    X arrays have shape (N, 3, 32, 32), float64.
    """
    X_train, y_train, X_test, y_test = load_cifar10(root)
    if num_training + num_validation > X_train.shape[0]:
        raise ValueError(
            f"num_training + num_validation = {num_training + num_validation} exceeds the "
            f"{X_train.shape[0]} training images"
        )
    data = {
        "X_train": X_train[:num_training], "y_train": y_train[:num_training],
        "X_val": X_train[num_training : num_training + num_validation],
        "y_val": y_train[num_training : num_training + num_validation],
        "X_test": X_test[:num_test], "y_test": y_test[:num_test],
    }
    return _subtract_train_mean(data) if subtract_mean else data
