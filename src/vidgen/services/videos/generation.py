"""``generateVideo``: a new queued video, checked in full before anything is written.

:func:`generate_video` checks everything first (:mod:`.request_checks`, then the rows the
request names in ONE query: :mod:`.named_rows`). Then the queued Video, its first
status-history row and its tag links are written atomically by the lifecycle: one statement
on PostgreSQL (:func:`vidgen.jobs.lifecycle.record_created`), inside one transaction with
any new tags and theme or a stored input image. The same statement checks the user's
quotas (:mod:`vidgen.services.quotas`): over them, nothing is written (QUOTA_EXCEEDED).
Only after the commit is the change published and the workers woken (one round trip). Bad
input writes nothing and stores no file.

On PostgreSQL the usual request (no paragraph index, no input image) has no lookup of its
own: the inserting statement finds the rows the request names and writes the video only
when all are there as asked (:func:`_insert_folded`). When it writes nothing, what it found
takes the lookup's place, and the request goes on the way above: new tags and theme are
created, an earlier video of the key is the answer, an error is raised, all as if the
lookup had run first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tortoise.exceptions import IntegrityError, ValidationError
from tortoise.transactions import in_transaction

from vidgen import db, dialect, errors
from vidgen.events import messages
from vidgen.events.batch import PublishBatch
from vidgen.jobs import lifecycle
from vidgen.media.storage import make_key
from vidgen.models import OutputFormat, User, Video, VideoStatus
from vidgen.services import catalog, quotas
from vidgen.services.videos import named_rows
from vidgen.services.videos.access import actor_of
from vidgen.services.videos.request_checks import (
    CheckedRequest,
    check_input_image,
    check_request,
)
from vidgen.webhooks_out import addresses

if TYPE_CHECKING:
    from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)


MAX_IDEMPOTENCY_KEY = 255

# _HELD: in a request that holds one pool connection for its statements
# (vidgen.db.one_connection: the compiled generateVideo), it is given back before anything
# here that takes another connection (an ORM query, a transaction): a request never waits
# for the pool while holding one of its connections.


async def _earlier(viewer: User, key: str) -> Video | None:
    await db.release_held()  # an ORM query (see _HELD)
    return await Video.get_or_none(owner_id=viewer.id, idempotency_key=key)


async def generate_video(
    *,
    runtime: Runtime,
    viewer: User,
    prompt: str,
    provider: str | None = None,
    model: str | None = None,
    project_id: int | None = None,
    story_id: int | None = None,
    paragraph_index: int | None = None,
    input_image: bytes | None = None,
    resolution: str | None = None,
    output_format: OutputFormat | str | None = None,
    duration_seconds: float | None = None,
    caption: str | None = None,
    video_style: str | None = None,
    theme: str | None = None,
    tags: Sequence[str] | None = None,
    priority: int | None = None,
    scheduled_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    webhook_url: str | None = None,
) -> Video:
    """Queue a new video.

    Args:
        runtime: the process's :class:`~vidgen.runtime.Runtime` (settings, providers,
            storage, bus).
        viewer: the user asking; the video is theirs.
        prompt .. scheduled_at: the request (``GenerateVideoInput``, docs/contract.md); ids
            are database ids, ``input_image`` the uploaded file's bytes.
        idempotency_key: the same key from the same user returns the first video and
            creates nothing, even when two requests race.
        webhook_url: every status change is POSTed there (docs/webhooks.md); checked here,
            and again before each delivery.

    Returns:
        The queued video (or the earlier one for a repeated ``idempotency_key``).

    Raises:
        BadUserInput: with ``field`` naming the offending input; nothing was written or stored.
        QuotaExceeded: the viewer's limits leave no room for it; nothing was written.
    """
    key = None
    if idempotency_key is not None:
        key = idempotency_key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise errors.BadUserInput(
                f"idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} characters.",
                field="idempotencyKey",
            )
    # A repeated idempotency key returns the first video whatever else the request says: its
    # errors count only once no such video turned up (the lookup below looks for it too).
    try:
        checked = check_request(
            runtime=runtime,
            prompt=prompt,
            provider=provider,
            model=model,
            project_id=project_id,
            story_id=story_id,
            paragraph_index=paragraph_index,
            resolution=resolution,
            output_format=output_format,
            duration_seconds=duration_seconds,
            caption=caption,
            video_style=video_style,
            theme=theme,
            tags=tags,
            priority=priority,
            scheduled_at=scheduled_at,
            image=input_image is not None,
        )
        if webhook_url is not None:
            webhook_url = await check_webhook_url(runtime, webhook_url)
    except errors.BadUserInput:
        earlier = await _earlier(viewer, key) if key is not None else None
        if earlier is not None:
            return earlier
        raise
    # The quota is checked by the statement that inserts the video (no round trip of its own).
    quota = quotas.request(viewer, runtime.settings, checked.duration_seconds)
    folded: tuple[Video, lifecycle.Change] | named_rows.NamedRows | None = None
    if input_image is None and checked.paragraph_index is None and dialect.is_postgres():
        folded = await _insert_folded(runtime, viewer, checked, key, webhook_url, quota)
    if isinstance(folded, tuple):
        video, change = folded
    else:
        video, found = await _insert_looked_up(
            runtime, viewer, checked, key, webhook_url, quota, input_image, folded
        )
        if found is None:  # an earlier video of the idempotency key
            return video
        change = found
    logger.info(
        "video queued",
        extra={
            "action": "video.created",
            "video_id": video.id,
            "user_id": viewer.id,
            "provider": checked.provider,
        },
    )
    # The change and the workers' wake-up leave together, one command to the bus, queued in
    # its outbox behind earlier events: the client is answered without waiting for it.
    batch = PublishBatch()
    batch.add_video_events([change.event])
    batch.add(*messages.wakeup())
    await batch.send(runtime.bus, wait=False)
    return video


def _new_video(
    runtime: Runtime,
    viewer: User,
    checked: CheckedRequest,
    key: str | None,
    webhook_url: str | None,
    quota: quotas.Request,
    theme_id: int | None,
) -> Video:
    return Video.new(
        owner_id=viewer.id,
        created_by_id=viewer.id,
        prompt=checked.prompt,
        provider=checked.provider,
        model=checked.model,
        status=VideoStatus.QUEUED,
        resolution=checked.resolution,
        output_format=checked.output_format,
        duration_seconds=checked.duration_seconds,
        project_id=checked.project_id,
        story_id=checked.story_id,
        paragraph_index=checked.paragraph_index,
        caption=checked.caption,
        video_style=checked.video_style,
        theme_id=theme_id,
        priority=checked.priority,
        scheduled_at=checked.scheduled_at,
        max_retries=runtime.settings.max_retries,
        idempotency_key=key,
        requested_seconds=checked.duration_seconds,
        requested_at=quota.at,
        webhook_url=webhook_url,
    )


async def _insert_folded(
    runtime: Runtime,
    viewer: User,
    checked: CheckedRequest,
    key: str | None,
    webhook_url: str | None,
    quota: quotas.Request,
) -> tuple[Video, lifecycle.Change] | named_rows.NamedRows | None:
    """The usual request (PostgreSQL, no paragraph index, no image) in ONE statement: the
    rows it names are found by the statement that inserts the video (a
    :class:`~vidgen.jobs.lifecycle.Named`), which writes it only when every one is there as
    asked, no video of the idempotency key exists and the quota admits it. When it wrote
    nothing, what it found (as :func:`.named_rows.find_named_rows` finds it), or None when
    it could not tell (a validator refused a value before, a race broke a constraint):
    then :func:`_insert_looked_up` goes on the way that finds out why (its own lookup
    when given none), with the same answers and errors."""
    named = lifecycle.Named(
        owner_id=viewer.id,
        project_id=checked.project_id,
        story_id=checked.story_id,
        theme_key=checked.theme[1] if checked.theme is not None else None,
        tag_keys=tuple(name_key for _, name_key in checked.tags),
        idempotency_key=key,
    )
    video = _new_video(runtime, viewer, checked, key, webhook_url, quota, None)
    try:
        change = await lifecycle.record_created(
            video, actor=actor_of(viewer), admission=quotas.admission(quota), named=named
        )
    except lifecycle.NotFound as missing:
        return named_rows.from_found(missing.found)  # nothing was written
    except (IntegrityError, ValidationError):
        return None  # nothing was written
    return video, change


async def _insert_looked_up(
    runtime: Runtime,
    viewer: User,
    checked: CheckedRequest,
    key: str | None,
    webhook_url: str | None,
    quota: quotas.Request,
    input_image: bytes | None,
    found: named_rows.NamedRows | None = None,
) -> tuple[Video, lifecycle.Change | None]:
    """The named rows looked up first (:mod:`.named_rows`; ``found`` when the caller's
    statement just did), new tags and a new theme created, then the video inserted;
    ``(earlier video, None)`` for a repeated idempotency key."""
    if found is None:
        found = await named_rows.find_named_rows(owner_id=viewer.id, checked=checked, key=key)
    if found.earlier and key is not None:
        earlier = await _earlier(viewer, key)
        if earlier is not None:
            return earlier, None
    checked = named_rows.check_grouping(checked, found)
    checked = await check_input_image(runtime, checked, input_image)

    tag_ids = dict(found.tag_ids)  # by name key
    new_tags = [
        (display, name_key) for display, name_key in checked.tags if name_key not in tag_ids
    ]
    theme_id = found.theme_id
    new_theme = checked.theme[0] if checked.theme is not None and theme_id is None else None
    image = None
    if input_image is not None and checked.image_ext is not None:
        image = _InputImage(runtime, viewer.id, input_image, checked.image_ext)
    try:
        # A new tag or theme, or a stored image, takes several statements: one transaction.
        # Otherwise record_created's single statement is atomic on its own.
        several = bool(new_tags) or new_theme is not None or input_image is not None
        if several:
            await db.release_held()  # the transaction takes a connection (see _HELD)
        async with in_transaction() if several else nullcontext():
            if new_theme is not None:
                theme_id = (await catalog.ensure_theme(owner_id=viewer.id, name=new_theme)).id
            if new_tags:
                created = await catalog.create_tags(owner_id=viewer.id, labels=new_tags)
                tag_ids.update((name_key, tag.id) for name_key, tag in created.items())
            video = _new_video(runtime, viewer, checked, key, webhook_url, quota, theme_id)
            change = await lifecycle.record_created(
                video,
                actor=actor_of(viewer),
                tag_ids=[tag_ids[name_key] for _, name_key in checked.tags],
                paragraph_count=found.paragraph_count,
                with_id=image.store if image is not None else None,
                admission=quotas.admission(quota),
            )
    except BaseException as exc:
        await db.release_held()  # what follows may query through the ORM (see _HELD)
        if image is not None and image.key is not None:
            await _remove_file(runtime, image.key)
        if isinstance(exc, IntegrityError | lifecycle.NotAdmitted):
            if key is not None:
                # Lost a race with the same idempotency key (the winner's video is the
                # answer), or it filled the quota this request would have fitted.
                earlier = await _earlier(viewer, key)
                if earlier is not None:
                    return earlier, None
        if isinstance(exc, lifecycle.NotAdmitted):
            refused = await quotas.refusal(quota)
            if refused is not None:
                raise refused from exc
            if checked.paragraph_index is None:
                raise quotas.just_freed() from exc
        # Within the quota, a refusal was the story guard's (it guards the same insert).
        story_changed = isinstance(exc, lifecycle.StoryChanged | lifecycle.NotAdmitted)
        if story_changed or isinstance(exc, IntegrityError):
            # Or the project or story was deleted, or the story shortened, after the lookup
            # (a foreign key or the story guard refused the row): answered as if it had
            # been so from the start.
            named_rows.check_grouping(
                checked,
                await named_rows.find_named_rows(owner_id=viewer.id, checked=checked, key=None),
            )
            if story_changed:
                raise errors.BadUserInput(
                    "The story changed while the video was being added; try again.",
                    field="paragraphIndex",
                ) from exc
        raise
    return video, change


async def check_webhook_url(runtime: Runtime, url: str) -> str | None:
    """A request's ``webhookUrl``, checked (form, and the addresses it resolves to now);
    None for an empty one. Every request that takes one (``renderStory``'s too) asks this.

    Raises:
        BadUserInput: naming ``webhookUrl``.
    """
    if not url.strip():
        return None
    return await addresses.check_url(
        url, allow_private=runtime.settings.webhook_allow_private, field="webhookUrl"
    )


@dataclass
class _InputImage:
    """The request's input image, stored as soon as the new video has an id (its storage
    key needs it), inside the transaction that inserts the video."""

    runtime: Runtime
    owner_id: int
    data: bytes
    ext: str
    key: str | None = None  # once stored

    async def store(self, video_id: int) -> dict[str, str]:
        self.key = make_key(self.owner_id, video_id, "input", self.ext)
        await self.runtime.storage.save_bytes(self.key, self.data)
        return {"input_image": self.key}


async def _remove_file(runtime: Runtime, key: str) -> None:
    try:
        await asyncio.shield(runtime.storage.delete(key))
    except Exception:  # noqa: BLE001 - the original error matters more; purge cleans up
        logger.exception("could not remove a stored input image", extra={"key": key})
