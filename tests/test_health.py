import pytest

from hookscope import __version__

pytestmark = pytest.mark.anyio


async def test_healthz_reports_ok_and_version(client):
    response = await client.get("/healthz")
    assert response.json() == {"ok": True, "version": __version__}
