"""The long-poll: GET /api/endpoints/{key}/captures?wait=N, what contract tests wait on."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.anyio


def _list_url(token: str, query: str) -> str:
    return f"/api/endpoints/{token}/captures?{query}"


async def _waiting(client: httpx.AsyncClient, url: str) -> asyncio.Task[httpx.Response]:
    task = asyncio.create_task(client.get(url))
    await asyncio.sleep(0.2)
    assert not task.done(), "the wait returned before anything arrived"
    return task


async def test_a_capture_that_arrived_before_the_wait_is_returned_at_once(client, endpoint):
    token = endpoint["token"]
    for body in (b"first", b"second"):
        await client.post(f"/h/{token}", content=body)
    started = time.monotonic()
    reply = (await client.get(_list_url(token, "wait=10"))).json()
    assert time.monotonic() - started < 2
    # after defaults to 0 with wait: forward from the start, oldest first.
    assert [c["seq"] for c in reply["captures"]] == [1, 2]
    assert reply["next_after"] == 2
    assert reply["total"] == 2


async def test_the_wait_returns_as_soon_as_a_newer_capture_arrives(client, endpoint):
    token = endpoint["token"]
    await client.post(f"/h/{token}", content=b"old")
    task = await _waiting(client, _list_url(token, "after=1&wait=30"))
    started = time.monotonic()
    await client.post(f"/h/{token}", content=b"new", headers={"x-mark": "fresh"})
    reply = (await asyncio.wait_for(task, 5)).json()
    assert time.monotonic() - started < 2
    assert len(reply["captures"]) == 1
    capture = reply["captures"][0]
    assert capture["seq"] == 2 and ["x-mark", "fresh"] in capture["headers"]
    assert reply["next_after"] == 2
    assert reply["total"] == 2


async def test_the_filters_decide_what_ends_the_wait(client, endpoint):
    token = endpoint["token"]
    task = await _waiting(client, _list_url(token, "method=put&wait=30"))
    await client.post(f"/h/{token}", content=b"not this one")
    await asyncio.sleep(0.2)
    assert not task.done(), "a POST ended a wait for PUT"
    await client.put(f"/h/{token}", content=b"this one")
    reply = (await asyncio.wait_for(task, 5)).json()
    assert [(c["method"], c["seq"]) for c in reply["captures"]] == [("PUT", 2)]


async def test_the_wait_times_out_with_an_empty_list_and_200(client, endpoint):
    token = endpoint["token"]
    await client.post(f"/h/{token}", content=b"seen already")
    started = time.monotonic()
    response = await client.get(_list_url(token, "after=1&wait=0.3"))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["captures"] == []
    assert response.json()["next_after"] == 1  # unchanged: wait again from the same point
    assert 0.3 <= elapsed < 2


async def test_wait_zero_is_a_plain_look(client, endpoint):
    started = time.monotonic()
    reply = (await client.get(_list_url(endpoint["token"], "wait=0"))).json()
    assert reply["captures"] == [] and reply["next_after"] == 0
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("value", ["-1", "61", "abc", "nan", "inf", "1e400"])
async def test_bad_wait_values_are_400(client, endpoint, value):
    response = await client.get(_list_url(endpoint["token"], f"wait={value}"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == [{"field": "wait",
                                "message": "a number of seconds from 0 to 60"}]
    assert repr(value) in error["message"]


async def test_deleting_the_endpoint_ends_its_waits_with_404(client, endpoint):
    token = endpoint["token"]
    task = await _waiting(client, _list_url(token, "wait=30"))
    assert (await client.delete(f"/api/endpoints/{token}")).status_code == 200
    response = await asyncio.wait_for(task, 5)
    assert response.status_code == 404
    assert "deleted while waiting" in response.json()["error"]["message"]


async def test_many_captures_while_waiting_on_a_filter_do_not_drop_the_wait(client, endpoint):
    # More events than a subscription holds (256) arrive, none matching: the wait goes on.
    token = endpoint["token"]
    task = await _waiting(client, _list_url(token, "q=needle&wait=30"))
    for i in range(300):
        await client.post(f"/h/{token}", content=b"hay %d" % i)
    assert not task.done()
    await client.post(f"/h/{token}", content=b"a needle")
    reply = (await asyncio.wait_for(task, 5)).json()
    assert [c["seq"] for c in reply["captures"]] == [301]


def test_shutdown_ends_an_open_wait_promptly(server):
    token = httpx.post(server.url + "/api/endpoints", json={}).json()["token"]
    result: dict = {}

    def wait() -> None:
        response = httpx.get(server.url + _list_url(token, "wait=60"), timeout=30)
        result["status"], result["body"] = response.status_code, response.json()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    waiter.join(10)
    assert not waiter.is_alive(), "the wait held on after the server stopped"
    assert time.monotonic() - started < 5, "the wait held the server's exit"
    assert result == {"status": 200, "body": {"endpoint": token, "captures": [],
                                              "next_after": 0, "next_before": None,
                                              "total": 0}}


async def test_a_cancelled_wait_leaves_no_task_or_subscription_behind(client, endpoint, app):
    token = endpoint["token"]
    task = await _waiting(client, _list_url(token, "wait=30"))
    hub = app.state.hub
    assert hub.count() == 1
    def helpers() -> list[asyncio.Task]:
        return [t for t in asyncio.all_tasks() if not t.done()
                and ("__anext__" in repr(t) or "disconnected" in repr(t))]

    assert helpers(), "the wait's own tasks were expected while it waits"
    task.cancel()
    await asyncio.sleep(0.05)
    assert hub.count() == 0
    assert helpers() == []
