"""
A corpus of realistic student implementations, each with what the grader must say about it.

Every entry is the reference layers.py with some functions rewritten the way
students write them (loops, a tuple cache, keepdims slips, reshapes of the
wrong order), taken from the families seen in public CS231n code and from the
mutants, alone and combined. `wrong` maps each function the entry gets wrong to
the diagnosis keys (normgrade.score.diagnosis.key, split at "; ") its feedback must
state; a function not in `wrong` must keep full points unless it depends on a
wrong forward pass. `tests/test_diagnosis.py` grades every entry through the
real sandboxed scorer and counts, over all wrong functions, how many are named,
how many are left unnamed (what differs is said, no guess) and how many got a
wrong diagnosis (must be none).
"""
import ast
import textwrap
from dataclasses import dataclass, field

from normgrade.build.samples import reference_layers


@dataclass(frozen=True)
class Entry:
    name: str
    sources: tuple  # function definitions (text) that replace the reference's functions of the same names
    wrong: dict = field(default_factory=dict)  # function -> set of diagnosis keys that must be stated


def layers_source(sources):
    """
    The reference layers.py with the functions defined in `sources` defined
    again after it, as the project's other tests do: the last definition of a
    name is the one the grader calls. Each must redefine a reference function.
    """
    reference = reference_layers()
    for source in sources:
        for node in ast.parse(textwrap.dedent(source)).body:
            if isinstance(node, ast.FunctionDef) and f"\ndef {node.name}(" not in reference:
                raise ValueError(f"the reference has no function {node.name}")
    return reference + "".join("\n\n" + textwrap.dedent(source).strip("\n") + "\n" for source in sources)


# ---- a student's batch norm family: tuple cache, step-by-step backward -----------------------

BN_FORWARD = '''
def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    out, cache = None, None
    if mode == "train":
        mu = np.mean(x, axis=0)
        var = np.var(x, axis=0)
        x_hat = (x - mu) / np.sqrt(var + eps)
        out = gamma * x_hat + beta
        cache = (x, mu, var, eps, gamma, x_hat)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    elif mode == "test":
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out.astype(x.dtype), cache
'''

BN_BACKWARD = '''
def batchnorm_backward(dout, cache):
    x, mu, var, eps, gamma, x_hat = cache
    N = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=0)
    dmu = np.sum(-dx_hat / np.sqrt(var + eps), axis=0) + dvar * np.mean(-2 * (x - mu), axis=0)
    dx = dx_hat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / N + dmu / N
    return dx, dgamma, dbeta
'''

BN_ALT = '''
def batchnorm_backward_alt(dout, cache):
    x, mu, var, eps, gamma, x_hat = cache
    N = x.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dx = (N * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)) / (N * np.sqrt(var + eps))
    return dx, dgamma, dbeta
'''

BN_FAMILY = (BN_FORWARD, BN_BACKWARD, BN_ALT)


def _replaced(sources, replace):
    """The sources with each text `old` of replace={old: new} (exactly once in all of them) made `new`."""
    sources = list(sources)
    for old, new in replace.items():
        hits = [i for i, s in enumerate(sources) if old in s]
        assert len(hits) == 1 and sources[hits[0]].count(old) == 1, f"{old!r} is not exactly once"
        sources[hits[0]] = sources[hits[0]].replace(old, new)
    return tuple(sources)


def bn(forward=BN_FORWARD, backward=BN_BACKWARD, alt=BN_ALT, **replace):
    """The student's batch norm family with some lines replaced: replace={old: new} over all three."""
    return _replaced((forward, backward, alt), replace)


LN_FORWARD = '''
def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = (x - mu) / std
    out = gamma * x_hat + beta
    cache = (x, mu, var, std, x_hat, gamma, eps)
    return out.astype(x.dtype), cache
'''

LN_BACKWARD = '''
def layernorm_backward(dout, cache):
    x, mu, var, std, x_hat, gamma, eps = cache
    D = x.shape[1]
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True) * -0.5 * (var + eps) ** -1.5
    dmu = -np.sum(dx_hat, axis=1, keepdims=True) / np.sqrt(var + eps) \\
        - 2 * dvar * np.mean(x - mu, axis=1, keepdims=True)
    dx = dx_hat / np.sqrt(var + eps) + 2 * dvar * (x - mu) / D + dmu / D
    return dx, dgamma, dbeta
'''


def ln(forward=LN_FORWARD, backward=LN_BACKWARD, **replace):
    return _replaced((forward, backward), replace)


SBN_FORWARD = '''
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    x_flat = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out_flat, cache = batchnorm_forward(x_flat, gamma, beta, bn_param)
    out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, cache
'''

SBN_BACKWARD = '''
def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dout_flat = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx_flat, dgamma, dbeta = batchnorm_backward_alt(dout_flat, cache)
    dx = dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta
'''

GN_FORWARD = '''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_group = x.reshape(N, G, C // G, H, W)
    mean = x_group.mean(axis=(2, 3, 4), keepdims=True)
    var = x_group.var(axis=(2, 3, 4), keepdims=True)
    x_hat = ((x_group - mean) / np.sqrt(var + eps)).reshape(N, C, H, W)
    out = gamma * x_hat + beta
    cache = (x_hat, gamma, var, eps, G)
    return out.astype(x.dtype), cache
'''

GN_BACKWARD = '''
def spatial_groupnorm_backward(dout, cache):
    x_hat, gamma, var, eps, G = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True)
    dx_hat = (dout * gamma).reshape(N, G, -1)
    x_hat_g = x_hat.reshape(N, G, -1)
    M = x_hat_g.shape[2]
    inv_std = 1.0 / np.sqrt(var.reshape(N, G, 1) + eps)
    dx = inv_std / M * (M * dx_hat - dx_hat.sum(axis=2, keepdims=True)
                        - x_hat_g * (dx_hat * x_hat_g).sum(axis=2, keepdims=True))
    return dx.reshape(N, C, H, W), dgamma, dbeta
'''


def gn(forward=GN_FORWARD, backward=GN_BACKWARD, **replace):
    return _replaced((forward, backward), replace)


BNF, BNB, ALT = "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt"
LNF, LNB = "layernorm_forward", "layernorm_backward"
SBF, SBB = "spatial_batchnorm_forward", "spatial_batchnorm_backward"
GNF, GNB = "spatial_groupnorm_forward", "spatial_groupnorm_backward"

def spatial(keys):
    """A batch norm forward mistake is spatial batch norm's too: the reference's calls the student's batchnorm_forward."""
    return {BNF: keys, SBF: keys}


# ---- right, written differently: every point earned ------------------------------------------

CORRECT = (
    Entry("student batch norm family (tuple cache, step by step)", BN_FAMILY),
    Entry("student layer norm", ln()),
    Entry("spatial batch norm through the student's batch norm", BN_FAMILY + (SBN_FORWARD, SBN_BACKWARD)),
    Entry("student group norm", gn()),
    Entry("batch norm with loops over features", bn(forward=BN_FORWARD.replace(
        '''        mu = np.mean(x, axis=0)
        var = np.var(x, axis=0)''', '''        mu = np.zeros(D, dtype=x.dtype)
        var = np.zeros(D, dtype=x.dtype)
        for j in range(D):
            mu[j] = sum(x[i, j] for i in range(N)) / N
            var[j] = sum((x[i, j] - mu[j]) ** 2 for i in range(N)) / N'''))),
    Entry("float32 kept in float32 with two-pass statistics", bn(forward=BN_FORWARD.replace(
        "    return out.astype(x.dtype), cache", "    return out.astype(x.dtype, copy=False), cache"))),
    Entry("layer norm through batch norm on the transpose", (LN_FORWARD.replace(
        '''    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)''', '''    mu = x.T.mean(axis=0).T[:, None]
    var = x.T.var(axis=0).T[:, None]'''), LN_BACKWARD)),
    Entry("group norm with a loop over groups", gn(forward='''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_hat = np.empty_like(x)
    var = np.empty((N, G, 1, 1, 1), dtype=x.dtype)
    size = C // G
    for n in range(N):
        for g in range(G):
            block = x[n, g * size:(g + 1) * size]
            var[n, g] = block.var()
            x_hat[n, g * size:(g + 1) * size] = (block - block.mean()) / np.sqrt(block.var() + eps)
    out = gamma * x_hat + beta
    return out.astype(x.dtype), (x_hat, gamma, var, eps, G)
''')),
)

# ---- wrong, as students get it wrong ------------------------------------------------------------

WRONG = (
    # batch norm forward
    Entry("unbiased variance, by a loop", bn(**{
        "        var = np.var(x, axis=0)":
        "        var = np.array([np.sum((x[:, j] - mu[j]) ** 2) / (N - 1) for j in range(D)])"}),
        spatial({"variance: unbiased", "running variance: unbiased"})),
    Entry("eps outside the square root", bn(**{
        "        x_hat = (x - mu) / np.sqrt(var + eps)": "        x_hat = (x - mu) / (np.sqrt(var) + eps)"}),
        spatial({"eps: outside"})),
    Entry("running variance updated with var + eps", bn(**{
        "running_var + (1 - momentum) * var": "running_var + (1 - momentum) * (var + eps)"}),
        spatial({"running variance: var + eps"})),
    Entry("running variance updated with np.std", bn(**{
        "running_var + (1 - momentum) * var": "running_var + (1 - momentum) * np.std(x, axis=0)"}),
        spatial({"running variance: std"})),
    Entry("running variance updated with sqrt(var + eps)", bn(**{
        "running_var + (1 - momentum) * var": "running_var + (1 - momentum) * np.sqrt(var + eps)"}),
        spatial({"running variance: sqrt(var + eps)"})),
    Entry("running mean kept with keepdims, running variance with np.std", bn(**{
        "        mu = np.mean(x, axis=0)": "        mu = np.mean(x, axis=0, keepdims=True)",
        "        var = np.var(x, axis=0)": "        var = np.var(x, axis=0, keepdims=True)\n        std = np.std(x, axis=0)",
        "running_var + (1 - momentum) * var": "running_var + (1 - momentum) * std"}),
        spatial({"shape: axes of size 1 added", "running variance: std"})),
    Entry("test mode divides by sqrt(var) + eps", bn(**{
        "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)":
        "        x_hat = (x - running_mean) / (np.sqrt(running_var) + eps)"}),
        spatial({"eps: outside"})),
    Entry("test mode without eps", bn(**{
        "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)":
        "        x_hat = (x - running_mean) / np.sqrt(running_var)"}),
        spatial({"eps: missing"})),
    Entry("test mode keeps gamma, drops beta and eps", bn(**{
        '''        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta''': '''        out = gamma * (x - running_mean) / np.sqrt(running_var)'''}),
        spatial({"affine: gamma only", "eps: missing"})),
    Entry("test mode uses the test batch's statistics", bn(**{
        "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)":
        "        x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)"}),
        spatial({"test statistics: test batch"})),
    Entry("CS231n stub left as it was (pass, write-back kept)", (BN_FORWARD.replace(
        BN_FORWARD[BN_FORWARD.index("    if mode == \"train\":"):BN_FORWARD.index("    bn_param[\"running_mean\"]")],
        "    pass\n").replace("    return out.astype(x.dtype), cache", "    return out, cache"),),
        {BNF: {"not implemented"}, SBF: {"raises"}}),
    Entry("reversed momentum and eps outside", bn(**{
        "        x_hat = (x - mu) / np.sqrt(var + eps)": "        x_hat = (x - mu) / (np.sqrt(var) + eps)",
        "running_mean = momentum * running_mean + (1 - momentum) * mu":
        "running_mean = (1 - momentum) * running_mean + momentum * mu",
        "running_var = momentum * running_var + (1 - momentum) * var":
        "running_var = (1 - momentum) * running_var + momentum * var"}),
        spatial({"eps: outside", "momentum: reversed"})),
    Entry("statistics over the features (axis 1, keepdims)", bn(**{
        "        mu = np.mean(x, axis=0)\n        var = np.var(x, axis=0)":
        "        mu = np.mean(x, axis=1, keepdims=True)\n        var = np.var(x, axis=1, keepdims=True)"}),
        {BNF: {"statistics: per example", "shape: (12, 6) for (6,)"},
         SBF: {"statistics: per pixel over C", "shape: (24, 3) for (3,)"}}),
    Entry("train mode forgets gamma and beta", bn(**{
        "        out = gamma * x_hat + beta\n        cache": "        out = x_hat\n        cache"}),
        spatial({"affine: neither"})),
    Entry("train mode forgets beta", bn(**{
        "        out = gamma * x_hat + beta\n        cache": "        out = gamma * x_hat\n        cache"}),
        spatial({"affine: gamma only"})),
    Entry("running statistics kept in local names", bn(**{
        '''    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
''': ""}),
        {BNF: {"write back: missing", "running statistics: unchanged"}, SBF: {"write back: missing"}}),
    Entry("running statistics never updated (the provided write-back lines kept)", bn(**{
        "        running_mean = momentum * running_mean + (1 - momentum) * mu\n"
        "        running_var = momentum * running_var + (1 - momentum) * var\n": ""}),
        spatial({"running statistics: unchanged"})),
    Entry("bn_param['running_mean'] read without .get, test mode without eps", bn(**{
        '    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))':
        '    running_mean = bn_param["running_mean"]',
        '    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))':
        '    running_var = bn_param["running_var"]',
        "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)":
        "        x_hat = (x - running_mean) / np.sqrt(running_var)"}),
        spatial({"eps: missing"})),
    Entry("eps 1e-5 hard-coded, bn_param's ignored", bn(**{
        '    eps = bn_param.get("eps", 1e-5)': "    eps = 1e-5"}),
        spatial({"eps value: default"})),  # spatial batch norm is checked on its own eps too
    Entry("returns float64 for float32 input", bn(**{
        "    return out.astype(x.dtype), cache": "    return out, cache",
        "        mu = np.mean(x, axis=0)": "        x = x.astype(np.float64)\n        mu = np.mean(x, axis=0)"}),
        spatial({"dtype: float64 for float32"})),  # and on float32
    Entry("loops whose float64 statistics reach the cache: the backward passes return float64 for float32", bn(**{
        """        mu = np.mean(x, axis=0)
        var = np.var(x, axis=0)""": """        mu = np.zeros(D)
        var = np.zeros(D)
        for j in range(D):
            mu[j] = x[:, j].mean()
            var[j] = x[:, j].var()"""}),
        {f: {"dtype: float64 for float32"} for f in (BNB, ALT, SBB)}),  # SBB: through the student's ALT
    Entry("E[x^2] - E[x]^2 in float32", bn(**{
        "        var = np.var(x, axis=0)": "        var = np.mean(x ** 2, axis=0) - mu ** 2"}),
        spatial({"precision: float32"})),
    Entry("eps missing in the forward pass, with a backward exact for it", bn(**{
        "        x_hat = (x - mu) / np.sqrt(var + eps)": "        x_hat = (x - mu) / np.sqrt(var)",
        "        cache = (x, mu, var, eps, gamma, x_hat)": "        cache = (x, mu, var, 0.0, gamma, x_hat)"}),
        spatial({"eps: missing"})),  # the backward passes are right for it: told to fix the forward first
    Entry("unbiased variance in the forward pass, with a step-by-step backward exact for it", bn(**{
        "        var = np.var(x, axis=0)": "        var = np.var(x, axis=0, ddof=1)",
        "dvar * 2 * (x - mu) / N + dmu / N": "dvar * 2 * (x - mu) / (N - 1) + dmu / N"}),
        spatial({"variance: unbiased", "running variance: unbiased"})),
    # batch norm backward: the alt closed form garbled (issue 31, family 3); spatial batch norm's calls it
    Entry("alt: the variance term without x_hat in its mean", bn(**{
        "x_hat * (dx_hat * x_hat).sum(axis=0)": "x_hat * dx_hat.sum(axis=0)"}),
        {f: {"dx terms: variance term without x_hat"} for f in (ALT, SBB)}),
    Entry("alt: the variance term with x - mu for x_hat", bn(**{
        "x_hat * (dx_hat * x_hat).sum(axis=0)": "x_hat * (dx_hat * (x - mu)).sum(axis=0)"}),
        {f: {"dx terms: variance term unscaled"} for f in (ALT, SBB)}),
    Entry("alt: gamma missing", bn(alt=BN_ALT.replace("    dx_hat = dout * gamma\n", "    dx_hat = dout\n")),
        {f: {"gamma: missing"} for f in (ALT, SBB)}),
    Entry("backward without the mean term", bn(**{
        "    dx = dx_hat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / N + dmu / N":
        "    dx = dx_hat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / N"}),
        {BNB: {"dx terms: no mean term"}}),
    Entry("backward keepdims on dgamma and dbeta", bn(**{
        "    dbeta = np.sum(dout, axis=0)\n    dgamma = np.sum(dout * x_hat, axis=0)":
        "    dbeta = np.sum(dout, axis=0, keepdims=True)\n    dgamma = np.sum(dout * x_hat, axis=0, keepdims=True)"}),
        {BNB: {"shape: axes of size 1 added"}}),
    Entry("backward swaps dgamma and dbeta", bn(**{
        "    dbeta = np.sum(dout, axis=0)\n    dgamma = np.sum(dout * x_hat, axis=0)":
        "    dgamma = np.sum(dout, axis=0)\n    dbeta = np.sum(dout * x_hat, axis=0)"}),
        {BNB: {"dgamma: swapped", "dbeta: swapped"}}),
    Entry("backward without eps", bn(**{
        '''    dvar = np.sum(dx_hat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=0)
    dmu = np.sum(-dx_hat / np.sqrt(var + eps), axis=0) + dvar * np.mean(-2 * (x - mu), axis=0)
    dx = dx_hat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / N + dmu / N''': '''    dvar = np.sum(dx_hat * (x - mu) * -0.5 * var ** -1.5, axis=0)
    dmu = np.sum(-dx_hat / np.sqrt(var), axis=0) + dvar * np.mean(-2 * (x - mu), axis=0)
    dx = dx_hat / np.sqrt(var) + dvar * 2 * (x - mu) / N + dmu / N'''}),
        {BNB: {"eps: missing"}}),
    Entry("backward forgets gamma", bn(**{"    dx_hat = dout * gamma\n    dvar": "    dx_hat = dout\n    dvar"}),
        {BNB: {"gamma: missing"}}),
    # the alternative backward
    Entry("alt backward with sqrt(var - eps)", bn(**{
        "/ (N * np.sqrt(var + eps))": "/ (N * np.sqrt(var - eps))"}),
        {ALT: {"eps: minus"}, SBB: {"eps: minus"}}),
    Entry("alt backward without the variance term", bn(**{
        "    dx = (N * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)) / (N * np.sqrt(var + eps))":
        "    dx = (N * dx_hat - dx_hat.sum(axis=0)) / (N * np.sqrt(var + eps))"}),
        {ALT: {"dx terms: no variance term"}, SBB: {"dx terms: no variance term"}}),
    Entry("alt backward with a plus sign", bn(**{
        "dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat)": "dx_hat.sum(axis=0) + x_hat * (dx_hat * x_hat)"}),
        {ALT: {"dx terms: variance term sign"}, SBB: {"dx terms: variance term sign"}}),
    Entry("alt backward forgets the 1 / N", bn(**{
        "    dx = (N * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)) / (N * np.sqrt(var + eps))":
        "    dx = (dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)) / np.sqrt(var + eps)"}),
        {ALT: {"dx terms: sums"}, SBB: {"dx terms: sums"}}),
    # layer norm
    Entry("layer norm over the batch axis", ln(**{
        "    mu = x.mean(axis=1, keepdims=True)\n    var = x.var(axis=1, keepdims=True)":
        "    mu = x.mean(axis=0, keepdims=True)\n    var = x.var(axis=0, keepdims=True)"}),
        {LNF: {"statistics: per feature"}}),
    Entry("layer norm with the unbiased variance", ln(**{
        "    var = x.var(axis=1, keepdims=True)": "    var = x.var(axis=1, ddof=1, keepdims=True)"}),
        {LNF: {"variance: unbiased"}}),
    Entry("layer norm ignores ln_param's eps", ln(**{
        '    eps = ln_param.get("eps", 1e-5)': "    eps = 1e-5"}),
        {LNF: {"eps value: default"}}),
    Entry("layer norm eps outside, beta forgotten", ln(**{
        "    std = np.sqrt(var + eps)": "    std = np.sqrt(var) + eps",
        "    out = gamma * x_hat + beta": "    out = gamma * x_hat"}),
        {LNF: {"eps: outside", "affine: gamma only"}}),
    Entry("layer norm with eps 1e-8 hard-coded", ln(**{
        '    eps = ln_param.get("eps", 1e-5)': "    eps = 1e-8"}),
        {LNF: {"eps: missing"}}),
    Entry("layer norm: only the mean over the batch axis", ln(**{
        "    mu = x.mean(axis=1, keepdims=True)\n    var = x.var(axis=1, keepdims=True)":
        "    mu = x.mean(axis=0, keepdims=True)\n    var = x.var(axis=1, keepdims=True)"}),
        {LNF: {"mean: per feature"}}),
    Entry("layer norm backward without eps", ln(**{
        "    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True) * -0.5 * (var + eps) ** -1.5":
        "    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True) * -0.5 * var ** -1.5",
        "    dmu = -np.sum(dx_hat, axis=1, keepdims=True) / np.sqrt(var + eps)":
        "    dmu = -np.sum(dx_hat, axis=1, keepdims=True) / np.sqrt(var)",
        "    dx = dx_hat / np.sqrt(var + eps) + 2": "    dx = dx_hat / np.sqrt(var) + 2"}),
        {LNB: {"eps: missing"}}),
    Entry("layer norm backward with an uncentred x", ln(**{
        "    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True)":
        "    dvar = np.sum(dx_hat * x, axis=1, keepdims=True)"}),
        {LNB: {"centring: uncentred"}}),
    Entry("layer norm backward summed over the batch axis", (LN_FORWARD, '''
def layernorm_backward(dout, cache):
    x, mu, var, std, x_hat, gamma, eps = cache
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std
    return dx, dgamma, dbeta
'''), {LNB: {"dx axis: per feature"}}),
    Entry("layer norm backward forgets gamma, and eps", ln(**{
        "    dx_hat = dout * gamma": "    dx_hat = dout",
        "    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True) * -0.5 * (var + eps) ** -1.5":
        "    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True) * -0.5 * var ** -1.5",
        "    dmu = -np.sum(dx_hat, axis=1, keepdims=True) / np.sqrt(var + eps)":
        "    dmu = -np.sum(dx_hat, axis=1, keepdims=True) / np.sqrt(var)",
        "    dx = dx_hat / np.sqrt(var + eps) + 2": "    dx = dx_hat / np.sqrt(var) + 2"}),
        {LNB: {"eps: missing", "gamma: missing"}}),
    # spatial batch norm
    Entry("spatial batch norm per position over N only", BN_FAMILY + ('''
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mu) / np.sqrt(var + bn_param.get("eps", 1e-5))
    out = gamma[None, :, None, None] * x_hat + beta[None, :, None, None]
    momentum = bn_param.get("momentum", 0.9)
    bn_param["running_mean"] = momentum * bn_param.get("running_mean", np.zeros(C)) + (1 - momentum) * mu.mean(axis=(1, 2))
    bn_param["running_var"] = momentum * bn_param.get("running_var", np.zeros(C)) + (1 - momentum) * var.mean(axis=(1, 2))
    return out, (x, mu, var, bn_param.get("eps", 1e-5), gamma, x_hat)
''',), {SBF: {"statistics: per position over N"}}),
    Entry("spatial batch norm reshaped without the transpose", BN_FAMILY + (SBN_FORWARD.replace(
        "    x_flat = x.transpose(0, 2, 3, 1).reshape(-1, C)", "    x_flat = x.reshape(-1, C)").replace(
        "    out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "    out = out_flat.reshape(N, C, H, W)"),),
        {SBF: {"statistics: no transpose"}}),
    Entry("spatial batch norm per example and channel", BN_FAMILY + ('''
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    flat = x.reshape(N * C, H * W).T
    out, cache = batchnorm_forward(flat, np.ones(N * C), np.zeros(N * C), bn_param)
    out = out.T.reshape(N, C, H, W) * gamma.reshape(1, C, 1, 1) + beta.reshape(1, C, 1, 1)
    return out, cache
''',), {SBF: {"statistics: instance"}}),
    # group norm
    Entry("group norm per pixel over the group's channels", gn(**{
        "    mean = x_group.mean(axis=(2, 3, 4), keepdims=True)\n    var = x_group.var(axis=(2, 3, 4), keepdims=True)":
        "    mean = x_group.mean(axis=2, keepdims=True)\n    var = x_group.var(axis=2, keepdims=True)"}),
        {GNF: {"statistics: pixel groups"}}),
    Entry("group norm per channel whatever G", gn(**{
        "    x_group = x.reshape(N, G, C // G, H, W)": "    x_group = x.reshape(N, C, 1, H, W)"}),
        {GNF: {"statistics: instance"}}),
    Entry("group norm with interleaved groups, by a loop", gn(forward='''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_hat = np.zeros_like(x)
    var = np.zeros((N, G, 1, 1, 1))
    for n in range(N):
        for g in range(G):
            channels = list(range(g, C, G))
            block = x[n, channels]
            var[n, g] = block.var()
            x_hat[n, channels] = (block - block.mean()) / np.sqrt(block.var() + eps)
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, var, eps, G)
'''), {GNF: {"statistics: interleaved groups"}}),
    Entry("group norm ignores G (layer norm)", gn(**{
        "    x_group = x.reshape(N, G, C // G, H, W)": "    x_group = x.reshape(N, 1, C, H, W)"}),
        {GNF: {"statistics: layer"}}),
    Entry("group norm interleaved, eps outside", gn(**{
        "    x_group = x.reshape(N, G, C // G, H, W)": "    x_group = x.reshape(N, C // G, G, H, W)",
        "    mean = x_group.mean(axis=(2, 3, 4), keepdims=True)\n    var = x_group.var(axis=(2, 3, 4), keepdims=True)":
        "    mean = x_group.mean(axis=(1, 3, 4), keepdims=True)\n    var = x_group.var(axis=(1, 3, 4), keepdims=True)",
        "    x_hat = ((x_group - mean) / np.sqrt(var + eps)).reshape(N, C, H, W)":
        "    x_hat = ((x_group - mean) / (np.sqrt(var) + eps)).reshape(N, C, H, W)"}),
        {GNF: {"statistics: interleaved groups", "eps: outside"}}),
    Entry("group norm with eps 1e-5 hard-coded", gn(**{'    eps = gn_param.get("eps", 1e-5)': "    eps = 1e-5"}),
        {GNF: {"eps value: default"}}),
    Entry("group norm forgets beta", gn(**{"    out = gamma * x_hat + beta": "    out = gamma * x_hat"}),
        {GNF: {"affine: gamma only"}}),
    Entry("group norm backward crashes for G = 1 (squeeze)", gn(**{
        "    inv_std = 1.0 / np.sqrt(var.reshape(N, G, 1) + eps)":
        "    inv_std = (1.0 / np.sqrt(var + eps)).squeeze()[:, :, None]"}),
        {GNB: {"raises"}}),
    Entry("group norm backward without the variance term", gn(**{
        "    dx = inv_std / M * (M * dx_hat - dx_hat.sum(axis=2, keepdims=True)\n"
        "                        - x_hat_g * (dx_hat * x_hat_g).sum(axis=2, keepdims=True))":
        "    dx = inv_std / M * (M * dx_hat - dx_hat.sum(axis=2, keepdims=True))"}),
        {GNB: {"dx terms: no variance term"}}),
    Entry("group norm backward sums dgamma without keepdims", gn(**{
        "    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)\n    dgamma = (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True)":
        "    dbeta = dout.sum(axis=(0, 2, 3))\n    dgamma = (dout * x_hat).sum(axis=(0, 2, 3))"}),
        {GNB: {"shape: axes of size 1 dropped"}}),
)

# ---- families found in public student code (issue 19), in several styles, alone and combined --------

BN_SQUARE_BRANCH = BN_FORWARD.replace('''        out = gamma * x_hat + beta
        cache = (x, mu, var, eps, gamma, x_hat)''', '''        if gamma.shape[0] == x.shape[0]:  # called by layer norm on x.T: gamma belongs to the rows
            out = gamma[:, None] * x_hat + beta[:, None]
        else:
            out = gamma * x_hat + beta
        cache = (x, mu, var, eps, gamma, x_hat)''')

LN_GAMMA_OUTSIDE = '''
def layernorm_backward(dout, cache):
    x, mu, var, std, x_hat, gamma, eps = cache
    N, D = dout.shape
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma / (D * std) * (D * dout - dout.sum(axis=1, keepdims=True)
                              - x_hat * (dout * x_hat).sum(axis=1, keepdims=True))
    return dx, dgamma, dbeta
'''

LN_BACKWARD_BATCH_COUNT = LN_BACKWARD.replace("    D = x.shape[1]", "    D = x.shape[0]  # as in the batch norm code it was copied from")

LN_BACKWARD_TRANSPOSED_UNCENTRED = '''
def layernorm_backward(dout, cache):
    x, mu, var, std, x_hat, gamma, eps = cache
    D = x.shape[1]
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx_hat_t, x_t, std_t = (dout * gamma).T, x.T, std.T
    dx_t = (dx_hat_t / std_t - np.sum(dx_hat_t * x_t, axis=0) * x_t / std_t ** 3 / D
            - np.sum(dx_hat_t, axis=0) / (std_t * D))
    return dx_t.T, dgamma, dbeta
'''

LN_BACKWARD_TRANSPOSED_AXIS = '''
def layernorm_backward(dout, cache):
    x, mu, var, std, x_hat, gamma, eps = cache
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx_hat_t, x_hat_t = (dout * gamma).T, x_hat.T
    dx_t = (dx_hat_t - dx_hat_t.mean(axis=1, keepdims=True)
            - x_hat_t * (dx_hat_t * x_hat_t).mean(axis=1, keepdims=True)) / std.T
    return dx_t.T, dgamma, dbeta
'''

SBN_NOT_TRANSPOSED_BACK = SBN_FORWARD.replace("    out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)",
                                              "    out = out_flat.reshape(N, C, H, W)")

GN_THROUGH_COLUMNS = '''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    columns = x.reshape(N * G, -1).T
    mean = columns.mean(axis=0)
    var = columns.var(axis=0)
    x_hat = ((columns - mean) / np.sqrt(var + eps)).T.reshape(N, C, H, W)
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, var.reshape(N, G, 1, 1, 1), eps, G)
'''

GN_GAMMA_AS_C = '''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_group = x.reshape(N, G, C // G, H, W)
    mean = x_group.mean(axis=(2, 3, 4), keepdims=True)
    var = x_group.var(axis=(2, 3, 4), keepdims=True)
    x_hat = ((x_group - mean) / np.sqrt(var + eps)).reshape(N, C, H, W)
    out = gamma[np.newaxis, :, np.newaxis, np.newaxis] * x_hat + beta[np.newaxis, :, np.newaxis, np.newaxis]
    return out, (x_hat, gamma, var, eps, G)
'''

GN_BACKWARD_GAMMA_AS_C = GN_BACKWARD.replace(
    "    dx_hat = (dout * gamma).reshape(N, G, -1)",
    "    dx_hat = (dout * gamma[np.newaxis, :, np.newaxis, np.newaxis]).reshape(N, G, -1)")

FOUND = (
    Entry("test mode subtracts beta, eps outside", bn(**{
        "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)\n        out = gamma * x_hat + beta":
        "        x_hat = (x - running_mean) / (np.sqrt(running_var) + eps)\n        out = gamma * x_hat - beta"}),
        spatial({"affine: minus beta", "eps: outside"})),
    Entry("batch norm applies gamma per row when N == D (reused by layer norm on x.T)",
          (BN_SQUARE_BRANCH, BN_BACKWARD, BN_ALT), {BNF: {"affine: per row"}}),
    Entry("running statistics overwritten by the batch's", bn(**{
        "        running_mean = momentum * running_mean + (1 - momentum) * mu\n"
        "        running_var = momentum * running_var + (1 - momentum) * var":
        "        running_mean = mu\n        running_var = var"}),
        spatial({"momentum: ignored"})),
    Entry("running variance overwritten, the mean kept", bn(**{
        "running_var = momentum * running_var + (1 - momentum) * var": "running_var = var"}),
        spatial({"momentum: ignored"})),
    Entry("running mean kept with keepdims (shape (1, D))", bn(**{
        "        mu = np.mean(x, axis=0)": "        mu = np.mean(x, axis=0, keepdims=True)"}),
        spatial({"shape: axes of size 1 added"})),
    Entry("running variance keeps the std, test mode divides by it", bn(**{
        "        running_var = momentum * running_var + (1 - momentum) * var":
        "        running_var = momentum * running_var + (1 - momentum) * np.sqrt(var + eps)",
        "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)":
        "        x_hat = (x - running_mean) / running_var"}),
        spatial({"running variance: sqrt(var + eps)", "square root: missing", "eps: missing"})),
    Entry("group norm expands gamma to the group rows with np.tile", gn(forward='''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    rows = x.reshape(N * G, -1)
    mean = rows.mean(axis=1, keepdims=True)
    var = rows.var(axis=1, keepdims=True)
    x_hat = (rows - mean) / np.sqrt(var + eps)
    gamma_rows = np.tile(np.tile(gamma.reshape(C), H * W).reshape(G, -1), (N, 1))
    beta_rows = np.tile(np.tile(beta.reshape(C), H * W).reshape(G, -1), (N, 1))
    out = (gamma_rows * x_hat + beta_rows).reshape(N, C, H, W)
    return out, (x_hat.reshape(N, C, H, W), gamma, var.reshape(N, G, 1, 1, 1), eps, G)
'''), {GNF: {"affine: tiled"}}),
    Entry("group norm with eps outside the square root", gn(**{
        "    x_hat = ((x_group - mean) / np.sqrt(var + eps)).reshape(N, C, H, W)":
        "    x_hat = ((x_group - mean) / (np.sqrt(var) + eps)).reshape(N, C, H, W)"}),
        {GNF: {"eps: outside"}}),
    Entry("group norm reads G as the channels in a group", gn(**{
        "    x_group = x.reshape(N, G, C // G, H, W)": "    x_group = x.reshape(N, C // G, G, H, W)"}),
        {GNF: {"statistics: G channels per group"}}),
    Entry("group norm reads G as the channels in a group, by a loop", gn(forward='''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_hat = np.empty_like(x)
    for n in range(N):
        for start in range(0, C, G):
            block = x[n, start:start + G]
            x_hat[n, start:start + G] = (block - block.mean()) / np.sqrt(block.var() + eps)
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, None, eps, G)
'''), {GNF: {"statistics: G channels per group"}}),
    Entry("group norm reads G as the channels in a group, eps outside, by a loop", gn(forward='''
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_hat = np.empty_like(x)
    for n in range(N):
        for start in range(0, C, G):
            block = x[n, start:start + G]
            x_hat[n, start:start + G] = (block - block.mean()) / (block.std() + eps)
    return gamma * x_hat + beta, {"x_hat": x_hat, "gamma": gamma, "G": G, "eps": eps}
'''), {GNF: {"statistics: G channels per group", "eps: outside"}}),
    Entry("running variance overwritten by the unbiased batch variance", bn(**{
        "        running_mean = momentum * running_mean + (1 - momentum) * mu\n"
        "        running_var = momentum * running_var + (1 - momentum) * var":
        "        running_mean = momentum * running_mean + (1 - momentum) * mu\n"
        "        running_var = np.var(x, axis=0, ddof=1)"}),
        spatial({"momentum: ignored", "running variance: unbiased"})),
    Entry("layer norm backward with gamma outside the sums, a dict cache", (LN_FORWARD.replace(
        "    cache = (x, mu, var, std, x_hat, gamma, eps)", '    cache = {"x_hat": x_hat, "std": std, "gamma": gamma}'), '''
def layernorm_backward(dout, cache):
    x_hat, std, gamma = cache["x_hat"], cache["std"], cache["gamma"]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma * (dout - dout.mean(axis=1, keepdims=True) - x_hat * (dout * x_hat).mean(axis=1, keepdims=True)) / std
    return dx, dgamma, dbeta
'''), {LNB: {"gamma: outside"}}),
    Entry("group norm through columns, not transposed back", gn(forward=GN_THROUGH_COLUMNS.replace(
        ").T.reshape(N, C, H, W)", ").reshape(N, C, H, W)")), {GNF: {"output: not transposed back"}}),
    Entry("spatial batch norm reshaped back without its transpose",
          BN_FAMILY + (SBN_NOT_TRANSPOSED_BACK, SBN_BACKWARD), {SBF: {"output: not transposed back"}}),
    Entry("group norm indexes gamma as (C,): a 7-D output, its backward right", (GN_GAMMA_AS_C, GN_BACKWARD_GAMMA_AS_C),
          {GNF: {"shape: axes of size 1 added"}}),
    Entry("layer norm backward with gamma outside the sums", (LN_FORWARD, LN_GAMMA_OUTSIDE),
          {LNB: {"gamma: outside"}}),
    Entry("layer norm backward dividing by N (copied from batch norm)", (LN_FORWARD, LN_BACKWARD_BATCH_COUNT),
          {LNB: {"dx terms: count"}}),
    Entry("layer norm backward on the transpose, x uncentred", (LN_FORWARD, LN_BACKWARD_TRANSPOSED_UNCENTRED),
          {LNB: {"centring: uncentred everywhere"}}),
    Entry("layer norm backward on the transpose, means over the batch", (LN_FORWARD, LN_BACKWARD_TRANSPOSED_AXIS),
          {LNB: {"dx axis: per feature"}}),
)
# A backward pass that repeats its forward pass's axes (issue 31, family 1): the forward's mistake named in the
# forward pass, and the backward's own, the same axes in dx, named in the backward pass (fixing the forward pass
# alone would leave it wrong).
REPEATED = (
    Entry("layer norm over the batch axis, forward and backward", ln(**{
        "    mu = x.mean(axis=1, keepdims=True)\n    var = x.var(axis=1, keepdims=True)":
        "    mu = x.mean(axis=0, keepdims=True)\n    var = x.var(axis=0, keepdims=True)",
        "    D = x.shape[1]": "    D = x.shape[0]",
        "    dvar = np.sum(dx_hat * (x - mu), axis=1, keepdims=True)": "    dvar = np.sum(dx_hat * (x - mu), axis=0, keepdims=True)",
        "    dmu = -np.sum(dx_hat, axis=1, keepdims=True)": "    dmu = -np.sum(dx_hat, axis=0, keepdims=True)",
        "np.mean(x - mu, axis=1, keepdims=True)": "np.mean(x - mu, axis=0, keepdims=True)"}),
        {LNF: {"statistics: per feature"}, LNB: {"dx axis: per feature"}}),
    Entry("spatial batch norm without the transpose, forward and backward", BN_FAMILY + (
        SBN_FORWARD.replace("    x_flat = x.transpose(0, 2, 3, 1).reshape(-1, C)", "    x_flat = x.reshape(-1, C)")
        .replace("    out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "    out = out_flat.reshape(N, C, H, W)"),
        SBN_BACKWARD.replace("    dout_flat = dout.transpose(0, 2, 3, 1).reshape(-1, C)", "    dout_flat = dout.reshape(-1, C)")
        .replace("    dx = dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "    dx = dx_flat.reshape(N, C, H, W)")),
        {SBF: {"statistics: no transpose"}, SBB: {"dx axis: no transpose"}}),
    Entry("group norm statistics per pixel, forward and backward", gn(**{
        "    mean = x_group.mean(axis=(2, 3, 4), keepdims=True)\n    var = x_group.var(axis=(2, 3, 4), keepdims=True)":
        "    mean = x_group.mean(axis=2, keepdims=True)\n    var = x_group.var(axis=2, keepdims=True)",
        "    dx_hat = (dout * gamma).reshape(N, G, -1)\n    x_hat_g = x_hat.reshape(N, G, -1)\n    M = x_hat_g.shape[2]\n"
        "    inv_std = 1.0 / np.sqrt(var.reshape(N, G, 1) + eps)":
        "    dx_hat = (dout * gamma).reshape(N, G, C // G, H * W)\n    x_hat_g = x_hat.reshape(N, G, C // G, H * W)\n"
        "    M = C // G\n    inv_std = 1.0 / np.sqrt(var.reshape(N, G, 1, H * W) + eps)"}),
        {GNF: {"statistics: pixel groups"}, GNB: {"dx axis: pixel groups"}}),
)
# Other layouts (issue 31, families 4 and 5).
SBN_PER_CHANNEL_AND_COLUMN = '''
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, C, H, W = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(C, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(C, dtype=x.dtype))
    g, b = gamma.reshape(1, C, 1, 1), beta.reshape(1, C, 1, 1)
    if mode == "train":
        mu = x.mean(axis=(0, 2), keepdims=True)
        var = x.var(axis=(0, 2), keepdims=True)
        out = g * (x - mu) / np.sqrt(var + eps) + b
        running_mean = momentum * running_mean + (1 - momentum) * x.mean(axis=(0, 2, 3))
        running_var = momentum * running_var + (1 - momentum) * x.var(axis=(0, 2, 3))
    else:
        out = g * (x - running_mean.reshape(1, C, 1, 1)) / np.sqrt(running_var.reshape(1, C, 1, 1) + eps) + b
    bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
    return out, (x, gamma, mu, var, eps)
'''
OTHER_LAYOUTS = (
    Entry("spatial batch norm through the rows of x.reshape(C, -1), forward and backward", BN_FAMILY + (
        SBN_FORWARD.replace("    x_flat = x.transpose(0, 2, 3, 1).reshape(-1, C)", "    x_flat = x.reshape(C, -1).T")
        .replace("    out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "    out = out_flat.T.reshape(N, C, H, W)"),
        SBN_BACKWARD.replace("    dout_flat = dout.transpose(0, 2, 3, 1).reshape(-1, C)", "    dout_flat = dout.reshape(C, -1).T")
        .replace("    dx = dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "    dx = dx_flat.T.reshape(N, C, H, W)")),
        {SBF: {"statistics: channel rows"}, SBB: {"dx axis: channel rows"}}),
    Entry("spatial batch norm per channel and column", BN_FAMILY + (SBN_PER_CHANNEL_AND_COLUMN,),
        {SBF: {"statistics: per channel and column"}}),
    Entry("group norm over interleaved channels per pixel", gn(**{
        "    x_group = x.reshape(N, G, C // G, H, W)\n    mean = x_group.mean(axis=(2, 3, 4), keepdims=True)\n"
        "    var = x_group.var(axis=(2, 3, 4), keepdims=True)":
        "    x_group = x.reshape(N, C // G, G, H, W)\n    mean = x_group.mean(axis=1, keepdims=True)\n"
        "    var = x_group.var(axis=1, keepdims=True)"}),
        {GNF: {"statistics: interleaved pixel groups"}}),
    Entry("train mode normalizes with the running statistics", bn(**{
        """        x_hat = (x - mu) / np.sqrt(var + eps)
        out = gamma * x_hat + beta
        cache = (x, mu, var, eps, gamma, x_hat)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var""": """        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
        cache = (x, mu, var, eps, gamma, x_hat)"""}),
        spatial({"train statistics: running"})),
)
# Found in unseen public code (issue 31's measure): test mode that updates the running statistics first, and a
# backward pass whose second mistake (float64 for float32) hides behind its first.
LATER = (
    Entry("the running statistics updated before the mode is looked at", bn(**{
        "    out, cache = None, None\n    if mode == \"train\":\n        mu = np.mean(x, axis=0)\n"
        "        var = np.var(x, axis=0)\n":
        "    out, cache = None, None\n    mu = np.mean(x, axis=0)\n    var = np.var(x, axis=0)\n"
        "    running_mean = momentum * running_mean + (1 - momentum) * mu\n"
        "    running_var = momentum * running_var + (1 - momentum) * var\n    if mode == \"train\":\n",
        "        running_mean = momentum * running_mean + (1 - momentum) * mu\n"
        "        running_var = momentum * running_var + (1 - momentum) * var\n": ""}),
        {BNF: {"test statistics: updated", "test mode: updates"}, SBF: {"test statistics: updated"}}),
    Entry("layer norm backward with an eps of its own, and float64 for float32", ln(**{
        "    x, mu, var, std, x_hat, gamma, eps = cache": "    x, mu, var, std, x_hat, gamma, _ = cache\n    eps = 1e-5",
        "    dx_hat = dout * gamma": "    dx_hat = np.zeros(dout.shape) + dout * gamma"}),
        {LNB: {"dx eps: default", "dtype: float64 for float32"}}),
)
FOUND += REPEATED + OTHER_LAYOUTS + LATER
# Right code in the same styles: every point earned.
FOUND_CORRECT = (
    Entry("group norm through columns, transposed back", gn(forward=GN_THROUGH_COLUMNS)),
)
WRONG += FOUND
CORRECT += FOUND_CORRECT

# Realistic mistakes no probe models: they must be left unnamed (what differs is said), never misnamed.
UNMODELLED = (
    Entry("backward: dvar without its -1/2", bn(**{
        "    dvar = np.sum(dx_hat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=0)":
        "    dvar = np.sum(dx_hat * (x - mu) * (var + eps) ** -1.5, axis=0)"}),
        {BNB: set()}),
    Entry("spatial batch norm backward without the transpose", BN_FAMILY + (SBN_FORWARD, SBN_BACKWARD.replace(
        "    dout_flat = dout.transpose(0, 2, 3, 1).reshape(-1, C)", "    dout_flat = dout.reshape(-1, C)").replace(
        "    dx = dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)", "    dx = dx_flat.reshape(N, C, H, W)")),
        {SBB: set()}),
    Entry("group norm: mean per group, variance per channel", gn(**{
        "    var = x_group.var(axis=(2, 3, 4), keepdims=True)": "    var = x_group.var(axis=(3, 4), keepdims=True)",
        "    cache = (x_hat, gamma, var, eps, G)": "    cache = (x_hat, gamma, var.mean(axis=2, keepdims=True), eps, G)"}),
        {GNF: set()}),
)

# ---- not implemented: raising, returning None, returning the inputs --------------------------

_SIGNATURES = {
    BNF: "x, gamma, beta, bn_param", LNF: "x, gamma, beta, ln_param", SBF: "x, gamma, beta, bn_param",
    GNF: "x, gamma, beta, G, gn_param", BNB: "dout, cache", ALT: "dout, cache", LNB: "dout, cache",
    SBB: "dout, cache", GNB: "dout, cache",
}


def unimplemented(function, how):
    args = _SIGNATURES[function]
    body = {"raises": "    raise NotImplementedError",
            "returns None": "    return None, None" if "x" in args.split(",")[0] else "    return None, None, None",
            "returns its inputs": "    return x, {}" if args.startswith("x") else "    return dout, cache, cache"}[how]
    return Entry(f"{function} {how}", (f"def {function}({args}):\n{body}\n",))


UNIMPLEMENTED = tuple(unimplemented(f, how) for f in _SIGNATURES for how in ("raises", "returns None",
                                                                            "returns its inputs"))
