"""
`normgrade grade PATH...`: grade submissions through nbgrader, with trusted scores.

A PATH is one submission (a folder shaped like release/normalization: the
notebooks and normlab/), a class folder holding one such folder per student
(named by student id; `<id>/normalization/` works too), or an LMS's
bulk-download archive (with --roster). For each submission:

1. Only what grading needs is copied into the course's staging folder
   (normgrade/staged/): the notebooks, normlab/layers.py and what `nbgrader
   submit` wrote beside them, each read once, no link followed.
2. The submission is claimed in the ledger: one graded before from the same
   content is not graded again (unless --regrade).
3. Its layers.py is scored by the trusted scorer from raw values a sandboxed
   worker returned; the autograded notebooks and gradebook rows are written
   as `nbgrader autograde` writes them (the course's preprocessors: graded
   cells restored from the gradebook, their outputs written from the scores).
   Notebooks are not executed unless --execute (then in the sandbox too).
4. The outcome goes into the ledger.

Submissions are graded --workers at a time, each in its own process, or on a
Dask cluster (--dask). Ctrl-C stops the run cleanly and keeps what was
graded; a run killed any other way is resumed by running the same command
again. It prints a table, or with --json one document (normgrade.grade.class_run).
"""
import argparse
import json
import os
import sys
from pathlib import Path

from normgrade.platforms import intake
from normgrade.grade.class_run import EXECUTE_TASK_SECONDS, TASK_SECONDS, grade
from normgrade.course import DEFAULT_COURSE
from normgrade.grade.table import format_table


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "grade", help="autograde submissions with nbgrader", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a submission folder, a class folder of them, or an LMS's bulk-download zip (--roster)")
    parser.add_argument("--course", type=Path, default=DEFAULT_COURSE,
                        help=f"the course directory (default ./{DEFAULT_COURSE}), built by `normgrade release`")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="submissions graded at once, each in its own process (default: the number of cores)")
    parser.add_argument("--db-url", metavar="URL",
                        help="the gradebook, e.g. postgresql+psycopg://user@host/db (default: the course config's "
                             "CourseDirectory.db_url, else the course's gradebook.db)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="grade on this Dask scheduler (tcp://host:8786) instead of local processes; every "
                             "worker needs the course and submissions at the same paths, and a shared gradebook")
    parser.add_argument("--regrade", action="store_true",
                        help="grade again submissions already graded from the same content")
    parser.add_argument("--task-timeout", type=float, metavar="SECONDS",
                        help=f"stop a submission's grading after this long and report it failed (default "
                             f"{TASK_SECONDS} s, {EXECUTE_TASK_SECONDS} s with --execute; local workers)")
    lms = parser.add_argument_group("LMS archives", "a PATH that is a zip file: Canvas's Download Submissions, or "
                                                    "another LMS's with --name-pattern (normgrade.platforms.intake)")
    lms.add_argument("--roster", type=Path, metavar="CSV",
                     help="maps the archive's LMS ids to student ids: Canvas's gradebook export, or lms_id,student_id")
    lms.add_argument("--roster-id-column", default="SIS Login ID", metavar="COLUMN",
                     help="the Canvas export's column of student ids (default: SIS Login ID)")
    lms.add_argument("--name-pattern", default=intake.CANVAS_PATTERN, metavar="REGEX",
                     help="how the LMS names a submitted file: named groups lms_id and file, optionally late and "
                          "submission (default: Canvas's)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--execute", action="store_true",
                        help="also execute the notebooks (in the sandbox), for the plots formgrader shows")
    parser.add_argument("--unsandboxed", action="store_true",
                        help="run student code without bubblewrap where user namespaces are blocked "
                             "(unsafe: student code runs with your rights; every report says so)")
    parser.set_defaults(run=run)


def run(args):
    document = grade(args.paths, args.course, unsandboxed=args.unsandboxed, execute=args.execute,
                     workers=args.workers, url=args.db_url, dask=args.dask, regrade=args.regrade,
                     task_seconds=args.task_timeout, roster=args.roster, roster_id_column=args.roster_id_column,
                     name_pattern=args.name_pattern, progress=not args.no_progress and sys.stderr.isatty())
    print(json.dumps(document, indent=2) if args.json else format_table(document))
    return 130 if document.get("interrupted") else 0
