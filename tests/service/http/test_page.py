"""GET / serves the self-contained drawing page; CORS is off by default and answers
preflights for the origins MLP_CORS_ORIGINS allows, on the fast path as well."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.http.app import create_app
from tests.service.conftest import MODEL, settings_for
from tests.service.images.pictures import drawing, encode
from tests.service.servers import serve_in_thread

ORIGIN = "https://app.example.com"
PREFLIGHT = {"origin": ORIGIN, "access-control-request-method": "POST",
             "access-control-request-headers": "content-type"}


def test_the_page_is_self_contained(shared_repo: Path) -> None:
    with serve_in_thread(create_app(settings_for(shared_repo))) as http:
        response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<canvas id="pad"' in html and 'id="file"' in html and 'id="clear"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from elsewhere
    for api in ("/v1/models", "/v2/models/", ":predict"):
        assert api in html


def test_cors_is_off_by_default(shared_repo: Path) -> None:
    with serve_in_thread(create_app(settings_for(shared_repo))) as http:
        preflight = http.options(f"/v1/models/{MODEL}:predict", headers=PREFLIGHT)
        answer = http.post(f"/v1/models/{MODEL}:predict", content=encode(drawing(28)),
                           headers={"content-type": "image/png", "origin": ORIGIN})
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_cors_allows_the_configured_origins(shared_repo: Path) -> None:
    settings = settings_for(shared_repo, cors_origins=f"{ORIGIN}, http://localhost:5173")
    with serve_in_thread(create_app(settings)) as http:
        preflight = http.options(f"/v1/models/{MODEL}:predict", headers=PREFLIGHT)
        other = http.options(f"/v1/models/{MODEL}:predict",
                             headers=PREFLIGHT | {"origin": "https://evil.example"})
        answer = http.post(f"/v1/models/{MODEL}:predict", content=encode(drawing(28)),
                           headers={"content-type": "image/png", "origin": ORIGIN})
        listed = http.get("/v1/models", headers={"origin": "http://localhost:5173"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert answer.status_code == 200  # served by the fast path, tagged all the same
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-model-version" in answer.headers["access-control-expose-headers"]
    assert listed.headers["access-control-allow-origin"] == "http://localhost:5173"


@pytest.mark.parametrize("origins", ["app.example.com", "https://a.example/path", "ftp://x"])
def test_a_bad_origin_refuses_to_start(shared_repo: Path, origins: str) -> None:
    with pytest.raises(ValidationError, match="MLP_CORS_ORIGINS entry"):
        settings_for(shared_repo, cors_origins=origins)
