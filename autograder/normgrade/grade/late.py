"""
Deadlines: nbgrader's due date, the course's extensions and late policy, and the submission time.

- The due date is nbgrader's own, the gradebook's assignment due date: set by
  `normgrade release --due`, by formgrader's Manage Assignments page or by
  `nbgrader db assignment add normalization --duedate=...`.
- Extensions and the late policy are the course's, in course_config.py beside
  nbgrader_config.py (which loads it, so plain `nbgrader autograde` applies
  them too; `normgrade release` writes it once and never overwrites it):

      c.LatePolicy.percent_per_day = 10   # of the score, per day or part of a day late
      c.LatePolicy.max_percent = 50       # the most a late submission loses
      c.LatePolicy.zero_after_days = 7    # later than this: no points (0: never)
      c.LatePolicy.extensions = {"alice": 48}  # hours, by student id

  No penalty by default. nbgrader's AssignLatePenalties asks LatePolicy for
  each notebook's penalty; LatePenalties first writes the student's extension
  into the gradebook (nbgrader's own `extension`), so formgrader, the
  feedback and nbgrader's export all see the same due date. nbgrader takes
  the penalty's share of the score at autograde, before manual grading:
  refresh_penalties recomputes every one on the current scores (`normgrade
  feedback` and `export` run it), and after an extension.
- The submission time is nbgrader's: the timestamp.txt that `nbgrader submit`
  writes on the student's side of the exchange and `nbgrader collect` keeps.
  A student who runs their own code can write any time there; see
  docs/jupyterhub.md, "Deadlines", for what a course can do about it.
"""
import datetime
import json
import math

from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties
from traitlets import Dict, Float, TraitError, validate

from normgrade import files
from normgrade.course import ASSIGNMENT_ID, COURSE_ID, OWN_CONFIG_NAME
from normgrade.grade.gradebooks import gradebook_of

DAY = 86400.0
CLOCK_SKEW = datetime.timedelta(minutes=5)  # a submission time this far past the grader's clock is still believed
MAX_TIMESTAMP_BYTES = 200

OWN_CONFIG_TEMPLATE = '''\
# The normlab course's own settings, loaded last by nbgrader_config.py (so `normgrade` and plain
# `nbgrader` read them alike). Written once by `normgrade release`, never overwritten: edit it here.
# Settings of nbgrader's you add here survive a rebuild, e.g.
#     c.CourseDirectory.db_url = "postgresql+psycopg://USER:PASSWORD@HOST/DB"
#     c.Exchange.root = "/srv/nbgrader/exchange"

c = get_config()  # noqa: F821

# ---- Late submissions ----
# The due date is nbgrader's: `normgrade release --course DIR --due "2030-06-14 17:00 UTC"`,
# formgrader's Manage Assignments page, or `nbgrader db assignment add normalization --duedate=...`.
# The submission time is the timestamp.txt that `nbgrader submit` writes (see docs/jupyterhub.md, Deadlines).
# A change here takes effect on the next `normgrade grade` (which regrades the submissions it
# changes), `normgrade feedback` or `normgrade export` (which recompute every penalty).

# Percent of the score lost per day or part of a day late (0: no penalty).
c.LatePolicy.percent_per_day = 0
# The most a late submission loses, in percent of its score.
c.LatePolicy.max_percent = 100
# A submission later than this many days gets no points (0: no such limit).
c.LatePolicy.zero_after_days = 0
# Extensions, in hours, by student id: {"alice": 48}.
c.LatePolicy.extensions = {}
'''


class LatePolicy(LateSubmissionPlugin):
    """The course's late policy (course_config.py): a percentage per day or part day, a cap, zero after N days."""

    percent_per_day = Float(0.0, help="percent of the score lost per day or part of a day late").tag(config=True)
    max_percent = Float(100.0, help="the most a late submission loses, in percent").tag(config=True)
    zero_after_days = Float(0.0, help="later than this many days: no points (0: no such limit)").tag(config=True)
    extensions = Dict(help="extensions in hours, by student id").tag(config=True)

    @validate("percent_per_day", "max_percent")
    def _percent(self, proposal):
        if not 0 <= proposal.value <= 100:
            raise TraitError(f"LatePolicy.{proposal.trait.name} must be a percent from 0 to 100, not {proposal.value}")
        return proposal.value

    @validate("zero_after_days")
    def _days(self, proposal):
        if not proposal.value >= 0:
            raise TraitError(f"LatePolicy.zero_after_days must be 0 (no limit) or a number of days, not {proposal.value}")
        return proposal.value

    @validate("extensions")
    def _extensions(self, proposal):
        for student, hours in proposal.value.items():
            if not isinstance(student, str) or isinstance(hours, bool) or not isinstance(hours, (int, float)) \
                    or not 0 <= hours < 24 * 365:
                raise TraitError(f"LatePolicy.extensions maps a student id to hours (a number from 0 to 8760), not "
                                 f"{student!r}: {hours!r}")
        return proposal.value

    def fraction_lost(self, seconds_late):
        """The fraction of the score a submission this many seconds late (extensions applied) loses."""
        if seconds_late <= 0:
            return 0.0
        if self.zero_after_days and seconds_late > self.zero_after_days * DAY:
            return 1.0
        return min(self.max_percent, self.percent_per_day * math.ceil(seconds_late / DAY)) / 100

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return round(score * self.fraction_lost(total_seconds_late), 6)

    def extension(self, student):
        """The student's extension as a timedelta, or None."""
        hours = self.extensions.get(student)
        return datetime.timedelta(hours=hours) if hours else None

    def describe(self):
        """The policy as data (what the ledger's content hash covers, and the report shows)."""
        return {"percent_per_day": self.percent_per_day, "max_percent": self.max_percent,
                "zero_after_days": self.zero_after_days}


class LatePenalties(AssignLatePenalties):
    """
    nbgrader's AssignLatePenalties, its rules unchanged, in the submission's
    gradebook session (gradebooks.gradebook_of), after writing the course's
    extension for the student into the gradebook.
    """

    writes_gradebook = True  # normgrade.grade.autograded runs it, and what follows, under the gradebook lock

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.notebook_id, self.assignment_id = info["notebook"], info["assignment"]
        self.student_id, self.db_url = info["student"], info["db_url"]
        self.init_plugin()
        with gradebook_of(resources) as self.gradebook:
            submission = self.gradebook.find_submission(self.assignment_id, self.student_id)
            apply_extension(submission, self.plugin_inst)  # its lateness is computed from its own columns
            notebook = self.gradebook.find_submission_notebook(self.notebook_id, self.assignment_id, self.student_id)
            notebook.late_submission_penalty = None
            if submission.total_seconds_late > 0:
                penalty = self.plugin_inst.late_submission_penalty(self.student_id, notebook.score,
                                                                   submission.total_seconds_late)
                if penalty is not None:
                    notebook.late_submission_penalty = self._check_late_penalty(notebook, penalty)
        return nb, resources  # gradebook_of commits: once, for the submission, or when this block ends


def apply_extension(submission, policy_):
    """Set a gradebook submission's extension to the one the policy gives its student."""
    submission.extension = policy_.extension(submission.student_id)


def policy(config):
    """The course's LatePolicy from its loaded nbgrader config; ValueError naming a setting that is not one."""
    known = set(LatePolicy.class_trait_names(config=True))
    unknown = sorted(set(config.get("LatePolicy", {})) - known)
    if unknown:
        raise ValueError(f"{OWN_CONFIG_NAME} sets LatePolicy.{unknown[0]}, which is not a setting; the settings are "
                         f"{', '.join(sorted(known - {'penalty_method'}))}")
    try:
        return LatePolicy(config=config)
    except TraitError as err:
        raise ValueError(f"{OWN_CONFIG_NAME}: {err}") from None


def due_date(url):
    """The assignment's due date in the gradebook at `url` (naive UTC, as nbgrader stores it), or None."""
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        return gb.find_assignment(ASSIGNMENT_ID).duedate


def set_due_date(url, when):
    """Write the assignment's due date (a datetime, naive UTC) into the gradebook at `url`."""
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        gb.update_or_create_assignment(ASSIGNMENT_ID, duedate=when)


def parse_time(text):
    """A time as nbgrader reads it (nbgrader.utils.parse_utc: naive UTC), or ValueError saying what was wrong."""
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text.strip())
    except (ValueError, OverflowError, TypeError) as err:
        raise ValueError(f"{text.strip()[:60]!r} is not a time (nbgrader writes e.g. "
                         f"'2026-12-04 16:59:30.123456 UTC'): {err}") from None


def submission_time(data, now, due, problem=None):
    """
    (time, note) from the bytes of a submission's timestamp.txt (None: not
    read, and `problem`, a files.Problem, says why), `now` and the due date
    (naive UTC, or None): time is the submission time to grade with (naive
    UTC) or None when it cannot be believed; note says why (or is None). A
    time past the grader's clock is not believed.
    """
    if data is None and problem not in (None, files.Problem.MISSING):
        return None, (f"timestamp.txt is {problem.value}, not read: the submission time is unknown, so no late "
                      "penalty was applied; check when it was handed in")
    if data is None:
        return None, (f"no timestamp.txt (nbgrader submit writes it): the submission time is unknown, so no late "
                      f"penalty was applied; check when it was handed in" if due else None)
    try:
        when = parse_time(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        why = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else str(err)
        return None, (f"timestamp.txt is unreadable ({why}): the submission time is unknown, so no late penalty was "
                      "applied; check when it was handed in")
    if when > now + CLOCK_SKEW:
        return None, (f"timestamp.txt says {when:%Y-%m-%d %H:%M:%S} UTC, after this grading ({now:%Y-%m-%d %H:%M:%S} "
                      "UTC): a wrong clock or an edited file; the time was not used and no late penalty was applied; "
                      "check when it was handed in")
    return when, None


def deadline_key(due, policy_, student):
    """What decides a student's lateness besides their submission time, as text (the ledger's hash covers it)."""
    return json.dumps({"due": due.isoformat() if due else None, "extension_hours": policy_.extensions.get(student),
                       "policy": policy_.describe()}, sort_keys=True)


def unknown_extensions(policy_, url, students):
    """Notes on extensions for ids that are neither among `students` nor in the gradebook at `url` (typos?)."""
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        known = set(students) | {student.id for student in gb.students}
    return [f"{OWN_CONFIG_NAME} gives {student!r} an extension, but no submission has that student id (in this run "
            f"or the gradebook): a typo? Ids are the submission folders' names, as `normgrade status` lists them"
            for student in sorted(set(policy_.extensions) - known)]


def refresh_penalties(url, policy_):
    """
    Recompute, in the gradebook at `url`, every submission's extension and
    late penalties from the course's policy and the current scores (manual
    grades included), as nbgrader's AssignLatePenalties would at autograde;
    return how many notebooks' penalties changed.
    """
    from nbgrader.api import Gradebook

    changed = 0
    with Gradebook(url, COURSE_ID) as gb:
        for submission in gb.find_assignment(ASSIGNMENT_ID).submissions:
            apply_extension(submission, policy_)
            seconds = submission.total_seconds_late
            for notebook in submission.notebooks:
                score = notebook.score or 0.0
                penalty = min(max(policy_.late_submission_penalty(submission.student.id, score, seconds), 0.0),
                              score) if seconds > 0 else None
                if (notebook.late_submission_penalty or 0.0) != (penalty or 0.0):
                    notebook.late_submission_penalty = penalty
                    changed += 1
        gb.db.commit()
    return changed
