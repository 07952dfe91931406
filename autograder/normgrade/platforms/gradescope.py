"""
`normgrade gradescope --course DIR --out autograder.zip`: the course as a Gradescope autograder.

The zip follows Gradescope's autograder specification: `setup.sh` (run once
as root when Gradescope builds the image: Python, bubblewrap, the pinned
packages in requirements.txt) and `run_autograder` (run as root for each
submission), with this package's source, the provided student package, the
course's released notebooks and its expected values (hidden inputs, expected
values, answer keys). For each submission, run_autograder calls
`python -m normgrade.platforms.gradescope run /autograder`, which

1. keeps the secrets from student code: everything in /autograder/source but
   the Python environment (expected.npz, the grader's code, the notebooks),
   the results folder and the submission metadata become root's alone (0600,
   0700), as Gradescope's security advice says;
2. chooses the sandbox and says which in results.json: bubblewrap where user
   namespaces work; where they are blocked (Gradescope's containers may
   block them), the worker runs as the unprivileged user `nobody`, with the
   same rlimits and seccomp allow-list, after write access was taken away
   from `nobody` everywhere in the container but a folder made for each
   worker (normgrade.run.sandbox); never less: where
   neither can run, it writes no score and exits 1, saying why;
3. finds the graded files in /autograder/submission, whatever its shape (the
   release folder, a zip of it, loose layers.py and notebooks: normgrade.
   intake), never following a link;
4. scores them with the trusted scorer and the diagnosis that `normgrade
   grade` uses (normgrade.score.scorer.score_notebook: the released notebook's
   cells and points, the student's answer cells only), and writes
   /autograder/results/results.json: `score`, `execution_time`, `output`
   (the sandbox and any notes), `visibility`, `stdout_visibility`,
   `extra_data` and one test a graded cell (`name`, `number`, `score`,
   `max_score`, `output`, `visibility`). The tests' messages follow the
   course's choice (--visibility): shown, shown after the due date, or
   hidden (what Gradescope then shows of the total is Gradescope's rule).

Every text a student reads there is in the course's language: the course's
source folder is not in the zip, so `normgrade gradescope` writes the
language into settings.json ("language", normgrade.language.course_language)
and ships its catalog (with Babel, pinned, to read it); the run speaks it.
"""
import argparse
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat

from normgrade.course import paths
from normgrade.language import SOURCE_LANGUAGE, _, catalog_path, course_language, speaking
from normgrade.paths import REPO

VISIBILITY = {"visible": "visible", "after-due-date": "after_due_date", "hidden": "hidden"}
STUDENT_USER = "nobody"
SUBMISSION_OUTPUT_CHARS = 20_000  # of one test's output in results.json
PINNED = ("numpy", "array-api-compat", "nbformat", "pyseccomp")  # what grading imports (requirements.txt)

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv bubblewrap
if ! python3 -c 'import sys; sys.exit(sys.version_info < {python})'; then
    echo "normgrade needs Python {python_text} or newer (the pinned packages do): choose Gradescope's Ubuntu 24.04 base image" >&2
    exit 1
fi
python3 -m venv /autograder/source/venv
/autograder/source/venv/bin/pip install --no-cache-dir -r /autograder/source/requirements.txt
chmod -R a+rX /autograder/source/venv
chmod 0600 /autograder/source/expected.npz
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope copies this to /autograder/run_autograder and runs it, as root, for each submission;
# results go to /autograder/results/results.json.
set -euo pipefail
export PYTHONPATH=/autograder/source/normgrade-src/autograder
exec "${NORMGRADE_PYTHON:-/autograder/source/venv/bin/python}" -B -m normgrade.platforms.gradescope run /autograder
"""


# ---- building the autograder zip ------------------------------------------------------------


def requirements(language=SOURCE_LANGUAGE):
    """
    requirements.txt: each package grading imports, pinned to the version this
    grader runs; Babel too for a course in another language than English (its
    catalog is read from the .po).
    """
    import importlib.metadata

    names = PINNED + (("babel",) if language != SOURCE_LANGUAGE else ())
    return "".join(f"{name}=={importlib.metadata.version(name)}\n" for name in names)


def build_autograder(course, out, visibility="visible"):
    """Write the autograder zip for the course at `course` to `out`; return the list of its entries."""
    from normgrade.course import is_course

    course, out = Path(course), Path(out)
    if visibility not in VISIBILITY:
        raise ValueError(f"--visibility is one of {', '.join(VISIBILITY)}, not {visibility!r}")
    if not is_course(course) or not paths(course)["expected"].is_file():
        raise FileNotFoundError(f"{course} is not a course built by `normgrade release --course {course}`")
    layout = paths(course)
    language = course_language(course)  # the course's source folder is not shipped: settings.json says it
    python = sys.version_info[:2]
    setup = SETUP_SH.replace("{python}", repr(python)).replace("{python_text}", f"{python[0]}.{python[1]}")
    settings = {"visibility": VISIBILITY[visibility], "language": language}
    entries = {"setup.sh": (setup.encode(), 0o755), "run_autograder": (RUN_AUTOGRADER.encode(), 0o755),
               "requirements.txt": (requirements(language).encode(), 0o644),
               "expected.npz": (layout["expected"].read_bytes(), 0o600),
               "settings.json": (json.dumps(settings).encode(), 0o644)}
    for path in sorted(layout["release"].glob("*.ipynb")):
        entries[f"release/{path.name}"] = (path.read_bytes(), 0o644)
    for folder in ("autograder/normgrade", "assignment/normlab"):
        for path in sorted((REPO / folder).rglob("*.py")):
            entries[f"normgrade-src/{path.relative_to(REPO)}"] = (path.read_bytes(), 0o644)
    if language != SOURCE_LANGUAGE:  # the scorer's messages in the course's language (normgrade.language)
        entries[f"normgrade-src/{catalog_path(language).relative_to(REPO)}"] = (catalog_path(language).read_bytes(),
                                                                                0o644)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    os.replace(partial, out)
    return sorted(entries)


# ---- running in Gradescope's container ------------------------------------------------------


def choose_sandbox(bubblewrap_only=False):
    """
    (Sandbox, None) of the strongest kind that runs here, or (None, why not):
    bubblewrap, else `nobody` (which changes the whole machine: only in
    Gradescope's disposable container, never with bubblewrap_only).
    """
    from normgrade.run.sandbox import Sandbox, SandboxUnavailable, probe_bwrap

    reason = probe_bwrap()
    if reason is None:
        return Sandbox(), None
    if bubblewrap_only:
        return None, (f"bubblewrap cannot run here ({reason}); outside Gradescope's disposable container the "
                      "autograder runs only under bubblewrap (its `nobody` mode takes write access away from the "
                      "whole machine)")
    try:
        sandbox = Sandbox(user=STUDENT_USER)
    except SandboxUnavailable as err:
        return None, f"bubblewrap cannot run here ({reason}), and {err}"
    failed = sandbox.self_test()
    if failed:
        return None, f"bubblewrap cannot run here ({reason}), and as {STUDENT_USER}: {failed}"
    return sandbox, None


def lock_down(root):
    """
    Make what student code must not read or write root's alone: everything
    in source/ but the Python environment (the expected values, the grader's
    code, the released notebooks), the results folder and Gradescope's
    submission metadata (files 0600, folders 0700; source/ itself 0711).
    """
    source, results = root / "source", root / "results"
    results.mkdir(parents=True, exist_ok=True)
    private = [results, root / "submission_metadata.json"] + [p for p in source.iterdir() if p.name != "venv"]
    for path in private:
        if path.exists() and not path.is_symlink():
            if os.geteuid() == 0:
                os.chown(path, 0, 0)
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
    os.chmod(source, 0o711)


def _release_with_answers(release_nb, student_nb):
    """The released notebook (its cells, ids and points) with the student's answer cells' sources."""
    answers = {}
    for cell in (student_nb.cells if student_nb is not None else []):
        meta = cell.get("metadata", {}).get("nbgrader", {})  # the student's: any JSON that validates
        grade_id = meta.get("grade_id", "") if isinstance(meta, dict) else ""
        source = cell.get("source", "")
        if cell.get("cell_type") == "code" and isinstance(grade_id, str) and grade_id.startswith("answer_") \
                and isinstance(source, str) and grade_id not in answers:
            answers[grade_id] = source
    for cell in release_nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return release_nb


def grade_upload(root, sandbox):
    """(tests, notes) for the submission under root/submission: one test a graded cell of the released notebooks."""
    from normgrade.platforms import intake
    from normgrade.score.scorer import graded_code_cells, parse_notebook, score_notebook

    source = root / "source"
    release = sorted((source / "release").glob("*.ipynb"))
    targets = [p.name for p in release] + ["layers.py"]
    read_from = {}
    found, problems = intake.files_in_folder(root / "submission", targets, intake.graded_limits(targets), where=read_from)
    notes = [_("not graded: {problem}").format(problem=p) for p in problems]
    notes += [_("{source} was graded as {target}").format(source=source, target=target)
              for target, source in sorted(read_from.items())
              if target in found and Path(source).name != target and not source.lower().endswith(".zip")]
    if problems:
        found = {}  # which file is the student's is never guessed: they see why, and can submit again
    staged = Path(tempfile.mkdtemp(prefix="normgrade-gradescope-"))
    try:
        (staged / "normlab").mkdir()
        if "layers.py" in found:
            (staged / "normlab" / "layers.py").write_bytes(found["layers.py"])
        elif not problems:
            others = sorted(str(p.relative_to(root / "submission")) for p in (root / "submission").rglob("*.py"))[:5]
            notes.append(_("no layers.py in the submission: every function earns nothing (Python files found: "
                           "{files})").format(files=", ".join(others)) if others else
                         _("no layers.py in the submission: every function earns nothing"))
        tests = []
        for path in release:
            student_nb = None
            if path.name in found:
                student_nb, why = parse_notebook(found[path.name], path.name)
                if student_nb is None:
                    notes.append(_("{notebook}: {why}; its inline answers earn nothing").format(notebook=path.name,
                                                                                               why=why))
            elif not problems:
                notes.append(_("no {notebook} in the submission: its inline answers earn nothing").format(
                    notebook=path.name))
            nb = _release_with_answers(nbformat.read(path, as_version=4), student_nb)
            scored = score_notebook(nb, staged, source / "expected.npz", sandbox)
            for gid, cell in graded_code_cells(nb).items():
                points, message = scored[gid]
                tests.append({"name": f"{path.stem}/{gid}", "score": round(float(points), 6),
                              "max_score": float(cell.metadata["nbgrader"]["points"]),
                              "output": message.strip()[:SUBMISSION_OUTPUT_CHARS]})
        return tests, notes
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def results_document(tests, notes, sandbox_description, visibility, seconds, written_points=0.0):
    """
    results.json as Gradescope's specification has it. The course's
    visibility holds for the whole result (the total too), not only the
    tests'. The output opens with what a student reads first (the points, and
    the written answers' points the instructor grades on Gradescope), then the
    notes; the sandbox comes last. Every text is shown as plain text
    (output_format and name_format "text"; Gradescope's default,
    simple_format, passes some HTML through): notes name files from the
    upload and messages quote what student code raised. Its words are in the
    current language (run_in_gradescope speaks the course's).
    """
    numbered = [dict(test, number=f"{n}", visibility=visibility, output_format="text", name_format="text")
                for n, test in enumerate(tests, start=1)]
    score, out_of = round(sum(t["score"] for t in tests), 6), sum(t["max_score"] for t in tests)
    if written_points:
        summary = _("{score:g} of {out_of:g} auto-graded points; your written answers ({written:g} points) are "
                    "graded by your instructor").format(score=score, out_of=out_of, written=written_points)
    else:
        summary = _("{score:g} of {out_of:g} auto-graded points").format(score=score, out_of=out_of)
    output = "\n".join([summary] + notes + [_("graded in: {sandbox}").format(sandbox=sandbox_description)])
    return {"score": score, "execution_time": int(round(seconds)),
            "output": output, "output_format": "text", "visibility": visibility, "stdout_visibility": "hidden",
            "extra_data": {"sandbox": sandbox_description, "notes": notes, "written_points": written_points},
            "tests": numbered}


def written_points(release_notebooks):
    """The points of the released notebooks' graded cells that are graded by hand (a written answer, not a test)."""
    total = 0.0
    for path in release_notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and meta.get("solution"):  # an answer cell graded by hand
                total += float(meta.get("points", 0))
    return total


def write_results(root, document):
    """Write results.json in one step (a file beside it, then a rename)."""
    results = root / "results"
    partial = results / "results.json.partial"
    partial.write_text(json.dumps(document, indent=2))
    os.replace(partial, results / "results.json")


def run_in_gradescope(root, bubblewrap_only=False):
    """Grade the submission of the Gradescope layout at `root`; return the process's exit status."""
    root = Path(root)
    start = time.monotonic()
    lock_down(root)
    sandbox, why_not = choose_sandbox(bubblewrap_only)
    if sandbox is None:
        print(f"normgrade: cannot grade safely here: {why_not}. No score was written.", file=sys.stderr)
        return 1
    settings = json.loads((root / "source" / "settings.json").read_text())
    with speaking(settings.get("language", SOURCE_LANGUAGE)):  # a zip built before languages: English
        tests, notes = grade_upload(root, sandbox)
        written = written_points(sorted((root / "source" / "release").glob("*.ipynb")))
        write_results(root, results_document(tests, notes, sandbox.description, settings["visibility"],
                                             time.monotonic() - start, written))
    return 0


# ---- the command ----------------------------------------------------------------------------


def add_parser(subparsers):
    parser = subparsers.add_parser("gradescope", help="build the course's Gradescope autograder zip",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path("course"))
    parser.add_argument("--out", type=Path, required=True, help="the autograder zip to write")
    parser.add_argument("--visibility", choices=tuple(VISIBILITY), default="visible",
                        help="when students see the tests' messages: visible (default), after-due-date, hidden")
    parser.add_argument("--try", dest="try_upload", type=Path, metavar="UPLOAD",
                        help="then run the zip here, as Gradescope runs it, on UPLOAD (a file, a folder or a zip, as "
                             "a student uploads it) and print what the student would see (needs bubblewrap)")
    parser.set_defaults(run=run)


def try_locally(zip_path, upload, work):
    """
    Run the autograder zip at `zip_path` in folder `work` as Gradescope runs
    it (its own grader code, from the zip; this Python instead of the venv
    setup.sh builds), on `upload`, a file or a folder of files as a student
    uploads them; return (exit status, results.json's document or None, stderr).
    """
    return run_layout(gradescope_layout(zip_path, upload, work))


def gradescope_layout(zip_path, upload, work):
    """Gradescope's /autograder, in folder `work`: the zip in source/, `upload` in submission/; its path."""
    root = Path(work) / "autograder"
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    (root / "results").mkdir()
    submission = root / "submission"
    if Path(upload).is_dir():
        shutil.copytree(upload, submission, symlinks=True)
    else:
        submission.mkdir()
        shutil.copy(upload, submission / Path(upload).name)
    (root / "submission_metadata.json").write_text(json.dumps({"users": []}))
    return root


def run_layout(root, python_flags=()):
    """Run the grader of a gradescope_layout as run_autograder does (bubblewrap only): (status, document, stderr)."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(root / "source" / "normgrade-src" / "autograder"))
    done = subprocess.run([sys.executable, "-B", *python_flags, "-m", "normgrade.platforms.gradescope", "run", str(root),
                           "--bubblewrap-only"], env=env, capture_output=True, text=True, timeout=900)
    results = root / "results" / "results.json"
    return done.returncode, json.loads(results.read_text()) if results.is_file() else None, done.stderr


def run(args):
    names = build_autograder(args.course, args.out, args.visibility)
    print(f"wrote {args.out}: {len(names)} files; upload it as the assignment's autograder (Configure Autograder)")
    if args.try_upload is None:
        return 0
    if not args.try_upload.exists():
        raise FileNotFoundError(f"--try {args.try_upload}: no such file or folder")
    with tempfile.TemporaryDirectory(prefix="normgrade-gradescope-try-") as work:
        status, document, stderr = try_locally(args.out, args.try_upload, work)
    if document is None:
        print(f"the autograder wrote no results for {args.try_upload} (exit status {status}):\n{stderr.strip()[-2000:]}",
              file=sys.stderr)
        return 1
    print(f"tried on {args.try_upload}: what the student sees (visibility aside)\n")
    print(document["output"])
    for test in document["tests"]:  # as Gradescope lists them: the name and points, then the whole message
        print(f"\n{test['name']}: {test['score']:g} / {test['max_score']:g}")
        for line in test["output"].splitlines():
            print(f"    {line}")
    return 0


if __name__ == "__main__" and len(sys.argv) in (3, 4) and sys.argv[1] == "run":
    sys.exit(run_in_gradescope(sys.argv[2], bubblewrap_only=sys.argv[3:] == ["--bubblewrap-only"]))
