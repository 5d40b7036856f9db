"""The ``vidgen`` command line: serve, worker, migrate, createuser, export-schema, generate,
render-story, purge, storage. Output meant for people goes to stdout; logs go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from vidgen import logs
from vidgen.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    for name in ("host", "port", "worker_metrics_port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "worker", None) is not None:
        overrides["embedded_worker"] = args.worker
    settings = Settings(**overrides)
    logs.configure(settings.log_level, json_lines=settings.log_json)
    return settings


def _storage_error(settings: Settings) -> str | None:
    """The media store's problem at start-up (a missing bucket, refused credentials, ...),
    or None when it exists and takes writes."""
    from vidgen.media.storage import StorageUnavailable, create_storage

    async def check() -> None:
        storage = create_storage(settings)
        try:
            await storage.check()
        finally:
            await storage.close()

    try:
        asyncio.run(check())
    except StorageUnavailable as exc:
        return str(exc)
    return None


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vidgen import eventloop
    from vidgen.web.app import create_app

    settings = _settings(args)
    settings.check()
    workers = int(getattr(args, "workers", None) or 1)
    if workers > 1 and (settings.redis_url is None or settings.is_sqlite):
        # Each process would have its own in-process bus: a change made through one would
        # never reach the subscribers of another (docs/live.md#several-api-processes).
        return _fail("--workers above 1 needs PostgreSQL and VIDGEN_REDIS_URL")
    if problem := _storage_error(settings):
        return _fail(problem)
    eventloop.loop_factory(settings.event_loop)  # VIDGEN_EVENT_LOOP=uvloop without uvloop
    print(f"vidgen: GraphiQL at http://{settings.host}:{settings.port}/graphql", flush=True)
    options: dict[str, object] = dict(
        host=settings.host,
        port=settings.port,
        log_config=None,
        lifespan="on",
        # Compression costs CPU on every subscription message; a setting decides.
        ws_per_message_deflate=settings.ws_compression,
        # What "auto" picks with websockets installed, named: the live fan-out writes
        # pre-framed messages to these sockets (vidgen/web/ws_direct.py).
        ws="websockets-sansio",
        loop=settings.event_loop,  # the worker's loop too (see vidgen.eventloop)
        # The client's address is vidgen's to work out (VIDGEN_TRUSTED_PROXIES, see
        # vidgen.web.client_address): uvicorn's own rewrite would believe X-Forwarded-For
        # from any local process.
        proxy_headers=False,
    )
    if workers == 1:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return 0
    # Several processes on one listening socket, each building its own app (and its one
    # Redis subscription) from the same settings: uvicorn's supervisor starts them, and
    # they inherit this process's environment, where the command line's overrides go.
    _export_overrides(settings)
    uvicorn.run(
        "vidgen.cli:serving_app",
        factory=True,
        workers=workers,
        **options,  # type: ignore[arg-type]
    )
    return 0


def _export_overrides(settings: Settings) -> None:
    """Put what the command line overrode into the environment the API processes inherit
    (Settings reads it back there)."""
    import os

    os.environ["VIDGEN_HOST"] = settings.host
    os.environ["VIDGEN_PORT"] = str(settings.port)
    os.environ["VIDGEN_EMBEDDED_WORKER"] = str(settings.run_embedded_worker).lower()


def serving_app() -> object:
    """The app of one of ``serve --workers N``'s processes (an import-string factory)."""
    from vidgen.web.app import create_app

    return create_app(_settings(argparse.Namespace()))


def cmd_worker(args: argparse.Namespace) -> int:
    from vidgen import eventloop
    from vidgen.jobs.worker import run_worker

    settings = _settings(args)
    settings.check()
    if problem := _storage_error(settings):
        return _fail(problem)
    serving = None
    port = settings.worker_metrics_port
    if port is not None:
        from vidgen.web import worker_endpoints

        def serving(runtime: Any) -> Any:
            return worker_endpoints.serving(runtime, settings.host, port)

    eventloop.run(
        run_worker(settings, concurrency=args.concurrency, serving=serving), settings.event_loop
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from vidgen import db

    settings = _settings(args)
    asyncio.run(db.migrate_database(settings.resolved_database_url, settings))
    print(f"migrated {_redact(settings.resolved_database_url)}")
    return 0


def cmd_createuser(args: argparse.Namespace) -> int:
    from vidgen import db, errors
    from vidgen.services import users

    settings = _settings(args)

    async def run() -> str:
        await db.init(settings, run_migrations=settings.is_sqlite)
        try:
            user = await users.create_user(
                email=args.email, password=args.password, is_admin=args.admin
            )
            token, _ = await users.issue_token(user=user, name="cli")
            return token
        finally:
            await db.close()

    try:
        token = asyncio.run(run())
    except errors.VidgenError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(token)
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from vidgen.graphql.schema import schema, sdl

    text = sdl(schema)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from vidgen.client import generate_command

    return generate_command(args)


def cmd_render_story(args: argparse.Namespace) -> int:
    from vidgen.client import render_story_command

    return render_story_command(args)


def cmd_purge(args: argparse.Namespace) -> int:
    from vidgen.media.retention import purge_command

    settings = _settings(args)
    return purge_command(settings, dry_run=args.dry_run, older_than_days=args.older_than_days)


def cmd_storage(args: argparse.Namespace) -> int:
    """``vidgen storage init`` creates the bucket (S3); ``vidgen storage check`` checks it."""
    from vidgen.media.storage import StorageUnavailable, create_storage

    settings = _settings(args)
    settings.check()
    storage = create_storage(settings)

    async def run() -> str:
        try:
            if args.action == "init":
                create = getattr(storage, "create_bucket", None)
                if create is not None:
                    made = await create()
                    await storage.check()
                    return f"{'created' if made else 'found'} {storage.description}"
            await storage.check()
            return f"{storage.description} is ready"
        finally:
            await storage.close()

    try:
        print(asyncio.run(run()))
    except StorageUnavailable as exc:
        return _fail(str(exc))
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (and, on SQLite, a worker inside it)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    group = serve.add_mutually_exclusive_group()
    group.add_argument("--worker", dest="worker", action="store_true", default=None)
    group.add_argument("--no-worker", dest="worker", action="store_false")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes on the one port (needs PostgreSQL and Redis); default 1",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a job worker")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.add_argument("--host", help="where --metrics-port listens (VIDGEN_HOST)")
    worker.add_argument(
        "--metrics-port",
        dest="worker_metrics_port",
        metavar="PORT",
        type=int,
        help="serve /metrics, /healthz and /readyz on this port (VIDGEN_WORKER_METRICS_PORT)",
    )
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply the database migrations")
    migrate.set_defaults(func=cmd_migrate)

    create = sub.add_parser("createuser", help="create a user and print an API token")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true")
    create.add_argument("--password", default=None, help="default: a random one (not shown)")
    create.set_defaults(func=cmd_createuser)

    export = sub.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", "-o", default="schema.graphql")
    export.set_defaults(func=cmd_export_schema)

    generate = sub.add_parser("generate", help="submit a video to a running server")
    generate.add_argument("prompt")
    generate.add_argument("--provider", default=None)
    generate.add_argument("--model", default=None)
    generate.add_argument("--image", type=Path, default=None)
    generate.add_argument("--resolution", default=None)
    generate.add_argument("--format", dest="output_format", choices=["mp4", "webm"], default=None)
    generate.add_argument("--duration", type=float, default=None)
    generate.add_argument("--project", default=None, help="project id")
    generate.add_argument("--wait", action="store_true", help="follow live status until done")
    generate.add_argument("--url", default=None, help="server URL (env VIDGEN_URL)")
    generate.add_argument("--token", default=None, help="API token (env VIDGEN_TOKEN)")
    generate.set_defaults(func=cmd_generate)

    render = sub.add_parser(
        "render-story", help="render a story into one film on a running server (docs/films.md)"
    )
    render.add_argument("story_id", help="the story's id (global, or its number)")
    render.add_argument("--provider", default=None)
    render.add_argument("--resolution", default=None)
    render.add_argument("--format", dest="output_format", choices=["mp4", "webm"], default=None)
    render.add_argument("--duration", type=float, default=None, help="seconds per paragraph")
    render.add_argument("--captions", action="store_true", help="burn each paragraph's text in")
    render.add_argument("--crossfade", action="store_true", help="crossfade between clips")
    render.add_argument("--webhook-url", default=None)
    render.add_argument("--wait", action="store_true", help="follow live status until done")
    render.add_argument("--url", default=None, help="server URL (env VIDGEN_URL)")
    render.add_argument("--token", default=None, help="API token (env VIDGEN_TOKEN)")
    render.set_defaults(func=cmd_render_story)

    purge = sub.add_parser("purge", help="remove videos deleted longer ago than the retention")
    purge.add_argument("--dry-run", action="store_true")
    purge.add_argument("--older-than-days", type=float, default=None)
    purge.set_defaults(func=cmd_purge)

    storage = sub.add_parser(
        "storage", help="create (init) or check the media store named by VIDGEN_STORAGE_URL"
    )
    storage.add_argument("action", choices=["init", "check"])
    storage.set_defaults(func=cmd_storage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
