"""
Benchmark, a simulation on one machine: a Dask cluster grading into one PostgreSQL gradebook.

A course of 10,000 grades on a cluster. The sandboxed scoring and nbgrader's
conversion run on the Dask workers and share nothing, so they scale with the
workers' cores. What every worker shares is the gradebook server and the
scheduler: this benchmark measures what each submission costs them, with the
real `normgrade grade --dask` (a LocalCluster of worker processes, a real
PostgreSQL server, the real sandbox) on a generated class:

- throughput: submissions per second, in all and per worker;
- the PostgreSQL server's CPU time per submission (its processes' own time
  from /proc, the postmaster's finished children included);
- connections opened per submission (pg_stat_database.sessions), the most
  open at once (pg_stat_activity, sampled), and transactions per submission;
- the scheduler's own cost per task: a no-op task's round trip through the
  same cluster, measured in the same run.

From these it prints where one server stops scaling: a server of C cores
serves at most C / (its CPU per submission) submissions per second, and each
grading thread holds one connection while it grades (normgrade.grade.gradebooks).

    python benchmarks/bench_dask.py [--size 40] [--workers 2] [--write benchmarks/DASK.md]
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pgserver import PostgresUnavailable, TemporaryPostgres  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from normgrade.grade import ledger  # noqa: E402
from normgrade.grade.class_run import grade  # noqa: E402
from normgrade.course import paths  # noqa: E402
from normgrade.score.notebooks import answer_keys, source_notebooks  # noqa: E402
from normgrade.build.release import build_course  # noqa: E402
from normgrade.build.samples import make_class  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(server):
    """CPU seconds the PostgreSQL server has used: its live processes, and its finished backends."""
    postmaster = int(Path(server.folder, "data", "postmaster.pid").read_text().split()[0])
    total = 0
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent, utime, stime, cutime, cstime = int(fields[1]), *map(int, fields[11:15])
        if int(pid) == postmaster:
            total += utime + stime + cutime + cstime
        elif parent == postmaster:
            total += utime + stime
    return total / CLOCK_TICKS


def database_counters(server, name):
    import psycopg

    with psycopg.connect(host=server.folder, user="postgres", dbname="postgres", autocommit=True) as connection:
        row = connection.execute("SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database "
                                 "WHERE datname = %s", (name,)).fetchone()
    return {"sessions": row[0], "transactions": row[1]}


class ConnectionSampler(threading.Thread):
    """The most connections open at once to one database, sampled every 20 ms."""

    def __init__(self, server, name):
        super().__init__(daemon=True)
        self.server, self.name, self.most, self.stopped = server, name, 0, threading.Event()

    def run(self):
        import psycopg

        with psycopg.connect(host=self.server.folder, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            while not self.stopped.wait(0.02):
                count = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                           (self.name,)).fetchone()[0]
                self.most = max(self.most, count)


def _noop(value):
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40, help="submissions in the class")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (one thread each)")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help="a class of 2 on 1 worker: the test suite's check that the benchmark still runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.workers = 2, 1

    from distributed import Client, LocalCluster

    work = Path(tempfile.mkdtemp(prefix="normgrade-bench-dask-"))
    try:
        course = work / "course"
        build_course(course, prove=False)
        klass = work / "class"
        make_class(paths(course)["release"], klass, args.size, answer_keys(source_notebooks(paths(course)["source"])))
        for layers in klass.glob("*/normlab/layers.py"):  # a Dask worker keeps scores by content: none repeats
            layers.write_text(layers.read_text() + f"\n# {layers.parent.parent.name}\n")
        try:
            server = TemporaryPostgres().__enter__()
        except PostgresUnavailable as err:
            raise SystemExit(f"this benchmark needs a PostgreSQL server: {err}")
        try:
            url = server.new_database()
            name = make_url(url).database
            with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                tasks = 200 if args.quick else 2000
                start = time.perf_counter()
                client.gather(client.map(_noop, range(tasks), pure=False))
                per_task = (time.perf_counter() - start) / tasks

                ledger.prepare(course, url)  # the gradebook's one-time setup is not a submission's cost
                sampler = ConnectionSampler(server, name)
                cpu_before = server_cpu_seconds(server)
                counters_before = database_counters(server, name)
                sampler.start()
                start = time.perf_counter()
                document = grade([klass], course, url=url, dask=cluster.scheduler_address)
                seconds = time.perf_counter() - start
                sampler.stopped.set()
                sampler.join()
                cpu = server_cpu_seconds(server) - cpu_before
                counters = {k: v - counters_before[k] for k, v in database_counters(server, name).items()}
        finally:
            server.__exit__(None, None, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    graded = [s for s in document["submissions"] if s["status"] == "graded"]
    if len(graded) != args.size:
        raise SystemExit(f"{args.size - len(graded)} submissions were not graded: "
                         + "; ".join(s.get("error", "")[:300] for s in document["submissions"] if s["status"] != "graded"))
    size = args.size
    server_ms = 1000 * cpu / size
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (the server, the scheduler and the workers share "
        f"them), Python {platform.python_version()}, {platform.system()} {platform.release()}.",
        f"Command: `python benchmarks/bench_dask.py --size {size} --workers {args.workers}`",
        "",
        f"A class of {size} (the reference, the stubs and typical mistakes in turn, each layers.py made unique so that no score is reused) graded by `normgrade grade "
        f"--dask` on a LocalCluster of {args.workers} worker process(es), one thread each, into one PostgreSQL "
        "gradebook, from empty.",
        "",
        "| what | value |",
        "| --- | ---: |",
        f"| whole run | {seconds:.1f} s |",
        f"| submissions per second | {size / seconds:.2f} |",
        f"| submissions per second per worker | {size / seconds / args.workers:.2f} |",
        f"| PostgreSQL server CPU per submission | {server_ms:.1f} ms |",
        f"| connections opened per submission | {counters['sessions'] / size:.1f} |",
        f"| most connections open at once | {sampler.most} |",
        f"| transactions per submission | {counters['transactions'] / size:.0f} |",
        f"| scheduler round trip of a no-op task (same cluster) | {1000 * per_task:.2f} ms |",
        "",
        f"One server core serves at most {1000 / server_ms:.0f} submissions per second of this gradebook work "
        f"(1 / its CPU per submission); {10000 * server_ms / 1000 / 60:.1f} server-core minutes for 10,000. "
        f"The scheduler adds {1000 * per_task:.2f} ms per task: {10000 * per_task:.0f} s for 10,000 tasks, "
        "spread over the run.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text("# Grading on a Dask cluster into one PostgreSQL gradebook\n\n" + text + "\n")


if __name__ == "__main__":
    main()
