"""
Benchmark: Gradescope's run_autograder for one submission, against a bare NumPy start measured in the same run.

Builds a course and its autograder zip, lays it out as Gradescope does
(normgrade.platforms.gradescope.gradescope_layout: source/, submission/, results/) and
times, interleaved, a bare `python -c "import numpy"` and the zip's grader
(`python -m normgrade.platforms.gradescope run`, as run_autograder calls it, under
bubblewrap) on a fresh layout each time: the reference, as a student
uploads it. Then `python -X importtime` of one run says what it imports.
It prints a table with each figure's ratio to the bare numpy start and
writes it with --write.

    python benchmarks/bench_gradescope.py [--repeats 7] [--write benchmarks/GRADESCOPE.md]
"""
import argparse
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from normgrade.course import paths
from normgrade.platforms.gradescope import build_autograder, gradescope_layout, run_layout
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.build.release import build_course
from normgrade.build.samples import make_submission, reference_layers


def _imports(stderr, count=8):
    """The `count` imports of one run that took longest (cumulative microseconds, by -X importtime)."""
    rows = []
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if found and len(found.group(3)) <= 2:  # top-level imports only
            rows.append((int(found.group(2)), found.group(4)))
    return sorted(rows, reverse=True)[:count]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--quick", action="store_true", help="one repeat: the suite's check that it still runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1

    work = Path(tempfile.mkdtemp(prefix="normgrade-bench-gradescope-"))
    try:
        course = work / "course"
        build_course(course, prove=False)
        zip_path = work / "autograder.zip"
        build_autograder(course, zip_path)
        upload = make_submission(paths(course)["release"], work / "upload", reference_layers(),
                                 answer_keys(source_notebooks(paths(course)["source"])))
        bare, graded = [], []
        for n in range(args.repeats):  # interleaved
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import numpy"], check=True)
            bare.append(time.perf_counter() - start)
            root = gradescope_layout(zip_path, upload, work / f"run{n}")
            start = time.perf_counter()
            status, document, stderr = run_layout(root)
            graded.append(time.perf_counter() - start)
            if status != 0 or document is None or document["score"] != sum(t["max_score"] for t in document["tests"]):
                raise SystemExit(f"the reference did not earn every point (exit status {status}):\n{stderr[-2000:]}")
        _, _, stderr = run_layout(gradescope_layout(zip_path, upload, work / "importtime"), ("-X", "importtime"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor, seconds = statistics.median(bare), statistics.median(graded)
    lines = [
        "# Benchmark: Gradescope's run_autograder, one submission",
        "",
        f"Produced by `python benchmarks/bench_gradescope.py --write benchmarks/GRADESCOPE.md` on "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores (medians of {args.repeats}, interleaved).",
        "",
        "| what | seconds | ratio to bare numpy start |",
        "| --- | ---: | ---: |",
        f"| bare `python -c 'import numpy'` (floor) | {floor:.2f} | 1.0 |",
        f"| the zip's grader on the reference (`python -m normgrade.platforms.gradescope run`, bubblewrap) | {seconds:.2f} | "
        f"{seconds / floor:.1f} |",
        "",
        "Its slowest top-level imports (`python -X importtime`, cumulative):",
        "",
    ]
    lines += [f"- `{name}`: {micros / 1e6:.3f} s" for micros, name in _imports(stderr)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
