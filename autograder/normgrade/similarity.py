"""
normgrade similarity: which submissions' code looks copied, from a classmate, an earlier term or the web.

    normgrade similarity --course DIR [--against FOLDER...] [--out similarity.html] [--threshold S]

Compares the code each student wrote in normlab/layers.py (the graded
functions, their docstrings left out, and any function of their own; the
provided code never counts, and the stub's lines inside the graded functions
are boilerplate) with every classmate's, and with every .py file under the
--against folders (earlier terms' submissions, public solutions), using
copydetect's winnowing fingerprints, the algorithm MOSS uses: comments,
whitespace and names do not count (a name is a name), reordered functions
match as they are. Everything runs here; no code is sent anywhere.

A pair's similarity is the larger of the two shares of code found in the
other (so padding a copy with dead code does not hide it); a pair is flagged
at THRESHOLD (default 0.5, chosen on tests/test_similarity.py's evidence:
disguised copies and independent implementations). The page ranks the pairs,
shows both sides with the matching code highlighted and a score per graded
function; a JSON file of the same data is written beside it, and
normgrade report summarizes it. Similarity is a reason to look, never proof:
correct normalization code is short and converges.
"""
import argparse
import ast
import html
import io
import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files, ledger
from .checks import FUNCTIONS
from .course import ASSIGNMENT_ID, gradebook_url, is_course, paths
from .paths import STUDENT_PACKAGE

THRESHOLD = 0.5  # chosen on the evidence of tests/test_similarity.py (README: "Similarity")
NOISE = 25  # copydetect's k: matches shorter than 25 characters of normalized code are noise
GUARANTEE = 25  # a match this long is always found (window = GUARANTEE - NOISE + 1)
MAX_BYTES = 1 << 20  # as normgrade grade's limit on layers.py
SUMMARY_NAME = "similarity.json"  # in the course's staff folder: what normgrade report summarizes


@dataclass
class Document:
    """One layers.py: a graded submission (kind "submission") or a file of an --against folder ("reference")."""

    name: str
    kind: str
    code: str = ""  # the student-written code (graded functions without docstrings, and the student's own)
    spans: tuple = ()  # ((function, start, end), ...): where each function lies in `code`
    problem: str = ""  # why it could not be compared ("" when it could)
    fingerprint: object = field(default=None, repr=False)


def written_code(text, provided):
    """
    (code, spans) of the functions a student wrote in a layers.py: the graded
    ones (docstrings left out) and any top-level function not in `provided`
    (the names the stub defines), in the file's order. Raises SyntaxError.
    """
    tree = ast.parse(text)
    parts, spans, start = [], [], 0
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if node.name in provided and node.name not in FUNCTIONS:
            continue
        source = ast.get_source_segment(text, node) or ""
        docstring = ast.get_docstring(node, clean=False)
        if docstring is not None:
            first = node.body[0]
            lines = source.splitlines(keepends=True)
            offset = first.lineno - node.lineno
            source = "".join(lines[:offset] + lines[first.end_lineno - node.lineno + 1:])
        parts.append(source + "\n\n")
        spans.append((node.name, start, start + len(source)))
        start += len(source) + 2
    return "".join(parts), tuple(spans)


def _fingerprint(name, code, boilerplate=None):
    from copydetect import CodeFingerprint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CodeFingerprint(name, NOISE, GUARANTEE - NOISE + 1, boilerplate=boilerplate, fp=io.StringIO(code),
                               language="python")


def stub_boilerplate(stub_text=None):
    """The fingerprints of the stub's graded functions: the provided lines in them never count as shared."""
    stub_text = stub_text if stub_text is not None else (STUDENT_PACKAGE / "layers.py").read_text()
    code, _ = written_code(stub_text, set())
    return np.array(sorted(_fingerprint("stub", code).hashes), dtype=np.int64)


def provided_names(stub_text=None):
    stub_text = stub_text if stub_text is not None else (STUDENT_PACKAGE / "layers.py").read_text()
    return {node.name for node in ast.parse(stub_text).body if isinstance(node, ast.FunctionDef)}


def document(name, kind, text, boilerplate, provided):
    """A Document of one layers.py text (a problem instead of code where it does not parse)."""
    try:
        code, spans = written_code(text, provided)
    except (SyntaxError, ValueError) as err:
        return Document(name, kind, problem=f"not compared: it is not valid Python ({err.__class__.__name__})")
    if not code.strip():
        return Document(name, kind, problem="not compared: no function of its own")
    return Document(name, kind, code, spans, fingerprint=_fingerprint(name, code, boilerplate))


@dataclass(frozen=True)
class Pair:
    a: Document
    b: Document
    shares: tuple  # (share of a's code found in b, share of b's found in a)
    slices: tuple  # (a's matching character ranges, b's), each a 2 x n array
    functions: dict  # function -> (share of its code matching in a, in b); graded functions only

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

    _, shares, slices = compare_files(a.fingerprint, b.fingerprint)
    slices = tuple(np.asarray(s, dtype=int).reshape(2, -1) for s in slices)
    cover_a, cover_b = _coverage(slices[0], a.spans), _coverage(slices[1], b.spans)
    functions = {f: (cover_a.get(f, 0.0), cover_b.get(f, 0.0)) for f in FUNCTIONS if f in cover_a or f in cover_b}
    return Pair(a, b, (float(shares[0]), float(shares[1])), slices, functions)


def compare_all(submissions, references):
    """Every pair of submissions and every submission with every reference, most similar first."""
    comparable = [d for d in submissions if not d.problem]
    against = [d for d in references if not d.problem]
    pairs = [compare(a, b) for a, b in itertools.combinations(comparable, 2)]
    pairs += [compare(a, b) for a in comparable for b in against]
    return sorted(pairs, key=lambda p: (-p.similarity, p.a.name, p.b.name))


# ---- the course's submissions and the folders to compare with -------------------------------


def course_documents(course, boilerplate, provided, url=None):
    """The Documents of the graded submissions: each student's staged normlab/layers.py (the code graded)."""
    rows, _ = ledger.current_rows(gradebook_url(course, url))
    staged = paths(course)["staged"]
    found = []
    for row in sorted(rows, key=lambda r: r["student"]):
        if row["status"] != "graded":
            continue
        data, problem = files.read_below(staged, staged / row["student"] / ASSIGNMENT_ID / "normlab" / "layers.py",
                                         MAX_BYTES)
        if problem:
            found.append(Document(row["student"], "submission", problem=f"not compared: layers.py {problem.value}"))
            continue
        found.append(document(row["student"], "submission", data.decode("utf-8", "replace"), boilerplate, provided))
    return found


def folder_documents(folder, boilerplate, provided):
    """The Documents of every .py file under `folder` (no link followed), named by their path inside it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--against {folder}: no such folder")
    found = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        name = f"{folder.name}/{relative.as_posix()}"
        data, problem = files.read_below(folder, path, MAX_BYTES)
        if problem:
            found.append(Document(name, "reference", problem=f"not compared: {problem.value}"))
        else:
            found.append(document(name, "reference", data.decode("utf-8", "replace"), boilerplate, provided))
    return found


def similarity(course, against=(), url=None, threshold=THRESHOLD):
    """{"threshold", "documents", "pairs"} for the course's graded submissions and the --against folders."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the threshold must be above 0 and at most 1, not {threshold:g}")
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course built by `normgrade release --course {course}`")
    boilerplate, provided = stub_boilerplate(), provided_names()
    submissions = course_documents(course, boilerplate, provided, url)
    references = [d for folder in against for d in folder_documents(folder, boilerplate, provided)]
    return {"threshold": threshold, "documents": submissions + references,
            "pairs": compare_all(submissions, references)}


def as_json(result):
    """The JSON form: documents (name, kind, problem) and pairs (names, scores, flagged), most similar first."""
    return {
        "threshold": result["threshold"],
        "documents": [{"name": d.name, "kind": d.kind, "problem": d.problem} for d in result["documents"]],
        "pairs": [{"a": p.a.name, "b": p.b.name, "b_kind": p.b.kind, "similarity": round(p.similarity, 4),
                   "shares": [round(s, 4) for s in p.shares], "flagged": p.similarity >= result["threshold"],
                   "functions": {f: [round(x, 4) for x in v] for f, v in p.functions.items()}}
                  for p in result["pairs"]],
    }


# ---- the page -------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}.number{text-align:right}
.sides{display:flex;gap:1em}.side{flex:1;min-width:0}pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:85%}
mark{background:#ffd27f}.flagged{background:#ffe9e9}.note{border-left:4px solid #c60;padding-left:1em}"""
SHOWN = 50  # pairs shown with their code, at most


def _highlighted(doc, slices):
    """The document's code, escaped, with the matching ranges in <mark>."""
    out, at = [], 0
    for start, end in sorted(zip(*slices)):
        start, end = max(start, at), max(end, at)
        out.append(html.escape(doc.code[at:start]))
        out.append(f"<mark>{html.escape(doc.code[start:end])}</mark>")
        at = end
    out.append(html.escape(doc.code[at:]))
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
             f"count, nor the stub's own lines).</p>"]
    skipped = [d for d in result["documents"] if d.problem]
    if skipped:
        parts.append("<h2>Not compared</h2><ul id='skipped'>" + "".join(
            f"<li>{e(d.name)}: {e(d.problem)}</li>" for d in skipped) + "</ul>")
    parts.append("<h2>Pairs</h2><table id='pairs'><thead><tr><th>#</th><th>first</th><th>second</th>"
                 "<th>similarity</th><th>shares</th></tr></thead><tbody>")
    for index, p in enumerate(pairs[:500], 1):
        css = " class='flagged'" if p.similarity >= threshold else ""
        link = f"<a href='#pair-{index}'>{index}</a>" if index <= SHOWN else str(index)
        parts.append(f"<tr{css}><td>{link}</td><td>{e(p.a.name)}</td><td>{e(p.b.name)} ({e(p.b.kind)})</td>"
                     f"<td class='number'>{p.similarity:.2f}</td>"
                     f"<td class='number'>{p.shares[0]:.2f} / {p.shares[1]:.2f}</td></tr>")
    parts.append("</tbody></table>")
    for index, p in enumerate(pairs[:SHOWN], 1):
        if p.similarity < min(threshold, 0.2):
            break
        rows = "".join(f"<tr><td>{e(f)}</td><td class='number'>{a:.2f}</td><td class='number'>{b:.2f}</td></tr>"
                       for f, (a, b) in p.functions.items())
        parts.append(
            f"<h2 id='pair-{index}'>{index}. {e(p.a.name)} and {e(p.b.name)}: {p.similarity:.2f}</h2>"
            f"<table class='functions'><thead><tr><th>function</th><th>{e(p.a.name)}</th><th>{e(p.b.name)}</th></tr>"
            f"</thead><tbody>{rows}</tbody></table><div class='sides'>"
            f"<div class='side'><h3>{e(p.a.name)}</h3><pre>{_highlighted(p.a, p.slices[0])}</pre></div>"
            f"<div class='side'><h3>{e(p.b.name)}</h3><pre>{_highlighted(p.b, p.slices[1])}</pre></div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(course, out, against=(), url=None, threshold=THRESHOLD):
    """Write the page to `out`, its JSON beside it (out.json) and the course's summary; return the JSON data."""
    result = similarity(course, against, url, threshold)
    data = as_json(result)
    out = Path(out)
    out.write_text(render_html(result), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    summary = {"page": str(out.resolve()), "threshold": threshold, "pairs": len(data["pairs"]),
               "flagged": [{k: p[k] for k in ("a", "b", "similarity")} for p in data["pairs"] if p["flagged"]]}
    (paths(course)["staged"].parent / SUMMARY_NAME).write_text(json.dumps(summary), encoding="utf-8")
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
        print(f"  {p['similarity']:.2f}  {p['a']}  {p['b']}")
    return 0
