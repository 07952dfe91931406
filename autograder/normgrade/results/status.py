"""
`normgrade status --course DIR [PATH...]`: where a class run stands, from the gradebook.

Counts the submissions graded, failed and pending (left `running` by a run
that was stopped, and, given the class folders as PATHs, those no run has
reached yet), lists the failures with their reasons, and summarizes the
auto-graded scores (after late penalties): count, mean, quartiles and a histogram,
and lists the late submissions and those whose submission time is unknown.

    {"gradebook": URL, "graded": n, "failed": n, "pending": n,
     "failures": [{"student", "error"}], "removed": [...] (graded, no longer in the gradebook),
     "pending_students": [...],
     "late": [{"student", "late_seconds", "penalty"}], "time_unknown": [student...],
     "students": [{"student", "status", "score", "max_score", "penalty"}],
     "scores": {"count", "max_score", "mean", "min", "q1", "median", "q3", "max", "histogram": [[low, high, n]...]}}
"""
import argparse
import json
import statistics
from pathlib import Path

from normgrade.grade import ledger
from normgrade.course import DEFAULT_COURSE
from normgrade.grade.submissions import discover
from normgrade.grade.table import duration, printable
from normgrade.course import gradebook_url, is_course

BINS = 10


def class_status(course, url=None, paths_given=()):
    """The status document of the course's gradebook (see the module docstring)."""
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course built by `normgrade release --course {course}`")
    url = gradebook_url(course, url)
    rows, gone = ledger.current_rows(url)
    result_of = {row["student"]: json.loads(row["result"]) if row["result"] else {} for row in rows}
    by_status = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    known = {row["student"] for row in rows}
    found, _, skipped = discover(paths_given) if paths_given else ([], {}, [])
    unseen = [student for student, *_ in found if student not in known]
    graded = by_status.get("graded", [])
    graded_results = [(row, result_of[row["student"]]) for row in graded]
    return {
        "gradebook": ledger.safe_url(url),
        "graded": len(graded),
        "failed": len(by_status.get("failed", [])),
        "pending": len(by_status.get("running", [])) + len(unseen),
        "failures": [{"student": row["student"], "error": result_of[row["student"]].get("error", "")}
                     for row in by_status.get("failed", [])],
        "removed": gone,
        "pending_students": sorted([row["student"] for row in by_status.get("running", [])] + unseen),
        "skipped": [{"path": path, "why": why} for path, why in skipped],  # in the PATHs, never graded as they are
        "late": [{"student": row["student"], "late_seconds": result["late_seconds"], "penalty": result["penalty"]}
                 for row, result in graded_results if result.get("late_seconds")],
        "students": [{"student": row["student"], "status": row["status"], "score": row["score"],
                      "max_score": row["max_score"], "penalty": result_of[row["student"]].get("penalty") or 0.0}
                     for row in rows],
        "time_unknown": [row["student"] for row, result in graded_results
                         if "late_seconds" in result and result["late_seconds"] is None],
        "scores": summarize([row["score"] for row in graded], max((row["max_score"] or 0) for row in graded)
                            if graded else 0.0),
    }


def summarize(scores, max_score):
    """Count, mean, quartiles and a BINS-bin histogram over [0, max_score] of a list of scores."""
    if not scores:
        return {"count": 0, "max_score": max_score}
    ordered = sorted(scores)
    q1, median, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    width = (max_score or 1.0) / BINS
    counts = [0] * BINS
    for score in ordered:
        counts[min(int(score / width), BINS - 1)] += 1
    return {"count": len(ordered), "max_score": max_score, "mean": round(statistics.fmean(ordered), 3),
            "min": ordered[0], "q1": q1, "median": median, "q3": q3, "max": ordered[-1],
            "histogram": [[round(i * width, 3), round((i + 1) * width, 3), n] for i, n in enumerate(counts)]}


def format_status(document):
    lines = [f"gradebook: {document['gradebook']}",
             f"{document['graded']} graded, {document['failed']} failed, {document['pending']} pending"]
    scores = document["scores"]
    if scores["count"]:
        lines.append(f"scores (auto-graded, out of {scores['max_score']:g}): mean {scores['mean']:g}, "
                     f"min {scores['min']:g}, quartiles {scores['q1']:g} / {scores['median']:g} / {scores['q3']:g}, "
                     f"max {scores['max']:g}")
        peak = max(n for _, _, n in scores["histogram"])
        for low, high, n in scores["histogram"]:
            lines.append(f"  {low:>6g} - {high:<6g} {'#' * round(40 * n / peak) if peak else ''} {n}")
    if document["students"]:
        width = max(len("student"), *(len(printable(s["student"])) for s in document["students"]))
        lines.append(f"{'student':<{width}}  {'score':>13}  status")
        for s in document["students"]:
            score = "" if s["score"] is None or s["status"] != "graded" else \
                f"{s['score']:>6g} / {s['max_score']:<4g}"
            penalty = f"  (late penalty {s['penalty']:g})" if s["penalty"] else ""
            lines.append(f"{printable(s['student']):<{width}}  {score:>13}  {s['status']}{penalty}")
    for failure in document["failures"]:
        first_line = (failure["error"] or "?").splitlines()[0]
        lines.append(f"failed: {failure['student']}: {first_line[:200]}")
    if document.get("removed"):
        lines.append("not counted (graded, but no longer in the gradebook: `nbgrader db student remove`?): "
                     + ", ".join(printable(s) for s in document["removed"]))
    if document["pending_students"]:
        lines.append("pending: " + ", ".join(document["pending_students"]))
    for entry in document.get("skipped", []):  # what `normgrade grade` skips in those folders, and why
        lines.append(f"skipped: {printable(entry['path'])}: {entry['why']}")
    for entry in document["late"]:
        penalty = f", -{entry['penalty']:g} points" if entry["penalty"] else ""
        lines.append(f"late: {entry['student']}: {duration(entry['late_seconds'])}{penalty}")
    if document["time_unknown"]:
        lines.append("submission time unknown (no late penalty applied; see each one's note): "
                     + ", ".join(document["time_unknown"]))
    return "\n".join(lines)


def add_parser(subparsers):
    parser = subparsers.add_parser("status", help="how many submissions are graded, failed, pending; the scores",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="PATH", help="class folders, to count submissions not reached yet")
    parser.add_argument("--course", type=Path, default=DEFAULT_COURSE, help=f"the course (default ./{DEFAULT_COURSE})")
    parser.add_argument("--db-url", metavar="URL", help="the gradebook (default: as `normgrade grade`)")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.set_defaults(run=run)


def run(args):
    document = class_status(args.course, args.db_url, args.paths)
    print(json.dumps(document, indent=2) if args.json else format_status(document))
    return 0
