"""Where the parts of the course live in this repository."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT = REPO / "assignment"
STUDENT_PACKAGE = ASSIGNMENT / "normlab"
STUB_LAYERS = STUDENT_PACKAGE / "layers.py"
SOLUTION_LAYERS = REPO / "solutions" / "normlab" / "layers.py"
NOTEBOOKS = REPO / "notebooks"
ENVIRONMENT = REPO / "environment.yml"
