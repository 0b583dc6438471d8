"""The floor for bench/ingest: a Starlette app that only reads the body and answers JSON."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/h/{key}", receive, methods=["POST"])])
