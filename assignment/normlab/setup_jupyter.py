"""
Set up JupyterLab for this assignment, once, in the course's environment:

    python -m normlab.setup_jupyter          (from the normalization/ folder)

nbgrader, in the environment, gives JupyterLab the Assignments tab (fetch,
submit) and the Validate button; it also brings panels that are for course
staff (Formgrader, Create Assignment, the course list), which a student
never needs. This turns those off with Jupyter's own commands (`jupyter
labextension disable`, `jupyter server extension disable`) for this
environment only (its sys.prefix). Restart JupyterLab afterwards.
"""
import subprocess
import sys

from normlab.i18n import _

# nbgrader's JupyterLab plugins and server extensions that are for staff.
STAFF_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:course-list")
STAFF_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")


def commands():
    """
    The Jupyter commands that turn the staff panels off (argv lists): `jupyter
    labextension disable` and `jupyter server extension disable`, each run as
    its module with this Python (`jupyter X` would run the first jupyter-X on
    the PATH, maybe another environment's).
    """
    lab = [sys.executable, "-m", "jupyterlab.labextensions", "disable", "--level=sys_prefix"]
    server = [sys.executable, "-m", "jupyter_server.extension.serverextension", "disable", "--sys-prefix"]
    return [lab + [plugin] for plugin in STAFF_PLUGINS] + [server + [name] for name in STAFF_SERVER_EXTENSIONS]


def main():
    for command in commands():
        done = subprocess.run(command, capture_output=True, text=True)
        said = (done.stdout + done.stderr).strip()
        if done.returncode != 0 or "Validation failed" in said:
            print(_("{command} failed:").format(command=" ".join(command[2:])) + f"\n{said}", file=sys.stderr)
            return 1
    print(_("JupyterLab is set up for the assignment: the Assignments tab and Validate, no staff panels. Restart "
            "JupyterLab if it is running."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
