"""Providers as clients see them: what each generation backend can do."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry

from vidgen.graphql.types.enums import OutputFormatEnum
from vidgen.providers.base import Capabilities, Mode, unavailable_reason

if TYPE_CHECKING:
    from vidgen.providers.base import Provider


@strawberry.type(description="One model of a provider and what it takes.")
class ProviderModel:
    name: str
    text_to_video: bool
    image_to_video: bool
    resolutions: list[str] = strawberry.field(description="Every preset, in either mode.")
    text_to_video_resolutions: list[str]
    image_to_video_resolutions: list[str]
    min_duration_seconds: float
    max_duration_seconds: float
    durations: list[float] | None = strawberry.field(
        description="The only durations accepted, when the model has a fixed set."
    )
    longest_only_resolutions: list[str] = strawberry.field(
        description="Presets made at the longest of durations only (e.g. Veo's 1080p)."
    )

    @classmethod
    def of(cls, caps: Capabilities, name: str) -> ProviderModel:
        spec = caps.spec(name)
        text = list(caps.resolutions_for(Mode.TEXT, name))
        image = list(caps.resolutions_for(Mode.IMAGE, name))
        low, high = caps.duration_range_for(name)
        durations = caps.durations_for(name)
        return cls(
            name=name,
            text_to_video=caps.offers(Mode.TEXT, name),
            image_to_video=caps.offers(Mode.IMAGE, name),
            resolutions=[r for r in caps.resolutions if r in text or r in image],
            text_to_video_resolutions=text,
            image_to_video_resolutions=image,
            min_duration_seconds=low,
            max_duration_seconds=high,
            durations=list(durations) if durations else None,
            longest_only_resolutions=list(spec.long_resolutions) if spec else [],
        )


@strawberry.type(description="A generation backend and what it can do.")
class ProviderInfo:
    name: str
    available: bool = strawberry.field(
        description="Usable: configured, and its vendor serves it (see unavailableReason)."
    )
    unavailable_reason: str | None = strawberry.field(
        description="Why jobs are refused (a setting to set, an API withdrawn); null when "
        "available."
    )
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
    models: list[ProviderModel] = strawberry.field(
        description="Each model and what it takes; generateVideo(model:) is checked against it."
    )
    default_model: str | None
    default_resolution: str | None

    @classmethod
    def of(cls, name: str, provider: Provider) -> ProviderInfo:
        caps = provider.capabilities
        return cls(
            name=name,
            available=bool(provider.available),
            unavailable_reason=unavailable_reason(provider),
            text_to_video=caps.text_to_video,
            image_to_video=caps.image_to_video,
            resolutions=list(caps.resolutions),
            output_formats=[OutputFormatEnum.of(f) for f in caps.output_formats],
            min_duration_seconds=caps.min_duration_seconds,
            max_duration_seconds=caps.max_duration_seconds,
            durations=list(caps.durations) if caps.durations else None,
            max_prompt_length=caps.max_prompt_length,
            models=[ProviderModel.of(caps, model) for model in caps.models],
            default_model=caps.default_model,
            default_resolution=caps.default_resolution,
        )
