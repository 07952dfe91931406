"""
Known-wrong implementations ("mutants"): the typical mistakes students make.

Each mutant is the reference with a few lines replaced. They test the
grader: each is graded end to end and must lose points on the right checks,
and the probes of normgrade.score.diagnosis must name it (`named`).

A patch that no longer matches the reference raises, so the mutants cannot
silently drift away from the code they mutate.
"""
from dataclasses import dataclass

from normgrade.paths import SOLUTION_LAYERS


@dataclass(frozen=True)
class Mutant:
    name: str
    named: tuple  # what the diagnosis (normgrade.score.diagnosis) must say about it: mistake keys, one of them per function
    patches: tuple  # (old, new) pairs of exact text in the reference
    affects: tuple  # student functions whose checks must lose points


MUTANTS = (
    Mutant(
        "unbiased_variance",
        ("variance: unbiased", "running variance: unbiased"),
        (("sample_var = xp.sum(x_hat**2, axis=0, dtype=xp.float64) / N  # biased: divides by N",
          "sample_var = xp.sum(x_hat**2, axis=0, dtype=xp.float64) / (N - 1)"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "reversed_momentum",
        ("momentum: reversed",),
        (("momentum * running_mean + (1 - momentum) * sample_mean, running_mean.dtype",
          "(1 - momentum) * running_mean + momentum * sample_mean, running_mean.dtype"),
         ("momentum * running_var + (1 - momentum) * sample_var, running_var.dtype",
          "(1 - momentum) * running_var + momentum * sample_var, running_var.dtype")),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "missing_eps",
        ("eps: missing",),
        (("std = xp.sqrt(sample_var + eps)", "std = xp.sqrt(sample_var)"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "wrong_axis",
        ("statistics: per example", "statistics: per pixel over C"),
        (("sample_mean = xp.sum(x, axis=0, dtype=xp.float64) / N",
          "sample_mean = xp.sum(x, axis=1, keepdims=True, dtype=xp.float64) / D"),
         ("sample_var = xp.sum(x_hat**2, axis=0, dtype=xp.float64) / N  # biased: divides by N",
          "sample_var = xp.sum(x_hat**2, axis=1, keepdims=True, dtype=xp.float64) / D")),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "test_uses_batch_stats",
        ("test statistics: test batch",),
        (("        x_hat = (x - running_mean) / xp.sqrt(running_var + eps)\n",
          "        x_hat = (x - xp.mean(x, axis=0)) / xp.sqrt(xp.var(x, axis=0) + eps)\n"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "test_drops_affine",
        ("affine: neither",),
        (("        out = gamma * x_hat + beta\n    out = xp.astype(out, x_dtype, copy=False)\n",
          "        out = x_hat\n    out = xp.astype(out, x_dtype, copy=False)\n"),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "running_not_written_back",
        ("running statistics: unchanged",),
        (("        running_mean = xp.astype(\n", "        new_running_mean = xp.astype(\n"),
         ("        running_var = xp.astype(\n", "        new_running_var = xp.astype(\n")),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "interleaved_groups",
        ("statistics: interleaved groups",),
        (("    x_groups = xp.reshape(x, (N, G, M))\n"
          "    mean = xp.sum(x_groups, axis=2, keepdims=True, dtype=xp.float64) / M\n",
          "    x_groups = xp.reshape(x, (N, C // G, G, H * W))\n"
          "    mean = xp.sum(x_groups, axis=(1, 3), keepdims=True, dtype=xp.float64) / M\n"),
         ("    var = xp.sum(x_hat**2, axis=2, keepdims=True, dtype=xp.float64) / M\n",
          "    var = xp.sum(x_hat**2, axis=(1, 3), keepdims=True, dtype=xp.float64) / M\n")),
        ("spatial_groupnorm_forward",),
    ),
    Mutant(
        "eps_key_misspelt",  # eps is always the default; spatial batch norm inherits it through batchnorm_forward
        ("eps value: default",),
        (('    eps = bn_param.get("eps", 1e-5)\n', '    eps = bn_param.get("epsilon", 1e-5)\n'),),
        ("batchnorm_forward", "spatial_batchnorm_forward"),
    ),
    Mutant(
        "backward_own_eps",  # the cache carries no eps, so the backward pass takes the default of its own
        ("dx eps: default",),
        (("    D = dout.shape[1]\n",
          "    D = dout.shape[1]\n"
          "    x_centered = x_hat / inv_std\n"
          "    inv_std = 1.0 / xp.sqrt(xp.mean(x_centered**2, axis=1, keepdims=True) + 1e-5)\n"
          "    x_hat = x_centered * inv_std\n"),),
        ("layernorm_backward",),
    ),
    Mutant(
        "gradient_keepdims",
        ("shape: axes of size 1 added",),
        (("    dbeta = xp.sum(dout, axis=0)\n    dgamma = xp.sum(dout * x_hat, axis=0)\n    dx_hat = dout * gamma\n"
          "    # x_hat = x_centered * inv_std",
          "    dbeta = xp.sum(dout, axis=0, keepdims=True)\n    dgamma = xp.sum(dout * x_hat, axis=0, keepdims=True)\n"
          "    dx_hat = dout * gamma\n    # x_hat = x_centered * inv_std"),),
        ("batchnorm_backward",),
    ),
    Mutant(
        "alt_wrong_sign",
        ("dx terms: variance term sign",),
        (("    dx = x_hat * xp.astype(-dgamma / N, work_dtype)\n",
          "    dx = x_hat * xp.astype(dgamma / N, work_dtype)\n"),),
        ("batchnorm_backward_alt", "spatial_batchnorm_backward"),
    ),
    Mutant(
        "alt_wrong_factor",
        ("dx terms: sums",),
        (("    dx = x_hat * xp.astype(-dgamma / N, work_dtype)\n    dx += dout\n    dx -= xp.astype(dbeta / N, work_dtype)\n",
          "    dx = x_hat * xp.astype(-dgamma, work_dtype)\n    dx += dout\n    dx -= xp.astype(dbeta, work_dtype)\n"),),
        ("batchnorm_backward_alt", "spatial_batchnorm_backward"),
    ),
    Mutant(
        "groupnorm_param_shape",
        ("shape: axes of size 1 dropped",),
        (("    dbeta = xp.sum(dout_sums, axis=0, keepdims=True)\n"
          "    dgamma = xp.sum(dout_x_hat_sums, axis=0, keepdims=True)\n",
          "    dbeta = xp.reshape(xp.sum(dout_sums, axis=0), (C,))\n"
          "    dgamma = xp.reshape(xp.sum(dout_x_hat_sums, axis=0), (C,))\n"),),
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
