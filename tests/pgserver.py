"""
A throwaway PostgreSQL server for the tests and the class benchmark.

initdb and pg_ctl (the server binaries: on PATH, or Debian's
/usr/lib/postgresql/<version>/bin) run a cluster in a temporary folder that
listens on a Unix socket there only, with trust authentication. The server
refuses to run as root, so as root it runs as the `postgres` user.

    with TemporaryPostgres() as server:
        url = server.new_database()   # postgresql+psycopg://postgres@/<name>?host=<folder>
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No server can run here; the message says why."""


def server_binaries():
    """The folder of initdb and pg_ctl, or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(versions[-1]).parent if versions else None


class TemporaryPostgres:
    def __init__(self):
        self.bin = server_binaries()
        if self.bin is None:
            raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable("psycopg is not installed (pip install -e '.[test]')") from None
        self.as_user = []
        if os.getuid() == 0:
            try:
                self.account = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and there is no `postgres` user to run the server as") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.folder = None

    def _run(self, *args):
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)

    def __enter__(self):
        self.folder = tempfile.mkdtemp(prefix="normgrade-pg-")
        if self.as_user:
            os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)
        data = os.path.join(self.folder, "data")
        done = self._run(str(self.bin / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--no-sync")
        if done.returncode == 0:
            options = f"-k {self.folder} -c listen_addresses='' -c fsync=off -c max_connections=200"
            done = self._run(str(self.bin / "pg_ctl"), "-D", data, "-o", options,
                             "-l", os.path.join(self.folder, "log"), "-w", "start")
        if done.returncode:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise PostgresUnavailable(f"the PostgreSQL server did not start: {done.stderr.strip()[-500:]}")
        return self

    def new_database(self):
        import psycopg

        name = f"normlab_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=self.folder, user="postgres", dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={self.folder}"

    def __exit__(self, *exc):
        self._run(str(self.bin / "pg_ctl"), "-D", os.path.join(self.folder, "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
