"""
Benchmark: grading a whole class with `normgrade grade`, against plain nbgrader in the same run.

Builds a course and a generated class of 200 submissions (--size), mixed in
one of two ways (--mix):

- varied (the default): the reference, the stubs and typical mistakes in
  turn, plus a few hostile ones: a layer norm that hangs, a worker that kills
  itself, a vandal that tries to write into the course;
- correct-and-stubs: the class issue 32 set its goal for, three quarters the
  reference and a quarter the stubs, every notebook answered;

then times the whole command, start-up included,

- with 1 and 2 workers, into the course's SQLite gradebook and into a
  PostgreSQL gradebook (a server of its own, tests/pgserver.py; skipped
  where none can run),
- and plain sequential `nbgrader autograde` (notebooks executed, the stock
  way) on a sample of the same class, per submission.

Every configuration starts from an empty gradebook and must give the same
scores. It prints a table (and writes it with --write): total time,
submissions per minute, and each figure's ratio to the 1-worker SQLite run.

    python benchmarks/bench_class.py [--size 200] [--sample 3] [--mix varied] [--write benchmarks/CLASS.md]
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from normgrade.course import paths, run_nbgrader  # noqa: E402
from normgrade.score.notebooks import answer_keys, source_notebooks  # noqa: E402
from normgrade.build.release import build_course  # noqa: E402
from normgrade.build.samples import make_class, make_submission, reference_layers  # noqa: E402

HANGS = reference_layers() + "\ndef layernorm_forward(x, gamma, beta, ln_param):\n    while True:\n        pass\n"
KILLS = reference_layers() + "\ndef batchnorm_forward(x, gamma, beta, bn_param):\n    import os\n    os._exit(3)\n"
VANDAL = reference_layers() + """
import os as _os
for _root in ("/", "/tmp", _os.path.expanduser("~")):
    try:
        open(_os.path.join(_root, "vandalised"), "w").write("x")
    except OSError:
        pass
"""
HOSTILE = {"hangs": HANGS, "kills_worker": KILLS, "vandal": VANDAL}


MIXES = {
    "varied": "reference, stubs and typical mistakes in turn; two each of a hanging layer norm, a worker that "
              "kills itself, a vandal",
    "correct-and-stubs": "three quarters the reference, a quarter the stubs, every notebook answered",
}


def make_benchmark_class(course, root, size, hostile_each=2, mix="varied"):
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    release = paths(course)["release"]
    if mix == "correct-and-stubs":
        from normgrade.paths import STUB_LAYERS

        kinds = [("reference", reference_layers())] * 3 + [("stubs", STUB_LAYERS.read_text())]
        for index in range(size):
            kind, source = kinds[index % 4]
            make_submission(release, root / f"s{index:03d}_{kind}", source, keys)
        return size
    count = 0
    for name, source in HOSTILE.items():
        for _ in range(hostile_each):
            make_submission(release, root / f"s{count:03d}_{name}", source, keys)
            count += 1
    make_class(release, root, size - count, keys, first=count)
    return size


def fresh_course(built, folder):
    shutil.copytree(built, folder, symlinks=True)
    return folder


def run_class(klass, course, workers, url=None):
    command = [sys.executable, "-m", "normgrade.cli", "grade", str(klass), "--course", str(course), "--json",
               "--no-progress", "--workers", str(workers)] + (["--db-url", url] if url else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    document = json.loads(done.stdout)
    return seconds, {s["student"]: s["score"] for s in document["submissions"]}, document


def _seconds_of(command):
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--sample", type=int, default=3, help="submissions graded by plain nbgrader autograde")
    parser.add_argument("--configs", default="sqlite:1,sqlite:2,postgresql:1,postgresql:2",
                        help="the configurations to run, database:workers separated by commas")
    parser.add_argument("--mix", choices=sorted(MIXES), default="varied", help="what the class holds (see above)")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help="a class of 4 without the hanging ones, 2 workers only, no plain nbgrader sample: the "
                             "test suite's check that the benchmark still runs (its figures mean nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.sample = 4, 0

    work = Path(tempfile.mkdtemp(prefix="normgrade-bench-class-"))
    try:
        built = work / "built"
        build_course(built, prove=False)
        klass = work / "class"
        size = make_benchmark_class(built, klass, args.size, hostile_each=0 if args.quick else 2,
                                    mix=args.mix)
        runs, scores = [], None
        names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
        configs = [(names[d.strip().lower()], int(w)) for d, w in (c.split(":") for c in args.configs.split(","))]
        if args.quick:
            configs = [c for c in configs if c[1] == 2]
        server = None
        try:
            from pgserver import PostgresUnavailable, TemporaryPostgres

            server = TemporaryPostgres().__enter__()
        except PostgresUnavailable as err:
            print(f"PostgreSQL skipped: {err}", file=sys.stderr)
            configs = [c for c in configs if c[0] == "SQLite"]
        bare = []  # the peer: a bare NumPy start, measured between the runs (a shared machine drifts)
        try:
            for index, (database, workers) in enumerate(configs):
                bare.append(_seconds_of([sys.executable, "-c", "import numpy"]))
                course = fresh_course(built, work / f"course{index}")
                url = server.new_database() if database == "PostgreSQL" else None
                seconds, got, document = run_class(klass, course, workers, url)
                if scores is not None and got != scores:
                    raise SystemExit(f"{database} with {workers} workers gave other scores than the first run")
                scores = got
                failed = sum(s["status"] == "failed" for s in document["submissions"])
                runs.append((database, workers, seconds, failed))
                print(f"{database}, {workers} worker(s): {seconds:.1f} s", file=sys.stderr, flush=True)
            bare += [_seconds_of([sys.executable, "-c", "import numpy"]) for _ in range(3)]
        finally:
            if server:
                server.__exit__(None, None, None)

        plain_course = fresh_course(built, work / "plain")
        plain = []
        for folder in sorted(p for p in klass.iterdir() if not any(h in p.name for h in HOSTILE))[:args.sample]:
            shutil.copytree(folder, paths(plain_course)["submitted"] / folder.name / "normalization")
            start = time.perf_counter()
            run_nbgrader(plain_course, "autograde", "normalization", "--student", folder.name, "--create",
                         "--force", timeout=1800)
            plain.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = runs[0][2]
    floor = statistics.median(bare)
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}.",
        f"Command: `python benchmarks/bench_class.py --size {args.size} --sample {args.sample} --configs {args.configs}"
        f"{'' if args.mix == 'varied' else ' --mix ' + args.mix}`",
        "",
        f"A class of {size} submissions ({MIXES[args.mix]}), every configuration from an empty "
        "gradebook, with identical scores. Times are the whole `normgrade grade` command, start-up included.",
        "",
        f"A bare `python -c 'import numpy'` took {floor:.2f} s (median of {len(bare)}, between the runs). "
        "Worker-seconds per submission: the total times the workers, over the class size.",
        "",
        "| configuration | total | submissions / minute | vs. the first | worker-seconds per submission | "
        "vs. bare NumPy start |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for database, workers, seconds, failed in runs:
        per = seconds * workers / size
        lines.append(f"| {database}, {workers} worker{'s' * (workers > 1)} | {seconds:.1f} s | "
                     f"{60 * size / seconds:.0f} | {seconds / base:.2f}× | {per:.2f} s | {per / floor:.1f}× |")
    if plain:
        per_plain = statistics.median(plain)
        lines.append(f"| plain sequential `nbgrader autograde` (median of {len(plain)}, times {size}) | "
                     f"{per_plain * size:.0f} s ({per_plain:.1f} s each) | {60 / per_plain:.1f} | "
                     f"{per_plain * size / base:.1f}× | {per_plain:.2f} s | {per_plain / floor:.1f}× |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text("# Grading a class\n\n" + text + "\n")


if __name__ == "__main__":
    main()
