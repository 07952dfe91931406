"""
Known-wrong implementations ("mutants"): the typical mistakes students make.

Each mutant is the reference with a few lines replaced, so there is one
definition for two uses:
- `normgrade expected` runs every mutant on the hidden inputs and stores what
  it returns as that mistake's signature; when a student's value misses the
  expected one but matches a signature, the feedback names the mistake.
- the tests grade each mutant end to end and check that it loses points on the
  right checks, with the right message.

A patch that no longer matches the reference raises, so the mutants cannot
silently drift away from the code they mutate.
"""
from dataclasses import dataclass

from .paths import SOLUTION_LAYERS


@dataclass(frozen=True)
class Mutant:
    name: str
    message: str  # the likely mistake, as the student reads it
    patches: tuple  # (old, new) pairs of exact text in the reference
    affects: tuple  # student functions whose checks must lose points


MUTANTS = (
    Mutant(
        "unbiased_variance",
        "uses the unbiased variance (dividing by N - 1); batch norm normalizes with the biased "
        "variance, which divides by N",
        (("sample_var = xp.var(x64, axis=0)  # biased: divides by N",
          "sample_var = xp.var(x64, axis=0, correction=1)"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "reversed_momentum",
        "the momentum is reversed: it should weigh the old running value, "
        "running = momentum * running + (1 - momentum) * batch_statistic",
        (("momentum * running_mean + (1 - momentum) * sample_mean, running_mean.dtype",
          "(1 - momentum) * running_mean + momentum * sample_mean, running_mean.dtype"),
         ("momentum * running_var + (1 - momentum) * sample_var, running_var.dtype",
          "(1 - momentum) * running_var + momentum * sample_var, running_var.dtype")),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "missing_eps",
        "eps is missing: divide by sqrt(var + eps), not sqrt(var)",
        (("std = xp.sqrt(sample_var + eps)", "std = xp.sqrt(sample_var)"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "wrong_axis",
        "the statistics are taken over the wrong axis: batch norm averages over the batch "
        "(axis 0, one statistic per feature), layer norm over the features of each example",
        (("sample_mean = xp.mean(x64, axis=0)", "sample_mean = xp.mean(x64, axis=1, keepdims=True)"),
         ("sample_var = xp.var(x64, axis=0)  # biased: divides by N",
          "sample_var = xp.var(x64, axis=1, keepdims=True)")),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "test_uses_batch_stats",
        "test mode normalizes with the statistics of the test batch; it must use the running "
        "mean and variance",
        (("x_hat = (x64 - running_mean) / xp.sqrt(running_var + eps)",
          "x_hat = (x64 - xp.mean(x64, axis=0)) / xp.sqrt(xp.var(x64, axis=0) + eps)"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "test_drops_affine",
        "test mode drops the scale and shift: the output is gamma * x_hat + beta in both modes",
        (("        x_hat = (x64 - running_mean) / xp.sqrt(running_var + eps)\n        out = gamma * x_hat + beta",
          "        x_hat = (x64 - running_mean) / xp.sqrt(running_var + eps)\n        out = x_hat"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "running_not_written_back",
        "the running statistics are not written back: bn_param['running_mean'] and "
        "bn_param['running_var'] must hold the updated values after a training step",
        (("        running_mean = xp.astype(\n", "        new_running_mean = xp.astype(\n"),
         ("        running_var = xp.astype(\n", "        new_running_var = xp.astype(\n")),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "interleaved_groups",
        "the groups are interleaved (channel c in group c % G); group g must hold the C // G "
        "contiguous channels g*C//G ... (g+1)*C//G - 1",
        (("    x_groups = xp.reshape(xp.astype(x, xp.float64), (N, G, (C // G) * H * W))\n"
          "    mean = xp.mean(x_groups, axis=2, keepdims=True)\n"
          "    var = xp.var(x_groups, axis=2, keepdims=True)\n"
          "    inv_std = 1.0 / xp.sqrt(var + eps)\n"
          "    x_hat = xp.reshape((x_groups - mean) * inv_std, (N, C, H, W))\n",
          "    x_groups = xp.reshape(xp.astype(x, xp.float64), (N, C // G, G, H * W))\n"
          "    mean = xp.mean(x_groups, axis=(1, 3), keepdims=True)\n"
          "    var = xp.var(x_groups, axis=(1, 3), keepdims=True)\n"
          "    inv_std = 1.0 / xp.sqrt(var + eps)\n"
          "    x_hat = xp.reshape((x_groups - mean) * inv_std, (N, C, H, W))\n"),),
        ("spatial_groupnorm_forward",),
    ),
    Mutant(
        "gradient_keepdims",
        "dgamma and dbeta have shape (1, D); they must have the shape of gamma and beta, (D,)",
        (("    dbeta = xp.sum(dout, axis=0)\n    dgamma = xp.sum(dout * x_hat, axis=0)\n    dx_hat = dout * gamma\n"
          "    # x_hat = x_centered * inv_std",
          "    dbeta = xp.sum(dout, axis=0, keepdims=True)\n    dgamma = xp.sum(dout * x_hat, axis=0, keepdims=True)\n"
          "    dx_hat = dout * gamma\n    # x_hat = x_centered * inv_std"),),
        ("batchnorm_backward",),
    ),
    Mutant(
        "alt_wrong_sign",
        "a sign in the simplified dx is wrong: dx = inv_std * (dx_hat - mean(dx_hat) "
        "- x_hat * mean(dx_hat * x_hat)), means over the batch",
        (("        dx_hat - xp.mean(dx_hat, axis=0) - x_hat * xp.mean(dx_hat * x_hat, axis=0)",
          "        dx_hat - xp.mean(dx_hat, axis=0) + x_hat * xp.mean(dx_hat * x_hat, axis=0)"),),
        ("batchnorm_backward_alt", "spatial_batchnorm_backward"),
    ),
    Mutant(
        "alt_wrong_factor",
        "a factor in the simplified dx is wrong: the terms use means over the batch (a factor "
        "1 / N), dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))",
        (("        dx_hat - xp.mean(dx_hat, axis=0) - x_hat * xp.mean(dx_hat * x_hat, axis=0)",
          "        dx_hat - xp.sum(dx_hat, axis=0) - x_hat * xp.sum(dx_hat * x_hat, axis=0)"),),
        ("batchnorm_backward_alt", "spatial_batchnorm_backward"),
    ),
    Mutant(
        "groupnorm_param_shape",
        "dgamma and dbeta of group norm must have the shape of gamma and beta, (1, C, 1, 1)",
        (("    dbeta = xp.sum(dout, axis=(0, 2, 3), keepdims=True)\n"
          "    dgamma = xp.sum(dout * x_hat, axis=(0, 2, 3), keepdims=True)\n",
          "    dbeta = xp.sum(dout, axis=(0, 2, 3))\n"
          "    dgamma = xp.sum(dout * x_hat, axis=(0, 2, 3))\n"),),
        ("spatial_groupnorm_backward",),
    ),
)

BY_NAME = {m.name: m for m in MUTANTS}


def mutate(source, mutant):
    """Return the reference `source` with the mutant's patches applied (each must match exactly once)."""
    for old, new in mutant.patches:
        count = source.count(old)
        if count != 1:
            raise ValueError(
                f"mutant {mutant.name!r}: its patch matches the reference {count} times, not once: {old!r}"
            )
        source = source.replace(old, new)
    return source


def mutant_source(name):
    """The layers.py source of the named mutant."""
    return mutate(SOLUTION_LAYERS.read_text(), BY_NAME[name])
