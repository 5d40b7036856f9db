"""What a job sends its provider: the prompt and settings from its claim, the input image
(inline, or as a signed URL when this server has a public https address) and the webhook
URL."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vidgen.jobs.job_context import JobContext
from vidgen.jobs.lifecycle import JobSpec
from vidgen.media.signing import signed_url
from vidgen.providers.base import GenerationRequest, InputImage, Provider

logger = logging.getLogger(__name__)


_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


# How long a provider may take to fetch an input image by URL (it may queue the job first).
INPUT_URL_TTL_SECONDS = 24 * 3600


def _input_url(settings: Any, key: str) -> str | None:
    """A signed media URL of the input image that a provider can fetch, when this server has
    a public https address (providers fetch only https); adapters use it for images too big
    to send inline (see ``Capabilities.max_inline_image_bytes``). None otherwise."""
    public = settings.public_url
    if not public or not public.startswith("https://"):
        return None
    return signed_url(
        public,
        key,
        ttl=max(settings.signed_url_ttl_seconds, INPUT_URL_TTL_SECONDS),
        secret=settings.resolved_secret_key,
    )


async def build_request(ctx: JobContext, spec: JobSpec, provider: Provider) -> GenerationRequest:
    settings = ctx.runtime.settings
    image = None
    if spec.input_image:
        path = ctx.runtime.storage.path(spec.input_image)
        data = await asyncio.to_thread(path.read_bytes)
        ext = spec.input_image.rsplit(".", 1)[-1].lower()
        image = InputImage(
            data=data,
            content_type=_IMAGE_TYPES.get(ext, "image/png"),
            url=_input_url(settings, spec.input_image),
        )
    webhook_url = None
    if provider.capabilities.webhooks and settings.public_url:
        webhook_url = f"{settings.resolved_public_url}/webhooks/{provider.name}"
    return GenerationRequest(
        prompt=spec.prompt,
        resolution=spec.resolution,
        output_format=str(spec.output_format),
        duration_seconds=spec.duration_seconds or provider.capabilities.min_duration_seconds,
        model=spec.model,
        input_image=image,
        video_style=spec.video_style,
        seed=spec.seed,
        webhook_url=webhook_url,
        reference=f"video-{ctx.video_id}",
    )
