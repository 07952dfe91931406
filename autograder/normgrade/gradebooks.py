"""
One database engine per gradebook while `normgrade grade` grades a submission.

nbgrader opens a new Gradebook for each step of its autograde (about 18 for
this assignment's two notebooks), and each one creates an SQLAlchemy engine,
connects, lists the tables, checks every one of them (create_all), compiles
its SQL anew (the compiled-statement cache is the engine's) and disposes of
it all on close. On PostgreSQL each of those is a new server connection.

Within shared_engines(), every Gradebook opened in this process on the same
database URL uses one engine: the first runs nbgrader's own __init__ (the
table checks included), then the engine it leaves is ours, with
pool_pre_ping (a connection the server dropped while idle, as a Dask
worker's pool may hold between tasks, is replaced, never used). Engines are
disposed of when the last shared_engines() of the process ends. A Gradebook
gets its own session, as nbgrader's does; closing it ends that session and
keeps the engine. A Gradebook opened outside, or in a process forked from
one inside, is nbgrader's own. Reference-counted and locked, so threads of
one Dask worker can grade side by side. Plain `nbgrader autograde` never
enters it. tests/test_class_run.py holds the gradebooks written with and
without it to be the same, row for row.
"""
import contextlib
import os
import threading

_LOCK = threading.Lock()  # the state below
_FIRST = threading.Lock()  # one first __init__ at a time: one engine per URL, never two
_STATE = {"depth": 0, "pid": None, "engines": {}, "original": None, "courses": set()}
_INHERITED = []  # a forked child's copies of its parent's engines: kept, so that collecting them never
# closes the parent's connections


def _shared_init(self, db_url, course_id="default_course", authenticator=None):
    """Gradebook.__init__ on the process's engine for db_url (nbgrader's own __init__ for the first)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import scoped_session, sessionmaker

    original_init, _ = _STATE["original"]
    if _STATE["pid"] != os.getpid():  # forked from a process inside shared_engines: nbgrader's own
        original_init(self, db_url, course_id, authenticator)
        return
    with _FIRST:
        with _LOCK:
            engine = _STATE["engines"].get(db_url)
        if engine is None:
            original_init(self, db_url, course_id, authenticator)  # creates the tables if need be
            self.db.remove()
            self.engine.dispose()
            engine = create_engine(db_url, echo=False, future=True, pool_pre_ping=True)
            with _LOCK:
                _STATE["engines"][db_url] = engine
    self.engine = engine
    self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))
    if (db_url, course_id) not in _STATE["courses"]:  # nbgrader's check_course queries and commits each time
        self.check_course(course_id=course_id)
        with _LOCK:
            _STATE["courses"].add((db_url, course_id))
    self.course_id = course_id
    self.authenticator = authenticator
    self._normgrade_shared = True


def _shared_close(self):
    """Gradebook.close without disposing of a shared engine (nbgrader's own close for any other)."""
    if getattr(self, "_normgrade_shared", False):
        self.db.remove()
    else:
        _STATE["original"][1](self)


@contextlib.contextmanager
def shared_engines():
    """Within it, nbgrader's Gradebooks in this process share one engine per database URL."""
    from nbgrader.api import Gradebook

    with _LOCK:
        if _STATE["pid"] != os.getpid():  # a forked child starts afresh; the parent's engines are its own
            _INHERITED.extend(_STATE["engines"].values())
            _STATE.update(depth=0, pid=os.getpid(), engines={}, courses=set())
        if _STATE["original"] is None:  # nbgrader's own, kept once: a fork may copy a patched class
            _STATE["original"] = (Gradebook.__init__, Gradebook.close)
        if _STATE["depth"] == 0:
            Gradebook.__init__, Gradebook.close = _shared_init, _shared_close
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            engines = []
            if _STATE["depth"] == 0:
                Gradebook.__init__, Gradebook.close = _STATE["original"]
                engines = list(_STATE["engines"].values())
                _STATE["engines"], _STATE["courses"] = {}, set()
        for engine in engines:
            engine.dispose()
