"""
The trusted scorer: points and messages for one submission, decided outside the sandbox.

    score_code(layers_path, functions, data, sandbox)  -> {function: [checks.Result]}
    score_answers(notebook_path, questions, keys)      -> {question: (points, message)}

score_code sends the hidden inputs to a sandboxed worker (normgrade.run.sandbox,
normgrade.run.worker) running the student's layers.py, reads back raw values and
scores them with normgrade.score.checks. It never imports or runs student code.
One sandbox serves a submission (Session): its workers are forked in it, one
after the other. The worker runs the calls in order; if it dies, hangs or
floods, the call it was running fails with what happened and a fresh worker
takes the rest (forked in the same sandbox after a death, in a new sandbox
after a hang), so a failure costs only the checks that needed that call. After a call stops on
its time limit, the other calls of the same graded function are not run, in
that worker or the next (the isolated one included). A module that does not
import (or hangs while importing) fails every call, once.

score_answers reads the inline answers from the notebook's answer cells as
Python literals (ast.literal_eval), without running anything.

Every message is composed in the current language (normgrade.language.speaking:
the course's, where the caller entered it); what decides a point or a mistake's
key never reads a message's text.
"""
import ast
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import time
from pathlib import Path

import nbformat

from normgrade import files, language
from normgrade.language import _
from normgrade.score import checks
from normgrade.run import worker
from normgrade.score.checks import Failure, Other
from normgrade.score.expected import ExpectedValues
from normgrade.paths import STUDENT_PACKAGE
from normgrade.run.sandbox import Limits, WorkerDied

SUBMISSION_SECONDS = 120.0  # every worker of one submission together


def _describe_error(text, limits):
    if text.startswith("MemoryError"):
        return _("ran out of memory (the limit is {limit:g} GiB): {error}").format(
            limit=limits.memory_bytes / (1 << 30), error=text)
    return _("raised {error}").format(error=text)


def _raised(text):
    """
    The type name of the exception a worker's error text (worker.error_text:
    "Type: message") names, "?" where it names none; "" for a MemoryError,
    which is said as running out of memory, not as raising.
    """
    text = str(text).strip()
    if text.startswith("MemoryError"):
        return ""
    kind = re.match(r"[A-Za-z_]\w*", text)
    return kind.group(0) if kind else "?"


def stub_templates():
    """
    [(text before {name}, text after it)] of what every stub raises
    (normgrade.language.STUB_MESSAGE) in each language whose catalog
    can be read: `normgrade release --language` translates it, so a stub's
    NotImplementedError is recognized in every language's words.
    """
    found = []
    for code in language.LANGUAGES:
        try:
            template = language.translations(code).gettext(language.STUB_MESSAGE)
        except (OSError, ImportError, ValueError):  # a catalog this installation lacks: that language is not shipped
            continue
        if template.count("{name}") == 1 and tuple(template.split("{name}")) not in found:
            found.append(tuple(template.split("{name}")))
    return found


def _cut(text):
    """A message cut as worker.error_text cuts it."""
    return text if len(text) <= worker.MAX_ERROR_CHARS else text[:worker.MAX_ERROR_CHARS] + " ..."


def is_stub_error(line):
    """
    Whether `line` (an error text as the worker gives it, first line, cut) is
    the NotImplementedError a stub raises, in any language of the catalogs:
    "NotImplementedError: " and the stub's message for a name of 1 to 40 word
    characters, cut where the worker cuts it.
    """
    head = "NotImplementedError: "
    if not line.startswith(head):
        return False
    for before, after in stub_templates():
        if not line.startswith(head + before):
            continue
        name = re.match(r"\w{1,40}", line[len(head + before):])
        if name and any(_cut(f"{head}{before}{name.group(0)[:size]}{after}") == line
                        for size in range(1, len(name.group(0)) + 1)):
            return True
    return False


MAX_STUDENT_TEXT = 1000  # characters of what one submission's code wrote (exception messages) in its feedback


class StudentText:
    """
    Text a submission's code wrote, as its feedback shows it. That code held
    the hidden inputs when it wrote it, so each message is cut to its first
    line and worker.MAX_ERROR_CHARS characters, type names to an identifier,
    and a submission's messages together to MAX_STUDENT_TEXT characters
    (repeats and the stubs' own "not implemented yet" count once or not at
    all); past that only the exception's type is shown. The worker cuts too,
    but it shares the student's process: this is the cut that holds.
    """

    def __init__(self, budget=MAX_STUDENT_TEXT):
        self.budget = self.left = budget
        self.seen = set()

    def __call__(self, text):
        line = _cut((str(text).strip().splitlines() or [""])[0])
        if line in self.seen or is_stub_error(line):
            return line
        if len(line) > self.left:
            kind = re.match(r"[A-Za-z_]\w{0,39}", line)
            return _("{type} (its message is not shown: a submission's feedback shows at most {budget} characters "
                     "of what its code wrote)").format(type=kind.group(0) if kind else _("an exception"),
                                                      budget=self.budget)
        self.left -= len(line)
        self.seen.add(line)
        return line

    def type_name(self, name):
        """A type name as the feedback shows it: an identifier (dots allowed), at most 40 characters, in the budget."""
        name = re.sub(r"[^\w.]", "", str(name), flags=re.ASCII)[:40] or "object"
        if name not in self.seen:
            if len(name) > self.left:
                return "object"
            self.left -= len(name)
            self.seen.add(name)
        return name


def _decode_values(header, arrays, produces, said):
    values = {}
    described = header.get("values")
    described = described if isinstance(described, dict) else {}
    for name in produces:
        item = described.get(name)
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "array" and isinstance(item.get("index"), int) and 0 <= item["index"] < len(arrays):
            values[name] = arrays[item["index"]]
        elif kind == "none":
            values[name] = None
        elif kind == "other":
            values[name] = Other(said.type_name(item.get("name", "object")))
        else:
            values[name] = Failure(_("was not returned"))
    return values


def worker_runs(calls, inputs):
    """
    [(calls, the inputs sent with them)]: the worker runs of a submission.
    Calls marked "isolated" (the forward pass at the secret points of a large
    backward pass's directional derivative: checks._large_calls) run in a
    worker of their own, after the others, sent only the inputs they name.
    The backward pass, in the first worker, never sees those points (student
    code can read everything in its process), and the forward pass in the
    second cannot know what the backward pass returned: no state, no shared
    /tmp.
    """
    isolated = [c for c in calls if c.get("isolated")]
    named = {v for c in isolated for v in c.values() if isinstance(v, str) and v in inputs}
    runs = [([c for c in calls if not c.get("isolated")], {k: v for k, v in inputs.items() if k not in named})]
    if isolated:
        runs.append((isolated, {k: inputs[k] for k in sorted(named)}))
    return runs


def collect(layers_path, calls, inputs, sandbox, limits=Limits(), package_dir=STUDENT_PACKAGE,
            budget=SUBMISSION_SECONDS):
    """Run `calls` on the student's layers.py in the sandbox; {quantity: value, None, Other or Failure}."""
    values = {}
    said = StudentText()

    def fail(call_list, message, seconds=0.0, raised=""):
        for call in call_list:
            values.update({name: Failure(message, seconds, raised) for name in call["produces"]})

    deadline = time.monotonic() + budget
    hung = {}  # function -> how its call stopped on the time limit: none of its later calls runs, in any worker
    folder = sandbox.private_folder(layers_path, package_dir)
    session = Session(sandbox, folder, limits)
    try:
        for run_calls, run_inputs in worker_runs(calls, inputs):
            _run_calls(list(run_calls), run_inputs, session, limits, deadline, budget, fail, values, said, hung)
    finally:
        session.close()
        shutil.rmtree(folder, ignore_errors=True)
    return values


WORKER_EXIT_SECONDS = 5.0  # for a worker to exit after its last result


class Session:
    """
    The sandbox of one submission (worker.serve_session): its workers are
    forked in it one after the other. A worker that exits (done, or dead)
    leaves the session to the next; one that hangs or breaks the protocol
    takes the whole sandbox with it, and the next worker starts a new one.
    """

    def __init__(self, sandbox, folder, limits):
        self.sandbox, self.folder, self.limits = sandbox, folder, limits
        self.run = None

    def worker(self, request):
        """A new worker given `request`: forked in the running sandbox, or in a new one."""
        if self.run is None:
            self.run = self.sandbox.start("calls", self.folder, self.limits)
        self.run.send(request)
        return self.run

    def finish(self):
        """The current worker is done: wait for its exit; a worker that does not exit takes the sandbox along."""
        if self.run is not None and not self.run.wait_exit(WORKER_EXIT_SECONDS):
            self.close()

    def close(self):
        if self.run is not None:
            self.run.close()
            self.run = None


def _function(call):
    return call["id"].split("/")[0]


def _run_calls(pending, inputs, session, limits, deadline, budget, fail, values, said, hung):
    """
    Run `pending` in workers of the session, one after the other (a fresh
    one after each failure) until done. A call of a function in `hung` (one
    of its calls stopped on the time limit, in this worker run or an earlier
    one) is not run: its function would most likely hang again.
    """
    while pending:
        for call in [c for c in pending if _function(c) in hung]:
            pending.remove(call)
            fail([call], _("was not run: an earlier call of {function} {how}").format(
                function=_function(call), how=hung[_function(call)]))
        if not pending:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            fail(pending, _("was not run: the submission used up its {budget:g} s").format(budget=budget))
            return
        run = session.worker(_request(pending, inputs, limits))
        worker_exited = False  # the worker's end was read: the session goes on
        try:
            try:
                header, _arrays = run.next_frame(min(limits.call_seconds, left))
            except WorkerDied as err:
                worker_exited = err.exited
                fail(pending, _("normlab could not be imported: it {how}").format(how=err))
                return
            if header.get("kind") != "ready":
                error = said(header.get("error", _("no answer")))
                fail(pending, (_("the sandbox could not be set up: {error}") if header.get("kind") == "setup_error"
                               else _("normlab could not be imported: {error}")).format(error=error))
                session.finish()
                worker_exited = True
                return
            while pending:
                call = pending[0]
                wait = max(0.0, min(limits.call_seconds, deadline - time.monotonic()))
                try:
                    header, arrays = run.next_frame(wait)
                except WorkerDied as err:
                    worker_exited = err.exited
                    fail([pending.pop(0)], str(err), wait if err.timed_out else 0.0)
                    if err.timed_out:
                        hung[_function(call)] = str(err)
                    break
                pending.pop(0)
                if header.get("kind") != "result" or header.get("id") != call["id"]:
                    fail([call], _("the worker sent an unexpected message"))
                    break
                if header.get("error"):
                    fail([call], _describe_error(said(header["error"]), limits), raised=_raised(header["error"]))
                else:
                    values.update(_decode_values(header, arrays, call["produces"], said))
            else:
                session.finish()  # every call answered: wait for the worker's exit
                worker_exited = True
        finally:
            if not worker_exited:  # it hangs, broke the protocol or took the sandbox down: a new sandbox
                session.close()


def _request(calls, inputs, limits):
    """
    The request frame: the hidden inputs, the calls (without what the scorer
    alone needs), the rlimits, and the worker's own messages in the current
    language (it has no catalogs).
    """
    names = sorted(inputs)
    messages = {message: _(message) for message in worker.MESSAGES if _(message) != message}
    return worker.encode_frame({"kind": "request", "names": names, "limits": limits.rlimits(), "messages": messages,
                                "calls": [{k: v for k, v in c.items() if k != "produces"} for c in calls]},
                               [inputs[n] for n in names])


def score_code(layers_path, functions, data, sandbox, limits=Limits(), package_dir=STUDENT_PACKAGE, missing=None):
    """
    {function: [checks.Result]} for the student's layers.py (None: every call
    fails with `missing`, by default that the file is missing), its messages
    in the current language.
    """
    calls = [call for function in functions for call in checks.calls_for(function)]
    if layers_path is None:
        missing = missing or layers_problem(files.Problem.MISSING)
        values = {}
        for call in calls:
            values.update({name: Failure(missing) for name in call["produces"]})
    else:
        values = collect(layers_path, calls, data.all_inputs, sandbox, limits, package_dir)
    return {function: checks.score(function, values, data) for function in functions}


# ---- inline answers -------------------------------------------------------------------


class NotLiteral(ValueError):
    """An answer cell that does not assign a literal."""


MAX_ANSWER_CHARS = 10_000


def read_answer(source, variable):
    """The literal the cell assigns to `variable` last; raises NotLiteral (or KeyError if it is not assigned)."""
    if len(source) > MAX_ANSWER_CHARS:
        raise NotLiteral(_("the answer cell is longer than {limit} characters: not read").format(
            limit=MAX_ANSWER_CHARS))
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise NotLiteral(_("the answer cell is not valid Python ({error}, line {line})").format(
            error=err.msg, line=err.lineno)) from None
    except (MemoryError, RecursionError, ValueError):
        raise NotLiteral(_("the answer cell is too deeply nested or too large to read")) from None
    found = KeyError(variable)
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
            try:
                found = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                found = NotLiteral(_("write the answer as a literal ({variable} = a string, number or dict of "
                                     "them), not an expression: answers are read, never run").format(variable=variable))
    if isinstance(found, Exception):
        raise found
    return found


def grade_answer(answer, key, points):
    """(points, message) of one answer against its key; a dict key earns points per entry."""
    if isinstance(key, dict):
        answer = answer if isinstance(answer, dict) else {}
        right = [k for k in key if answer.get(k) == key[k]]
        earned = points * len(right) / len(key)
        wrong = sorted(set(key) - set(right))
        return earned, ("" if not wrong else _("not right: {entries}").format(entries=", ".join(wrong)))
    if answer == key and type(answer) is type(key):
        return float(points), ""
    return 0.0, _("{answer} is not the answer").format(answer=repr(answer))


def answer_cells(nb):
    """{variable: source} of the answer cells (grade_id 'answer_<variable>') of a notebook."""
    cells = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if cell.get("cell_type") == "code" and grade_id.startswith("answer_"):
            cells[grade_id[len("answer_"):]] = cell.get("source", "")
    return cells


def score_answers(nb, questions, keys):
    """{question: (points, message)} for the inline questions {variable: points} of a notebook node."""
    sources = answer_cells(nb) if nb is not None else {}
    scored = {}
    for variable, points in questions.items():
        if variable not in sources:
            scored[variable] = (0.0, _("the answer cell of {variable} is missing").format(variable=variable))
            continue
        try:
            answer = read_answer(sources[variable], variable)
        except KeyError:
            scored[variable] = (0.0, _("the answer cell does not assign {variable}").format(variable=variable))
            continue
        except NotLiteral as err:
            scored[variable] = (0.0, str(err))
            continue
        scored[variable] = grade_answer(answer, keys[variable], points)
    return scored


def plain_file(path, root):
    """True if `path` is a regular file inside folder `root`, reached without following a link."""
    path, root = Path(path), Path(root)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return False
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


MAX_CELLS = 1000  # of one submitted notebook (the assignment's have 36 and 24)


def parse_notebook(data, name):
    """
    The notebook in `data` (bytes read from a submission's file `name`), or
    (None, why not). One with more than MAX_CELLS cells is refused before
    nbformat builds it: tens of thousands of empty cells took nbformat and
    nbgrader a minute, under the gradebook lock for nbgrader's part.
    """
    try:
        text = data.decode("utf-8")
        cells = json.loads(text).get("cells", [])
        if isinstance(cells, list) and len(cells) > MAX_CELLS:
            return None, _("{name} has {count} cells, more than the {limit} a submitted notebook may have").format(
                name=name, count=len(cells), limit=MAX_CELLS)
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)  # nbgrader refuses an invalid one (a cell id with a space) and fails the submission
        nbformat.writes(nb).encode("utf-8")  # and one that cannot be written back (a lone surrogate)
        return nb, ""
    except nbformat.ValidationError as err:
        return None, _("{name} is not a valid notebook ({error})").format(name=name, error=err.message[:200])
    except Exception as err:  # invalid JSON or UTF-8, not a notebook, too deep, not encodable
        return None, _("{name} could not be read as a notebook ({error})").format(name=name, error=type(err).__name__)


# ---- a notebook's graded cells (nbgrader's TrustedScores, the Gradescope runner) -------------

MAX_LAYERS_BYTES = 1 << 20
def student_layers(folder, submitted=None):
    """
    (the bytes of normlab/layers.py in `folder`, or None, and why it is not
    used), read once from one descriptor without following a link (normgrade.
    files). `submitted`: the folder nbgrader copied `folder` from; nbgrader's
    copy follows links, so the file must be a plain file there too.
    """
    data, problem = files.read_below(folder, Path(folder) / LAYERS, MAX_LAYERS_BYTES)
    if problem is None and submitted and not plain_file(Path(submitted) / LAYERS, submitted):
        problem = files.Problem.NOT_REGULAR
    return data, layers_problem(problem)


LAYERS = "normlab/layers.py"


def layers_problem(problem):
    """The note of a files.Problem of a submission's normlab/layers.py ("" for None), in the current language."""
    if problem is None:
        return ""
    return {files.Problem.MISSING: _("{path} is missing from the submission"),
            files.Problem.NOT_REGULAR: _("{path} is not a regular file inside the submission (a link?): not graded"),
            files.Problem.TOO_LARGE: _("{path} is larger than {limit} MiB: not graded")}[problem].format(
        path=LAYERS, limit=MAX_LAYERS_BYTES >> 20)


def graded_code_cells(nb):
    """{grade_id: cell} of the auto-graded code cells (tests) of a notebook."""
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            cells[meta["grade_id"]] = cell
    return cells


@functools.lru_cache(maxsize=4)
def load_expected(path, stamp):
    """The expected values at `path`, read once per version (`stamp`: its mtime and size)."""
    return ExpectedValues(path)


_SCORED = {}  # the last few submissions' scores in this process: {key: {function: [checks.Result]}}
_SCORED_KEPT = 2


def scored_code(folder, expected_path, sandbox, submitted=None):
    """
    {function: [checks.Result]} for the layers.py of the submission in
    `folder` (see student_layers). One sandboxed worker run serves all
    notebooks of a submission (nbgrader preprocesses them one by one), and
    `normgrade grade` scores a submission before it takes the gradebook:
    results are kept by the file's content (not its path), so a changed file
    is scored again and a copy elsewhere is not; and by the language their
    messages are in (normgrade.language.speaking).
    """
    layers, why = student_layers(folder, submitted)
    digest = hashlib.sha256(layers).hexdigest() if layers is not None else None
    key = (digest, why, str(expected_path), _stamp(expected_path), sandbox.description, language.current())
    if key not in _SCORED:
        _SCORED[key] = score_code(layers, checks.FUNCTIONS, load_expected(str(expected_path), key[3]), sandbox,
                                  missing=why)
        while len(_SCORED) > _SCORED_KEPT:
            del _SCORED[next(iter(_SCORED))]
    return _SCORED[key]


def _stamp(path):
    info = Path(path).stat()
    return info.st_mtime_ns, info.st_size


def load_current_expected(path):
    """The expected values at `path` as scored_code reads them (the same cache)."""
    return load_expected(str(path), _stamp(path))


def score_notebook(nb, folder, expected_path, sandbox, submitted=None, notebook=None):
    """
    {grade_id: (points, message)} for every auto-graded code cell of `nb`, a
    submission notebook whose files are in `folder`. Test cells are named
    test_<function> (normgrade.score.checks) or test_<question> (inline answers).
    `submitted` (with the notebook's name) is the folder nbgrader copied
    `folder` from: a notebook that was a link there has its answers ignored.
    """
    data = load_current_expected(expected_path)
    cells = graded_code_cells(nb)
    questions = {gid[len("test_"):]: float(cell.metadata["nbgrader"]["points"])
                 for gid, cell in cells.items() if gid[len("test_"):] in data.answer_keys}
    functions = [gid[len("test_"):] for gid in cells if gid[len("test_"):] in checks.FUNCTIONS]
    code = scored_code(folder, expected_path, sandbox, submitted) if functions else {}
    if submitted and notebook and not plain_file(Path(submitted) / f"{notebook}.ipynb", submitted):
        answers = {q: (0.0, _("the submitted notebook is not a regular file (a link?): its answers are not read"))
                   for q in questions}
    else:
        answers = score_answers(nb, questions, data.answer_keys)
    scored = {}
    for gid in cells:
        name = gid[len("test_"):]
        if name in code:
            results = code[name]
            scored[gid] = (sum(r.earned for r in results), checks.report(name, results))
        elif name in answers:
            points, why_not = answers[name]
            said = _("{name}: {points:g} / {total:g} points; {why}") if why_not else \
                _("{name}: {points:g} / {total:g} points")
            scored[gid] = (points, said.format(name=name, points=points, total=questions[name], why=why_not))
        else:
            scored[gid] = (0.0, _("{cell}: no normgrade check has this name; the cell earns nothing").format(cell=gid))
    return scored
