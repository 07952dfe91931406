"""
`normgrade demo --dir DIR`: the whole pipeline on three sample submissions.

Builds the course in DIR/course, writes three submissions into
DIR/submissions (the reference with the right inline answers; the bare
stubs; one with typical mistakes and two wrong answers), autogrades them with
nbgrader into DIR/course/gradebook.db, prints the grade table, and writes the
students' feedback (DIR/course/feedback), a per-question CSV (DIR/grades.csv),
the JSON document (DIR/grades.json) and the class report (DIR/report.html).
"""
import argparse
import json
import shutil
from pathlib import Path

from normgrade.grade.class_run import grade
from normgrade.grade.table import format_table
from normgrade.score.expected import FIXED_SEED
from normgrade.course import paths
from normgrade.results.export import write_csv
from normgrade.results.feedback import generate_feedback
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.build.release import build_course
from normgrade.results.report import write_report
from normgrade.language import LANGUAGES, SOURCE_LANGUAGE
from normgrade.build.samples import TYPICAL_MISTAKES, make_submission, mutant_layers, reference_layers

WRONG_ANSWERS = {"inline_batch_size": "c", "inline_preprocessing": {"batchnorm": 3, "layernorm": 1}}


def run_demo(folder, language=None):
    """Run the demo in `folder` (emptied first), its course in `language` (default English); return the grading
    document."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    course = folder / "course"
    print(f"1/4 building the course in {course} (nbgrader generate_assignment, leak check)", flush=True)
    build_course(course, prove=False, seed=FIXED_SEED, language=language)  # a fixed seed: the same every time
    release = paths(course)["release"]
    keys = answer_keys(source_notebooks(paths(course)["source"]))

    submissions = folder / "submissions"
    print(f"2/4 writing sample submissions to {submissions}", flush=True)
    make_submission(release, submissions / "reference", reference_layers(), keys)
    make_submission(release, submissions / "stubs")
    make_submission(release, submissions / "typical_mistakes", mutant_layers(*TYPICAL_MISTAKES), {**keys, **WRONG_ANSWERS})

    print("3/4 autograding with nbgrader; student code runs in the bubblewrap sandbox", flush=True)
    document = grade([submissions], course)
    print()
    print(format_table(document))
    print()

    print("4/4 writing feedback, the per-question CSV and the class report", flush=True)
    pages = generate_feedback(course)
    write_csv(course, folder / "grades.csv")
    write_report(course, folder / "report.html")
    (folder / "grades.json").write_text(json.dumps(document, indent=2))
    for student, html in pages.items():
        print(f"  feedback for {student}: {', '.join(str(p) for p in html)}")
    print(f"  per-question grades: {folder / 'grades.csv'}")
    print(f"  JSON: {folder / 'grades.json'}")
    print(f"  class report: {folder / 'report.html'}")
    print(f"  gradebook: {paths(course)['gradebook']} (manual grading: `jupyter server` in {course}, then /formgrader)")
    return document


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help="build, grade and give feedback on sample submissions",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="working folder (emptied first; default ./demo)")
    parser.add_argument("--language", choices=LANGUAGES, default=SOURCE_LANGUAGE,
                        help="the course's language (default en)")
    parser.set_defaults(run=run)


def run(args):
    run_demo(args.dir, args.language)
    return 0
