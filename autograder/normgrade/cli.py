"""The `normgrade` command: staff tooling for the normalization assignment."""
import argparse
import sys
import warnings

from . import autograde, demo, expected, export, feedback, gradescope, release, report, similarity, status, stubs

COMMANDS = (stubs, expected, release, autograde, status, report, similarity, feedback, export, gradescope, demo)


def build_parser():
    parser = argparse.ArgumentParser(prog="normgrade", description=__doc__)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None):
    # nbgrader's own Gradebook.update_or_create_submission triggers these SQLAlchemy notices on every submission.
    warnings.filterwarnings("ignore", message="Object of type <Submitted", module="nbgrader")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # SandboxUnavailable is a RuntimeError
        print(f"normgrade: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
