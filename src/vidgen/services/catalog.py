"""Projects, stories, tags and themes: how videos are grouped.

Projects and stories are deleted for good (their videos stay, detached: SET NULL). Tags and
themes are created on first use and reused by normalised name (case, spacing and Unicode
composition do not make a new one); they belong to one user.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from vidgen import errors
from vidgen.models import Project, Story, Tag, Theme, User, normalize_name
from vidgen.services import KEEP, Keep

MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_PARAGRAPHS = 500
MAX_PARAGRAPH = 10_000
MAX_LABEL = 100
MAX_TAGS = 20


# --- visibility -------------------------------------------------------------------------


def visible_projects(viewer: User) -> QuerySet[Project]:
    """Projects the viewer may see: their own, or all for an admin."""
    query = Project.all()
    return query if viewer.is_admin else query.filter(owner_id=viewer.id)


def visible_stories(viewer: User) -> QuerySet[Story]:
    query = Story.all()
    return query if viewer.is_admin else query.filter(owner_id=viewer.id)


def visible_tags(viewer: User) -> QuerySet[Tag]:
    query = Tag.all()
    return query if viewer.is_admin else query.filter(owner_id=viewer.id)


def visible_themes(viewer: User) -> QuerySet[Theme]:
    query = Theme.all()
    return query if viewer.is_admin else query.filter(owner_id=viewer.id)


async def get_project(*, viewer: User, project_id: int) -> Project:
    """A visible project. Raises NotFound (also for another user's)."""
    project = await visible_projects(viewer).get_or_none(id=project_id)
    if project is None:
        raise errors.NotFound("project")
    return project


async def get_story(*, viewer: User, story_id: int) -> Story:
    """A visible story. Raises NotFound (also for another user's)."""
    story = await visible_stories(viewer).get_or_none(id=story_id)
    if story is None:
        raise errors.NotFound("story")
    return story


async def find_project(*, viewer: User, project_id: int | None) -> Project | None:
    """Like :func:`get_project` but None when missing (queries return null)."""
    if project_id is None:
        return None
    return await visible_projects(viewer).get_or_none(id=project_id)


async def find_story(*, viewer: User, story_id: int | None) -> Story | None:
    if story_id is None:
        return None
    return await visible_stories(viewer).get_or_none(id=story_id)


async def owned_project(*, owner: User, project_id: int, field: str = "projectId") -> Project:
    """A project owned by ``owner`` itself (admins too), for attaching things to it.

    Raises:
        BadUserInput: with ``field`` when there is no such project of this owner; another
            user's project reads exactly like a missing one.
    """
    project = await Project.get_or_none(id=project_id, owner_id=owner.id)
    if project is None:
        raise errors.BadUserInput(f"No project with that id ({field}).", field=field)
    return project


# --- checks -------------------------------------------------------------------------------


def _text(value: str | None, *, field: str, limit: int, required: bool) -> str | None:
    if value is None:
        if required:
            raise errors.BadUserInput(f"{field} is required.", field=field)
        return None
    text = value.strip()
    if required and not text:
        raise errors.BadUserInput(f"{field} must not be empty.", field=field)
    if len(text) > limit:
        raise errors.BadUserInput(f"{field} must be at most {limit} characters.", field=field)
    return text


def check_paragraphs(paragraphs: Sequence[str] | None) -> list[str]:
    """Paragraphs as stored: each trimmed, none empty, within the limits."""
    result: list[str] = []
    for index, paragraph in enumerate(paragraphs or []):
        text = (paragraph or "").strip()
        if not text:
            raise errors.BadUserInput(f"Paragraph {index} is empty.", field="paragraphs")
        if len(text) > MAX_PARAGRAPH:
            raise errors.BadUserInput(
                f"Paragraph {index} is longer than {MAX_PARAGRAPH} characters.",
                field="paragraphs",
            )
        result.append(text)
    if len(result) > MAX_PARAGRAPHS:
        raise errors.BadUserInput(
            f"A story has at most {MAX_PARAGRAPHS} paragraphs.", field="paragraphs"
        )
    return result


def check_label(name: str | None, *, field: str) -> tuple[str, str]:
    """A tag or theme name: (display name, unique key). BadUserInput with ``field``.

    Every label name goes through here. It is NFC-normalised first, so that canonically
    equivalent spellings ("\u00e9" and "e\u0301") are one label; the key is the case-folded
    name (NFC again), which can be longer than the name ("\u00df" folds to "ss"): both must
    fit their columns.
    """
    display, key = normalize_name(unicodedata.normalize("NFC", name or ""))
    key = unicodedata.normalize("NFC", key)
    if not display:
        raise errors.BadUserInput(f"A {field} name must not be empty.", field=field)
    if len(display) > MAX_LABEL:
        raise errors.BadUserInput(
            f"A {field} name must be at most {MAX_LABEL} characters.", field=field
        )
    if len(key) > MAX_LABEL:
        raise errors.BadUserInput(
            f"A {field} name must be at most {MAX_LABEL} characters once case is ignored "
            f"(some letters fold to two or three, like \u00df to ss).",
            field=field,
        )
    return display, key


def check_labels(names: Iterable[str] | None, *, field: str = "tags") -> list[tuple[str, str]]:
    """Tag names, de-duplicated by key, in the given order."""
    seen: dict[str, str] = {}
    for name in names or []:
        display, key = check_label(name, field=field)
        seen.setdefault(key, display)
    if len(seen) > MAX_TAGS:
        raise errors.BadUserInput(f"At most {MAX_TAGS} tags per video.", field=field)
    return [(display, key) for key, display in seen.items()]


# --- projects -----------------------------------------------------------------------------


async def create_project(*, viewer: User, name: str, description: str | None = None) -> Project:
    """Create a project owned by the viewer."""
    clean_name = _text(name, field="name", limit=MAX_NAME, required=True)
    clean_description = _text(
        description, field="description", limit=MAX_DESCRIPTION, required=False
    )
    return await Project.create(owner_id=viewer.id, name=clean_name, description=clean_description)


async def update_project(
    *,
    viewer: User,
    project_id: int,
    name: str | None | Keep = KEEP,
    description: str | None | Keep = KEEP,
) -> Project:
    """Change a project's name and/or description (None clears the description)."""
    changes: dict[str, object] = {}
    if name is not KEEP:
        changes["name"] = _text(name, field="name", limit=MAX_NAME, required=True)
    if description is not KEEP:
        changes["description"] = _text(
            description, field="description", limit=MAX_DESCRIPTION, required=False
        )
    project = await get_project(viewer=viewer, project_id=project_id)
    if changes:
        project.update_from_dict(changes)
        await project.save(update_fields=[*changes, "updated_at"])
    return project


async def delete_project(*, viewer: User, project_id: int) -> bool:
    """Delete a project; its videos and stories stay, detached from it.

    Raises:
        NotFound: no such visible project, also when a concurrent request deleted it first
            (of several deletes of one project exactly one answers true).
    """
    # One statement, decided by the rows it deleted: a read first let two deletes both
    # find the project and both answer true.
    if not await visible_projects(viewer).filter(id=project_id).delete():
        raise errors.NotFound("project")
    return True


# --- stories ------------------------------------------------------------------------------


async def create_story(
    *,
    viewer: User,
    title: str,
    project_id: int | None = None,
    paragraphs: Sequence[str] | None = None,
) -> Story:
    """Create a story, optionally inside one of the viewer's projects."""
    clean_title = _text(title, field="title", limit=MAX_NAME, required=True)
    clean_paragraphs = check_paragraphs(paragraphs)
    if project_id is not None:
        await owned_project(owner=viewer, project_id=project_id)
    try:
        return await Story.create(
            owner_id=viewer.id,
            title=clean_title,
            project_id=project_id,
            paragraphs=clean_paragraphs,
        )
    except IntegrityError:
        # The project was deleted after the check (a concurrent deleteProject: its foreign
        # key refused the row): answered as if it had been missing from the start, as
        # generate_video does.
        if project_id is not None:
            await owned_project(owner=viewer, project_id=project_id)
        raise


async def update_story(
    *,
    viewer: User,
    story_id: int,
    title: str | None | Keep = KEEP,
    project_id: int | None | Keep = KEEP,
    paragraphs: Sequence[str] | None | Keep = KEEP,
) -> Story:
    """Change a story. Shortening ``paragraphs`` below a video's ``paragraphIndex`` is refused."""
    changes: dict[str, object] = {}
    if title is not KEEP:
        changes["title"] = _text(title, field="title", limit=MAX_NAME, required=True)
    if paragraphs is not KEEP:
        changes["paragraphs"] = check_paragraphs(paragraphs)  # type: ignore[arg-type]
    story = await get_story(viewer=viewer, story_id=story_id)
    owner = None
    if project_id is not KEEP:
        if project_id is not None:
            owner = await _owner(story.owner_id)
            await owned_project(owner=owner, project_id=project_id)
        changes["project_id"] = project_id
    try:
        return await _change_story(story, changes)
    except IntegrityError:
        # The project was deleted after the check: as in create_story.
        if owner is not None and isinstance(project_id, int):
            await owned_project(owner=owner, project_id=project_id)
        raise


async def _change_story(story: Story, changes: dict[str, object]) -> Story:
    if "paragraphs" not in changes:
        if changes:
            story.update_from_dict(changes)
            await story.save(update_fields=[*changes, "updated_at"])
        return story
    from vidgen.models import Video

    count = len(changes["paragraphs"])  # type: ignore[arg-type]
    async with in_transaction():
        # Lock the story first: a video being added to one of its paragraphs share-locks
        # it (services.videos), so the check below sees every such video that committed,
        # and none can commit until this change does.
        locked = await Story.filter(id=story.id).select_for_update().first()
        if locked is None:
            raise errors.NotFound("story")
        if await Video.filter(story_id=story.id, paragraph_index__gte=count).exists():
            raise errors.BadUserInput(
                "Videos point at paragraphs that would no longer exist; move them first.",
                field="paragraphs",
            )
        locked.update_from_dict(changes)
        await locked.save(update_fields=[*changes, "updated_at"])
    return locked


async def _owner(owner_id: int) -> User:
    return await User.get(id=owner_id)


async def delete_story(*, viewer: User, story_id: int) -> bool:
    """Delete a story; its videos stay, detached (their paragraph index is cleared).

    Raises:
        NotFound: no such visible story, also when a concurrent request deleted it first
            (of several deletes of one story exactly one answers true).
    """
    story = await get_story(viewer=viewer, story_id=story_id)
    from vidgen.models import Video

    async with in_transaction():
        await Video.filter(story_id=story.id).update(paragraph_index=None)
        # Decided by the rows deleted, not by the read above (which a concurrent delete
        # passes too); raising rolls back the update (a no-op by then).
        if not await Story.filter(id=story.id).delete():
            raise errors.NotFound("story")
    return True


# --- tags and themes ----------------------------------------------------------------------


async def _get_or_create(model: type[Tag] | type[Theme], owner_id: int, display: str, key: str):
    found = await model.get_or_none(owner_id=owner_id, name_key=key)
    if found is not None:
        return found
    try:
        # A savepoint: losing the race to a concurrent insert must not spoil the caller's
        # transaction (PostgreSQL aborts a transaction after a failed statement).
        async with in_transaction():
            return await model.create(owner_id=owner_id, name=display, name_key=key)
    except IntegrityError:
        return await model.get(owner_id=owner_id, name_key=key)


async def ensure_theme(*, owner_id: int, name: str) -> Theme:
    """The owner's theme of that (normalised) name, created when new."""
    display, key = check_label(name, field="theme")
    return await _get_or_create(Theme, owner_id, display, key)


async def ensure_tags(*, owner_id: int, names: Iterable[str]) -> list[Tag]:
    """The owner's tags of those names, created when new, in the given order.

    One SELECT finds those that exist (not one per tag); new ones cost two statements
    together (:func:`create_tags`).
    """
    labels = check_labels(names, field="tags")
    if not labels:
        return []
    found = await Tag.filter(owner_id=owner_id, name_key__in=[key for _, key in labels])
    existing = {tag.name_key: tag for tag in found}
    missing = [(display, key) for display, key in labels if key not in existing]
    if missing:
        existing.update(await create_tags(owner_id=owner_id, labels=missing))
    return [existing[key] for _, key in labels]


async def create_tags(*, owner_id: int, labels: Sequence[tuple[str, str]]) -> dict[str, Tag]:
    """The owner's tags of these checked labels (``(display, key)`` from
    :func:`check_labels`), by key: inserted where new, and all read back (another request
    may have inserted some meanwhile). Two statements, however many tags.

    The rows are inserted in key order, whatever order the request named them in: two
    transactions inserting the same new keys in different orders would each hold a key the
    other waits for (a deadlock on PostgreSQL). A key inserted meanwhile is skipped, not an
    error, so the caller's transaction is never spoilt.
    """
    ordered = sorted(dict((key, display) for display, key in labels).items())
    await Tag.bulk_create(
        [Tag(owner_id=owner_id, name=display, name_key=key) for key, display in ordered],
        ignore_conflicts=True,
    )
    found = await Tag.filter(owner_id=owner_id, name_key__in=[key for key, _ in ordered])
    return {tag.name_key: tag for tag in found}


async def list_tags(*, viewer: User) -> list[Tag]:
    return await visible_tags(viewer).order_by("name_key", "id")


async def list_themes(*, viewer: User) -> list[Theme]:
    return await visible_themes(viewer).order_by("name_key", "id")
