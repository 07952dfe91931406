"""
Benchmarks that cannot rot: each runs here in its quick mode (seconds to a minute, no figure asserted),
so a refactor that breaks one fails the suite. `make bench-grading` was broken for a whole issue once
and nothing noticed.
"""
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
pytestmark = pytest.mark.slow


def _run(tmp_path, script, *args, timeout=600):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_bench_layers_runs(tmp_path):
    pytest.importorskip("torch")
    out = _run(tmp_path, "bench_layers.py", "--repeats", "1", "--write", str(tmp_path / "RESULTS.md"))
    assert "| layer | dtype |" in out
    assert (tmp_path / "RESULTS.md").is_file()


def test_bench_grading_runs(tmp_path, sandbox):
    out = _run(tmp_path, "bench_grading.py", "--quick", "--write", str(tmp_path / "GRADING.md"))
    assert "ratio to bare numpy start" in out and (tmp_path / "GRADING.md").is_file()


def test_bench_class_runs(tmp_path, sandbox):
    out = _run(tmp_path, "bench_class.py", "--quick", "--write", str(tmp_path / "CLASS.md"))
    assert "submissions / minute" in out and (tmp_path / "CLASS.md").is_file()


def test_bench_dask_runs(tmp_path, sandbox, postgres):
    out = _run(tmp_path, "bench_dask.py", "--quick", "--write", str(tmp_path / "DASK.md"))
    assert "PostgreSQL server CPU per submission" in out and (tmp_path / "DASK.md").is_file()


def test_bench_gradescope_runs(tmp_path, sandbox):
    out = _run(tmp_path, "bench_gradescope.py", "--quick", "--write", str(tmp_path / "GRADESCOPE.md"))
    assert "ratio to bare numpy start" in out and (tmp_path / "GRADESCOPE.md").is_file()
