"""The `anb` command: serve | poll | process | migrate."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from anb.core.settings import Settings, get_settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return args.run(args)
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        # a setting refused: say which, without a traceback
        sys.stderr.write(f"anb: invalid configuration:\n{_settings_errors(exc)}\n")
        return 2


def _settings_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        name = "ANB_" + "_".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {name}: {error['msg']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anb", description="ANB Rising Stars Showcase")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API (and, embedded, the worker)")
    serve.add_argument("--host", help="interface to listen on (ANB_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (ANB_PORT, default 8000)")
    serve.set_defaults(run=_serve)

    poll = commands.add_parser("poll", help="process jobs from the SQS queue (ANB_QUEUE_URL)")
    poll.set_defaults(run=_poll)

    process = commands.add_parser("process", help="turn a video into the published clip")
    process.add_argument("input", type=Path)
    process.add_argument("output", type=Path)
    process.set_defaults(run=_process)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.set_defaults(run=_migrate)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from anb.api import create_app
    from anb.core.migrations import upgrade_to_head
    from anb.core.observability import worker_logger
    from anb.queue import get_queue
    from anb.queue.local import LocalQueue
    from anb.worker.embedded import EmbeddedWorker
    from anb.worker.sweep import Sweeper

    settings = get_settings()
    upgrade_to_head()
    sweeper = Sweeper(settings)
    sweeper.start()
    queue = get_queue()
    worker = None
    if isinstance(queue, LocalQueue):  # only an in-process queue is consumed in-process
        worker_logger()
        worker = EmbeddedWorker(
            queue, concurrency=settings.worker_concurrency, max_attempts=settings.max_attempts
        )
        worker.start()
    try:
        uvicorn.run(
            create_app(),
            host=args.host or settings.host,
            port=args.port or settings.port,
            proxy_headers=False,  # the app believes ANB_TRUSTED_PROXIES only
            log_level="info",
        )
    finally:
        sweeper.stop()
        if worker is not None:
            worker.stop()
    return 0


def _poll(_args: argparse.Namespace) -> int:
    from anb.core.aws import LONG_POLL_READ_TIMEOUT, client
    from anb.core.observability import worker_logger
    from anb.queue import region_of
    from anb.worker.batch import handle_batch
    from anb.worker.poller import Poller

    settings = get_settings()
    if not settings.queue_url.startswith(("https://", "http://")):
        print("anb poll: ANB_QUEUE_URL must be the URL of an SQS queue", file=sys.stderr)
        return 2
    worker_logger()
    sqs = client(
        "sqs", region_name=region_of(settings.queue_url), read_timeout=LONG_POLL_READ_TIMEOUT
    )
    poller = Poller(sqs, settings, handle_batch)
    poller.install_signal_handlers()
    return poller.run()


def _process(args: argparse.Namespace) -> int:
    from anb.processing import pipeline
    from anb.processing.probe import UnacceptableVideo, probe

    try:
        source = probe(args.input)
    except (UnacceptableVideo, OSError) as exc:
        reason = getattr(exc, "detail", str(exc)).removeprefix("video_file: ")
        print(f"anb process: cannot read {args.input}: {reason}", file=sys.stderr)
        return 1
    progress = _progress_bar if sys.stderr.isatty() else None
    try:
        pipeline.render(args.input, args.output, source, on_progress=progress)
    except pipeline.PipelineFailed as exc:
        print(f"\nanb process: ffmpeg failed: {exc.reason}", file=sys.stderr)
        return 1
    if progress:
        progress(1.0)
        print(file=sys.stderr)
    return 0


def _progress_bar(fraction: float) -> None:
    filled = round(fraction * 30)
    print(
        f"\rprocessing [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}",
        end="",
        file=sys.stderr,
    )


def _migrate(_args: argparse.Namespace) -> int:
    from anb.core.migrations import upgrade_to_head

    upgrade_to_head()
    print("database is at the latest schema", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
