"""/docs works without the internet, and the OpenAPI document is written for its users:
a description for people, runnable example bodies for V2 infer, the control key's schemes."""

from __future__ import annotations

import re

import httpx


def test_docs_page_loads_every_asset_from_the_server(shared_client: httpx.Client) -> None:
    page = shared_client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(sources) == ["/docs/assets/favicon.png", "/docs/assets/swagger-ui-bundle.js",
                               "/docs/assets/swagger-ui.css"]
    assert "https://" not in page.text.replace("https://fastapi.tiangolo.com", "")
    script = shared_client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content
    assert shared_client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert re.search(rb'PACKAGE_VERSION:"5\.[0-9.]+"', script.content)  # v5 reads OpenAPI 3.1


def test_description_is_for_users_and_examples_run(shared_client: httpx.Client) -> None:
    schema = shared_client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    description = schema["info"]["description"]
    assert "create_app" not in description and "pixel_range" in description
    examples = schema["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]
    assert set(examples) == {"flat", "image", "scaled"}
    for name, example in examples.items():  # "Try it out" as the page fills it in
        answer = shared_client.post("/v2/models/mnist-mlp/infer", json=example["value"])
        assert answer.status_code == 200, (name, answer.text)


def test_control_operations_declare_the_api_key(shared_client: httpx.Client) -> None:
    schema = shared_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "type": "apiKey",
                                       "in": "header", "name": "X-API-Key"}
    control = {path: ops for path, ops in schema["paths"].items()
               if path.startswith("/v2/repository")}
    assert len(control) == 3
    for operations in control.values():
        for operation in operations.values():
            assert operation["security"] == [{"bearer": []}, {"apiKeyHeader": []}]
    assert "security" not in schema["paths"]["/v2/models/{name}/infer"]["post"]
