"""The URL map: every route Hookscope serves, in one list."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from app.routes import api
from app.routes.capture import CaptureApp
from app.settings import Settings
from app.store import Store


def build_routes(store: Store, settings: Settings) -> list[BaseRoute]:
    capture = CaptureApp(store, settings)
    return [
        # A class instance is routed for every method, including ones Starlette has never heard of.
        Route("/h/{key}", capture),
        Route("/h/{key}/{rest:path}", capture),
        Route("/api/endpoints", api.create_endpoint, methods=["POST"]),
        Route("/api/endpoints", api.list_endpoints, methods=["GET"]),
        Route("/api/endpoints/{key}", api.get_endpoint, methods=["GET"]),
        Route("/api/endpoints/{key}", api.update_endpoint, methods=["PATCH"]),
        Route("/api/endpoints/{key}", api.delete_endpoint, methods=["DELETE"]),
        Route("/api/endpoints/{key}/captures", api.list_captures, methods=["GET"]),
        Route("/api/endpoints/{key}/captures", api.clear_captures, methods=["DELETE"]),
        Route("/api/captures/{id}", api.get_capture, methods=["GET"]),
        Route("/api/captures/{id}", api.delete_capture, methods=["DELETE"]),
        Route("/api/captures/{id}/body", api.capture_body, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
    ]
