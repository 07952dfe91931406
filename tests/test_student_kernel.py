"""
What a student meets in a running Jupyter kernel (a real one, through
jupyter_client), with the notebooks' own setup cell: an edit to
normlab/layers.py is seen by the next cell without a restart (IPython's
autoreload, as CS231n's notebooks load it), and the progress bar warns of
nothing, with or without ipywidgets.
"""
import shutil
import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

from normgrade.paths import NOTEBOOKS, SOLUTION_LAYERS, STUDENT_PACKAGE

pytestmark = pytest.mark.slow


@pytest.fixture
def kernel(tmp_path):
    """A python3 kernel in a folder holding the release's student package; yields run(code) -> (stdout, stderr)."""
    shutil.copytree(STUDENT_PACKAGE, tmp_path / "normlab")
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))

    def run(code):
        client.execute(code)
        out, err = [], []
        while True:
            msg = client.get_iopub_msg(timeout=120)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (err if content["name"] == "stderr" else out).append(content["text"])
            elif kind == "error":
                err.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out), "".join(err)

    run.folder = tmp_path
    try:
        yield run
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def setup_cell(name):
    """The notebook's first code cell (its imports and setup), as the student runs it."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    return next(cell.source for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.parametrize("name, function", [("BatchNormalization", "batchnorm_forward"),
                                            ("SpatialNormalization", "spatial_groupnorm_forward")])
def test_an_edit_to_layers_is_seen_without_a_restart(kernel, name, function):
    out, err = kernel(setup_cell(name))
    assert "Error" not in err, err
    out, _ = kernel(f"check({function!r})")
    assert "is not implemented yet" in out
    time.sleep(1.1)  # a new modification time, whatever the file system's resolution
    shutil.copy(SOLUTION_LAYERS, kernel.folder / "normlab" / "layers.py")
    out, err = kernel(f"check({function!r})")
    assert "is not implemented yet" not in out and "FAILED" not in out and "passed" in out, out + err


@pytest.mark.parametrize("widgets", [True, False])
def test_training_shows_its_progress_without_a_warning(kernel, widgets):
    if not widgets:  # a student environment without ipywidgets (once: TqdmWarning: IProgress not found)
        kernel("import sys; sys.modules['ipywidgets'] = None")
    shutil.copy(SOLUTION_LAYERS, kernel.folder / "normlab" / "layers.py")
    out, err = kernel(setup_cell("BatchNormalization"))
    assert not err.strip(), err
    out, err = kernel(
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from normlab.fc_net import FullyConnectedNet\n"
        "    from normlab.solver import Solver\n"
        "    model = FullyConnectedNet([20], input_dim=64, num_classes=10, normalization='batchnorm')\n"
        "    small = {k: v[:200] for k, v in data.items()}\n"
        "    Solver(model, small, num_epochs=1, batch_size=50, progress=True, verbose=False).train()\n"
        "print('warnings:', [str(w.message) for w in caught])\n")
    assert "warnings: []" in out and "Warning" not in err, out + err
