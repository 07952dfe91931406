"""
`normgrade report --course DIR --out report.html`: the class at a glance, in one self-contained page.

Reads the gradebook's ledger (normgrade.grade.ledger; SQLite or a PostgreSQL URL),
which holds each graded submission's result, and writes one HTML file with
its figures embedded (matplotlib, PNG as data URLs; no network needed):

- the summary: graded, failed and pending submissions, mean and quartiles;
- the score histogram;
- mean points per test, as a share of its points (what the class struggles with);
- the mistakes the checks diagnosed (normgrade.score.diagnosis), most frequent first (not a function left
  unimplemented, nor a backward pass's wrong forward pass: that is its forward's mistake);
- the grading failures, with their reasons;
- the students, with score, late penalty, status and lateness, sortable by any column (a few lines of
  inline JavaScript; the table reads fine without it).

Everything from a student (ids, messages) is HTML-escaped.
"""
import argparse
import base64
import html
import io
import json
from collections import Counter
from pathlib import Path

from normgrade.language import course_language, speaking
from normgrade.score import diagnosis
from normgrade.grade import ledger
from normgrade.course import DEFAULT_COURSE
from normgrade.grade.table import late_text
from normgrade.score.checks import NOT_OWN_MISTAKES
from normgrade.course import gradebook_url, is_course
from normgrade.results.status import summarize


def _short(text, limit=70):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _taught(mistake):
    """A diagnosis key without the parts that are not a mistake of the function itself ('' when none is left)."""
    return "; ".join(part for part in mistake.split("; ") if part not in NOT_OWN_MISTAKES)


def class_report(course, url=None):
    """The report's data: {"gradebook", "students", "tests", "mistakes", "failures", "scores", ...}."""
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course built by `normgrade release --course {course}`")
    url = gradebook_url(course, url)
    rows, gone = ledger.current_rows(url)
    results = {row["student"]: json.loads(row["result"]) if row["result"] else {} for row in rows}
    graded = [row for row in rows if row["status"] == "graded"]
    tests = {}
    mistakes = Counter()
    for row in graded:
        result = results[row["student"]]
        for test in result.get("tests", []):
            earned, total = tests.get(test["name"], (0.0, 0.0))
            tests[test["name"]] = (earned + test["score"], total + test["max_score"])
        for function, mistake in {(m["function"], _taught(m["mistake"])) for m in result.get("mistakes", [])}:
            if mistake and mistake != "raises":  # an exception is said in the failures, not a recognized mistake
                mistakes[(function, mistake)] += 1  # once per student and function
    max_score = max((row["max_score"] or 0.0) for row in graded) if graded else 0.0
    own = f"sqlite:///{(Path(course) / 'gradebook.db').resolve()}"
    with speaking(course_language(course)):  # what the students read of it: the mistakes in their words
        said = {key: diagnosis.words(key[1], key[0]) for key in mistakes}
    return {
        "gradebook": f"{Path(course).resolve().name}/gradebook.db (SQLite)" if url == own else ledger.safe_url(url),
        "students": [{"student": row["student"], "status": row["status"], "score": row["score"],
                      "max_score": row["max_score"], "attempts": row["attempts"],
                      "late": late_text(results[row["student"]]),
                      "penalty": results[row["student"]].get("penalty") or 0.0} for row in rows],
        "scores": summarize([row["score"] for row in graded], max_score),
        "tests": [{"name": name, "share": earned / total if total else 0.0, "mean": earned / len(graded),
                   "points": total / len(graded)} for name, (earned, total) in sorted(tests.items())],
        "mistakes": [{"function": function, "mistake": mistake, "said": said[function, mistake],
                      "count": count} for (function, mistake), count in mistakes.most_common()],
        "failures": [{"student": row["student"], "error": results[row["student"]].get("error", "")}
                     for row in rows if row["status"] == "failed"],
        "removed": gone,
        "counts": {status: sum(row["status"] == status for row in rows) for status in ("graded", "failed", "running")},
        "similarity": _similarity_summary(course),
    }


def _similarity_summary(course):
    """What the last `normgrade similarity` found (its page, threshold and flagged pairs), or None."""
    from normgrade.results.similarity import summary_path

    try:
        return json.loads(summary_path(course).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _figure_data_url(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def histogram_figure(scores):
    """The score histogram (a matplotlib Figure) of summarize()'s scores; its count axis has whole students only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 3.2))
    lows = [low for low, _, _ in scores["histogram"]]
    widths = [high - low for low, high, _ in scores["histogram"]]
    axes.bar(lows, [n for _, _, n in scores["histogram"]], width=widths, align="edge", color="#4c72b0",
             edgecolor="white")
    axes.set(xlabel=f"auto-graded score after late penalties (out of {scores['max_score']:g})", ylabel="students",
             title="Score distribution")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def figures(data):
    """{name: PNG data URL} of the report's plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    made = {}
    scores = data["scores"]
    if scores["count"]:
        figure = histogram_figure(scores)
        made["histogram"] = _figure_data_url(figure)
        plt.close(figure)
    if data["tests"]:
        figure, axes = plt.subplots(figsize=(7, 0.32 * len(data["tests"]) + 1))
        worst_first = sorted(data["tests"], key=lambda t: (t["share"], t["name"]))  # what the class struggles with
        names = [t["name"].split("/", 1)[-1].removeprefix("test_") for t in worst_first]
        shares = [100 * t["share"] for t in worst_first]
        axes.barh(names, shares, color=["#c44e52" if s < 50 else "#55a868" for s in shares])
        axes.set(xlim=(0, 100), xlabel="mean points, % of the test's points", title="Points per test")
        axes.invert_yaxis()
        made["tests"] = _figure_data_url(figure)
        plt.close(figure)
    if data["mistakes"]:
        from normgrade.score.reference import course_normlab

        course_normlab()  # the mistakes are said in the course's language: the students' fonts for Chinese
        from normlab.i18n import plot_fonts

        top = data["mistakes"][:12]
        with plt.rc_context({"font.family": plot_fonts(plt.rcParams["font.family"])}):
            figure, axes = plt.subplots(figsize=(7, 0.32 * len(top) + 1))
            axes.barh([_short(f"{m['function']}: {m['said']}") for m in top], [m["count"] for m in top],
                      color="#dd8452")
            axes.set(xlabel="students", title="Most frequent recognized mistakes")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole students
            axes.invert_yaxis()
            made["mistakes"] = _figure_data_url(figure)
            plt.close(figure)
    return made


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }
th { cursor: pointer; background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.failed { color: #a00; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], column = th.cellIndex;
  const ascending = th.dataset.order !== "ascending";
  th.dataset.order = ascending ? "ascending" : "descending";
  const key = row => { const text = row.cells[column].textContent; const n = parseFloat(text);
                       return isNaN(n) ? text : n; };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (ascending ? 1 : -1))
    .forEach(row => body.appendChild(row));
}));
"""


def render_html(data, images):
    """The report page (a str): data from class_report, images from figures."""
    e = html.escape
    scores, counts = data["scores"], data["counts"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>normlab class report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>Class report: normalization</h1>",
             f"<p id='summary'>{counts['graded']} graded, {counts['failed']} failed, {counts['running']} interrupted "
             f"(graded again by the next run). Gradebook: <code>{e(data['gradebook'])}</code>.</p>"]
    if scores["count"]:
        parts.append(f"<p>Auto-graded scores out of {scores['max_score']:g}: mean {scores['mean']:g}, median "
                     f"{scores['median']:g}, quartiles {scores['q1']:g} and {scores['q3']:g}, from {scores['min']:g} "
                     f"to {scores['max']:g}.</p>")
    for name, title in (("histogram", "Scores"), ("tests", "What the class struggles with"),
                        ("mistakes", "Recognized mistakes")):
        if name in images:
            parts.append(f"<h2>{title}</h2><img id='figure-{name}' alt='{title}' src='{images[name]}'>")
    if data["removed"]:
        parts.append(f"<p id='removed'>Not counted: {e(', '.join(data['removed']))} (graded, but no longer in the "
                     "gradebook: removed with <code>nbgrader db student remove</code>?).</p>")
    similar = data.get("similarity")
    if similar:
        pairs = "".join(f"<li>{e(p['a'])} and {e(p['b'])}: {p['similarity']:.2f}</li>" for p in similar["flagged"][:20])
        parts.append(f"<h2>Similarity</h2><p id='similarity'>{len(similar['flagged'])} of {similar['pairs']} pairs "
                     f"at or above {similar['threshold']:g} (<code>normgrade similarity</code>: "
                     f"<a href='{e(Path(similar['page']).as_uri())}'>{e(similar['page'])}</a>). A reason to look, never "
                     f"proof.</p>" + (f"<ul>{pairs}</ul>" if pairs else ""))
    if data["mistakes"]:
        parts.append("<table class='sortable' id='mistakes'><thead><tr><th>function</th><th>mistake</th>"
                     "<th>students</th></tr></thead><tbody>")
        for m in data["mistakes"]:  # in the words the students read; the short key on hover
            parts.append(f"<tr><td>{e(m['function'])}</td><td title='{e(m['mistake'])}'>{e(m['said'])}</td>"
                         f"<td class='number'>{m['count']}</td></tr>")
        parts.append("</tbody></table>")
    if data["failures"]:
        parts.append("<h2>Grading failures</h2><table id='failures'><thead><tr><th>student</th><th>why</th></tr>"
                     "</thead><tbody>")
        for f in data["failures"]:
            parts.append(f"<tr><td>{e(f['student'])}</td><td class='failed'>{e((f['error'] or '')[:500])}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("<h2>Students</h2><p>Click a column to sort.</p><table class='sortable' id='students'><thead><tr>"
                 "<th>student</th><th>score</th><th>out of</th><th>late penalty</th><th>status</th><th>late</th>"
                 "<th>attempts</th></tr></thead><tbody>")
    for s in data["students"]:
        score = "" if s["score"] is None else f"{s['score']:g}"
        out_of = "" if s["max_score"] is None else f"{s['max_score']:g}"
        parts.append(f"<tr><td>{e(s['student'])}</td><td class='number'>{score}</td><td class='number'>{out_of}"
                     f"</td><td class='number'>{s['penalty']:g}</td><td>{e(s['status'])}</td><td>{e(s['late'])}</td>"
                     f"<td class='number'>{s['attempts']}</td></tr>")
    parts.append(f"</tbody></table><script>{SORT_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_report(course, out, url=None):
    """Write the report of the course's gradebook to `out`; return its data."""
    data = class_report(course, url)
    Path(out).write_text(render_html(data, figures(data)), encoding="utf-8")
    return data


def add_parser(subparsers):
    parser = subparsers.add_parser("report", help="a self-contained HTML report of the class, with plots",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=DEFAULT_COURSE, help=f"the course (default ./{DEFAULT_COURSE})")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the page to write (default report.html)")
    parser.add_argument("--db-url", metavar="URL", help="the gradebook (default: as `normgrade grade`)")
    parser.set_defaults(run=run)


def run(args):
    data = write_report(args.course, args.out, args.db_url)
    kinds = len(data["mistakes"])
    print(f"{args.out}: {data['counts']['graded']} graded, {data['counts']['failed']} failed, "
          f"{kinds} kind{'' if kinds == 1 else 's'} of recognized mistake{'' if kinds == 1 else 's'}")
    return 0
