"""
Benchmark: what grading one submission costs, against its peers measured in the same run.

Builds a course and a small class (reference, stubs, typical mistakes, a hanging
function), then times, interleaved where they repeat:

- the floor: a bare `python -c "import numpy"` (what any isolated worker pays);
- one sandboxed worker run of all nine functions (normgrade.score.scorer.score_code);
- per-submission grading in one process (normgrade.grade.class_run.grade, no
  notebook execution), median over the class: graded for the first time,
  then regraded, written by normgrade.grade.autograded and through nbgrader's
  converter in turn;
- the same with --execute (the notebooks run in the sandbox);
- the whole `normgrade grade` command for one submission (start-up included);
- plain `nbgrader autograde` of the same submission (a new process, notebooks executed).

It prints a table with each figure's ratio to the bare numpy start, and a
profile of one submission's grading, and writes both with --write.

    python benchmarks/bench_grading.py [--class-size 8] [--write benchmarks/GRADING.md]
"""
import argparse
import cProfile
import io
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from normgrade.grade import autograded
from normgrade.score import checks, expected
from normgrade.grade.class_run import grade
from normgrade.grade.grading import Task, grade_submission
from normgrade.course import db_url, paths, run_nbgrader
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.build.release import build_course
from normgrade.build.samples import TYPICAL_MISTAKES, make_submission, mutant_layers, reference_layers
from normgrade.run.sandbox import Sandbox
from normgrade.score.scorer import score_code
from normgrade.paths import SOLUTION_LAYERS, STUB_LAYERS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from round_trips import round_trips  # noqa: E402 - the tests' counter, shared

HANGS = reference_layers() + "\ndef layernorm_forward(x, gamma, beta, ln_param):\n    while True:\n        pass\n"


def _seconds(action):
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _class(release, root, keys, size):
    kinds = [("reference", reference_layers(), keys), ("stubs", STUB_LAYERS.read_text(), {}),
             ("mistakes", mutant_layers(*TYPICAL_MISTAKES), keys), ("hangs", HANGS, keys)]
    folders = []
    for index in range(size):
        name, source, answers = kinds[index % len(kinds)]
        folders.append(make_submission(release, root / f"s{index:02d}_{name}", source, answers))
    return folders


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--class-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help="one submission, one repeat, nothing executed: the test suite's check that the benchmark "
                             "still runs (its figures mean nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        args.class_size, args.repeats = 1, 1

    work = Path(tempfile.mkdtemp(prefix="normgrade-bench-"))
    try:
        course = work / "course"
        build_course(course, prove=False)
        keys = answer_keys(source_notebooks(paths(course)["source"]))
        folders = _class(paths(course)["release"], work / "class", keys, args.class_size)
        data = expected.ExpectedValues(paths(course)["expected"])
        sandbox = Sandbox()

        bare, worker = [], []
        for _ in range(args.repeats):  # interleaved
            bare.append(_seconds(lambda: subprocess.run([sys.executable, "-c", "import numpy"], check=True)))
            worker.append(_seconds(lambda: score_code(SOLUTION_LAYERS, checks.FUNCTIONS, data, sandbox)))

        document = grade(folders, course)
        per_submission = [s["seconds"] for s in document["submissions"]]
        # The same class graded again (regrade), interleaved: written by normgrade.grade.autograded, then through
        # nbgrader's converter (what a course whose configuration lists a preprocessor of its own gets).
        written, converted = [], []
        for _ in range(1 if args.quick else 2):
            written += [s["seconds"] for s in grade(folders, course, regrade=True)["submissions"]]
            own = autograded.unsupported
            autograded.unsupported = lambda converter: ["benchmark"]
            try:
                converted += [s["seconds"] for s in grade(folders, course, regrade=True)["submissions"]]
            finally:
                autograded.unsupported = own
        by_kind = {}
        for s in document["submissions"]:
            by_kind.setdefault(s["student"].split("_", 1)[1], []).append(s["seconds"])
        executed = [] if args.quick else grade(folders[:2], course, execute=True)["submissions"]

        command = _seconds(lambda: subprocess.run(
            [sys.executable, "-m", "normgrade.cli", "grade", str(folders[0]), "--course", str(course), "--json"],
            check=True, capture_output=True))
        plain_student = "plain"
        shutil.copytree(folders[0], paths(course)["submitted"] / plain_student / "normalization")
        plain = float("nan") if args.quick else _seconds(lambda: run_nbgrader(
            course, "autograde", "normalization", "--student", plain_student, "--create", "--force", timeout=1800))

        profile = cProfile.Profile()
        task = Task(str(course), db_url(course), "profiled", str(folders[0]), "profiled", "bench", regrade=True)
        profile.runcall(grade_submission, task)
        statements, commits = round_trips(grade_submission, Task(str(course), db_url(course), "counted", str(folders[0]),
                                                                 "counted", "bench"))
        stream = io.StringIO()
        pstats.Stats(profile, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(16)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor = statistics.median(bare)
    rows = [
        ("bare `python -c 'import numpy'` (floor)", floor),
        ("one sandboxed worker run, all nine functions", statistics.median(worker)),
        (f"per submission, graded for the first time (median of {len(per_submission)})",
         statistics.median(per_submission)),
        (f"per submission regraded, written by normgrade.grade.autograded (median of {len(written)})",
         statistics.median(written)),
        (f"per submission regraded, through nbgrader's converter (median of {len(converted)})",
         statistics.median(converted)),
        ("per submission, with notebooks executed in the sandbox (median of 2)",
         statistics.median(s["seconds"] for s in executed) if executed else float("nan")),
        ("whole `normgrade grade` command, one submission", command),
        ("plain `nbgrader autograde`, one submission (executes notebooks)", plain),
    ]
    lines = [
        "# Benchmark: grading one submission",
        "",
        "Produced by `python benchmarks/bench_grading.py --write benchmarks/GRADING.md` on "
        f"{platform.machine()}, Python {platform.python_version()}, {len(__import__('os').sched_getaffinity(0))} cores.",
        "",
        "| what | seconds | ratio to bare numpy start |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {label} | {value:.2f} | {value / floor:.1f} |" for label, value in rows]
    lines += ["", f"Gradebook round trips of one submission graded for the first time (SQLite): {statements} SQL "
              f"statements in {commits} commits.", ""]
    lines += ["", "Per submission by kind (seconds): " + ", ".join(
        f"{kind} {statistics.median(v):.2f}" for kind, v in sorted(by_kind.items())), "",
        "Profile of one submission (`grade_submission`, no execution), by cumulative time:", "", "```",
        "\n".join(stream.getvalue().strip().splitlines()[:40]), "```", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
