"""An nbgrader course directory for the assignment: its layout, its config, and running nbgrader in it."""
import os
import subprocess
import sys
from pathlib import Path

ASSIGNMENT_ID = "normalization"
COURSE_ID = "normlab"
CONFIG_NAME = "nbgrader_config.py"

NBGRADER_CONFIG = f'''\
# nbgrader configuration of the normlab course, written by `normgrade release`.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from normgrade.feedback import ShortTracebacks

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "{COURSE_ID}"

# Students change only normlab/layers.py: autograde grades their copy of it and
# restores every other file of the assignment (helpers, expected values) from source/.
c.Autograde.exclude_overwriting = {{"{ASSIGNMENT_ID}": ["normlab/layers.py"]}}
# A graded cell a student deleted is put back before grading.
c.OverwriteCells.add_missing_cells = True
# The only code solution cells are inline-question answers.
c.ClearSolutions.code_stub = {{"python": "# YOUR ANSWER HERE"}}
# Per cell: a hidden test runs in seconds; an experiment of a slow submission must not hang grading.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
# Feedback shows the messages of the hidden tests, never their code (not even in a traceback).
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, ShortTracebacks, CSSHTMLHeaderPreprocessor]
'''


class NbgraderError(RuntimeError):
    """nbgrader exited with an error; the message holds the end of its log."""


def paths(course):
    course = Path(course)
    return {
        "source": course / "source" / ASSIGNMENT_ID,
        "release": course / "release" / ASSIGNMENT_ID,
        "submitted": course / "submitted",
        "autograded": course / "autograded",
        "feedback": course / "feedback",
        "config": course / CONFIG_NAME,
        "gradebook": course / "gradebook.db",
    }


def db_url(course):
    return f"sqlite:///{(Path(course) / 'gradebook.db').resolve()}"


def is_course(course):
    return (Path(course) / CONFIG_NAME).is_file() and paths(course)["source"].is_dir()


def run_nbgrader(course, *args, timeout=None):
    """Run `nbgrader ARGS` in the course directory with this Python; return its log, raise NbgraderError."""
    command = [sys.executable, "-m", "nbgrader", *args]
    # nbgrader runs helpers (alembic) by name: find them beside this Python, as in an activated venv.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    try:
        done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise NbgraderError(f"nbgrader {' '.join(args)} ran longer than {timeout} s") from err
    log = done.stdout + done.stderr
    if done.returncode != 0 or "[ERROR]" in log:
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise NbgraderError(f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{tail}")
    return log
