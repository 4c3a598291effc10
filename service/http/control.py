"""Model control (Triton's model repository extension), behind the API key.

Load and unload go through the app's `ModelControl`: this process's models, or with
`--workers N` every worker's at once (service/models/fleet.py); the index answers from this worker.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from service import codec
from service.errors import InvalidInput, describe_validation_errors
from service.http.body import read_body
from service.http.call import Call, json_response
from service.http.deps import ApiKeyDep, RegistryDep, SettingsDep
from service.models.registry import ModelControl
from service.models.repository import check_name, parse_version
from service.protocol import (
    ErrorResponse,
    RepositoryIndexItem,
    RepositoryIndexRequest,
    RepositoryLoadRequest,
    RepositoryLoadResponse,
)

router = APIRouter(tags=["model control"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 500, 503)
}
LOAD_PARAMETERS = {"version"}
UNLOAD_PARAMETERS = {"unload_dependents"}


async def get_control(request: Request) -> ModelControl:
    """The app's ModelControl: this process's models, or every worker's with --workers N."""
    return request.app.state.control


ControlDep = Annotated[ModelControl, Depends(get_control)]


def _body_doc(schema: str) -> dict[str, Any]:
    return {"requestBody": {"required": False, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}}


async def _optional_json(request: Request, limit: int, model: type[Any]) -> Any:
    """Parse an optional small JSON body into `model` (an empty body means defaults), read
    within the request deadline counted from arrival."""
    timeout_s = request.app.state.settings.request_timeout_ms / 1000
    deadline = Call.from_request(request).arrived + timeout_s
    body = await read_body(request.receive, request.headers, limit, deadline)
    try:
        return model.model_validate(codec.parse_json(body) if body.strip() else {})
    except ValidationError as error:
        raise InvalidInput(describe_validation_errors(error.errors())) from None


def _check_parameters(parameters: dict[str, Any] | None, allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(parameters or {}) - allowed)
    if unknown:
        raise InvalidInput(f"parameter {unknown[0]!r} is not supported; supported: "
                           f"{sorted(allowed)}")
    return parameters or {}


@router.post("/v2/repository/index", response_model=list[RepositoryIndexItem], responses=ERRORS,
             openapi_extra=_body_doc("RepositoryIndexRequest"))
async def index(request: Request, _: ApiKeyDep, registry: RegistryDep,
                settings: SettingsDep) -> Response:
    """Every model version in the repository and whether it is served (READY)."""
    body = await _optional_json(request, settings.max_body_bytes, RepositoryIndexRequest)
    return json_response(registry.index(ready_only=body.ready))


@router.post("/v2/repository/models/{name}/load", response_model=RepositoryLoadResponse,
             responses=ERRORS, openapi_extra=_body_doc("RepositoryLoadRequest"))
async def load(name: str, request: Request, _: ApiKeyDep, control: ControlDep,
               settings: SettingsDep) -> Response:
    """Verify a version (parameters.version, default latest) and swap it in; no request drops."""
    body = await _optional_json(request, settings.max_body_bytes, RepositoryLoadRequest)
    version = _check_parameters(body.parameters, LOAD_PARAMETERS).get("version")
    model = await control.load(check_name(name), None if version is None else
                               parse_version(version))
    Call.from_request(request).answered_by(model.name, model.version)
    return json_response({"name": model.name, "version": str(model.version),
                                "state": "READY"})


@router.post("/v2/repository/models/{name}/unload", response_model=RepositoryLoadResponse,
             responses=ERRORS)
async def unload(name: str, request: Request, _: ApiKeyDep, control: ControlDep,
                 settings: SettingsDep) -> Response:
    """Stop serving a model after answering its queued requests."""
    body = await _optional_json(request, settings.max_body_bytes, RepositoryLoadRequest)
    _check_parameters(body.parameters, UNLOAD_PARAMETERS)
    model = await control.unload(name)
    Call.from_request(request).answered_by(model.name, model.version)
    return json_response({"name": model.name, "version": str(model.version),
                                "state": "UNAVAILABLE"})
