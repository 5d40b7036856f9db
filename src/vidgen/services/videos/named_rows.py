"""The rows a ``generateVideo`` request names (project, story, theme, tags, an earlier video
of its idempotency key), found in ONE query, and the checks of its grouping against them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vidgen import db, dialect, errors
from vidgen.models import Video
from vidgen.services.videos.request_checks import CheckedRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedRows:
    """What :func:`find_named_rows` found of the viewer's rows a request names."""

    project: bool
    story_project_id: int | None  # meaningful only when ``story``
    story: bool
    paragraph_count: int
    theme_id: int | None
    tag_ids: dict[str, int]  # by name key
    earlier: bool  # a video of this idempotency key exists


async def find_named_rows(*, owner_id: int, checked: CheckedRequest, key: str | None) -> NamedRows:
    """ONE query for everything a request names: the viewer's project and story (with its
    paragraph count), theme and tags by name key, and an earlier video of the idempotency
    key. Another user's rows are never found."""
    p = dialect.Params()
    length = "jsonb_array_length" if p.postgres else "json_array_length"
    typeof = "jsonb_typeof" if p.postgres else "json_type"
    parts: list[str] = []
    # Every branch has the same columns (typed NULLs: UNION needs one type per column).
    no_id, no_key = "CAST(NULL AS INTEGER)", "CAST(NULL AS TEXT)"

    def branch(kind: str, id_: str, project: str, paragraphs: str, name_key: str) -> str:
        return (
            f"SELECT '{kind}' AS kind, {id_} AS id, {project} AS project_id,"
            f" {paragraphs} AS paragraphs, {name_key} AS name_key"
        )

    if checked.project_id is not None:
        parts.append(
            branch("project", "id", no_id, no_id, no_key)
            + f" FROM projects WHERE id = {p(checked.project_id)} AND owner_id = {p(owner_id)}"
        )
    if checked.story_id is not None:
        count = f"CASE WHEN {typeof}(paragraphs) = 'array' THEN {length}(paragraphs) ELSE 0 END"
        parts.append(
            branch("story", "id", "project_id", count, no_key)
            + f" FROM stories WHERE id = {p(checked.story_id)} AND owner_id = {p(owner_id)}"
        )
    if checked.theme is not None:
        parts.append(
            branch("theme", "id", no_id, no_id, "name_key")
            + f" FROM themes WHERE owner_id = {p(owner_id)} AND name_key = {p(checked.theme[1])}"
        )
    if checked.tags:
        owner = p(owner_id)  # placeholders in the order they appear (SQLite's are "?")
        keys = p.many(key for _, key in checked.tags)
        parts.append(
            branch("tag", "id", no_id, no_id, "name_key")
            + f" FROM tags WHERE owner_id = {owner} AND name_key IN ({keys})"
        )
    if key is not None:
        parts.append(
            branch("video", "id", no_id, no_id, no_key)
            + f" FROM videos WHERE owner_id = {p(owner_id)} AND idempotency_key = {p(key)}"
        )
    sql = " UNION ALL ".join(parts)
    rows = await db.fetch(Video._meta.db, sql, p.values) if parts else []
    found: dict[str, dict[str, Any]] = {}
    tag_ids: dict[str, int] = {}
    for row in rows:
        if row["kind"] == "tag":
            tag_ids[row["name_key"]] = row["id"]
        else:
            found[row["kind"]] = row
    story = found.get("story")
    theme = found.get("theme")
    return NamedRows(
        project="project" in found,
        story=story is not None,
        story_project_id=story["project_id"] if story else None,
        paragraph_count=int(story["paragraphs"] or 0) if story else 0,
        theme_id=theme["id"] if theme else None,
        tag_ids=tag_ids,
        earlier="video" in found,
    )


def from_found(found: Mapping[str, Any]) -> NamedRows:
    """The :class:`NamedRows` of a request from what the statement that tried to insert
    its video found (``l_*`` columns: :func:`vidgen.jobs.lifecycle.create._pg_named`),
    equal to what :func:`find_named_rows` returns for it."""
    story = bool(found["l_story"])
    return NamedRows(
        project=bool(found["l_project"]),
        story=story,
        story_project_id=found["l_story_project"] if story else None,
        paragraph_count=int(found["l_paragraphs"] or 0) if story else 0,
        theme_id=found["l_theme"],
        tag_ids=dict(zip(found["l_tag_keys"], found["l_tag_ids"], strict=True)),
        earlier=bool(found["l_earlier"]),
    )


def check_grouping(checked: CheckedRequest, found: NamedRows) -> CheckedRequest:
    """Only the viewer's own project and story (another user's reads as missing); a story
    without a project puts the video in the story's project."""
    project_id = checked.project_id
    if project_id is not None and not found.project:
        raise errors.BadUserInput("No project with that id (projectId).", field="projectId")
    if checked.story_id is not None:
        if not found.story:
            raise errors.BadUserInput("No story with that id (storyId).", field="storyId")
        if project_id is not None and found.story_project_id != project_id:
            raise errors.BadUserInput("That story is not in that project.", field="storyId")
        if project_id is None:
            project_id = found.story_project_id
    if checked.paragraph_index is not None:
        if checked.story_id is None:
            raise errors.BadUserInput("paragraphIndex needs a storyId.", field="paragraphIndex")
        count = found.paragraph_count
        if not 0 <= checked.paragraph_index < count:
            raise errors.BadUserInput(
                f"paragraphIndex {checked.paragraph_index} is outside the story's "
                f"{count} paragraph(s).",
                field="paragraphIndex",
            )
    return replace(checked, project_id=project_id)
