"""What a job sends its provider: the prompt and settings from its claim, the input image
(inline, or by URL: the object store's presigned URL when the store is public, else a signed
media URL when this server has a public https address) and the webhook URL."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vidgen.jobs.job_context import JobContext
from vidgen.jobs.lifecycle import JobSpec
from vidgen.media.signing import signed_url
from vidgen.providers.base import GenerationRequest, InputImage, Provider

if TYPE_CHECKING:
    from vidgen.runtime import Runtime

logger = logging.getLogger(__name__)


_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


# How long a provider may take to fetch an input image by URL (it may queue the job first).
INPUT_URL_TTL_SECONDS = 24 * 3600


async def _input_url(runtime: Runtime, key: str) -> str | None:
    """A URL of the input image that a provider can fetch; adapters use it for images too big
    to send inline (see ``Capabilities.max_inline_image_bytes``). The object store's own
    presigned URL when a setting says the store is reachable from the internet
    (``VIDGEN_S3_PUBLIC``); else a signed media URL when this server has a public https
    address (providers fetch only https); else None."""
    settings = runtime.settings
    if settings.s3_public:
        url = await runtime.storage.presign(key, expires_in=INPUT_URL_TTL_SECONDS)
        if url is not None:
            return url
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
        data = await ctx.runtime.storage.read_bytes(spec.input_image)
        ext = spec.input_image.rsplit(".", 1)[-1].lower()
        image = InputImage(
            data=data,
            content_type=_IMAGE_TYPES.get(ext, "image/png"),
            url=await _input_url(ctx.runtime, spec.input_image),
        )
    webhook_url = None
    if provider.capabilities.webhooks and settings.public_url:
        webhook_url = f"{settings.resolved_public_url}/webhooks/{provider.name}"
    return GenerationRequest(
        prompt=spec.prompt,
        resolution=spec.resolution,
        output_format=str(spec.output_format),
        # A row without a duration (written before durations were stored) takes the shortest
        # its model makes.
        duration_seconds=spec.duration_seconds
        or provider.capabilities.duration_range_for(spec.model)[0],
        model=spec.model,
        input_image=image,
        video_style=spec.video_style,
        seed=spec.seed,
        webhook_url=webhook_url,
        reference=f"video-{ctx.video_id}",
    )
