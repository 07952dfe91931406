"""
A term on JupyterHub, for real: nbgrader's exchange with students who are
separate unprivileged Unix users, as on a JupyterHub.

The TA builds the course (`normgrade release`) and sets a late policy;
`nbgrader release_assignment` puts it in the exchange; two students
`fetch_assignment`, edit and `submit` as their own users (one submits twice,
the second time after the due date: that one counts, and is late);
`nbgrader collect`; the course's own submitted/ is graded by `normgrade grade`
in its documented form and, in a copy of the course, by plain
`nbgrader autograde` (the same scores and penalties); feedback is generated
and `release_feedback`ed; each student `fetch_feedback`s their own, and
cannot read another's. Grading leaves the collected submissions byte for byte
as they were.

It needs root (to make the users). CI runs as root, so there it runs; elsewhere
it skips with the reason.
"""
import contextlib
import datetime
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from normgrade.grade import late
from normgrade.course import ASSIGNMENT_ID, COURSE_ID, db_url, paths
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.build.samples import mutant_layers, reference_layers

# one pytest-xdist worker runs them all: Unix users, and modes of the folders above Python changed for the test's length
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("unix_users")]

STUDENTS = ("nlstudent-ann", "nlstudent-bo")
PYTHON = [sys.executable, "-m", "nbgrader"]


def _need_root():
    if os.geteuid() != 0 or not shutil.which("useradd"):
        reason = "the exchange test makes Unix users for its students: it needs root and useradd"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the exchange test: {reason}")
        pytest.skip(reason)


@contextlib.contextmanager
def traversable(*files):
    """
    Let every user reach `files` (this Python and its packages): add o+x, and
    only that, to each folder above them that lacks it (a pyenv under /root,
    say), and put the modes back afterwards.
    """
    changed = {}
    for path in files:
        for folder in Path(os.path.realpath(path)).parents:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH and folder not in changed:
                changed[folder] = stat.S_IMODE(mode)
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed.items():
            folder.chmod(mode)


@contextlib.contextmanager
def unix_users(names, home_root):
    """Make the students' Unix users (no password, homes under home_root); remove them afterwards."""
    made = []
    try:
        for name in names:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                subprocess.run(["userdel", name], check=False)  # left by an interrupted run
            home = home_root / name
            subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/sh",
                            "--comment", f"{name.split('-')[-1].title()} Example,,,", "--user-group", name],
                           check=True, capture_output=True)  # a full name in GECOS, as a hub's accounts may have
            made.append(name)
            home.chmod(0o700)
        yield {name: pwd.getpwnam(name) for name in names}
    finally:
        for name in made:
            subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def as_student(account, *args, cwd=None):
    """Run a command as the student's Unix user, in their home, with a plain environment; the result."""
    env = {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name, "LANG": "C.UTF-8",
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run(list(args), cwd=cwd or account.pw_dir, env=env, user=account.pw_uid,
                          group=account.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=300)


def nbgrader_as(account, exchange, *args):
    done = as_student(account, *PYTHON, *args, f"--Exchange.root={exchange}", f"--CourseDirectory.course_id={COURSE_ID}")
    assert done.returncode == 0 and "ERROR]" not in done.stderr, done.stdout + done.stderr
    return done


def nbgrader_instructor(course, exchange, *args, errors=False):
    """Run nbgrader in the course as the instructor (root); it must succeed, and log no error unless `errors`."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    done = subprocess.run([*PYTHON, *args, f"--Exchange.root={exchange}"], cwd=course, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0 and (errors or "ERROR]" not in done.stdout + done.stderr), done.stdout + done.stderr
    return done


def hand_in(account, fetched, layers, answers):
    """What a student does between fetch and submit: write layers.py and the inline answers (as them)."""
    script = (
        "import json, sys, nbformat, pathlib\n"
        "folder = pathlib.Path(sys.argv[1]); answers = json.loads(sys.argv[3])\n"
        "(folder / 'normlab' / 'layers.py').write_text(pathlib.Path(sys.argv[2]).read_text())\n"
        "for path in sorted(folder.glob('*.ipynb')):\n"
        "    nb = nbformat.read(path, as_version=4)\n"
        "    for cell in nb.cells:\n"
        "        name = cell.metadata.get('nbgrader', {}).get('grade_id', '').removeprefix('answer_')\n"
        "        if name in answers:\n"
        "            cell.source = f'{name} = {answers[name]!r}\\n'\n"
        "    nbformat.write(nb, path)\n"
    )
    source = Path(account.pw_dir) / "my_layers.py"
    source.write_text(layers)
    os.chown(source, account.pw_uid, account.pw_gid)
    done = as_student(account, sys.executable, "-c", script, str(fetched), str(source), json.dumps(answers))
    assert done.returncode == 0, done.stderr


def tree_digest(folder):
    """{relative path: sha256} of every file below folder, links not followed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.is_symlink()}


def plain_autograde_scores(course):
    """{student: (score after penalty, penalty, seconds late)} from the gradebook, as nbgrader's own export counts."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(db_url(course), COURSE_ID) as gb:
        for student in gb.students:
            submission = gb.find_submission(ASSIGNMENT_ID, student.id)
            auto = sum(nb.code_score for nb in submission.notebooks)
            penalty = submission.late_submission_penalty or 0.0
            scores[student.id] = (round(max(0.0, auto - penalty), 6), round(penalty, 6),
                                  submission.total_seconds_late)
    return scores


@contextlib.contextmanager
def students_on_a_hub(prefix):
    """(a folder every user can reach, {name: the students' Unix accounts, homes in it}); all removed afterwards."""
    _need_root()
    top = Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(0o755)  # pytest's own tmp_path is private to root: the students could not reach the exchange
    try:
        with traversable(sys.executable, shutil.which("python3") or sys.executable, late.__file__), \
                unix_users(STUDENTS, top / "home") as users:
            yield top, users
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_term_through_nbgrader_exchange_as_separate_users(sandbox, course_copy):
    with students_on_a_hub("normlab-term-") as (top, users):
        _term(top, users, course_copy)


def _term(top, users, course_copy):
    ann, bo = (users[name] for name in STUDENTS)
    course, exchange = course_copy(top / "course"), top / "exchange"
    exchange.mkdir()
    deadlines = paths(course)["own_config"]
    deadlines.write_text(deadlines.read_text().replace("percent_per_day = 0", "percent_per_day = 10"))
    keys = answer_keys(source_notebooks(paths(course)["source"]))

    nbgrader_instructor(course, exchange, "release_assignment", ASSIGNMENT_ID)
    (exchange / COURSE_ID / "inbound").chmod(0o3733)  # as docs/jupyterhub.md's set-up says
    for account in (ann, bo):
        nbgrader_as(account, exchange, "fetch_assignment", ASSIGNMENT_ID)
    ann_copy, bo_copy = (Path(a.pw_dir) / ASSIGNMENT_ID for a in (ann, bo))
    assert (ann_copy / "normlab" / "layers.py").stat().st_uid == ann.pw_uid, "fetched as the student"

    # Ann hands in the reference, on time. Bo first hands in a wrong batch norm, then (after the due
    # date) the reference: the later submission counts, and it is late.
    hand_in(ann, ann_copy, reference_layers(), keys)
    nbgrader_as(ann, exchange, "submit", ASSIGNMENT_ID)
    hand_in(bo, bo_copy, mutant_layers("unbiased_variance"), keys)
    nbgrader_as(bo, exchange, "submit", ASSIGNMENT_ID)
    due = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    late.set_due_date(db_url(course), due)  # as formgrader's Manage Assignments page would
    time.sleep(1.5)
    hand_in(bo, bo_copy, reference_layers(), keys)
    nbgrader_as(bo, exchange, "submit", ASSIGNMENT_ID)

    # Another student's submission cannot be listed in the exchange's inbound folder.
    inbound = exchange / COURSE_ID / "inbound"
    listing = as_student(ann, sys.executable, "-c", f"import os; print(os.listdir({str(inbound)!r}))")
    assert listing.returncode != 0 and "PermissionError" in listing.stderr

    collected = nbgrader_instructor(course, exchange, "collect", ASSIGNMENT_ID)
    assert "WARNING" not in collected.stdout + collected.stderr, collected.stdout + collected.stderr
    submitted = paths(course)["submitted"]
    assert sorted(p.name for p in submitted.iterdir()) == sorted(STUDENTS)
    assert (submitted / bo.pw_name / ASSIGNMENT_ID / "timestamp.txt").is_file()
    plain = top / "plain"  # the same course, graded by plain nbgrader
    shutil.copytree(course, plain, symlinks=True)
    before = tree_digest(submitted)

    # normgrade grade, as docs/jupyterhub.md documents it for collected submissions
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(submitted), "--course", str(course),
                           "--json"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    results = {r["student"]: r for r in json.loads(done.stdout)["submissions"]}
    assert tree_digest(submitted) == before, "grading changed what nbgrader collected"
    from nbgrader.api import Gradebook
    with Gradebook(db_url(course), COURSE_ID) as gb:  # the accounts' names, for formgrader ("None, None" once)
        assert [(gb.find_student(a.pw_name).first_name, gb.find_student(a.pw_name).last_name) for a in (ann, bo)] == [
            ("Ann", "Example"), ("Bo", "Example")]
    full = results[ann.pw_name]["max_score"]
    assert results[ann.pw_name]["score"] == full and results[ann.pw_name]["penalty"] == 0
    assert results[ann.pw_name]["late_seconds"] == 0
    bo_result = results[bo.pw_name]
    assert bo_result["raw_score"] == full, "Bo's second, correct submission is the one graded"
    assert 0 < bo_result["late_seconds"] < 3600 and bo_result["penalty"] == pytest.approx(0.1 * full)
    assert bo_result["score"] == pytest.approx(0.9 * full)

    # plain nbgrader, in the copy: the same scores and penalties
    nbgrader_instructor(plain, exchange, "autograde", ASSIGNMENT_ID)
    plain_scores = plain_autograde_scores(plain)
    for student, result in results.items():
        score, penalty, seconds = plain_scores[student]
        assert (score, penalty) == (pytest.approx(result["score"]), pytest.approx(result["penalty"])), student
        assert seconds == pytest.approx(result["late_seconds"], abs=0.2)

    # feedback: generated, released, and fetched by each student: their own only
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "feedback", "--course", str(course)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    nbgrader_instructor(course, exchange, "release_feedback", ASSIGNMENT_ID)
    pages = {}
    for account in (ann, bo):
        nbgrader_as(account, exchange, "fetch_feedback", ASSIGNMENT_ID)
        fetched = sorted((Path(account.pw_dir) / ASSIGNMENT_ID / "feedback").rglob("*.html"))
        own = sorted((paths(course)["feedback"] / account.pw_name / ASSIGNMENT_ID).glob("*.html"))
        assert own and {p.read_bytes() for p in fetched} == {p.read_bytes() for p in own}, \
            f"{account.pw_name} fetched other pages than their own feedback"
        pages[account.pw_name] = "\n".join(p.read_text() for p in fetched)
    assert "Late submission penalty" in pages[bo.pw_name] and "Late submission penalty" not in pages[ann.pw_name]
    feedback_root = exchange / COURSE_ID / "feedback"
    listing = as_student(ann, sys.executable, "-c", f"import os; print(os.listdir({str(feedback_root)!r}))")
    assert listing.returncode != 0 and "PermissionError" in listing.stderr, "the exchange's feedback can be listed"


# What the attacker runs as their own Unix user: hand-ins in inbound/ that nbgrader submit never writes.
# argv: inbound, attacker's fetched folder, the victim's fetched folder, stubs file, JSON {folder name: attack}.
ATTACKS = r"""
import json, os, pathlib, shutil, sys
inbound, own, victim, stubs = map(pathlib.Path, sys.argv[1:5])
home = pathlib.Path.home()
for name, attack in json.loads(sys.argv[5]).items():
    stamp = name.split("+")[2]
    def copy_of_own(dest, layers=None):
        shutil.copytree(own, dest)
        (dest / "timestamp.txt").write_text(stamp)
        if layers is not None:
            (dest / "normlab" / "layers.py").write_text(layers)
        return dest
    target = inbound / name
    if attack == "named_for_victim":          # the stubs handed in under the classmate's name
        copy_of_own(target, stubs.read_text())
    elif attack == "link_named_for_victim":   # the same, the inbound entry a link to a folder of one's own
        os.symlink(copy_of_own(home / "forged", stubs.read_text()), target)
    elif attack == "links_to_victims_files":  # one's own hand-in, its files links to the classmate's
        copy_of_own(target)
        for path in [pathlib.Path("normlab/layers.py"), *(p.relative_to(own) for p in own.glob("*.ipynb"))]:  # the same names
            (target / path).unlink()
            os.symlink(victim / path, target / path)
    elif attack == "link_to_victims_package": # one's own hand-in, its normlab/ a link to the classmate's
        copy_of_own(target)
        shutil.rmtree(target / "normlab")
        os.symlink(victim / "normlab", target / "normlab")
    elif attack == "named_pipe":              # one's own files, and a named pipe beside them
        copy_of_own(target)
        os.mkfifo(target / "notes")
    elif attack == "bad_name":                # a name nbgrader cannot parse: its own collect stops for everyone
        copy_of_own(target)
    else:
        raise SystemExit(f"unknown attack {attack}")
"""


def _stamp(seconds_from_now):
    """A submission time as nbgrader submit writes it."""
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f %Z")


def test_a_hand_in_is_collected_only_from_the_files_of_the_student_it_names(sandbox, course_copy):
    with students_on_a_hub("normlab-attack-") as (top, users):
        _attacks(top, users, course_copy)


def _attacks(top, users, course_copy):
    victim, attacker = (users[name] for name in STUDENTS)
    course, exchange = course_copy(top / "course"), top / "exchange"
    exchange.mkdir()
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    nbgrader_instructor(course, exchange, "release_assignment", ASSIGNMENT_ID)
    inbound = exchange / COURSE_ID / "inbound"
    inbound.chmod(0o3733)  # as docs/jupyterhub.md sets it up
    for account in (victim, attacker):
        nbgrader_as(account, exchange, "fetch_assignment", ASSIGNMENT_ID)
    victim_copy, attacker_copy = (Path(a.pw_dir) / ASSIGNMENT_ID for a in (victim, attacker))
    hand_in(victim, victim_copy, reference_layers(), keys)
    nbgrader_as(victim, exchange, "submit", ASSIGNMENT_ID)
    hand_in(attacker, attacker_copy, mutant_layers("unbiased_variance"), keys)
    nbgrader_as(attacker, exchange, "submit", ASSIGNMENT_ID)  # the attacker's own honest hand-in

    stubs = Path(attacker.pw_dir) / "stubs.py"
    stubs.write_text((paths(course)["release"] / "normlab" / "layers.py").read_text())
    os.chown(stubs, attacker.pw_uid, attacker.pw_gid)
    kinds = ["named_for_victim", "link_named_for_victim", "links_to_victims_files", "link_to_victims_package",
             "named_pipe"]
    attacks = {f"{victim.pw_name if 'named' in kind and 'pipe' not in kind else attacker.pw_name}+{ASSIGNMENT_ID}+"
               f"{_stamp(60 + i)}+x{i}": kind for i, kind in enumerate(kinds)}
    attacks[f"{attacker.pw_name}+{ASSIGNMENT_ID}+yesterday+x9"] = "bad_name"

    def attack(spec):
        done = as_student(attacker, sys.executable, "-c", ATTACKS, str(inbound), str(attacker_copy), str(victim_copy),
                          str(stubs), json.dumps(spec))
        assert done.returncode == 0, done.stderr

    attack(attacks)
    collected = nbgrader_instructor(course, exchange, "collect", ASSIGNMENT_ID, errors=True)
    log = collected.stdout + collected.stderr
    for name, kind in attacks.items():
        refusal = next((line for line in log.splitlines() if "ERROR]" in line and name in line), None)
        assert refusal, f"{kind}: {name} not reported refused:\n{log}"
        why = {"named_for_victim": f"belongs to {attacker.pw_name}, not {victim.pw_name}",
               "link_named_for_victim": "is a link",
               "links_to_victims_files": "is a symbolic link",
               "link_to_victims_package": "normlab is a symbolic link",
               "named_pipe": "notes is a named pipe",
               "bad_name": "is not a time"}[kind]
        assert why in refusal, (kind, refusal)
    assert "sticky" not in log

    submitted = paths(course)["submitted"]
    assert sorted(p.name for p in submitted.iterdir()) == sorted(STUDENTS)
    layers = {a.pw_name: (submitted / a.pw_name / ASSIGNMENT_ID / "normlab" / "layers.py") for a in (victim, attacker)}
    assert not any(p.is_symlink() for p in submitted.rglob("*")), "a link was collected"
    assert layers[victim.pw_name].read_text() == reference_layers(), "the victim's own hand-in is the one collected"
    assert layers[attacker.pw_name].read_text() == mutant_layers("unbiased_variance"), \
        "the attacker's own honest hand-in is the one collected"

    # A later refused hand-in leaves what was collected before as it was (--update), and the class's
    # inbound folder without the sticky bit is reported.
    before = tree_digest(submitted)
    attack({f"{attacker.pw_name}+{ASSIGNMENT_ID}+{_stamp(120)}+y": "links_to_victims_files"})
    inbound.chmod(0o2733)
    again = nbgrader_instructor(course, exchange, "collect", "--update", ASSIGNMENT_ID, errors=True)
    assert "is a symbolic link" in again.stdout + again.stderr
    assert "chmod +t" in again.stdout + again.stderr
    assert tree_digest(submitted) == before

    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(submitted), "--course", str(course),
                           "--json"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    results = {r["student"]: r for r in json.loads(done.stdout)["submissions"]}
    assert results[victim.pw_name]["score"] == results[victim.pw_name]["max_score"], "the victim keeps their score"
    assert results[attacker.pw_name]["score"] < results[attacker.pw_name]["max_score"]
