"""
nbgrader preprocessors that keep student code out of grading decisions.

The course's nbgrader_config.py (normgrade.course) sets

    Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor,
                                         LimitOutput, BoundMarkdown, CachedSanitizeHTML, SafeMarkdown,
                                         TrustedScores, SaveAutoGrades, ...]

- SandboxedExecute replaces nbgrader's Execute: the notebook runs in the
  bubblewrap sandbox (normgrade.run.sandbox, worker "notebook" mode), only for the
  outputs and plots an instructor sees in formgrader. Only outputs come back,
  into the cells nbgrader sanitized; a notebook that fails, hangs or floods
  keeps no outputs and changes no score.
- BoundMarkdown, CachedSanitizeHTML (nbconvert's bleach) and SafeMarkdown
  make student text safe and quick to show on a staff member's page: a cell
  too long to render quickly is shown as text, and so is one whose HTML, as
  nbgrader's templates render it (every filter applied), has a link like
  javascript: or an event handler. `normgrade grade` runs them while
  staging (prepare_markup), outside the gradebook lock.
- TrustedScores then writes every graded code cell's outputs: the report of
  the trusted scorer (normgrade.score.scorer) on stdout and the points as the
  cell's result, which SaveAutoGrades records as partial credit. Whatever the
  kernel printed, raised or hid in a graded cell is replaced. What it writes
  is in the course's language (normgrade.language.course_language).
"""
import ast
import functools
import html
import json
import re
import shutil
import traceback
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import nbformat
from nbconvert.preprocessors.sanitize import SanitizeHTML
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.preprocessors import (CheckCellMetadata, NbGraderPreprocessor, OverwriteCells, OverwriteKernelspec,
                                    SaveAutoGrades)
from traitlets import Bool, Integer, Unicode

from normgrade.language import N_, SOURCE_LANGUAGE, _, course_language, speaking
from normgrade.score import checks
from normgrade.grade.gradebooks import gradebook_of
from normgrade.run.sandbox import NOTEBOOK_LIMITS, Sandbox, WorkerDied
from normgrade.score.scorer import graded_code_cells, score_notebook, student_layers

UNSANDBOXED_NOTE = N_("NOTE: graded without a sandbox (--unsandboxed): the instructor chose to run student code "
                      "unconfined.")


def course_of(expected_path):
    """The course whose expected values are at `expected_path` (<course>/normgrade/expected.npz)."""
    return Path(expected_path).parent.parent


def submitted_folder(expected_path, info, directory="submitted"):
    """
    <directory>/<student>/<assignment> of the course whose expected values are
    at `expected_path`: the folder nbgrader autograded from (the course's
    submitted/, or normgrade's staging folder: CourseDirectory.submitted_directory).
    """
    return course_of(expected_path) / directory / info["student"] / info["assignment"]


def _outputs(message, points, max_points):
    """
    A graded cell's outputs: the scorer's message, then the points. nbgrader
    reads the points from the result's text/plain (its partial credit); the
    feedback and formgrader show its text/html, which says what they are. It
    is HTML (one <strong>, which the sanitizing of those pages keeps): markdown
    rendered there becomes a <p> that the sanitizer shows as text. Its words
    are in the current language.
    """
    words = _("Points: {points:g} of {max_points:g}").format(points=float(points), max_points=float(max_points))
    said = f"<strong>{html.escape(words)}</strong>"
    return [nbformat.v4.new_output("stream", name="stdout", text=message.rstrip() + "\n"),
            nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(points)), "text/html": said},
                                   execution_count=None)]


class SanitizeGradedCells(NbGraderPreprocessor):
    """
    Put every nbgrader cell of a submitted notebook back to what the source
    says, before nbgrader's own sanitizing (which crashes on the cases below,
    failing the whole notebook):

    - a cell whose grade_id the assignment does not have, a second cell with
      the same grade_id, or one without a grade_id becomes a plain cell;
    - a known cell gets its source's flags back: grade, solution, locked, points.

    OverwriteCells then restores sources and adds back deleted graded cells.
    """

    def preprocess(self, nb, resources):
        with gradebook_of(resources) as gradebook:
            notebook = resources["nbgrader"]["notebook"]
            locked = {name: bool(cell.locked) for name, cell in gradebook.cells_of("SourceCell", notebook).items()}
            points = {name: float(cell.max_score) for name, cell in gradebook.cells_of("GradeCell", notebook).items()}
            solutions = set(gradebook.cells_of("SolutionCell", notebook))
        seen = set()
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            if meta is None:
                continue
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            if not isinstance(grade_id, str) or grade_id not in locked or grade_id in seen:
                del cell.metadata["nbgrader"]
                self.log.warning("cell %r is not a cell of the assignment (or a second copy): not graded", grade_id)
                continue
            seen.add(grade_id)
            meta.update(grade=grade_id in points, solution=grade_id in solutions, locked=locked[grade_id])
            meta.pop("task", None)
            if grade_id in points:
                meta["points"] = points[grade_id]
            else:
                meta.pop("points", None)
        return nb, resources


class SaveAutoGradesOnce(SaveAutoGrades):
    """
    nbgrader's SaveAutoGrades, its rules for auto_score, needs_manual_grade
    and auto_comment unchanged, in the submission's gradebook session
    (gradebooks.gradebook_of): each grade and comment is found among the
    submission's rows read once, and nothing is committed after every cell.
    """

    writes_gradebook = True  # normgrade.grade.autograded runs it, and what follows, under the gradebook lock

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.notebook_id, self.assignment_id = info["notebook"], info["assignment"]
        self.student_id, self.db_url = info["student"], info["db_url"]
        with gradebook_of(resources) as self.gradebook:
            return NbGraderPreprocessor.preprocess(self, nb, resources)  # SaveAutoGrades's cells


class OverwriteCellsPrefetched(OverwriteCells):
    """
    nbgrader's OverwriteCells, its rules unchanged, finding each cell's
    source and points among the assignment's cells read once, in the
    submission's gradebook session (gradebooks.gradebook_of), where it made
    two queries a cell.
    """

    def preprocess(self, nb, resources):
        self.notebook_id = resources["nbgrader"]["notebook"]
        self.assignment_id = resources["nbgrader"]["assignment"]
        self.db_url = resources["nbgrader"]["db_url"]
        with gradebook_of(resources) as self.gradebook:
            nb, resources = NbGraderPreprocessor.preprocess(self, nb, resources)  # OverwriteCells's cells
            if self.add_missing_cells:
                nb, resources = self.add_missing_grade_cells(nb, resources)
                nb, resources = self.add_missing_task_cells(nb, resources)
        return nb, resources


class OverwriteKernelspecInSession(OverwriteKernelspec):
    """nbgrader's OverwriteKernelspec (the source notebook's kernelspec), in the submission's gradebook session."""

    def preprocess(self, nb, resources):
        with gradebook_of(resources) as gradebook:
            kernelspec = gradebook.find_notebook(resources["nbgrader"]["notebook"],
                                                 resources["nbgrader"]["assignment"]).kernelspec
        if kernelspec is not None and json.loads(kernelspec):
            nb.metadata["kernelspec"] = json.loads(kernelspec)
        return nb, resources


class _SchemaCheckedOnce(BaseMetadataValidator):
    """
    nbgrader's check of a cell's metadata against its schema, with the
    schema's own validator built once per process: jsonschema.validate, which
    nbgrader calls for every cell, checks the schema itself on each call (nine
    tenths of CheckCellMetadata's time). The same error is raised.
    """

    def validate_cell(self, cell):
        if "nbgrader" not in cell.metadata:
            return
        if cell.metadata["nbgrader"].get("schema_version", 0) != self.schema_version:
            return super().validate_cell(cell)  # nbgrader's SchemaTooOldError or SchemaTooNewError
        error = jsonschema.exceptions.best_match(_schema_validator().iter_errors(cell.metadata["nbgrader"]))
        if error is not None:
            raise error


class _MetadataValidatorOnce(MetadataValidator, _SchemaCheckedOnce):
    """nbgrader's MetadataValidator (its own rules after the schema's) over _SchemaCheckedOnce."""


@functools.cache
def _metadata_validator():
    return _MetadataValidatorOnce()  # it reads three schema files


@functools.cache
def _schema_validator():
    schema = _metadata_validator().schema
    kind = jsonschema.validators.validator_for(schema)
    kind.check_schema(schema)
    return kind(schema)


class CheckCellMetadataOnce(CheckCellMetadata):
    """
    nbgrader's CheckCellMetadata, its rules and errors unchanged
    (tests/test_autograded.py compares them on corrupted notebooks), with the
    schema and the validator read and built once per process rather than for
    every notebook and every cell: 0.02 s a submission, half of it under the
    gradebook lock, where it runs last.
    """

    def preprocess(self, nb, resources):
        try:
            _metadata_validator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            msg = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(msg)
            raise ValidationError(msg)
        return nb, resources


_REPORTS = {}  # {(student, notebook): {grade_id: message}}: what TrustedScores wrote in this process


def take_reports(student):
    """
    {(notebook, grade_id): message} that TrustedScores wrote into the
    student's graded cells in this process, removed as they are taken: how
    `normgrade grade` gets the scorer's messages as data, not by reading the
    autograded notebooks' text back.
    """
    return {(notebook, grade_id): message for key in [k for k in _REPORTS if k[0] == student]
            for notebook in [key[1]] for grade_id, message in _REPORTS.pop(key).items()}


class TrustedScores(NbGraderPreprocessor):
    """
    Write every auto-graded code cell's outputs from the trusted scorer (see
    the module docstring), in the language the course was released in (the
    course found from expected_path).
    """

    expected_path = Unicode("", help="the staff expected-values file (never inside source/ or a submission)").tag(
        config=True)
    unsandboxed = Bool(False, help="run student code without bubblewrap (every report says so)").tag(config=True)
    submitted_directory = Unicode("submitted", help="the folder, in the course, nbgrader autogrades from").tag(
        config=True)

    def preprocess(self, nb, resources):
        sandbox = Sandbox(unsandboxed=self.unsandboxed)  # refuses, saying how to enable it, where bwrap cannot run
        info = resources["nbgrader"]
        with speaking(course_language(course_of(self.expected_path))):
            scored = score_notebook(nb, resources["metadata"]["path"], self.expected_path, sandbox,
                                    submitted_folder(self.expected_path, info, self.submitted_directory),
                                    info["notebook"])
            reports = _REPORTS[(info["student"], info["notebook"])] = {}
            earned = {}
            for gid, cell in graded_code_cells(nb).items():
                points, message = scored[gid]
                if self.unsandboxed:
                    message = f"{_(UNSANDBOXED_NOTE)}\n{message}"
                cell.outputs = _outputs(message, points, cell.metadata["nbgrader"]["points"])
                reports[gid] = message.strip()
                function = gid[len("test_"):]
                if function in checks.FUNCTIONS:
                    earned[function] = (points, float(cell.metadata["nbgrader"]["points"]))
        if earned:  # the graded work is layers.py: formgrader shows it below the notebook, with its points
            layers, why_not = student_layers(resources["metadata"]["path"],
                                             submitted_folder(self.expected_path, info, self.submitted_directory))
            nb.cells += with_free_ids(student_code_cells(layers, earned, why_not), nb.cells)
        return nb, resources


def with_free_ids(cells, others):
    """
    `cells`, each keeping its id unless one of `others` (a student's cells)
    or an earlier one took it first; then <id>-1, <id>-2, ...: the first
    free one. It always ends: the count grows until it passes the ids taken.
    """
    taken = {cell.get("id") for cell in others}
    for cell in cells:
        base, count = cell.id[:50], 0  # an id is at most 64 characters
        while cell.id in taken:
            count += 1
            cell.id = f"{base}-{count}"
        taken.add(cell.id)
    return cells


MAX_SHOWN_CODE = 20_000  # characters of one function shown to the grader


def student_code_cells(layers, earned, why_not=""):
    """
    Code cells (read-only, never run) showing the grader the student's
    normlab/layers.py as graded: one per function of `earned` {function:
    (points, out of)}, its source cut from the file (the whole file, cut at
    MAX_SHOWN_CODE, where it does not parse), headed by its points. A code
    cell's source reaches formgrader and the feedback page highlighted and
    escaped, never as markup. Their ids are fixed (student-code-<function>), so
    grading the same submission twice writes the same notebook.
    """
    meta = {"editable": False, "deletable": False, "normgrade": "student code"}
    if layers is None:
        return [nbformat.v4.new_code_cell(f"# normlab/layers.py as submitted: not graded ({why_not})", metadata=meta,
                                          id="student-code-layers")]
    text = layers.decode("utf-8", errors="replace")
    lines = text.splitlines()
    try:
        spans = {node.name: (min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno)
                 for node in ast.parse(text).body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    except (SyntaxError, ValueError):
        head = "# normlab/layers.py as submitted (it does not parse as Python): " + ", ".join(
            f"{f} {p:g} / {m:g} points" for f, (p, m) in earned.items())
        return [nbformat.v4.new_code_cell(f"{head}\n{text[:MAX_SHOWN_CODE]}", metadata=meta, id="student-code-layers")]
    cells = []
    for function, (points, out_of) in earned.items():
        head = f"# {function}: {points:g} / {out_of:g} points. The student's normlab/layers.py, as graded (not run here)."
        if function in spans:
            begin, end = spans[function]
            body = "\n".join(lines[begin - 1:end])
            body = body if len(body) <= MAX_SHOWN_CODE else body[:MAX_SHOWN_CODE] + "\n# ... (cut)"
        else:
            body = f"# no function {function} in normlab/layers.py"
        cells.append(nbformat.v4.new_code_cell(f"{head}\n{body}", metadata=meta, id=f"student-code-{function}"))
    return cells


class SandboxedExecute(NbGraderPreprocessor):
    """Execute the notebook inside the sandbox and keep only the outputs it produced (see the module docstring)."""

    timeout = Integer(300, help="seconds for the whole notebook").tag(config=True)
    cell_timeout = Integer(120, help="seconds for one cell").tag(config=True)
    unsandboxed = Bool(False, help="run student code without bubblewrap (every report says so)").tag(config=True)

    expected_path = Unicode("", help="the staff expected-values file; it locates the course").tag(config=True)
    submitted_directory = Unicode("submitted", help="the folder, in the course, nbgrader autogrades from").tag(
        config=True)

    def preprocess(self, nb, resources):
        folder = Path(resources["metadata"]["path"])
        submitted = submitted_folder(self.expected_path, resources["nbgrader"], self.submitted_directory) \
            if self.expected_path else None
        layers, _why_not = student_layers(folder, submitted)
        sandbox = Sandbox(unsandboxed=self.unsandboxed)
        language = course_language(course_of(self.expected_path)) if self.expected_path else SOURCE_LANGUAGE
        try:
            executed = execute_notebook(nb, layers, sandbox, self.timeout, self.cell_timeout, language)
        except (WorkerDied, ValueError) as err:
            self.log.warning("%s was not executed: %s", resources.get("unique_key", "notebook"), err)
            return nb, resources
        copy_outputs(executed, nb)
        return nb, resources


def execute_notebook(nb, layers_path, sandbox, seconds, cell_seconds, language=SOURCE_LANGUAGE):
    """
    The notebook executed in the sandbox beside the student's package (a new
    notebook node), its cells speaking `language` (normlab.i18n: the course's).
    """
    limits = NOTEBOOK_LIMITS
    folder = sandbox.private_folder(layers_path)
    try:
        run = sandbox.start("notebook", folder, limits, args=[json.dumps(limits.rlimits()), str(cell_seconds)],
                            extra_env={"NBGRADER_EXECUTION": "autograde", "NORMLAB_LANGUAGE": language})
        try:
            run.send(nbformat.writes(nb).encode())
            text = run.read_all(seconds)
        finally:
            run.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not text:
        raise ValueError("the notebook run returned nothing")
    try:  # what came back is data from the sandbox: anything unreadable is a failed run, nothing more
        executed = nbformat.reads(text.decode(errors="replace"), as_version=4)
        nbformat.validate(executed)
    except Exception as err:
        raise ValueError(f"the executed notebook could not be read ({type(err).__name__})") from err
    return executed


SAFE_DATA = ("text/plain", "image/png", "image/jpeg")  # no HTML or JavaScript reaches formgrader
MAX_OUTPUTS_PER_CELL = 20
MAX_OUTPUT_CHARS = 200_000  # one output's text, or one image's base64
MAX_NOTEBOOK_OUTPUT_CHARS = 8_000_000


def _safe_output(output):
    """A copy of one output with only plain text and images, each capped; None if nothing is left."""
    kind = output.get("output_type")
    if kind == "stream":
        text = str(output.get("text", ""))
        return nbformat.v4.new_output("stream", name=output.get("name", "stdout"), text=text[:MAX_OUTPUT_CHARS])
    if kind == "error":
        return nbformat.v4.new_output("error", ename=str(output.get("ename", ""))[:200],
                                      evalue=str(output.get("evalue", ""))[:MAX_OUTPUT_CHARS // 10],
                                      traceback=[str(t)[:5000] for t in output.get("traceback", [])[:50]])
    if kind in ("display_data", "execute_result"):
        data = {k: v for k, v in output.get("data", {}).items()
                if k in SAFE_DATA and isinstance(v, str) and len(v) <= MAX_OUTPUT_CHARS}
        if not data:
            return None
        if kind == "execute_result":
            return nbformat.v4.new_output(kind, data=data, execution_count=output.get("execution_count"))
        return nbformat.v4.new_output(kind, data=data)
    return None


def copy_outputs(executed, nb):
    """
    Copy the outputs of code cells from `executed` into `nb`, where the cells
    line up: plain text and images only (no HTML or script for formgrader to
    render), at most MAX_OUTPUTS_PER_CELL per cell, MAX_OUTPUT_CHARS each and
    MAX_NOTEBOOK_OUTPUT_CHARS in all.
    """
    if len(executed.cells) != len(nb.cells):
        return
    budget = MAX_NOTEBOOK_OUTPUT_CHARS
    for ran, cell in zip(executed.cells, nb.cells):
        if cell.cell_type != "code" or ran.cell_type != "code" or ran.source != cell.source:
            continue
        kept = []
        for output in ran.get("outputs", [])[:MAX_OUTPUTS_PER_CELL]:
            safe = _safe_output(output)
            size = len(json.dumps(safe)) if safe else 0
            if safe is not None and size <= budget:
                kept.append(safe)
                budget -= size
        cell.outputs = kept
        count = ran.get("execution_count")
        cell.execution_count = count if isinstance(count, int) else None


SAFE_URL_SCHEMES = ("http", "https", "mailto", "tel", "ftp", "attachment")  # and no scheme (relative, #anchor)
URL_ATTRIBUTES = ("href", "src", "srcset", "action", "formaction", "xlink:href", "poster", "background", "cite")
# Every attribute a rendered markdown cell may carry: no event handler (on*), style, autofocus, form or frame
# attribute. A name outside this list means the cell's HTML is not what its markdown says (a raw HTML block
# cut by a blank line inside an attribute, say): the cell is shown as text.
SAFE_ATTRIBUTES = frozenset({
    "href", "src", "alt", "title", "id", "class", "align", "start", "type", "checked", "disabled", "colspan",
    "rowspan", "width", "height", "lang", "dir", "rel", "target", "abbr", "scope", "valign", "reversed", "value",
})
UNSAFE_TAGS = frozenset({"script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math",
                         "form", "button", "meta", "link", "base", "template", "noscript", "xmp", "plaintext",
                         "textarea", "title", "noembed", "noframes", "select", "option", "input"})
DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]")  # attachments, embedded by nbconvert


class _Markup(HTMLParser):
    """What a rendered cell's HTML holds that a browser would act on: its tags' names, attributes and URLs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems = []

    def handle_starttag(self, tag, attrs):
        if tag in UNSAFE_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name not in SAFE_ATTRIBUTES:
                self.problems.append(f"{tag} {name}=")
            elif name in URL_ATTRIBUTES and not _safe_url(tag, value or ""):
                self.problems.append(value)

    handle_startendtag = handle_starttag


def _safe_url(tag, url):
    plain = re.sub(r"[\x00-\x20\x7f]", "", url).lower()  # browsers ignore these inside a scheme
    scheme = re.match(r"([a-z][a-z0-9+.\-]*):", plain)
    if not scheme or scheme.group(1) in SAFE_URL_SCHEMES or len(scheme.group(1)) == 1:  # C:\... is a path
        return True
    return tag == "img" and DATA_IMAGE.match(plain) is not None


def rendered_markdown(markdown, attachments=None):
    """
    The HTML a browser gets for a markdown cell in nbgrader's formgrade and
    feedback pages: their templates render `cell.source | markdown2html |
    strip_files_prefix`, nbconvert's renderer then nbconvert's filter that
    removes a "files/" prefix from every href and src (so "files/javascript:..."
    becomes "javascript:..." after any check on the markdown itself).
    """
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    from nbconvert.filters.strings import strip_files_prefix

    renderer = IPythonRenderer(escape=False, attachments=attachments or {})
    return strip_files_prefix(MarkdownWithMath(renderer=renderer).render(markdown))


def unsafe_markup(markdown, attachments=None):
    """
    What is unsafe in the HTML a browser gets for `markdown` in formgrader
    and the feedback pages (rendered_markdown, every filter of nbgrader's
    templates applied): URLs whose scheme is not in SAFE_URL_SCHEMES
    ("javascript:", "vbscript:", "data:" other than an image), attributes
    outside SAFE_ATTRIBUTES (event handlers), tags in UNSAFE_TAGS. Markdown is
    not HTML, so bleach (SanitizeHTML) does not see a markdown link, nor HTML
    that markdown splits differently than bleach does; nbgrader's templates do
    not clean the result again. A cell nbconvert cannot render (a missing
    attachment) counts as unsafe: formgrader would fail on it. [] when the
    cell is safe to render. Results are kept by content: `normgrade grade`
    computes them while staging, outside the gradebook lock.
    """
    return list(_unsafe_markup(markdown, json.dumps(attachments or {}, sort_keys=True)))


@functools.lru_cache(maxsize=256)
def _unsafe_markup(markdown, attachments_json):
    parser = _Markup()
    try:
        parser.feed(rendered_markdown(markdown, json.loads(attachments_json)))
        # A cell is rendered between other markup on the page: one that ends inside a tag, an attribute
        # value, a comment or a raw-text element (an unclosed <a title='...) would swallow the template's
        # markup and the next cell's text, which then becomes attributes of its tag. Only a cell that ends
        # outside any of them is judged on its own.
        unfinished = parser.rawdata.strip() or parser.cdata_elem
        parser.close()
    except Exception as err:  # noqa: BLE001 - whatever the renderer chokes on is not shown live
        return (f"(not renderable: {type(err).__name__})",)
    return tuple(parser.problems) + (("(ends inside a tag or comment)",) if unfinished else ())


MAX_TEXT_CELL_CHARS = 10_000  # one markdown or raw cell rendered as HTML (the assignment's longest: about 900)
MAX_RENDERED_CHARS = 60_000  # every rendered text cell of a notebook (the assignment's own: about 9,600)
MAX_SHOWN_CHARS = 200_000  # the text of the cells shown as text instead, in all


def as_text(source, why, limit=MAX_SHOWN_CHARS):
    """A markdown cell that shows `source` (at most `limit` characters) as escaped text, saying why."""
    shown, rest = source[:max(limit, 0)], max(len(source) - max(limit, 0), 0)
    more = f"\n(... {rest} more characters, not shown here: see the submitted notebook)" if rest else ""
    return f"<pre>({why}; its text:)\n{html.escape(shown)}{html.escape(more)}</pre>"


AS_TEXT = "normgrade_as_text"  # resources key: {cell index: the text form BoundMarkdown chose for it}


class BoundMarkdown(NbGraderPreprocessor):
    """
    Rendering student text takes time that grows faster than the text
    (bleach: 4 s for 100,000 characters of "<a ", and 70 s for 400,000;
    nbconvert's markdown renderer about 7 s per million characters), on a
    staff member's page and, with SQLite, under the gradebook's lock. A
    markdown or raw cell longer than MAX_TEXT_CELL_CHARS, or past
    MAX_RENDERED_CHARS in the notebook, is shown as escaped text instead (at
    most MAX_SHOWN_CHARS in all), never rendered. Runs before SanitizeHTML,
    which would escape the <pre> of that text form: the cell is emptied here
    and SafeMarkdown, after bleach, writes the text form (resources[AS_TEXT]).
    """

    def preprocess(self, nb, resources):
        rendered, shown = 0, 0
        as_text_cells = resources.setdefault(AS_TEXT, {})
        for index, cell in enumerate(nb.cells):
            if cell.cell_type not in ("markdown", "raw"):
                continue
            size = len(cell.source)
            if size <= MAX_TEXT_CELL_CHARS and rendered + size <= MAX_RENDERED_CHARS:
                rendered += size
                continue
            why = (f"this cell has {size} characters; cells of up to {MAX_TEXT_CELL_CHARS} are rendered"
                   if size > MAX_TEXT_CELL_CHARS else
                   f"this notebook's text cells have more than {MAX_RENDERED_CHARS} characters in all; the rest "
                   "are shown as text")
            self.log.warning("a %s cell of %d characters is shown as text, not rendered", cell.cell_type, size)
            as_text_cells[index] = as_text(cell.source, why, MAX_SHOWN_CHARS - shown)
            shown += min(size, max(MAX_SHOWN_CHARS - shown, 0))
            cell.source = ""
            cell.pop("attachments", None)
        return nb, resources


_BLEACHED = {}  # {(text, settings): cleaned}: SanitizeHTML's results in this process, a few at most
_BLEACHED_KEPT = 512


class CachedSanitizeHTML(SanitizeHTML):
    """
    nbconvert's SanitizeHTML (bleach), whose results are kept by content:
    `normgrade grade` computes them while staging, outside the gradebook lock.
    Configured as SanitizeHTML (its parent's name).
    """

    def sanitize_html_tags(self, html_str):
        key = (html_str, repr((self.tags, self.attributes, self.strip, self.strip_comments, self.styles)))
        if key not in _BLEACHED:
            _BLEACHED[key] = super().sanitize_html_tags(html_str)
            while len(_BLEACHED) > _BLEACHED_KEPT:
                del _BLEACHED[next(iter(_BLEACHED))]
        return _BLEACHED[key]


def prepare_markup(nb):
    """
    Run the text-cell steps of the autograde chain (BoundMarkdown,
    CachedSanitizeHTML, SafeMarkdown) on a copy of `nb`, so that their
    results are known before nbgrader runs them under the gradebook lock.
    """
    from traitlets.config import Config

    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    config = Config({"SanitizeHTML": {"enabled": True}})
    resources = {}
    for step in (BoundMarkdown(config=config), CachedSanitizeHTML(config=config), SafeMarkdown(config=config)):
        copy, resources = step.preprocess(copy, resources)
    return copy


class SafeMarkdown(NbGraderPreprocessor):
    """
    Formgrader and the feedback pages render student markdown as live HTML,
    and nbgrader's templates do not clean it: a markdown cell whose rendered
    HTML has anything unsafe_markup() finds (a [x](javascript:...) link, an
    event handler smuggled past bleach) is shown as its text instead, in a
    <pre> block, so nothing runs on a staff member's page. Runs after
    SanitizeHTML.
    """

    def preprocess(self, nb, resources):
        as_text_cells = resources.get(AS_TEXT, {})
        for index, cell in enumerate(nb.cells):
            if index in as_text_cells:  # BoundMarkdown's text form of a cell too long to render
                cell.source = as_text_cells[index]
                continue
            unsafe = unsafe_markup(cell.source, cell.get("attachments")) if cell.cell_type == "markdown" else []
            if unsafe:
                self.log.warning("a markdown cell is not safe to render (%r): shown as text", unsafe[:3])
                cell.source = as_text(cell.source, "this cell is not safe to render as HTML")
                cell.pop("attachments", None)
        return nb, resources
