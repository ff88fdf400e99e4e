"""The `anb` command: serve | poll | process | migrate | posters | leaderboard."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from anb.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from anb.cache.leaderboard import RedisLeaderboard
    from anb.core.migrations import Upgrade
    from anb.public.ranking import Reconciliation


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic's INFO lines (plugins set up, DDL assumed, each step) are for whoever debugs a
    # migration; the commands say what changed in their own words
    logging.getLogger("alembic").setLevel(logging.WARNING)
    run: Callable[[argparse.Namespace], int] = args.run  # the subcommand's, set by _parser
    try:
        return run(args)
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

    process = commands.add_parser(
        "process", help="turn a video into the published clip and its poster (OUTPUT.jpg)"
    )
    process.add_argument("input", type=Path)
    process.add_argument("output", type=Path)
    process.set_defaults(run=_process)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.set_defaults(run=_migrate)

    posters = commands.add_parser(
        "posters", help="make the posters of processed videos published without one"
    )
    posters.set_defaults(run=_posters)

    leaderboard = commands.add_parser(
        "leaderboard", help="the rankings' leaderboards in Redis, against the database"
    )
    actions = leaderboard.add_subparsers(required=True, metavar="ACTION")
    rebuild = actions.add_parser("rebuild", help="rebuild the leaderboards from the database")
    rebuild.set_defaults(run=_leaderboard_rebuild)
    check = actions.add_parser(
        "check", help="say whether the leaderboards agree with the database (exit 1 if not)"
    )
    check.add_argument(
        "--repair", action="store_true", help="set what differs to the database's values"
    )
    check.set_defaults(run=_leaderboard_check)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from anb.api import create_app
    from anb.core.migrations import upgrade_to_head
    from anb.core.observability import keep_metrics_off_the_console, worker_logger
    from anb.queue import get_queue
    from anb.queue.local import LocalQueue
    from anb.worker.embedded import EmbeddedWorker
    from anb.worker.sweep import Sweeper

    settings = get_settings()
    upgrade = upgrade_to_head()
    sweeper = Sweeper(settings)
    sweeper.start()
    queue = get_queue()
    worker = None
    if isinstance(queue, LocalQueue):  # only an in-process queue is consumed in-process
        keep_metrics_off_the_console()
        worker_logger()
        worker = EmbeddedWorker(
            queue, concurrency=settings.worker_concurrency, max_attempts=settings.max_attempts
        )
        worker.start()
    host, port = args.host or settings.host, args.port or settings.port
    lines = _banner(settings, url=_url(host, port), embedded_worker=worker is not None)
    if upgrade.changed:
        lines.append(f"  database: {_schema_change(upgrade)}")
    try:
        _run_server(create_app(), host=host, port=port, banner="\n".join(lines))
    finally:
        sweeper.stop()
        if worker is not None:
            worker.stop()
    return 0


def _run_server(app: Any, *, host: str, port: int, banner: str) -> None:
    """Uvicorn, with the banner in place of its own start lines, once it listens (a port
    already taken prints Uvicorn's error alone)."""
    import uvicorn

    from anb.core.heap import freeze_startup_objects

    class BannerServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(banner, file=sys.stderr, flush=True)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=False,  # the app believes ANB_TRUSTED_PROXIES only
        log_level="info",  # the access log
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    freeze_startup_objects()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C, re-raised once Uvicorn has stopped
        BannerServer(config).run()


def _url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"  # every interface: this machine's own name reaches it
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _banner(settings: Settings, *, url: str, embedded_worker: bool) -> list[str]:
    """What a person starting `anb serve` needs: where it answers, what it runs on."""
    backends = _backends(settings)
    mode = "embedded" if all(local for local, _ in backends) else "services"
    jobs = settings.worker_concurrency
    worker = (
        f"running in this process, {jobs} video{'s' if jobs > 1 else ''} at a time"
        if embedded_worker
        else "not in this process: `anb poll` processes the SQS queue"
    )
    return [
        f"ANB Rising Stars Showcase API on {url}  (Ctrl+C stops it)",
        f"  docs:     {url}/docs",
        f"  mode:     {mode}: {', '.join(text for _, text in backends)}",
        f"  worker:   {worker}",
    ]


def _backends(settings: Settings) -> list[tuple[bool, str]]:
    """(local?, description) of the database, storage, queue and cache; never a secret."""
    return [_database(settings), _storage(settings), _queue(settings), _cache(settings)]


def _database(settings: Settings) -> tuple[bool, str]:
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return True, f"SQLite {url.database}"
    return False, f"PostgreSQL {url.database} on {url.host}:{url.port or 5432}"


def _storage(settings: Settings) -> tuple[bool, str]:
    if settings.storage_url and settings.storage_url.startswith("s3://"):
        return False, f"S3 {settings.storage_url}"
    return True, f"files in {settings.media_dir.resolve()}"


def _queue(settings: Settings) -> tuple[bool, str]:
    if settings.queue_url == "local":
        return True, "in-process queue"
    return False, f"SQS {settings.queue_url.rstrip('/').rsplit('/', 1)[-1]}"


def _cache(settings: Settings) -> tuple[bool, str]:
    if settings.cache_url.startswith("memory://"):
        return True, "in-memory cache"
    url = urlsplit(settings.cache_url)
    return False, f"Redis {url.hostname}:{url.port or 6379}"


def _schema_change(upgrade: Upgrade) -> str:
    if not upgrade.changed:
        return f"at the latest schema ({upgrade.after})"
    if upgrade.before is None:
        return f"schema created ({upgrade.after})"
    return f"schema upgraded from {upgrade.before} to {upgrade.after}"


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
    from anb.processing import pipeline, poster
    from anb.processing.probe import UnacceptableVideo, probe

    try:
        source = probe(args.input)
    except (UnacceptableVideo, OSError) as exc:
        reason = getattr(exc, "detail", str(exc)).removeprefix("video_file: ")
        print(f"anb process: cannot read {args.input}: {reason}", file=sys.stderr)
        return 1
    progress = _progress_bar if sys.stderr.isatty() else None
    image = args.output.with_suffix(".jpg")
    try:
        pipeline.render(args.input, args.output, source, on_progress=progress)
        poster.make_poster(args.output, image, source, timeout_seconds=POSTER_TIMEOUT_SECONDS)
    except pipeline.PipelineFailed as exc:
        print(f"\nanb process: ffmpeg failed: {exc.reason}", file=sys.stderr)
        return 1
    if progress:
        progress(1.0)
        print(file=sys.stderr)
    print(f"{args.output} and its poster {image}", file=sys.stderr)
    return 0


POSTER_TIMEOUT_SECONDS = 120


def _progress_bar(fraction: float) -> None:
    filled = round(fraction * 30)
    print(
        f"\rprocessing [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}",
        end="",
        file=sys.stderr,
    )


def _migrate(_args: argparse.Namespace) -> int:
    from anb.core.migrations import upgrade_to_head

    print(f"database: {_schema_change(upgrade_to_head())}", file=sys.stderr)
    return 0


def _posters(_args: argparse.Namespace) -> int:
    """Exit 1 when a video is left without a poster (its clip missing, or unreadable)."""
    from anb.storage import get_storage
    from anb.worker.posters import Backfilled, backfill_posters

    def say(video_id: str, outcome: Backfilled) -> None:
        if outcome is not Backfilled.made:
            print(f"  video {video_id}: {outcome.value}", file=sys.stderr)

    found = backfill_posters(get_settings(), get_storage(), on_video=say)
    done = ", ".join(f"{found[each]} {each.value}" for each in Backfilled if found[each])
    print(f"posters: {done or 'every processed video has one'}", file=sys.stderr)
    return 1 if found[Backfilled.clip_missing] or found[Backfilled.failed] else 0


LEADERBOARD_LINES = 50  # differences listed by `anb leaderboard check`; the rest are counted


def _leaderboard() -> RedisLeaderboard | None:
    """The configured leaderboards, or None after saying why there are none to work on."""
    from anb.cache import get_cache

    leaderboard = get_cache().leaderboard()
    if leaderboard is None:
        print(
            "anb leaderboard: ANB_CACHE_URL is not Redis, so there are no leaderboards: "
            "rankings are computed by the database",
            file=sys.stderr,
        )
    elif leaderboard.is_ready() is None:
        print(f"anb leaderboard: Redis cannot be reached ({_cache(get_settings())[1]})",
              file=sys.stderr)  # fmt: skip
        return None
    return leaderboard


def _leaderboard_rebuild(_args: argparse.Namespace) -> int:
    leaderboard = _leaderboard()
    return 2 if leaderboard is None else _rebuild(leaderboard)


def _rebuild(leaderboard: RedisLeaderboard) -> int:
    from redis.exceptions import RedisError

    from anb.public import ranking

    release = leaderboard.lock(timeout_seconds=ranking.REBUILD_LOCK_SECONDS)
    if release is None:
        print("anb leaderboard: another rebuild is running; try again later", file=sys.stderr)
        return 1
    try:
        players = ranking.rebuild(leaderboard)
    except RedisError as exc:
        print(f"anb leaderboard: Redis failed during the rebuild: {exc}", file=sys.stderr)
        return 1
    finally:
        release()
    print(f"leaderboard: rebuilt from the database, {players} players ranked", file=sys.stderr)
    return 0


def _leaderboard_check(args: argparse.Namespace) -> int:
    from anb.core.db import in_session
    from anb.public import ranking

    leaderboard = _leaderboard()
    if leaderboard is None:
        return 2
    if args.repair and not leaderboard.is_ready():
        print("leaderboard: not built; rebuilding it", file=sys.stderr)
        return _rebuild(leaderboard)
    found = ranking.reconcile(leaderboard, repair=args.repair)
    if found.agrees:
        print(f"leaderboard: Redis and the database agree ({found.players} players ranked)",
              file=sys.stderr)  # fmt: skip
        return 0
    for line in _disagreements(found, in_session(ranking.scope_names)):
        print(line, file=sys.stderr)
    if not args.repair:
        return 1
    wanted = len(found.differences)
    print(f"leaderboard: repaired {found.repaired} of {wanted} scores and "
          f"{len(found.labels)} names", file=sys.stderr)  # fmt: skip
    if found.repaired < wanted:
        print("  the rest changed meanwhile (votes): check again", file=sys.stderr)
        return 1
    return 0


def _disagreements(found: Reconciliation, scopes: dict[str, str]) -> list[str]:
    lines = []
    if not found.ready:
        lines.append("leaderboard: not built (rankings come from the database until it is)")
    differences = found.differences
    if differences:
        lines.append(f"leaderboard: {len(differences)} scores differ from the database:")
        lines += [f"  {d.describe(scopes)}" for d in differences[:LEADERBOARD_LINES]]
        if len(differences) > LEADERBOARD_LINES:
            lines.append(f"  … and {len(differences) - LEADERBOARD_LINES} more")
    if found.labels:
        lines.append(f"leaderboard: {len(found.labels)} players' names or cities differ")
    return lines


if __name__ == "__main__":
    sys.exit(main())
