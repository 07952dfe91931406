"""The `normgrade` command: staff tooling for the normalization assignment."""
import argparse
import importlib
import sys
import warnings

# command -> the module that implements it (its add_parser and run). Only the chosen command's module is
# imported: grading one submission does not pay for the report's plots or the similarity check.
COMMANDS = {"stubs": "build.stubs", "expected": "score.expected", "release": "build.release",
            "grade": "grade.autograde", "status": "results.status", "report": "results.report",
            "similarity": "results.similarity", "feedback": "results.feedback", "export": "results.export",
            "gradescope": "platforms.gradescope", "demo": "build.demo"}


def build_parser(only=None):
    """The parser of every command, or of the command `only` alone (the others are not imported)."""
    parser = argparse.ArgumentParser(prog="normgrade", description=__doc__)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command, module in COMMANDS.items():
        if only in (None, command):
            importlib.import_module(f"normgrade.{module}").add_parser(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # nbgrader's own Gradebook.update_or_create_submission triggers these SQLAlchemy notices on every submission.
    warnings.filterwarnings("ignore", message="Object of type <Submitted", module="nbgrader")
    chosen = next((a for a in argv if not a.startswith("-")), None)  # no top-level option takes a value
    args = build_parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # SandboxUnavailable is a RuntimeError
        print(f"normgrade: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
