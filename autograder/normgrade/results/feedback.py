"""
`normgrade feedback --course DIR`: HTML feedback for students, safe to hand back.

nbgrader's generate_feedback renders each autograded notebook (the course
config clears hidden test code from it and cuts tracebacks of graded cells to
one line, so students see the messages of the hidden tests, not the tests)
and copies every other file of the autograded
folder next to it. Those copies are removed here, but for the student's own
timestamp.txt and submission_secret.txt, which `nbgrader release_feedback`
reads (it copies only the pages into the exchange): a student gets back only
the HTML pages. The late penalties are first recomputed on the scores as
they are (manual grades included: normgrade.grade.late.refresh_penalties). Each page is then checked for hidden test code, and gets a
note that shows when MathJax (from a CDN) could not be loaded.
"""
import argparse
import html as html_text
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from normgrade import language as languages
from normgrade.grade import late
from normgrade.language import N_, _, speaking
from normgrade.course import ASSIGNMENT_ID, COURSE_ID, gradebook_url, load_config, paths, run_nbgrader

# The student's own submission time and secret, which nbgrader's release_feedback reads beside the pages
# (it names each student's feedback in the exchange by the secret); never copied to the exchange.
EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")
HIDDEN_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN SOLUTION")

# nbconvert's pages load MathJax from a CDN. Offline it does not load and the formulas stay LaTeX source:
# the page then says so instead of looking broken.
MATH_NOTE = """<div id="normlab-math-note" style="display:none; padding:0.6em 1em; margin:0.5em; background:#fff3cd;
border:1px solid #e0c060; font-family:sans-serif">{note}</div>
<script>window.addEventListener("load", function () {{
  if (!(window.MathJax && window.MathJax.Hub)) {{ document.getElementById("normlab-math-note").style.display = "block"; }}
}});</script>
"""
MATH_NOTE_TEXT = N_("The formulas on this page are shown as LaTeX source: MathJax, which renders them, could not be "
                    "loaded (it comes from cdnjs.cloudflare.com; this computer may be offline).")


def add_math_note(text):
    """An HTML page written by nbconvert with MATH_NOTE (in the current language) at the top of its body (once)."""
    if "normlab-math-note" not in text and "<body" in text:
        start = text.index(">", text.index("<body")) + 1
        note = MATH_NOTE.format(note=html_text.escape(_(MATH_NOTE_TEXT)))
        text = text[:start] + "\n" + note + text[start:]
    return text


# The words of nbgrader's feedback template (nbgrader/server_extensions/formgrader/templates/feedback/), each with
# the markup around it there, so that nothing a student wrote (escaped, or inside a cell) is matched.
def _in_markup(*words):
    """[(a pattern of the word with its markup before and after, the word)] of (before, word, after) triples."""
    return tuple((re.compile(f"({re.escape(before)}){re.escape(word)}({re.escape(after)})"), word)
                 for before, word, after in words)


LABEL = '<span class="nbgrader-label">'
SCORE, TOP = N_("Score: {score} / {max_score}"), N_("(Top)")
TEMPLATE_WORDS = _in_markup(
    (LABEL, N_("Student's answer"), "</span>"), (LABEL, N_("Student's task"), "</span>"),
    (LABEL, N_("Grade cell:"), " <code>"), (LABEL, N_("Task:"), " <code>"),
    ('<span class="pull-right"><a href="#top">', TOP, "</a>"), ("<b>", N_("Comments:"), "</b>"),
)
_SCORE = r"(-?[0-9.]+) / ([0-9.]+)"
_CELL_SCORE = re.compile(r'(<span class="pull-right">\s*)Score: ' + _SCORE + r'( <a href="#top">)\(Top\)(</a>)')
# In the page's heading and its table of contents (the first <div id="toc">, before any cell).
TOC_WORDS = _in_markup(*(('">', word, "</a>") for word in (
    N_("Test cell"), N_("Coding free-response"), N_("Written response"), N_("Task"), N_("Comment"))))
_TOC_SCORE = re.compile(r"\(Score: " + _SCORE + r"\)")
_PENALTY = re.compile(r'(<li class="late-penalty">)Late submission penalty \(Score: -([0-9.]+)\)')


def _said(words, text):
    """`text` with each of `words` (_in_markup's) in the current language, its markup kept."""
    for pattern, message in words:
        text = pattern.sub(lambda m, w=html_text.escape(_(message)): f"{m[1]}{w}{m[2]}", text)
    return text


def _score(score, max_score):
    """A score as nbgrader's template writes it, in the current language."""
    return html_text.escape(_(SCORE).format(score=score, max_score=max_score))


def localize_page(text, language):
    """
    An HTML feedback page written by nbgrader, given in `language` (the
    current one, speaking): its <html lang>, and the words of nbgrader's
    template (TEMPLATE_WORDS, the heading and the table of contents) from the
    catalog. The notebook's own text is already in the course's language (its
    release and the scorer's messages).
    """
    text = re.sub(r"<html(?![^>]*\blang=)>", f'<html lang="{languages.HTML_LANG[language]}">', text, count=1)
    if language == languages.SOURCE_LANGUAGE:
        return text
    text = _said(TEMPLATE_WORDS, text)
    top = html_text.escape(_(TOP))
    text = _CELL_SCORE.sub(lambda m: f"{m[1]}{_score(m[2], m[3])}{m[4]}{top}{m[5]}", text)
    start = text.find('<div id="toc">')
    end = text.find("</div>", start)
    if start >= 0 and end >= 0:
        heading = text.rfind("<h4>", 0, start)
        start = heading if heading >= 0 else start
        toc = _said(TOC_WORDS, text[start:end])
        toc = _PENALTY.sub(lambda m: m[1] + html_text.escape(_("Late submission penalty (Score: -{penalty})")
                                                             .format(penalty=m[2])), toc)
        toc = _TOC_SCORE.sub(lambda m: f"({_score(m[1], m[2])})", toc)
        text = text[:start] + toc + text[end:]
    return text


class ShortTracebacks(Preprocessor):
    """
    Cut every error in a graded cell to one line, `ename: evalue`.

    IPython's traceback prints the source lines around the failing line, so a
    failed visible assert would show the hidden test code below it.
    """

    enabled = Bool(True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):
        if "nbgrader" in cell.metadata:
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


NOT_GRADED_YET = N_("**Not graded yet.** This written answer has not been graded: the score shown for it (0) is a "
                    "placeholder until your instructor grades it.")


class UngradedAnswers(Preprocessor):
    """
    Below every answer the gradebook says still needs manual grading, a note
    that it is not graded yet (nbgrader's page shows it as 0 points); and one
    at the top of the page saying how many there are.
    """

    enabled = Bool(True)
    def preprocess(self, nb, resources):
        from nbgrader.coursedir import CourseDirectory

        with speaking(languages.course_language(CourseDirectory(config=self.config).root)):  # as it was released
            return self._preprocess(nb, resources)

    def _preprocess(self, nb, resources):
        from nbgrader.api import Gradebook, MissingEntry

        info = resources["nbgrader"]
        waiting = []
        with Gradebook(info["db_url"]) as gb:
            for index, cell in enumerate(nb.cells):
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if not cell.metadata.get("nbgrader", {}).get("grade") or not grade_id:
                    continue
                try:
                    grade = gb.find_grade(grade_id, info["notebook"], info["assignment"], info["student"])
                except MissingEntry:
                    continue
                if grade.needs_manual_grade and grade.manual_score is None:
                    waiting.append(index)
        for index in reversed(waiting):
            nb.cells.insert(index + 1, nbformat.v4.new_markdown_cell(_(NOT_GRADED_YET)))
        if waiting:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(
                _("**Written answers not graded yet on this page: {count}.** The scores below count them as 0 until "
                  "your instructor grades them.").format(count=len(waiting))))
        return nb, resources


def waiting_text(waiting):
    """'3 written answers of 2 students are not graded yet (ann, bo)' for ungraded_answers' {student: count}."""
    answers, students = sum(waiting.values()), len(waiting)
    return (f"{answers} written answer{'s' if answers != 1 else ''} of {students} student{'s' if students != 1 else ''} "
            f"{'are' if answers != 1 else 'is'} not graded yet ({', '.join(sorted(waiting)[:10])}"
            f"{', ...' if students > 10 else ''})")


def ungraded_answers(course):
    """{student: number of written answers that still need manual grading}, from the course's gradebook."""
    from nbgrader.api import Gradebook

    waiting = {}
    with Gradebook(gradebook_url(course), COURSE_ID) as gb:
        for submission in gb.find_assignment(ASSIGNMENT_ID).submissions:
            count = sum(1 for notebook in submission.notebooks for grade in notebook.grades
                        if grade.needs_manual_grade and grade.manual_score is None)
            if count:
                waiting[submission.student.id] = count
    return waiting


def stale_autograded(course):
    """
    {student: why} for autograded/ folders nbgrader cannot write feedback
    for: the student has no submission in the gradebook (removed from it, or
    graded into another gradebook).
    """
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(course), COURSE_ID) as gb:
        graded = {submission.student.id for submission in gb.find_assignment(ASSIGNMENT_ID).submissions}
    return {folder.parent.name: "autograded/ holds a submission the gradebook does not have (removed from it, or "
                                "graded into another gradebook): no feedback written; grade it again to get one"
            for folder in sorted(paths(course)["autograded"].glob(f"*/{ASSIGNMENT_ID}"))
            if folder.parent.name not in graded}


def generate_feedback(course, student=None, stale=None):
    """
    Write and scrub the feedback; return {student: [html paths]}. Students in
    `stale` (stale_autograded(course) when not given) are left out (nbgrader
    would fail the whole run on them); the command says so.
    """
    url = gradebook_url(course)
    late.refresh_penalties(url, late.policy(load_config(course)))  # the pages show the penalty as it is now
    args = ["generate_feedback", ASSIGNMENT_ID, "--force"]
    if student:
        args += ["--student", student]
    stale = stale_autograded(course) if stale is None else stale
    if stale:
        args.append(f"--CourseDirectory.student_id_exclude={','.join(stale)}")
    if student and student in stale:
        return {}
    run_nbgrader(course, *args)
    language = languages.course_language(course)
    pages = {}
    root = paths(course)["feedback"]
    for folder in sorted(root.glob(f"*/{ASSIGNMENT_ID}")):
        name = folder.parent.name
        if student and name != student:
            continue
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            if path.is_file() and path.suffix != ".html" and path.relative_to(folder).as_posix() not in EXCHANGE_FILES:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        html = sorted(folder.glob("*.html"))
        # A marker the student typed into their own notebook is theirs to see (and must not stop the class).
        own = " ".join(p.read_text(errors="replace") for where in ("staged", "submitted")
                       for pattern in ("*.ipynb", "normlab/layers.py")  # their code is shown on the page too
                       for p in (paths(course)[where] / name / ASSIGNMENT_ID).glob(pattern) if p.is_file())
        for page in html:
            with speaking(language):
                text = localize_page(add_math_note(page.read_text(encoding="utf-8")), language)
            page.write_text(text, encoding="utf-8")
            leaked = [m for m in HIDDEN_MARKERS if m in text and m not in own]
            if leaked:
                raise RuntimeError(f"{page} shows hidden grading code ({', '.join(leaked)})")
        pages[name] = html
    return pages


def add_parser(subparsers):
    parser = subparsers.add_parser("feedback", help="write student feedback (HTML only)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path("course"))
    parser.add_argument("--student", help="only this student")
    parser.set_defaults(run=run)


def run(args):
    waiting = {s: n for s, n in ungraded_answers(args.course).items() if not args.student or s == args.student}
    stale = stale_autograded(args.course)
    pages = generate_feedback(args.course, args.student, stale)
    for student, html in pages.items():
        print(f"{student}: {', '.join(str(p) for p in html)}")
    for student, why in stale.items():
        if not args.student or student == args.student:
            print(f"not written for {student}: {why}", file=sys.stderr)
    if waiting:
        print(f"warning: {waiting_text(waiting)}: their pages say so. Grade them in formgrader, then run "
              "`normgrade feedback` again", file=sys.stderr)
    return 0
