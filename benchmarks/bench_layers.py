"""
Benchmark: the reference normalization layers (NumPy) against PyTorch CPU.

Each case times one forward + backward pass of the reference and of the
equivalent torch.nn.functional call with autograd, on the same inputs and
dtype. Repeats are interleaved (reference, torch, reference, torch, ...) so
that noise from a shared machine hits both alike; the table gives medians and
the ratio reference / torch (above 1: the reference is slower).

    python benchmarks/bench_layers.py [--repeats 30] [--threads 1] [--write benchmarks/RESULTS.md]
"""
import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "autograder"))
from normgrade.reference import load_layers  # noqa: E402

ref = load_layers()


def _case(label, x_shape, param_shape, forward, backward, torch_forward):
    """A benchmark case: label and a builder of (ours, theirs, arrays) for a dtype."""
    def build(rng, dtype):
        x = rng.standard_normal(x_shape).astype(dtype)
        gamma, beta = np.ones(param_shape, dtype), np.zeros(param_shape, dtype)
        dout = rng.standard_normal(x_shape).astype(dtype)

        def ours():
            out, cache = forward(x, gamma, beta)
            return backward(dout, cache)

        def theirs(tx, tg, tb, tdout):
            return torch.autograd.grad(torch_forward(tx, tg, tb), (tx, tg, tb), tdout)

        return ours, theirs, (x, gamma, beta, dout)

    return label, build


def _torch_batch_norm(tx, tg, tb):
    return F.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)


CASES = (
    _case("batchnorm (512, 1024)", (512, 1024), (1024,),
          lambda x, g, b: ref.batchnorm_forward(x, g, b, {"mode": "train"}), ref.batchnorm_backward_alt,
          _torch_batch_norm),
    _case("layernorm (512, 1024)", (512, 1024), (1024,),
          lambda x, g, b: ref.layernorm_forward(x, g, b, {}), ref.layernorm_backward,
          lambda tx, tg, tb: F.layer_norm(tx, (1024,), tg, tb, 1e-5)),
    _case("spatial batchnorm (32, 64, 16, 16)", (32, 64, 16, 16), (64,),
          lambda x, g, b: ref.spatial_batchnorm_forward(x, g, b, {"mode": "train"}), ref.spatial_batchnorm_backward,
          _torch_batch_norm),
    _case("spatial groupnorm G=8 (32, 64, 16, 16)", (32, 64, 16, 16), (1, 64, 1, 1),
          lambda x, g, b: ref.spatial_groupnorm_forward(x, g, b, 8, {}), ref.spatial_groupnorm_backward,
          lambda tx, tg, tb: F.group_norm(tx, 8, tg.reshape(64), tb.reshape(64), 1e-5)),
)


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(repeats, dtypes):
    rows = []
    for dtype in dtypes:
        for name, build in CASES:
            ours, theirs, arrays = build(np.random.default_rng(0), dtype)
            x, gamma, beta, dout = arrays
            tensors = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)] + [torch.tensor(dout)]
            torch_call = lambda: theirs(*tensors)  # noqa: E731
            ours(), torch_call()  # warm-up
            t_ours, t_torch = [], []
            for _ in range(repeats):
                t_ours.append(_timed(ours))
                t_torch.append(_timed(torch_call))
            m_ours, m_torch = statistics.median(t_ours), statistics.median(t_torch)
            rows.append((name, np.dtype(dtype).name, m_ours * 1e3, m_torch * 1e3, m_ours / m_torch))
    return rows


def format_table(rows, repeats, threads):
    lines = [
        f"Reference (NumPy {np.__version__}) vs PyTorch {torch.__version__} CPU, forward + backward, "
        f"median of {repeats} interleaved repeats, torch threads = {threads}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.",
        "",
        "| layer | dtype | reference ms | torch ms | ratio ref/torch |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {n} | {d} | {a:.2f} | {b:.2f} | {r:.2f} |" for n, d, a, b, r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (NumPy's elementwise work is single-threaded)")
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = format_table(run(args.repeats, (np.float32, np.float64)), args.repeats, args.threads)
    print(table)
    if args.write:
        args.write.write_text("# Benchmark: reference vs PyTorch CPU\n\nProduced by `make bench` "
                              "(`python benchmarks/bench_layers.py --write benchmarks/RESULTS.md`).\n\n" + table)


if __name__ == "__main__":
    main()
