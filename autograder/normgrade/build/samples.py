"""Sample submissions: a release copy with chosen layers.py and inline answers filled in."""
import shutil
from pathlib import Path

import nbformat

from normgrade.score.mutants import BY_NAME, mutate
from normgrade.paths import SOLUTION_LAYERS

# The mistakes of the demo's "typical mistakes" submission (compatible mutants).
TYPICAL_MISTAKES = ("unbiased_variance", "test_drops_affine", "gradient_keepdims", "alt_wrong_sign", "interleaved_groups")


def make_submission(release_dir, dest, layers_source=None, answers=None):
    """
    Copy the student release (release/normalization) to dest, optionally put
    layers_source into normlab/layers.py, and fill the inline answers
    {variable: value} into their answer cells, as a student would.
    """
    dest = Path(dest)
    shutil.copytree(release_dir, dest, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    if layers_source is not None:
        (dest / "normlab" / "layers.py").write_text(layers_source)
    for path in sorted(dest.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            variable = grade_id.removeprefix("answer_")
            if grade_id.startswith("answer_") and answers and variable in answers:
                cell.source = f"{variable} = {answers[variable]!r}\n"
        nbformat.write(nb, path)
    return dest


def reference_layers():
    return SOLUTION_LAYERS.read_text()


def mutant_layers(*names):
    """The reference with the patches of several mutants applied."""
    source = reference_layers()
    for name in names:
        source = mutate(source, BY_NAME[name])
    return source


def make_class(release_dir, root, size, keys, first=0):
    """
    A class folder of `size` submissions s<index>_<kind>: the reference (with
    the answer keys), the bare stubs (no answers) and the typical mistakes
    (with the keys), in turn. Returns the folders.
    """
    from normgrade.paths import STUB_LAYERS

    kinds = [("reference", reference_layers(), keys), ("stubs", STUB_LAYERS.read_text(), {}),
             ("mistakes", mutant_layers(*TYPICAL_MISTAKES), keys)]
    folders = []
    for index in range(first, first + size):
        name, source, answers = kinds[index % 3]
        folders.append(make_submission(release_dir, Path(root) / f"s{index:03d}_{name}", source, answers))
    return folders
