"""
`normgrade release --course DIR`: build the nbgrader course and the student release.

All or nothing: everything below is built in a scratch course beside the
course and swapped in only when every step passed (build_course). Before
anything, the notebooks' points are checked against their one source
(notebooks.point_problems).

1. source/normalization/: the source notebooks and the student package
   with its stubs (nbgrader restores these provided files when grading). The
   reference is not in the course at all.
2. normgrade/expected.npz, beside source/ (never copied next to a notebook):
   the hidden inputs, the expected values, the mistakes' signatures and the
   answer keys, for the trusted scorer.
3. release/normalization/: nbgrader's own `generate_assignment`.
4. A leak check of release/: it fails if solution code, hidden tests, answer
   keys, expected values or outputs reached it.
5. course_config.py, the course's late policy and extensions, where there is
   none (never overwritten), and with --due the due date in the gradebook.
6. A proof, in a scratch copy of the course: the reference submission gets
   full auto-graded marks and runs without errors; the bare stubs get no points
   on any code check.
"""
import argparse
import datetime
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import dateutil.tz
import nbformat

from normgrade import language as languages
from normgrade.score import expected
from normgrade.grade import late, ledger
from normgrade.build import stubs
from normgrade.grade.class_run import grade
from normgrade.score.checks import FUNCTIONS
from normgrade.course import (ASSIGNMENT_ID, COURSE_ID, NBGRADER_CONFIG, STAGED, db_url, is_course, paths, run_nbgrader,
                              scripts_on_path)
from normgrade.score.notebooks import (answer_keys, cell_name, changes, derive_points, first_line, point_problems,
                                       rendering_problems, source_notebooks, unreadable)
from normgrade.paths import ENVIRONMENT, NOTEBOOKS, SOLUTION_LAYERS, STUB_LAYERS, STUDENT_PACKAGE
from normgrade.build.samples import make_submission, reference_layers
from normgrade.build.submission import assemble_stubs, stub_layers

SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "normgrade")


class LeakError(RuntimeError):
    """Something secret reached the student release."""


def build_course(course, notebooks=NOTEBOOKS, prove=True, due=None, seed=None, language=None):
    """
    Build (or rebuild) the course at `course`, all or nothing; return the
    proof's two results, or None. Everything is built, leak-checked and
    proved in a scratch course beside it (with a gradebook of its own); only
    then are source/, release/, the expected values and the configuration
    swapped in and the assignment's definition written into the course's
    gradebook (its grades are kept). A failure at any step leaves the course
    as it was. `due` (a time nbgrader reads, e.g. "2030-06-14 17:00 UTC") sets
    the assignment's due date; a rebuild without it keeps the gradebook's.
    `language` (normgrade.language.LANGUAGES) is the one the release is given
    in: its notebooks, stubs and messages; a rebuild without it keeps the
    course's, a new course is in English. course_config.py is written only
    where there is none.
    """
    course = Path(course)
    if course.exists() and any(course.iterdir()) and not is_course(course):
        raise ValueError(f"{course} exists and is not a normgrade course; choose an empty or new folder")
    due = check_due(due) if due is not None else None
    language = languages.check_language(language) if language is not None else None
    notebook_paths = source_notebooks(Path(notebooks))
    if not notebook_paths:
        raise FileNotFoundError(f"no notebooks in {notebooks}")
    problems = unreadable(notebook_paths) or point_problems(notebook_paths)
    if problems:  # before anything is written: the course stays as it was
        raise ValueError("the notebooks' points disagree with their source; nothing was built:\n"
                         + "\n".join(f"- {p}" for p in problems))
    rebuild = is_course(course)
    if rebuild and due is None:
        due = late.due_date(db_url(course))
    if language is None:
        language = languages.course_language(course) if rebuild else languages.SOURCE_LANGUAGE
    if seed is None:  # a rebuild keeps its hidden inputs (grades stay comparable); a new course draws its own
        seed = course_seed(course) if rebuild else None
        seed = expected.new_seed() if seed is None else seed
    course.mkdir(parents=True, exist_ok=True)
    with ledger.run_lock(course), tempfile.TemporaryDirectory(dir=course.parent, prefix=f".{course.name}-release-") as scratch:
        built = Path(scratch) / "course"
        _build(built, course, notebook_paths, due, seed, language)
        proof = prove_release(built) if prove else None
        _swap_in(built, course, rebuild)
    return proof


def _own_gradebook(course):
    return f"sqlite:///{paths(course)['gradebook'].resolve()}"


def course_seed(course):
    """The seed of a course's hidden inputs (None where it has no expected values yet)."""
    path = paths(course)["expected"]
    return expected.file_seed(path) if path.is_file() else None


def _build(built, course, notebook_paths, due, seed, language):
    """
    The whole course in `built` (a new folder), in `language`, with the
    course's own settings and a gradebook of its own.
    """
    layout = paths(built)
    layout["source"].mkdir(parents=True)
    layout["config"].write_text(NBGRADER_CONFIG + languages.nbgrader_config(language))
    own = paths(course)["own_config"]
    layout["own_config"].write_text(own.read_text() if own.exists() else late.OWN_CONFIG_TEMPLATE)
    for path in notebook_paths:  # with their points derived from their one place (notebooks.derive_points)
        nb = nbformat.read(path, as_version=4)
        derive_points(nb)
        if language != languages.SOURCE_LANGUAGE:
            languages.translate_notebook(nb, language)
        nbformat.write(nb, layout["source"] / path.name)
    assemble_stubs(layout["source"], language)
    expected.write(layout["expected"], expected.generate(answer_keys(notebook_paths), seed=seed))
    # The scratch gradebook, whatever db_url the course's settings give (a PostgreSQL one is the real one).
    run_nbgrader(built, "generate_assignment", ASSIGNMENT_ID, "--force",
                 f"--CourseDirectory.db_url={_own_gradebook(built)}")
    if due is not None:
        late.set_due_date(_own_gradebook(built), due)
    problems = find_leaks(layout["release"], notebook_paths, language)
    if problems:
        raise LeakError("the release is not safe to hand out:\n" + "\n".join(f"- {p}" for p in problems))


def _swap_in(built, course, rebuild):
    """
    Move the built course's parts into `course`: the assignment's definition
    into its gradebook first (the step that can fail on a server), then each
    folder and file by rename, the old ones kept until all are in.
    """
    from nbgrader.api import Gradebook

    url = db_url(course)
    if url == _own_gradebook(course) and not paths(course)["gradebook"].exists():
        os.replace(paths(built)["gradebook"], paths(course)["gradebook"])
    else:
        with scripts_on_path(), Gradebook(_own_gradebook(built), COURSE_ID) as new, Gradebook(url, COURSE_ID) as old:
            ledger.copy_assignment(new, old)
    parts = ["source", "release", "expected", "config"] + ([] if paths(course)["own_config"].exists() else ["own_config"])
    moved = []
    try:
        for part in parts:
            target, incoming = paths(course)[part], paths(built)[part]
            target.parent.mkdir(parents=True, exist_ok=True)
            backup = incoming.with_name(incoming.name + ".old")
            if target.exists():
                os.rename(target, backup)
            os.rename(incoming, target)
            moved.append((target, backup))
    except OSError:
        for target, backup in reversed(moved):  # put the old parts back
            shutil.rmtree(target) if target.is_dir() else target.unlink()
            if backup.exists():
                os.rename(backup, target)
        raise


def check_due(text, now=None):
    """
    The due date `text` as naive UTC; ValueError if it is not a time, names
    no time zone or one nobody knows (dateutil would take it for UTC, saying
    so only in a warning), or is not in the future.
    """
    import warnings

    import dateutil.parser

    parts = text.split()
    unknown = ValueError(f"the due date {text.strip()!r} names a time zone nobody knows: nothing was built. Use UTC or "
                         "a zone name such as Europe/Paris or America/New_York")
    with warnings.catch_warnings():
        warnings.simplefilter("error", dateutil.parser.UnknownTimezoneWarning)
        try:
            due = late.parse_time(text)
            zoned = len(parts) == 3 or dateutil.parser.parse(text.strip()).tzinfo is not None  # nbgrader's own forms
        except dateutil.parser.UnknownTimezoneWarning:
            raise unknown from None
    if len(parts) == 3 and not parts[2].lstrip("+-").isdigit() and dateutil.tz.gettz(parts[2]) is None:
        raise unknown
    if not zoned:
        raise ValueError(f"the due date {text.strip()!r} names no time zone: nothing was built. Add one, e.g. "
                         f"'{text.strip()} UTC' or '{text.strip()} Europe/Paris'")
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if due <= now:
        raise ValueError(f"the due date {due:%Y-%m-%d %H:%M} UTC ({text.strip()!r}) is in the past (it is now "
                         f"{now:%Y-%m-%d %H:%M} UTC): nothing was built. Give a future time with its zone, e.g. "
                         f"'{now.year + 1}-01-15 17:00 UTC'; to move a due date that has passed, use formgrader's "
                         "Manage Assignments page or `nbgrader db assignment add normalization --duedate=...`")
    return due


def _solution_lines():
    """Lines of the reference's solution regions that would give an answer away (none the stub has too)."""
    source = SOLUTION_LAYERS.read_text()
    lines = source.splitlines()
    provided = {line.strip() for line in STUB_LAYERS.read_text().splitlines()}
    found = set()
    for region in stubs.solution_regions(source):
        for line in lines[region.begin : region.end - 1]:
            text = line.strip()
            if len(text) >= 12 and not text.startswith("#") and text not in provided:
                found.add(text)
    return found


def find_leaks(release, notebook_paths, language=languages.SOURCE_LANGUAGE):
    """Everything in the release folder (in `language`) that a student must not see, as a list of problems."""
    release = Path(release)
    problems = []
    expected_files = {p.name for p in notebook_paths} | {
        f"normlab/{p.name}" for p in STUDENT_PACKAGE.iterdir() if p.suffix in (".py", ".npz")
    } | {f"normlab/locale/{languages.COURSE_LANGUAGE_FILE}"} | {
        f"normlab/locale/{other}/LC_MESSAGES/{languages.DOMAIN}.mo" for other in languages.LANGUAGES[1:]}
    present = {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    for extra in sorted(present - expected_files):
        problems.append(f"unexpected file {extra} (only the notebooks and the student package belong here)")
    for missing in sorted(expected_files - present):
        problems.append(f"missing file {missing}")
    layers = release / "normlab" / "layers.py"
    if layers.is_file() and layers.read_text(encoding="utf-8") != stub_layers(language):
        problems.append(f"normlab/layers.py is not the stub file of assignment/normlab (in {language})")
    mistakes = release / "normlab" / "mistakes.npz"  # the only binary students get: byte for byte the package's
    if mistakes.is_file() and mistakes.read_bytes() != (STUDENT_PACKAGE / "mistakes.npz").read_bytes():
        problems.append("normlab/mistakes.npz is not the one of assignment/normlab (`normgrade stubs` writes it)")
    secret_lines = _solution_lines()
    for path in sorted(release.rglob("*.py")):
        for text in {l.strip() for l in path.read_text().splitlines()} & secret_lines:
            problems.append(f"{path.relative_to(release)} holds solution code: {text!r}")
    problems += rendering_problems(sorted(release.glob("*.ipynb")))
    keys = answer_keys(notebook_paths)
    for path in sorted(release.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            where = cell_name(path, index)
            for marker in SECRET_MARKERS:
                if marker in cell.source:
                    problems.append(f"{where} contains {marker!r} (solution, hidden test or grader code)")
            if cell.get("outputs"):
                problems.append(f"{where} has outputs")
            for variable, key in keys.items():
                if f"{variable} = {key!r}" in cell.source:
                    problems.append(f"{where} gives away the answer key of {variable}")
    return problems


def prove_release(course):
    """
    Run every cell of the released notebooks in the sandbox, as students run
    them, once with the reference and once with the bare stubs; then grade
    both in a scratch copy of the course. Raise (naming each notebook, cell
    and error) unless every cell runs without an error with the reference,
    the stubs run without an error up to the first "not implemented yet", the
    reference gets full auto-graded marks and the stubs no points on any code
    check. Returns both results, each with "executed_seconds".
    """
    course = Path(course)
    release = paths(course)["release"]
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    with tempfile.TemporaryDirectory(prefix="normgrade-proof-") as scratch:
        scratch = Path(scratch)
        reference = make_submission(release, scratch / "reference", reference_layers(), keys)
        bare = make_submission(release, scratch / "stubs")
        started = time.monotonic()
        failures = run_problems(reference, bare)
        executed_seconds = round(time.monotonic() - started, 1)
        if failures:  # grading would only add the same cells' failures
            raise RuntimeError("release proof failed:\n" + "\n".join(f"- {f}" for f in failures))
        scratch_course = scratch / "course"
        shutil.copytree(course, scratch_course,
                        ignore=shutil.ignore_patterns("submitted", "autograded", "feedback", STAGED, "scratch"))
        ref_result, stub_result = grade([reference, bare], scratch_course,
                                        url=_own_gradebook(scratch_course))["submissions"]  # never the course's server
        errors = _cell_errors(paths(scratch_course)["autograded"] / "reference" / ASSIGNMENT_ID)
    ref_result["executed_seconds"] = stub_result["executed_seconds"] = executed_seconds

    failures = []
    if ref_result.get("error") or ref_result["score"] != ref_result["max_score"] or not ref_result["tests"]:
        lost = [t["name"] for t in ref_result["tests"] if t["score"] < t["max_score"]]
        failures.append(f"the reference submission scored {ref_result['score']} / {ref_result['max_score']} "
                        f"(lost: {lost}) {ref_result.get('error', '')}")
    if errors:
        failures.append("cells of the reference submission raised: " + "; ".join(errors))
    code_cells = {f"test_{function}" for function in FUNCTIONS}
    code_points = [t for t in stub_result["tests"] if t["name"].split("/")[-1] in code_cells and t["score"] > 0]
    if stub_result.get("error") or code_points:
        failures.append(f"the bare stubs earned code points: {[t['name'] for t in code_points]} "
                        f"{stub_result.get('error', '')}")
    if failures:
        raise RuntimeError("release proof failed:\n" + "\n".join(f"- {f}" for f in failures))
    return ref_result, stub_result


def _cell_errors(autograded):
    """Errors in any cell of the autograded notebooks ('notebook cell n: Error: message')."""
    errors = []
    for path in sorted(Path(autograded).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        errors += [f"{where}: {output.ename}: {output.evalue[:200]}" for where, output in _errors(path, nb)]
    return errors


def _errors(path, nb):
    """(where, error output) of every cell of `nb` (read from `path`) that raised, in order; where names the cell
    by its place and its first line of code."""
    return [(f"{cell_name(path, index)} ({first_line(cell)})", output) for index, cell in enumerate(nb.cells)
            for output in cell.get("outputs", []) if output.get("output_type") == "error"]


STUBS_SAY = "not implemented yet"  # in the English of what every stub raises (language.STUB_MESSAGE), for the staff


def _stub_error(text):
    """Whether an error's text is a stub's NotImplementedError, in any language (its lines may be wrapped)."""
    from normgrade.score.scorer import stub_templates

    def spaced(words):  # without white space: a message may be wrapped anywhere (Chinese between two characters)
        return re.sub(r"\s+", "", words)

    said = spaced(text)
    return any(re.search(re.escape(spaced(before)) + r"\w+" + re.escape(spaced(after)), said)
               for before, after in stub_templates())


def run_problems(reference, stubs):
    """
    Run the notebooks of the two submission folders cell by cell in the
    sandbox (the reference and the bare stubs, two at a time) and say what
    went wrong: any error of the reference's; an error of the stubs' before
    the first "not implemented yet". Each problem names the notebook, the
    cell (counted from 1) and the error.
    """
    from concurrent.futures import ThreadPoolExecutor

    from normgrade.grade.preprocessors import SandboxedExecute, execute_notebook
    from normgrade.run.sandbox import Sandbox, WorkerDied

    sandbox = Sandbox()
    runs = [(folder, path) for folder in (reference, stubs) for path in sorted(Path(folder).glob("*.ipynb"))]

    def run(folder, path):  # as `--execute` grading runs a notebook, with its time limits
        try:
            return execute_notebook(nbformat.read(path, as_version=4), folder / "normlab" / "layers.py", sandbox,
                                    SandboxedExecute.timeout.default_value, SandboxedExecute.cell_timeout.default_value)
        except (WorkerDied, ValueError) as err:
            return err

    with ThreadPoolExecutor(max_workers=2) as pool:
        executed = list(pool.map(lambda item: run(*item), runs))
    problems = []
    for (folder, path), nb in zip(runs, executed):
        if isinstance(nb, Exception):
            problems.append(f"{path.name} could not be run with the {'reference' if folder == reference else 'stubs'}: "
                            f"{nb}")
            continue
        errors = _errors(path, nb)
        if folder == reference:
            problems += [f"with the reference, {where} raised {o.ename}: {o.evalue[:200]}" for where, o in errors]
        elif errors and not _stub_error(errors[0][1].evalue):
            where, output = errors[0]
            problems.append(f"with the stubs, {where} raised {output.ename}: {output.evalue[:200]} before any "
                            f"\"{STUBS_SAY}\" (every student meets it)")
    return problems


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "release", help="build the nbgrader course and the student release", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--course", type=Path, required=True, help="the course directory to build")
    parser.add_argument("--no-proof", action="store_true", help="skip running and grading the reference and the stubs")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, metavar="DIR",
                        help="the source notebooks to build from (default: this package's notebooks/)")
    parser.add_argument("--due", metavar="TIME",
                        help="the assignment's due date, as \"YYYY-MM-DD HH:MM ZONE\" (\"2030-06-14 17:00 Europe/Paris\"); nbgrader's own, "
                             "in the gradebook (a rebuild without --due keeps it). The late policy and extensions "
                             "are in the course's course_config.py")
    parser.add_argument("--language", choices=languages.LANGUAGES,
                        help="the language of the release: its notebooks, the stubs' docstrings, the self-check's "
                             "messages and the feedback (default: a new course's is en, a rebuild keeps the course's)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=expected.seed_argument,
                       help="the seed of the hidden inputs, to build a course again identically (default: a new "
                            "course draws a fresh random one, kept in its normgrade/expected.npz; a rebuild keeps "
                            "the course's)")
    seeds.add_argument("--new-seed", action="store_true",
                       help="draw fresh hidden inputs on a rebuild (grades made before no longer compare)")
    parser.set_defaults(run=run)


def graded_submissions(course):
    """How many submissions of the assignment the course's gradebook holds."""
    from nbgrader.api import Gradebook, MissingEntry

    with scripts_on_path(), Gradebook(db_url(course), COURSE_ID) as gb:
        try:
            return len(gb.find_assignment(ASSIGNMENT_ID).submissions)
        except MissingEntry:
            return 0


def run(args):
    with tempfile.TemporaryDirectory(prefix="normgrade-previous-") as previous:
        previous, rebuild = Path(previous), is_course(args.course)
        if rebuild:  # the previous build's notebooks, to say what this one changes
            for part in ("source", "release"):
                (previous / part).mkdir()
                for path in source_notebooks(paths(args.course)[part]):
                    shutil.copy(path, previous / part)
        seed = expected.new_seed() if args.new_seed else args.seed
        kept = seed is None and course_seed(args.course) is not None
        proof = build_course(args.course, notebooks=args.notebooks, prove=not args.no_proof, due=args.due, seed=seed,
                             language=args.language)
        changed = changes(*(source_notebooks(folder) for folder in (
            previous / "source", paths(args.course)["source"], previous / "release", paths(args.course)["release"]))
        ) if rebuild else None
    release = paths(args.course)["release"]
    print(f"release ready in {release} (leak check passed), in {languages.course_language(args.course)}")
    origin = "kept from the previous build" if kept else "from --seed" if args.seed is not None else "drawn afresh"
    print(f"hidden inputs: {origin}; their seed is in {paths(args.course)['expected']} (staff only)")
    if changed is not None:
        print("changes since the previous build:" + (" none that students see, to points or to answer keys"
                                                     if not changed else "".join(f"\n  {line}" for line in changed)))
        graded = graded_submissions(args.course) if changed or args.new_seed else 0
        if graded:
            print(f"this course has {graded} graded submission{'s' if graded != 1 else ''}: their grades stand as they "
                  "were until graded again. Next, in the course:\n"
                  "  normgrade grade PATH --course .   on what you graded before (submitted after nbgrader collect, "
                  "the class folder, the LMS archive): it regrades each against this release\n"
                  f"  nbgrader release_assignment {ASSIGNMENT_ID} --force   puts it in the exchange (a copy a student "
                  "already fetched stays as it is until they fetch again)")
    if proof:
        ref, bare = proof
        print(f"proof: every cell of the released notebooks ran in the sandbox, with the reference without an error "
              f"and with the stubs up to the first \"{STUBS_SAY}\" ({ref['executed_seconds']:g} s); graded: "
              f"reference {ref['score']:g} / {ref['max_score']:g} in {ref['seconds']} s, "
              f"stubs {bare['score']:g} / {bare['max_score']:g} (no code points) in {bare['seconds']} s")
    due = late.due_date(db_url(args.course))
    print(f"due: {f'{due:%Y-%m-%d %H:%M:%S} UTC' if due else 'none (normgrade release --due TIME sets it)'}; late policy "
          f"and extensions: {paths(args.course)['own_config']}")
    print(f"hand out {release} together with {ENVIRONMENT} (the students' conda environment)")
    return 0
