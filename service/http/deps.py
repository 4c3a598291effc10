"""FastAPI dependencies as Annotated aliases: the app's objects and the API-key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import Unauthorized
from service.models.dataplane import DataPlane
from service.models.registry import ModelRegistry
from service.settings import Settings


async def get_dataplane(request: Request) -> DataPlane:
    """The app's DataPlane (built in create_app); async, so FastAPI calls it on the loop
    instead of hopping to its thread pool for every request."""
    return request.app.state.dataplane


async def get_registry(request: Request) -> ModelRegistry:
    """The app's ModelRegistry."""
    return request.app.state.registry


async def get_settings(request: Request) -> Settings:
    """The app's Settings."""
    return request.app.state.settings


async def require_api_key(request: Request) -> None:
    """401 unless `Authorization: Bearer <key>` or `X-API-Key: <key>` matches the server key."""
    settings: Settings = request.app.state.settings
    if not settings.accepts_api_key(request.headers.get("authorization", ""),
                                    request.headers.get("x-api-key", "")):
        raise Unauthorized()


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKeyDep = Annotated[None, Depends(require_api_key)]
