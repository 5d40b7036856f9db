"""Providers as clients see them: what each generation backend can do."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry

from vidgen.graphql.types.enums import OutputFormatEnum

if TYPE_CHECKING:
    from vidgen.providers.base import Provider


@strawberry.type(description="A generation backend and what it can do.")
class ProviderInfo:
    name: str
    available: bool = strawberry.field(description="Configured (has its API key).")
    text_to_video: bool
    image_to_video: bool
    resolutions: list[str]
    output_formats: list[OutputFormatEnum]
    min_duration_seconds: float
    max_duration_seconds: float
    durations: list[float] | None = strawberry.field(
        description="The only durations accepted, when the provider has a fixed set."
    )
    max_prompt_length: int
    models: list[str]
    default_model: str | None
    default_resolution: str | None

    @classmethod
    def of(cls, name: str, provider: Provider) -> ProviderInfo:
        caps = provider.capabilities
        return cls(
            name=name,
            available=bool(provider.available),
            text_to_video=caps.text_to_video,
            image_to_video=caps.image_to_video,
            resolutions=list(caps.resolutions),
            output_formats=[OutputFormatEnum.of(f) for f in caps.output_formats],
            min_duration_seconds=caps.min_duration_seconds,
            max_duration_seconds=caps.max_duration_seconds,
            durations=list(caps.durations) if caps.durations else None,
            max_prompt_length=caps.max_prompt_length,
            models=list(caps.models),
            default_model=caps.default_model,
            default_resolution=caps.default_resolution,
        )
