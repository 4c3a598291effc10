"""GET /: a page to draw a digit (or pick an image) and watch the served models answer.

The page is one self-contained HTML file (page.html: no CDN, no framework) that calls only the
public API, so it is also an example of using it from a browser.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["page"])
PAGE = Path(__file__).with_name("page.html")


@cache
def page_bytes() -> bytes:
    """The page, read once on first request (never at import)."""
    return PAGE.read_bytes()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    """The drawing page."""
    return HTMLResponse(page_bytes(), headers={"cache-control": "no-cache"})
