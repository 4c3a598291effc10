"""What the app's start-up does to the process: the heap it settles for the garbage collector."""

from __future__ import annotations

import gc
import weakref

import httpx

from service.http.app import GC_YOUNG_THRESHOLD


class Node:
    """A container the cyclic collector tracks; two of them referring to each other form a cycle
    that only the collector can free."""

    partner: Node | None = None


def test_start_up_freezes_its_objects_and_collects_the_young_generation_less_often(
    client: httpx.Client,
) -> None:
    assert client.get("/v2/health/ready").status_code == 200  # the lifespan has run
    assert gc.get_freeze_count() > 10_000  # FastAPI, pydantic, numpy, the model
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD


def test_cycles_made_while_serving_are_still_collected(client: httpx.Client) -> None:
    """The raised threshold delays young collections; it does not turn them off."""
    assert client.get("/v2/health/ready").status_code == 200
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None  # only a collection can free a cycle
    keep = [Node() for _ in range(GC_YOUNG_THRESHOLD + 1_000)]  # allocations past the threshold
    assert gone() is None
    del keep
