import numpy as np
import pytest

from normgrade.reference import load_layers


@pytest.fixture(scope="session")
def ref():
    """The reference solution, solutions/normlab/layers.py."""
    return load_layers()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def sandbox():
    """A bubblewrap sandbox; skips where user namespaces are blocked (CI has them: there it must run)."""
    import os

    from normgrade.sandbox import Sandbox, probe_bwrap

    reason = probe_bwrap()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sandbox tests: {reason}")
        pytest.skip(f"no bubblewrap sandbox here: {reason}")
    return Sandbox()


def _postgres_bin():
    """The folder of PostgreSQL's server binaries (initdb, pg_ctl), or None."""
    import glob
    import shutil
    from pathlib import Path

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture(scope="session")
def postgres():
    """
    A real PostgreSQL server of our own, in a temporary folder, listening on a
    Unix socket only; yields a function that creates a fresh database and
    returns its SQLAlchemy URL. The server refuses to run as root, so as root
    it runs as the `postgres` user. Skips with the reason where there is no
    server; CI has one, so there it must run.
    """
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile
    import uuid

    def unavailable(reason):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)

    bin_dir = _postgres_bin()
    if bin_dir is None:
        unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[test]')")
    as_user = []
    folder = tempfile.mkdtemp(prefix="normgrade-pg-")
    if os.getuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run the server as")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")

    def server(*args):
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    done = server(str(bin_dir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
    options = f"-k {folder} -c listen_addresses='' -c fsync=off -c max_connections=200"
    done = server(str(bin_dir / "pg_ctl"), "-D", data, "-o", options, "-l", os.path.join(folder, "log"), "-w", "start")
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"the PostgreSQL server did not start: {done.stderr.strip()[-500:]}")

    def new_database():
        name = f"normlab_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=folder, user="postgres", dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={folder}"

    try:
        yield new_database
    finally:
        server(str(bin_dir / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
