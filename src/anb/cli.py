"""The `anb` command: serve | migrate."""

from __future__ import annotations

import argparse
import logging
import sys

from anb.core.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anb", description="ANB Rising Stars Showcase")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API (and, embedded, the worker)")
    serve.add_argument("--host", help="interface to listen on (ANB_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (ANB_PORT, default 8000)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.set_defaults(run=_migrate)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from anb.api import create_app
    from anb.core.migrations import upgrade_to_head

    settings = get_settings()
    upgrade_to_head()
    uvicorn.run(
        create_app(),
        host=args.host or settings.host,
        port=args.port or settings.port,
        proxy_headers=True,
        log_level="info",
    )
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from anb.core.migrations import upgrade_to_head

    upgrade_to_head()
    print("database is at the latest schema", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
