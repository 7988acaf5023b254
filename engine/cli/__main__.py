"""The ``lakehouse`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from lakehouse.errors import LakehouseError


def default_warehouse() -> str:
    return os.environ.get("LAKEHOUSE_WAREHOUSE") or "./warehouse"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description="Delta Lake tables and SQL for Python.")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="build a sample versioned table and tour it")
    demo.add_argument("--warehouse", default=None, help="folder for the demo tables (default: $LAKEHOUSE_WAREHOUSE or ./warehouse)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from engine.cli.demo import run_demo

            run_demo(args.warehouse or default_warehouse())
        return 0
    except LakehouseError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
