"""The ``lakehouse`` command line: ``shell``, ``sql``, ``demo`` and ``features``.

Errors print one line on stderr (``Error: ...``) and exit with code 1; ``--debug`` (before
or after the sub-command) prints the traceback first.
"""

from __future__ import annotations

import argparse
import os
import sys


def default_warehouse() -> str:
    """``$LAKEHOUSE_WAREHOUSE``, else ``./warehouse``."""
    return os.environ.get("LAKEHOUSE_WAREHOUSE") or "./warehouse"


def build_parser() -> argparse.ArgumentParser:
    from engine.cli.commands import add_sql_parser
    from engine.cli.features import add_features_parser

    parser = argparse.ArgumentParser(prog="lakehouse", description="Delta Lake tables and SQL for Python.")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    # the same flag after the sub-command; SUPPRESS keeps it from resetting the one before
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{shell,sql,demo,features}")

    shell = commands.add_parser("shell", parents=[common], help="an interactive SQL shell",
                                description="An interactive SQL shell; reads statements from stdin when it is "
                                            "not a terminal.")
    shell.add_argument("warehouse", nargs="?", default=None,
                       help="warehouse folder or URL (default: $LAKEHOUSE_WAREHOUSE or ./warehouse)")
    add_sql_parser(commands, common)

    demo = commands.add_parser("demo", parents=[common], help="build a sample versioned table and tour it")
    demo.add_argument("--warehouse", default=None,
                      help="folder for the demo tables (default: $LAKEHOUSE_WAREHOUSE or ./warehouse)")
    add_features_parser(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from engine.cli.commands import QueryCancelled, report

    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    warehouse = args.warehouse or default_warehouse()
    try:
        if args.command == "shell":
            from engine.cli.shell import run_shell

            return run_shell(warehouse, debug=debug)
        if args.command == "sql":
            from engine.cli.commands import run_sql_command

            return run_sql_command(args, warehouse)
        if args.command == "features":
            from engine.cli.features import run_features_command

            return run_features_command(args)
        from engine.cli.demo import run_demo

        run_demo(warehouse)
        return 0
    except (KeyboardInterrupt, QueryCancelled):
        print("interrupted" if args.command != "sql" else "query cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`lakehouse sql ... | head`): stop quietly
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the exit flush from failing again
        except OSError:
            pass
        return 1
    except Exception as exc:  # noqa: BLE001 - every error is one line unless --debug
        report(exc, debug=debug)
        return 1


if __name__ == "__main__":
    sys.exit(main())
