"""Print the PostgreSQL plans of the fair claim and of a new job's turn (fair_rank), with a
big queue: 100,000 queued jobs from 1,000 users (docs/jobs.md, "Claiming").

    .venv/bin/python scripts/explain_claim.py [--jobs 100000] [--users 1000] [--limit 16]

A fresh database on VIDGEN_BENCH_PG_URL (default postgres://root@127.0.0.1:5432/test) is
created, migrated, filled and dropped. Each user's jobs get consecutive turns (as queued one
after another); the users' jobs are interleaved in creation order. The claim is the
statement a worker sends (pick, claim, history and attempt rows: one statement), explained
with ANALYZE inside a transaction that is rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import uuid

import asyncpg

from vidgen import db as vdb
from vidgen import dialect
from vidgen.jobs import queue
from vidgen.jobs.lifecycle import claim as claim_sql
from vidgen.jobs.lifecycle import create

ADMIN_URL = os.environ.get("VIDGEN_BENCH_PG_URL", "postgres://root@127.0.0.1:5432/test")


async def main(args: argparse.Namespace) -> None:
    name = f"vidgen_explain_{uuid.uuid4().hex[:8]}"
    url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        await vdb.migrate_database(url)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO users (email, password_hash, is_admin, created_at)"
                " SELECT 'u' || g || '@example.com', 'x', false, now()"
                " FROM generate_series(1, $1) AS g",
                args.users,
            )
            per_user = args.jobs // args.users
            # Job n of user u: created in round-robin order, its turn n within its user.
            await conn.execute(
                "INSERT INTO videos (owner_id, prompt, provider, status, progress, resolution,"
                " output_format, retry_count, max_retries, rescue_count, priority, attempt,"
                " cancel_requested, version, fair_rank, created_at, updated_at)"
                " SELECT u, 'a prompt', 'runway', 'queued', 0, '1280x720', 'mp4', 0, 3, 0, 0,"
                " 0, false, 1, n, now() - interval '1 hour' + (n * $1 + u) * interval '1 ms',"
                " now() FROM generate_series(1, $1) AS u, generate_series(0, $2 - 1) AS n",
                args.users,
                per_user,
            )
            await conn.execute("ANALYZE videos")
            stamp = dt.datetime.now(dt.UTC)
            pick, params = queue._pick_sql(
                limit=args.limit,
                stamp=stamp,
                providers=["runway", "local"],
                excluded=(),
                params=dialect.Params(postgres=True),
            )
            k = len(params)
            sql = claim_sql._PG_CLAIM.format(
                pick=pick,
                w=k + 1,
                lease=k + 2,
                now=k + 3,
                returning=claim_sql._PG_CLAIM_RETURNING,
                outbox=claim_sql._pg_claim_outbox(f"${k + 3}"),
            )
            values = [*params, "host:1:explain", stamp + dt.timedelta(seconds=60), stamp]
            count = await conn.fetchval("SELECT count(*) FROM videos WHERE status = 'queued'")
            owners = await conn.fetchval(
                "SELECT count(DISTINCT owner_id) FROM videos WHERE status = 'queued'"
            )
            print(f"-- {count:,} queued jobs from {owners:,} users; claim of {args.limit}")
            tx = conn.transaction()
            await tx.start()
            try:
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *values)
            finally:
                await tx.rollback()
            print("\n".join(row[0] for row in plan))
            # A new job's turn: the two index probes of the insert's fair_rank expression.
            rank = create._FAIR_RANK.format(
                max="GREATEST", floor="0::bigint", owner="$1", priority="$2"
            )
            print("\n-- the turn of a new job of user 17 (priority 0)")
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT {rank}", 17, 0)
            print("\n".join(row[0] for row in plan))
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=16)
    asyncio.run(main(parser.parse_args()))
