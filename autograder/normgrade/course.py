"""An nbgrader course directory for the assignment: its layout, its config, and running nbgrader in it."""
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

ASSIGNMENT_ID = "normalization"
COURSE_ID = "normlab"
CONFIG_NAME = "nbgrader_config.py"

STAFF_FOLDER = "normgrade"  # in the course root, beside source/: never copied next to a notebook
EXPECTED_FILE = "expected.npz"
DEFAULT_COURSE = Path("course")  # what --course means when it is not given
OWN_CONFIG_NAME = "course_config.py"  # the course's own settings: late policy, extensions, yours (normgrade.grade.late)
# A student id as nbgrader's exchange and JupyterHub spell it: letters, digits, _ . @ -, not starting with . or -.
PLAIN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")

NBGRADER_CONFIG = f'''\
# nbgrader configuration of the normlab course, written by `normgrade release`.
import os

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, DeduplicateIds, GetGrades, IgnorePattern, LimitOutput
from normgrade.results.feedback import ShortTracebacks, UngradedAnswers
from normgrade.grade.late import LatePenalties, LatePolicy
from normgrade.grade.preprocessors import (BoundMarkdown, CachedSanitizeHTML, CheckCellMetadataOnce,
                                           OverwriteCellsPrefetched, OverwriteKernelspecInSession, SafeMarkdown,
                                           SandboxedExecute, SanitizeGradedCells, SaveAutoGradesOnce, TrustedScores)

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "{COURSE_ID}"

# Students change only normlab/layers.py: autograde keeps their copy of it and
# restores every other file of the assignment from source/.
c.Autograde.exclude_overwriting = {{"{ASSIGNMENT_ID}": ["normlab/layers.py"]}}
# Graded cells are put back to what the source says (flags, points; unknown or duplicated
# ones become plain cells: nbgrader 0.9 crashes on them otherwise), then their sources are
# restored and deleted ones added back.
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    ClearOutput, SanitizeGradedCells, DeduplicateIds, OverwriteKernelspecInSession, OverwriteCellsPrefetched,
    CheckCellMetadataOnce,
]
# The only code solution cells are inline-question answers.
c.ClearSolutions.code_stub = {{"python": "# YOUR ANSWER HERE"}}

# Grading never runs student code in this process or with this user's view of the files:
# the notebook runs in the bubblewrap sandbox (for the plots formgrader shows), and the
# graded cells' outputs are then written by the trusted scorer, from raw values a
# sandboxed worker returned. Nothing the notebook's kernel does changes a point.
c.Autograde.autograde_preprocessors = [
    SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, BoundMarkdown, CachedSanitizeHTML,
    SafeMarkdown,
    TrustedScores, SaveAutoGradesOnce, LatePenalties, CheckCellMetadataOnce,
]
# `nbgrader collect` takes a hand-in only from the Unix user its folder's name claims, and copies regular
# files only, never following a link (normgrade.platforms.exchange: nbgrader's own believes the name).
c.ExchangeFactory.collect = "normgrade.platforms.exchange.OwnedCollect"

# Late penalties: the due date is nbgrader's (the gradebook's); the late policy and extensions are the
# course's, in course_config.py.
c.AssignLatePenalties.plugin_class = LatePolicy

# This file is written anew by every `normgrade release`. The course's own settings (the late policy,
# extensions, a PostgreSQL db_url, the exchange) live in {OWN_CONFIG_NAME} beside it, written once and
# never overwritten; it is loaded last, so what it sets wins.
load_subconfig("{OWN_CONFIG_NAME}")  # noqa: F821
# Formgrader and feedback render the autograded notebook, and nbgrader's templates render markdown
# unsanitized: BoundMarkdown shows a cell too long to render quickly as text, SanitizeHTML (nbconvert's, with
# bleach) escapes script and event handlers, and SafeMarkdown shows as text a cell whose HTML, as those
# templates render it, has a javascript: link or an event handler.
c.SanitizeHTML.enabled = True
c.TrustedScores.expected_path = c.SandboxedExecute.expected_path = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "{STAFF_FOLDER}", "{EXPECTED_FILE}")
# Set both to True only to grade without bubblewrap; every report then says so.
c.TrustedScores.unsandboxed = False
c.SandboxedExecute.unsandboxed = False

# Outputs, too, are rendered sanitized where the template honours it.
c.HTMLExporter.sanitize_html = True

# Feedback shows the messages of the hidden tests, never their code (not even in a traceback).
# Written answers not graded yet say so (nbgrader shows them as 0 points).
c.GenerateFeedback.preprocessors = [GetGrades, UngradedAnswers, ClearHiddenTests, ShortTracebacks,
                                    CSSHTMLHeaderPreprocessor]
'''


class NbgraderError(RuntimeError):
    """nbgrader exited with an error; the message holds the end of its log."""


STAGED = "staged"


def paths(course):
    course = Path(course)
    return {
        "source": course / "source" / ASSIGNMENT_ID,
        "release": course / "release" / ASSIGNMENT_ID,
        "submitted": course / "submitted",
        "staged": course / STAFF_FOLDER / STAGED,  # where `normgrade grade` stages: nbgrader's submitted/ for it
        "autograded": course / "autograded",
        "feedback": course / "feedback",
        "config": course / CONFIG_NAME,
        "own_config": course / OWN_CONFIG_NAME,
        "gradebook": course / "gradebook.db",
        "expected": course / STAFF_FOLDER / EXPECTED_FILE,
    }


def load_config(course):
    """The course's nbgrader configuration (nbgrader_config.py, with the course_config.py it loads), as nbgrader reads it."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(CONFIG_NAME, path=str(Path(course).resolve())).load_config()


def db_url(course, override=None):
    """
    The gradebook's SQLAlchemy URL: `override` if given, else the course
    config's c.CourseDirectory.db_url if it sets one (as formgrader reads it),
    else the course's own SQLite gradebook.db.
    """
    if override:
        return str(override)
    config = Path(course) / CONFIG_NAME
    if config.is_file():
        loaded = load_config(course)
        if "db_url" in loaded.CourseDirectory:
            return str(loaded.CourseDirectory.db_url)
    return f"sqlite:///{(Path(course) / 'gradebook.db').resolve()}"


def gradebook_url(course, override=None):
    """
    db_url(course, override) of a gradebook that exists: FileNotFoundError
    (what happened, what to do) where it is the course's own gradebook.db and
    that file is gone, instead of an empty one made silently.
    """
    url = db_url(course, override)
    own = paths(course)["gradebook"]
    if url == f"sqlite:///{own.resolve()}" and not own.is_file():
        raise FileNotFoundError(f"{course} has no gradebook ({own} is gone): nothing is graded there. Restore it from "
                                f"a backup, or make a new one with `normgrade release --course {course}` and grade "
                                "again; nothing was changed")
    return url


def is_course(course):
    return (Path(course) / CONFIG_NAME).is_file() and paths(course)["source"].is_dir()


def scripts_path():
    """
    PATH with this Python's scripts folder first. nbgrader runs helpers by name
    (`alembic heads`, when it creates a gradebook): they must be found beside
    this Python, as in an activated venv, even when it was started by path.
    """
    scripts = str(Path(sys.executable).parent)
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != scripts]
    return os.pathsep.join([scripts, *rest])


@contextlib.contextmanager
def scripts_on_path():
    """Run the block with scripts_path() as PATH (for nbgrader called in this process)."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = scripts_path()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved


def run_nbgrader(course, *args, timeout=None):
    """Run `nbgrader ARGS` in the course directory with this Python; return its log, raise NbgraderError."""
    command = [sys.executable, "-m", "nbgrader", *args]
    env = dict(os.environ, PATH=scripts_path())
    try:
        done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise NbgraderError(f"nbgrader {' '.join(args)} ran longer than {timeout} s") from err
    log = done.stdout + done.stderr
    if done.returncode != 0 or "[ERROR]" in log:
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise NbgraderError(f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{tail}")
    return log
