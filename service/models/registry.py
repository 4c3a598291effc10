"""The set of served models: load (verify first, then swap), unload, look up, drain.

One `DynamicBatcher` per served version. A swap builds and verifies the new session and starts
its batcher, replaces the reference, and only then drains the old batcher, so requests already
queued finish on the session they started with and no request is dropped.

The control routes change models through `ModelControl`: `LocalControl` here (one process), or
`FleetControl` (service/models/fleet.py), which has every worker of `--workers N` apply the change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from service.errors import ModelNotFound
from service.metrics import Metrics
from service.models.batching import DynamicBatcher
from service.models.crowd import Crowd
from service.models.repository import ModelRepository, ModelVersion, check_name
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Served:
    """A loaded version and the batcher that feeds its session."""

    model: ModelVersion
    batcher: DynamicBatcher


class ModelRegistry:
    """Owns what is served; every change goes through one lock, lookups never wait."""

    def __init__(self, repository: ModelRepository, settings: Settings, metrics: Metrics) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self._served: dict[str, Served] = {}
        self._lock = asyncio.Lock()

    def get(self, name: str, version: int | None = None) -> Served:
        """The served entry for `name` (and `version`, if given) or ModelNotFound (404)."""
        served = self._served.get(name)
        if served is None:
            loaded = ", ".join(sorted(self._served)) or "none"
            raise ModelNotFound(name, version, detail=f"loaded models: {loaded}")
        if version is not None and version != served.model.version:
            raise ModelNotFound(name, version,
                                detail=f"version {served.model.version} is served")
        return served

    def names(self) -> list[str]:
        """Names of the served models, sorted."""
        return sorted(self._served)

    async def load(self, name: str, version: int | None = None) -> ModelVersion:
        """Verify and open `name` (latest on disk by default), then swap it in."""
        check_name(name)
        async with self._lock:
            try:
                model = await asyncio.to_thread(self.repository.load, name, version)
            except Exception:
                self.metrics.model_load_failed(name)
                raise
            batcher = DynamicBatcher(
                model.run,
                max_batch_rows=self.settings.max_batch_size,
                max_delay_s=self.settings.max_queue_delay_ms / 1000,
                max_queue_rows=self.settings.max_queue_rows,
                on_batch=self.metrics.batch_recorder(name, model.version),
                inline_max_rows=self.settings.inline_max_rows,
                crowded=Crowd.crowded,
            )
            await batcher.start()
            old = self._served.get(name)
            self._served[name] = Served(model, batcher)
            self.metrics.model_loaded(name, model.version, lambda: batcher.queue_rows)
        if old is not None:
            await old.batcher.drain_and_stop()
        return model

    async def unload(self, name: str) -> ModelVersion:
        """Stop serving `name`; its queued requests are still answered."""
        async with self._lock:
            served = self.get(name)
            del self._served[name]
            self.metrics.model_unloaded(name)
        await served.batcher.drain_and_stop()
        return served.model

    async def unload_all(self) -> None:
        """Drain every batcher (shutdown)."""
        for name in self.names():
            await self.unload(name)

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Every version on disk (and every served one) with its state, like Triton's index."""
        rows = []
        for name in sorted(set(self.repository.model_names()) | set(self._served)):
            served = self._served.get(name)
            versions = set(self.repository.versions(name))
            if served is not None:
                versions.add(served.model.version)
            for version in sorted(versions):
                ready = served is not None and served.model.version == version
                if ready or not ready_only:
                    rows.append({"name": name, "version": str(version),
                                 "state": "READY" if ready else "UNAVAILABLE",
                                 "reason": "" if ready else "not loaded"})
        return rows


@dataclass(frozen=True, slots=True)
class Changed:
    """What a control command did: the model and the version it loaded or stopped serving."""

    name: str
    version: int


class ModelControl(Protocol):
    """What the control routes call to change the served models."""

    async def load(self, name: str, version: int | None) -> Changed:
        """Verify `name` at `version` (None: the latest on disk), then swap it in."""

    async def unload(self, name: str) -> Changed:
        """Stop serving `name` once its queued requests are answered."""


class LocalControl:
    """ModelControl of this process alone: its ModelRegistry, nothing else."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def load(self, name: str, version: int | None) -> Changed:
        """ModelRegistry.load (verify, then swap)."""
        model = await self.registry.load(name, version)
        return Changed(model.name, model.version)

    async def unload(self, name: str) -> Changed:
        """ModelRegistry.unload."""
        model = await self.registry.unload(name)
        return Changed(model.name, model.version)
