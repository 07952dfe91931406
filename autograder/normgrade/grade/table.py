"""The table `normgrade grade` prints, and text from students made safe for a terminal."""
import re
import textwrap


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text):
    """Text from a student (messages include what their code raised) without terminal control characters."""
    return _CONTROL.sub("?", str(text))


def duration(seconds):
    """Seconds as a short text: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def late_text(result):
    """A submission's lateness for the table: '', 'time unknown', '3 h 05 min late' with ', -3.6 points'."""
    if result.get("status") == "failed" or "late_seconds" not in result:
        return ""
    if result["late_seconds"] is None:
        return "time unknown"
    if not result["late_seconds"]:
        return ""
    penalty = f", -{result['penalty']:g} points" if result.get("penalty") else ""
    return f"{duration(result['late_seconds'])} late{penalty}"


TABLE_WIDTH = 110


def _lost_lines(test):
    """
    A test that lost points, for the table: its first lost check in full
    (the message's own words, diagnosis included, wrapped between words,
    never cut), and how many more the feedback and --json hold.
    """
    items = [" ".join(part.split()) for part in re.split(r"\n\s*- ", printable(test["message"]))[1:]]
    items = items or [" ".join(printable(test["message"]).split())]
    more = f" (and {len(items) - 1} more: see the feedback, or --json)" if len(items) > 1 else ""
    head = f"  {test['name']}: {test['score']:g} / {test['max_score']:g}  "
    wrapped = textwrap.wrap(items[0] + more, width=TABLE_WIDTH - len(head), break_long_words=False,
                            break_on_hyphens=False) or [""]
    return [head + wrapped[0]] + textwrap.wrap(" ".join(wrapped[1:]), width=TABLE_WIDTH - 6, initial_indent="      ",
                                               subsequent_indent="      ", break_long_words=False,
                                               break_on_hyphens=False)


def format_table(document):
    """A readable table of the results, with the messages of lost points (control characters shown as ?)."""
    lines = [f"graded in: {document.get('sandbox', '?')}"]
    if document.get("due"):
        lines.append(f"due: {document['due']}")
    lines += [f"note: {printable(note)}" for note in document.get("notes", [])]
    rows = document["submissions"]
    paths_shown = {id(r): re.sub(r"\s", " ", printable(r["path"])) for r in rows}  # students name the folders
    width = max([len(shown) for shown in paths_shown.values()] + [10])
    late_column = bool(document.get("due")) or any(r.get("penalty") for r in rows)
    lines.append(f"{'submission':<{width}}  {'score':>13}  {'seconds':>7}  {'status':<9}" + "  late" * late_column)
    for r in rows:
        lines.append(f"{paths_shown[id(r)]:<{width}}  {r['score']:>6g} / {r['max_score']:<4g}  {r.get('seconds', 0):>7.1f}"
                     f"  {r.get('status', ''):<9}" + f"  {late_text(r)}" * late_column)
    for r in rows:
        lost = [t for t in r["tests"] if t["score"] < t["max_score"]]
        if r.get("error") or lost or r.get("notes"):
            lines.append("")
            lines.append(f"{paths_shown[id(r)]} ({r['student']}):")
        if r.get("error"):
            lines.append(f"  grading failed: {printable(r['error'].splitlines()[0])}")
        for note in r.get("notes", []):
            lines.append(f"  note: {printable(note)}")
        for t in lost:
            lines += _lost_lines(t)
    for entry in document.get("skipped", []):
        lines.append(f"skipped: {printable(entry['path'])}: {printable(entry['why'])}")
    counts = {status: sum(r.get("status") == status for r in rows) for status in ("graded", "unchanged", "failed")}
    lines += ["", f"{counts['graded']} graded, {counts['unchanged']} unchanged since they were graded "
                  f"(--regrade grades them again), {counts['failed']} failed"]
    for r in rows:
        if r.get("status") == "failed":
            lines.append(f"  failed: {paths_shown[id(r)]}: {printable(r.get('error', '').splitlines()[0] if r.get('error') else '')}")
    if document.get("interrupted"):
        lines.append(f"interrupted: {len(document['interrupted'])} submissions not graded; run the same command "
                     "again to grade them (what was graded is kept)")
    return "\n".join(lines)
