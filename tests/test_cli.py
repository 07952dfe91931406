"""The `normgrade` command line: every command is there, and running one imports only its own module."""
import argparse
import subprocess
import sys

from normgrade import cli


def _commands(parser):
    return list(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_each_command_is_registered_by_its_module_under_its_name():
    for command in cli.COMMANDS:
        assert _commands(cli.build_parser(only=command)) == [command]
    assert _commands(cli.build_parser()) == list(cli.COMMANDS)


def _modules_after(*argv):
    code = ("import sys\nfrom normgrade import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('normgrade.', 'nbgrader', 'copydetect',"
            " 'matplotlib')))))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    return set(done.stdout.split()), done.stderr


def test_a_command_imports_its_own_module_and_not_the_others():
    modules, _ = _modules_after("gradescope", "--help")
    assert "normgrade.platforms.gradescope" in modules
    assert not modules & {"normgrade.grade.autograde", "normgrade.grade.class_run", "normgrade.grade.grading", "normgrade.results.report", "normgrade.results.similarity", "normgrade.build.release",
                          "normgrade.build.demo", "copydetect", "matplotlib", "nbgrader"}, sorted(modules)
    modules, _ = _modules_after("status", "--help")
    assert "normgrade.results.status" in modules and "normgrade.results.similarity" not in modules and "copydetect" not in modules


def test_the_help_without_a_command_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert all(command in done.stdout for command in cli.COMMANDS)
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "no-such-command"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "invalid choice: 'no-such-command'" in done.stderr
