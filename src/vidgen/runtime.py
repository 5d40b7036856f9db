"""Shared resources of one process, created once at start-up and handed down.

The API and every worker build one :class:`Runtime`: the settings, the event bus, the
providers (each with its own shared HTTP client), media storage and the throttles' counters
(:class:`~vidgen.services.throttle.Throttle`). Nothing here is global: tests build their
own.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vidgen.events.bus import EventBus, create_bus
from vidgen.services.throttle import Throttle
from vidgen.settings import Settings

if TYPE_CHECKING:
    from vidgen.media.storage import Storage
    from vidgen.providers.base import Provider

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    bus: EventBus
    providers: dict[str, Provider]
    storage: Storage
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    throttle: Throttle = field(init=False)

    def __post_init__(self) -> None:
        self.throttle = Throttle.create(self.settings)  # connects on first use

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        providers: dict[str, Provider] | None = None,
    ) -> Runtime:
        """Build the bus, providers and storage (nothing is connected yet: see open())."""
        from vidgen.jobs import cpu
        from vidgen.media.storage import create_storage
        from vidgen.providers.registry import build_providers

        cpu.configure(settings.cpu_workers)
        cpu.configure_processes(settings.media_processes, settings.media_timeout_seconds)

        bus = bus or create_bus(
            settings.redis_url,
            namespace=settings.redis_namespace,
            publish_wait=settings.redis_publish_wait_seconds,
            publish_backlog=settings.redis_publish_backlog,
        )
        storage = create_storage(settings)
        if providers is None:
            providers = build_providers(settings)
        return cls(settings=settings, bus=bus, providers=providers, storage=storage)

    async def open(self) -> None:
        """Start the bus; check the media store (raises StorageUnavailable, saying why)."""
        await self.storage.open()
        await self.storage.check()
        await self.bus.start()

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        providers: dict[str, Provider] | None = None,
    ) -> Runtime:
        """create() and open() in one step."""
        runtime = cls.create(settings, bus=bus, providers=providers)
        await runtime.open()
        return runtime

    async def close(self) -> None:
        from vidgen.providers.registry import close_providers

        await close_providers(self.providers)
        await self.throttle.close()
        await self.bus.close()
        await self.storage.close()
