"""
Benchmark: the reference normalization layers (NumPy) against PyTorch CPU.

Each case times one forward + backward pass of the reference and of the
equivalent torch.nn.functional call with autograd, on the same inputs and
dtype, the two directions timed separately. Repeats are interleaved
(reference, torch, reference, torch, ...) so that noise from a shared machine
hits both alike; the table gives medians and the ratios reference / torch
(above 1: the reference is slower), of the whole pass and of each direction.

    python benchmarks/bench_layers.py [--repeats 30] [--quick] [--threads 1] [--write benchmarks/RESULTS.md]
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
from normgrade.score.reference import load_layers  # noqa: E402

ref = load_layers()


def _case(label, x_shape, param_shape, forward, backward, torch_forward):
    """
    A benchmark case: label and a builder of (ours, theirs) for a dtype, each
    a callable that runs one forward + backward pass and returns the seconds
    (forward, backward) it took.
    """
    def build(rng, dtype):
        x = rng.standard_normal(x_shape).astype(dtype)
        gamma, beta = np.ones(param_shape, dtype), np.zeros(param_shape, dtype)
        dout = rng.standard_normal(x_shape).astype(dtype)
        tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
        tdout = torch.tensor(dout)

        def ours():
            start = time.perf_counter()
            out, cache = forward(x, gamma, beta)
            middle = time.perf_counter()
            backward(dout, cache)
            return middle - start, time.perf_counter() - middle

        def theirs():
            start = time.perf_counter()
            out = torch_forward(tx, tg, tb)
            middle = time.perf_counter()
            torch.autograd.grad(out, (tx, tg, tb), tdout)
            return middle - start, time.perf_counter() - middle

        return ours, theirs

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


def _medians(times):
    """Median milliseconds of the forward passes, the backward passes and the whole passes."""
    return tuple(statistics.median(t) * 1e3 for t in (
        [f for f, _ in times], [b for _, b in times], [f + b for f, b in times]))


def run(repeats, dtypes):
    rows = []
    for dtype in dtypes:
        for name, build in CASES:
            ours, theirs = build(np.random.default_rng(0), dtype)
            ours(), theirs()  # warm-up
            t_ours, t_torch = [], []
            for _ in range(repeats):
                t_ours.append(ours())
                t_torch.append(theirs())
            rows.append((name, np.dtype(dtype).name, _medians(t_ours), _medians(t_torch)))
    return rows


def format_table(rows, repeats, threads):
    lines = [
        f"Reference (NumPy {np.__version__}) vs PyTorch {torch.__version__} CPU, forward + backward, "
        f"median of {repeats} interleaved repeats, torch threads = {threads}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.",
        "",
        "| layer | dtype | reference ms | torch ms | ratio ref/torch | forward ratio | backward ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, dtype, (f_ours, b_ours, ours), (f_torch, b_torch, theirs) in rows:
        lines.append(f"| {name} | {dtype} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} "
                     f"| {f_ours / f_torch:.2f} | {b_ours / b_torch:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="one repeat: checks that the benchmark runs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (NumPy's elementwise work is single-threaded)")
    parser.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    table = format_table(run(repeats, (np.float32, np.float64)), repeats, args.threads)
    print(table)
    if args.write:
        args.write.write_text("# Benchmark: reference vs PyTorch CPU\n\nProduced by `make bench` "
                              "(`python benchmarks/bench_layers.py --write benchmarks/RESULTS.md`). The forward "
                              "and backward ratios compare each direction alone (medians of its own times).\n\n"
                              + table)


if __name__ == "__main__":
    main()
