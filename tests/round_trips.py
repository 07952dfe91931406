"""Counting what grading asks of the gradebook: tests/test_autograded.py and benchmarks/bench_grading.py."""


def round_trips(function, *args):
    """(SQL statements, commits) every SQLAlchemy engine of this process issued while function(*args) ran."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts = {"statements": 0, "commits": 0}

    def statement(*_):
        counts["statements"] += 1

    def commit(*_):
        counts["commits"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", commit)
    try:
        function(*args)
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Engine, "commit", commit)
    return counts["statements"], counts["commits"]
