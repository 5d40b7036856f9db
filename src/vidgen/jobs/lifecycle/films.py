"""A film's links to its clips, written in the transaction that creates the film (and its
new clips) through :func:`~vidgen.jobs.lifecycle.record_created`: the queue must never see
a film without them (docs/films.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vidgen.models import FilmClip, Transition


@dataclass(frozen=True, slots=True)
class FilmPart:
    """One clip of a new film: the paragraph it shows, the clip, its caption and the
    transition into the next clip."""

    position: int
    clip_id: int
    caption: str | None
    transition: Transition


async def link_clips(film_id: int, parts: Sequence[FilmPart]) -> None:
    """Insert the film's clip rows (inside the caller's transaction, which also inserted
    the film as queued)."""
    await FilmClip.bulk_create(
        [
            FilmClip(
                film_id=film_id,
                clip_id=part.clip_id,
                position=part.position,
                caption=part.caption,
                transition=part.transition,
            )
            for part in parts
        ]
    )
