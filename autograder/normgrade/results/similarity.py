"""
normgrade similarity: which submissions' code looks copied, from a classmate, an earlier term or the web.

    normgrade similarity --course DIR [--against FOLDER...] [--out similarity.html] [--threshold S]

Compares the code each student wrote in normlab/layers.py with every
classmate's and with every .py file under the --against folders (earlier
terms' submissions, public solutions), using copydetect's winnowing
fingerprints, the algorithm MOSS uses. A file counts whole, docstrings aside,
so code hidden in a class, a branch or an exec'd literal string is compared
too; the stub's own lines (the provided layers, the input checks) are
boilerplate and never count. Comments, whitespace and names do not count (a
name is a name), and reordered functions match as they are. Everything runs
here; no code is sent anywhere.

A pair's similarity is the larger of the two shares of code found in the
other (so padding a copy with dead code does not hide it), each share taken
of at least MIN_CODE (so a student who wrote two short textbook functions is
not "96 % found" in everybody); but two files whose own lines are at least
IDENTICAL alike as written (names and comments kept) are a copy however short
they are, and score that. A pair is flagged at THRESHOLD (default 0.5,
chosen on tests/test_similarity.py's evidence: disguised copies and
independent implementations). The page ranks the pairs, shows both sides with
the matching code highlighted and a score per graded function; a JSON file of
the same data is written beside it, and normgrade report summarizes it.
Similarity is a reason to look, never proof: correct normalization code is
short and converges, and edits that keep the code's meaning but change its
tokens (operands swapped, x.mean() for np.mean(x), assignments merged) can
bring a copy below the threshold, as with MOSS.
"""
import argparse
import ast
import difflib
import html
import io
import itertools
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from normgrade import files
from normgrade.grade import ledger
from normgrade.score.checks import FUNCTIONS
from normgrade.course import ASSIGNMENT_ID, gradebook_url, is_course, paths
from normgrade.paths import STUDENT_PACKAGE

THRESHOLD = 0.5  # chosen on the evidence of tests/test_similarity.py (docs/integrity.md)
NOISE = 25  # copydetect's k: matches shorter than 25 characters of normalized code are noise
GUARANTEE = 25  # a match this long is always found (window = GUARANTEE - NOISE + 1)
MAX_BYTES = 1 << 20  # as normgrade grade's limit on layers.py


@dataclass
class Document:
    """One layers.py: a graded submission (kind "submission") or a file of an --against folder ("reference")."""

    name: str
    kind: str
    code: str = ""  # the file's code without docstrings (what the stub has too is left to the boilerplate)
    spans: tuple = ()  # ((function, start, end), ...): where each function lies in `code`
    problem: str = ""  # why it could not be compared ("" when it could)
    notes: tuple = ()  # what in it cannot be compared (code run from a string built at run time)
    fingerprint: object = field(default=None, repr=False)
    own_lines: tuple = ()  # its code's lines as written (names and comments kept), blank ones and the stub's aside


EXEC_CALLS = ("exec", "eval", "compile")
# Bidirectional-text controls: shown as escapes, so a name cannot display as another.
BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"))


def shown(text):
    """`text` as the page and the terminal show it: bidi controls and undecodable bytes as escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(f"\\u{ord(c):04x}" if ord(c) in BIDI else c for c in text)


def written_code(text):
    """
    (code, spans, notes) of a layers.py: all of its code but docstrings (the
    stub's own lines, provided functions included, are removed later as
    boilerplate, so what is left is what the student wrote, wherever it is:
    in a function, a class, a branch or at the top level), the code of
    literal strings it runs with exec / eval / compile appended; spans, the
    lines of each graded function ((function, start, end) in `code`); notes,
    what cannot be compared (code built at run time). Raises SyntaxError
    (also for what is too deep to parse).
    """
    try:
        tree = ast.parse(text)
    except (RecursionError, MemoryError) as err:
        raise SyntaxError(f"too deeply nested to parse ({err.__class__.__name__})") from None
    lines = text.splitlines(keepends=True)
    dropped, notes, extra = set(), [], []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
                isinstance(body[0].value.value, str):
            dropped.update(range(body[0].lineno - 1, body[0].end_lineno))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in EXEC_CALLS:
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                extra.append(argument.value)
            else:
                notes.append(f"runs code built at run time ({node.func.id} on line {node.lineno}): that code is "
                             "not compared")
    kept = [line if index not in dropped else "\n" for index, line in enumerate(lines)]
    code = "".join(kept) + "".join("\n\n" + piece for piece in extra)
    starts = [0]
    for line in kept:
        starts.append(starts[-1] + len(line))
    spans = tuple((node.name, starts[node.lineno - 1], starts[node.end_lineno])
                  for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.name in FUNCTIONS)
    return code, spans, tuple(notes)


def _fingerprint(name, code, boilerplate=None):
    from copydetect import CodeFingerprint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CodeFingerprint(name, NOISE, GUARANTEE - NOISE + 1, boilerplate=boilerplate, fp=io.StringIO(code),
                               language="python")


@dataclass(frozen=True)
class Boilerplate:
    """What the stubs have (docstrings aside): their fingerprints never count as shared, their lines as anyone's."""
    hashes: np.ndarray
    lines: frozenset


def stub_boilerplate(*stub_texts):
    """The Boilerplate of the stubs' layers.py texts (default: the English stub; a course adds its own language's)."""
    codes = [written_code(text)[0] for text in stub_texts or [(STUDENT_PACKAGE / "layers.py").read_text()]]
    hashes = set().union(*(_fingerprint("stub", code).hashes for code in codes))
    return Boilerplate(np.array(sorted(hashes), dtype=np.int64),
                       frozenset(line.strip() for code in codes for line in code.splitlines()))


def document(name, kind, text, boilerplate):
    """A Document of one layers.py text, `boilerplate` (stub_boilerplate) aside; a problem where it does not parse."""
    try:
        code, spans, notes = written_code(text)
    except (SyntaxError, ValueError) as err:
        return Document(name, kind, problem=f"not compared: it is not valid Python ({err.__class__.__name__})")
    fingerprint = _fingerprint(name, code, boilerplate.hashes)
    if not fingerprint.hashes:
        return Document(name, kind, problem="not compared: nothing of its own beyond the stub", notes=notes)
    own = tuple(line for line in (raw.strip() for raw in code.splitlines()) if line and line not in boilerplate.lines)
    return Document(name, kind, code, spans, notes=notes, fingerprint=fingerprint, own_lines=own)


# A share is taken of at least this much code (copydetect's token coverage, in characters of normalized code;
# the most compact full implementation of the evidence has 1,414): a student who wrote two short functions,
# in the few lines everybody writes, is not "96 % found" in every classmate (tests/test_similarity.py: 528
# independent pairs of partial submissions, highest 0.42).
MIN_CODE = 1200
# But a copy is a copy whatever its length: two files whose own lines, as written (names, comments and layout
# kept, which independent students do not share), are this alike are flagged on that, however short, as long
# as each has MIN_IDENTICAL_LINES of its own (a few canonical lines can coincide).
IDENTICAL = 0.9
MIN_IDENTICAL_LINES = 10


@dataclass(frozen=True)
class Pair:
    a: Document
    b: Document
    shares: tuple  # (a's code found in b, b's found in a), each of at least MIN_CODE
    slices: tuple  # (a's matching character ranges, b's), each a 2 x n array
    functions: dict  # function -> (share of its code matching in a, in b); graded functions only
    identical: float = 0.0  # how alike their own lines are as written (difflib's ratio), where both have enough

    @property
    def similarity(self):
        return max(self.shares)


def _coverage(slices, spans):
    """{function: share of its characters inside `slices`}."""
    covered = {}
    for function, start, end in spans:
        inside = sum(max(0, min(e, end) - max(s, start)) for s, e in zip(*slices))
        covered[function] = inside / max(1, end - start)
    return covered


def compare(a, b):
    """The Pair of two compared Documents."""
    from copydetect import compare_files

    _, found, slices = compare_files(a.fingerprint, b.fingerprint)
    slices = tuple(np.asarray(s, dtype=int).reshape(2, -1) for s in slices)
    # copydetect's share is of each side's own code; here of at least MIN_CODE.
    shares = [share * d.fingerprint.token_coverage / max(d.fingerprint.token_coverage, MIN_CODE)
              for share, d in zip(found, (a, b))]
    cover_a, cover_b = _coverage(slices[0], a.spans), _coverage(slices[1], b.spans)
    functions = {f: (cover_a.get(f, 0.0), cover_b.get(f, 0.0)) for f in FUNCTIONS if f in cover_a or f in cover_b}
    identical = 0.0
    if min(len(a.own_lines), len(b.own_lines)) >= MIN_IDENTICAL_LINES:
        identical = difflib.SequenceMatcher(None, a.own_lines, b.own_lines, autojunk=False).ratio()
    if identical >= IDENTICAL:  # a copy as written: its length does not hide it
        shares = [max(share, identical) for share in shares]
    return Pair(a, b, (float(shares[0]), float(shares[1])), slices, functions, identical)


def compare_all(submissions, references):
    """Every pair of submissions and every submission with every reference, most similar first."""
    comparable = [d for d in submissions if not d.problem]
    against = [d for d in references if not d.problem]
    pairs = [compare(a, b) for a, b in itertools.combinations(comparable, 2)]
    pairs += [compare(a, b) for a in comparable for b in against]
    return sorted(pairs, key=lambda p: (-p.similarity, p.a.name, p.b.name))


# ---- the course's submissions and the folders to compare with -------------------------------


def course_documents(course, boilerplate, url=None):
    """The Documents of the graded submissions: each student's staged normlab/layers.py (the code graded)."""
    rows, _ = ledger.current_rows(gradebook_url(course, url))
    staged = paths(course)["staged"]
    found = []
    for row in sorted(rows, key=lambda r: r["student"]):
        if row["status"] != "graded":
            continue
        found.append(_read(row["student"], "submission", staged,
                           staged / row["student"] / ASSIGNMENT_ID / "normlab" / "layers.py", boilerplate))
    return found


def _read(name, kind, root, path, boilerplate):
    """The Document of the file `path` inside `root`, read once by descriptor, no link followed."""
    try:
        data, problem = files.read_below(root, path, MAX_BYTES)
    except OSError as err:  # unreadable, a link on the way
        return Document(name, kind, problem=f"not compared: {err.strerror or err}")
    if problem:
        return Document(name, kind, problem=f"not compared: layers.py {problem.value}" if kind == "submission"
                        else f"not compared: {problem.value}")
    return document(name, kind, data.decode("utf-8", "replace"), boilerplate)


def folder_documents(folder, boilerplate):
    """
    The Documents of every .py file under `folder`, named by the folder as
    given and their path inside it; no link followed; a file or folder that
    cannot be read is listed with the reason.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"--against {shown(str(folder))}: no such folder")
    if not folder.is_dir():
        raise ValueError(f"--against {shown(str(folder))}: not a folder (give the folder that holds the .py files)")
    found = []

    def named(path):  # the folder as given, then the path inside it
        return shown(f"{folder.as_posix()}/{Path(path).relative_to(folder).as_posix()}")

    def unreadable(err):
        name = named(err.filename) if err.filename else shown(folder.as_posix())
        found.append(Document(name, "reference", problem=f"not compared: {err.strerror or err}"))

    for top, folders, names in os.walk(folder, onerror=unreadable):
        folders.sort()
        for path in (Path(top) / n for n in sorted(names) if n.endswith(".py")):
            found.append(_read(named(path), "reference", folder, path, boilerplate))
    return found


def similarity(course, against=(), url=None, threshold=THRESHOLD):
    """{"threshold", "documents", "pairs"} for the course's graded submissions and the --against folders."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the threshold must be above 0 and at most 1, not {threshold:g}")
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course built by `normgrade release --course {course}`")
    course_stub = paths(course)["source"] / "normlab" / "layers.py"  # in the course's language: its comments too
    boilerplate = stub_boilerplate((STUDENT_PACKAGE / "layers.py").read_text(),
                                   *([course_stub.read_text(encoding="utf-8")] if course_stub.is_file() else []))
    references = [d for folder in against for d in folder_documents(folder, boilerplate)]
    submissions = course_documents(course, boilerplate, url)
    return {"threshold": threshold, "documents": submissions + references,
            "pairs": compare_all(submissions, references)}


def as_json(result):
    """The JSON form: documents (name, kind, problem) and pairs (names, scores, flagged), most similar first."""
    return {
        "threshold": result["threshold"],
        "documents": [{"name": d.name, "kind": d.kind, "problem": d.problem, "notes": list(d.notes)}
                      for d in result["documents"]],
        "pairs": [{"a": p.a.name, "b": p.b.name, "b_kind": p.b.kind, "similarity": round(p.similarity, 4),
                   "shares": [round(s, 4) for s in p.shares], "identical": round(p.identical, 4),
                   "flagged": p.similarity >= result["threshold"],
                   "functions": {f: [round(x, 4) for x in v] for f, v in p.functions.items()}}
                  for p in result["pairs"]],
    }


# ---- the page -------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}.number{text-align:right}
.sides{display:flex;gap:1em}.side{flex:1;min-width:0}pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:85%}
mark{background:#ffd27f}.flagged{background:#ffe9e9}.note{border-left:4px solid #c60;padding-left:1em}"""
SHOWN = 50  # pairs shown with their code, at most


BLANK_RUN = re.compile(r"\n(?:[ \t]*\n){2,}")  # three line ends or more with nothing between: a docstring was there


def _shown_code(text):
    return html.escape(BLANK_RUN.sub("\n\n", text))


def _highlighted(doc, slices):
    """The document's code, escaped, with the matching ranges in <mark>; runs of blank lines shown as one."""
    out, at = [], 0
    for start, end in sorted(zip(*slices)):
        start, end = max(start, at), max(end, at)
        out.append(_shown_code(doc.code[at:start]))
        out.append(f"<mark>{_shown_code(doc.code[start:end])}</mark>")
        at = end
    out.append(_shown_code(doc.code[at:]))
    return "".join(out)


def render_html(result):
    """The page (a str): every student-provided text escaped, nothing loaded from the network."""
    e = html.escape
    threshold, pairs = result["threshold"], result["pairs"]
    flagged = [p for p in pairs if p.similarity >= threshold]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>normlab similarity</title>",
             f"<style>{STYLE}</style></head><body><h1>Similarity: normalization</h1>",
             "<p class='note'><strong>Similarity is a reason to look, never proof.</strong> Correct normalization "
             "code is short and converges; two students who both write the textbook formulas share much of it. "
             "Read both sides before concluding anything.</p>",
             f"<p id='summary'>{len(flagged)} of {len(pairs)} pairs at or above the threshold {threshold:g} "
             f"(the larger share of either side's code found in the other; comments, whitespace and names do not "
             f"count, nor the stub's own lines; two files whose own lines are at least {IDENTICAL:.0%} alike as "
             "written, names and comments included, are flagged however short they are).</p>"]
    skipped = [d for d in result["documents"] if d.problem or d.notes]
    if skipped:
        parts.append("<h2>Not compared, or not all of it</h2><ul id='skipped'>" + "".join(
            f"<li>{e(d.name)}: {e('; '.join(filter(None, (d.problem, *d.notes))))}</li>" for d in skipped) + "</ul>")
    parts.append("<h2>Pairs</h2><table id='pairs'><thead><tr><th>#</th><th>first</th><th>second</th>"
                 "<th>similarity</th><th>shares</th></tr></thead><tbody>")
    for index, p in enumerate(pairs[:500], 1):
        css = " class='flagged'" if p.similarity >= threshold else ""
        link = f"<a href='#pair-{index}'>{index}</a>" if index <= SHOWN else str(index)
        parts.append(f"<tr{css}><td>{link}</td><td>{e(p.a.name)}</td><td>{e(p.b.name)} ({e(p.b.kind)})</td>"
                     f"<td class='number'>{p.similarity:.3f}</td>"
                     f"<td class='number'>{p.shares[0]:.3f} / {p.shares[1]:.3f}</td></tr>")
    parts.append("</tbody></table>")
    for index, p in enumerate(pairs[:SHOWN], 1):
        if p.similarity < min(threshold, 0.2):
            break
        rows = "".join(f"<tr><td>{e(f)}</td><td class='number'>{a:.2f}</td><td class='number'>{b:.2f}</td></tr>"
                       for f, (a, b) in p.functions.items())
        parts.append(
            f"<h2 id='pair-{index}'>{index}. {e(p.a.name)} and {e(p.b.name)}: {p.similarity:.3f}</h2>"
            f"<table class='functions'><thead><tr><th>function</th><th>{e(p.a.name)}</th><th>{e(p.b.name)}</th></tr>"
            f"</thead><tbody>{rows}</tbody></table><div class='sides'>"
            f"<div class='side'><h3>{e(p.a.name)}</h3><pre>{_highlighted(p.a, p.slices[0])}</pre></div>"
            f"<div class='side'><h3>{e(p.b.name)}</h3><pre>{_highlighted(p.b, p.slices[1])}</pre></div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def summary_path(course):
    """Where the last run's summary is kept, for normgrade report: the course's staff folder."""
    return paths(course)["staged"].parent / "similarity.json"


def write(course, out, against=(), url=None, threshold=THRESHOLD):
    """Write the page to `out`, its JSON beside it (out.json) and the course's summary; return the JSON data."""
    out = Path(out)
    if out.suffix.lower() != ".html" or out.is_dir():
        raise ValueError(f"--out {out}: give the page's file name, ending in .html (its JSON goes beside it)")
    result = similarity(course, against, url, threshold)
    data = as_json(result)
    out.write_text(render_html(result), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    summary = {"page": str(out.resolve()), "threshold": threshold, "pairs": len(data["pairs"]),
               "flagged": [{k: p[k] for k in ("a", "b", "similarity")} for p in data["pairs"] if p["flagged"]]}
    summary_path(course).write_text(json.dumps(summary), encoding="utf-8")
    return data


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "similarity", help="which submissions look copied (from classmates, earlier terms, public code)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path("course"), help="the course (default ./course)")
    parser.add_argument("--against", type=Path, nargs="*", default=[], metavar="FOLDER",
                        help="folders of earlier terms' submissions or public solutions (every .py file in them)")
    parser.add_argument("--out", type=Path, default=Path("similarity.html"),
                        help="the page to write (default similarity.html; its JSON goes beside it)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"the similarity at which a pair is flagged (default {THRESHOLD})")
    parser.add_argument("--db-url", metavar="URL", help="the gradebook (default: as `normgrade grade`)")
    parser.set_defaults(run=run)


def run(args):
    data = write(args.course, args.out, args.against, args.db_url, args.threshold)
    flagged = [p for p in data["pairs"] if p["flagged"]]
    print(f"{args.out}: {len(flagged)} of {len(data['pairs'])} pairs at or above {args.threshold:g} "
          f"(a reason to look, never proof); JSON in {args.out.with_suffix('.json')}")
    for p in flagged[:20]:
        print(f"  {p['similarity']:.3f}  {p['a']}  {p['b']}")
    return 0
