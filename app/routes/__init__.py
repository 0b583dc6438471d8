"""The URL map: every route Hookscope serves.

    ANY /h/{key} and /h/{key}/{rest:path}   capture URLs: hookscope.routes.capture.CaptureMiddleware
                                            takes them in front of Starlette (the hot path)
    /, /e/{key}, /static                    the browser pages (hookscope.routes.pages)
    everything else                         the routes below
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from hookscope.formats import Validation
from hookscope.ingest.limits import FailureThrottle, RateLimiter
from hookscope.ingest.offload import Offload
from hookscope.live import Publisher
from hookscope.ops.forwarder import Forwarder
from hookscope.routes import captures, endpoints, pages, service, stream
from hookscope.routes.access import AccessMiddleware
from hookscope.routes.capture import Admit, CaptureMiddleware
from hookscope.settings import Settings
from hookscope.storage import Store


def build_middleware(settings: Settings, throttle: FailureThrottle,
                     store: Store) -> list[Middleware]:
    """Starlette's middleware. The capture path is in front of all of it (build_front)."""
    return [Middleware(AccessMiddleware, token=settings.token, public_url=settings.public_url,
                       allowed_hosts=settings.allowed_hosts, throttle=throttle,
                       revoked=store.session_revoked)]


def build_front(store: Store, settings: Settings, validation: Validation, hub: Publisher,
                limiter: RateLimiter, offload: Offload, admit: Admit | None,
                forwarder: Forwarder) -> Callable[[ASGIApp], ASGIApp]:
    """What takes capture URLs in front of the Starlette app it is given."""

    def front(app: ASGIApp) -> ASGIApp:
        return CaptureMiddleware(app, store=store, settings=settings, validation=validation,
                                 hub=hub, limiter=limiter, offload=offload, admit=admit,
                                 forwarder=forwarder)

    return front


def build_routes() -> list[BaseRoute]:
    return [
        Route("/api/endpoints", endpoints.create_endpoint, methods=["POST"]),
        Route("/api/endpoints", endpoints.list_endpoints, methods=["GET"]),
        Route("/api/endpoints/{key}", endpoints.get_endpoint, methods=["GET"]),
        Route("/api/endpoints/{key}", endpoints.update_endpoint, methods=["PATCH"]),
        Route("/api/endpoints/{key}", endpoints.delete_endpoint, methods=["DELETE"]),
        Route("/api/endpoints/{key}/captures", endpoints.list_captures, methods=["GET"]),
        Route("/api/endpoints/{key}/captures", endpoints.clear_captures, methods=["DELETE"]),
        Route("/api/endpoints/{key}/stream", stream.StreamEndpoint(), methods=["GET"]),
        Route("/api/endpoints/{key}/schema", endpoints.endpoint_schema, methods=["GET"]),
        Route("/api/captures/{id}", captures.get_capture, methods=["GET"]),
        Route("/api/captures/{id}", captures.delete_capture, methods=["DELETE"]),
        Route("/api/captures/{id}/body", captures.capture_body, methods=["GET"]),
        Route("/api/captures/{id}/export", captures.export_capture, methods=["GET"]),
        Route("/api/captures/{a}/diff/{b}", captures.diff_captures, methods=["GET"]),
        Route("/api/captures/{id}/replay", captures.replay_capture, methods=["POST"]),
        Route("/api/captures/{id}/verify", captures.reverify_capture, methods=["POST"]),
        Route("/api/captures/{id}/deliveries", captures.record_delivery, methods=["POST"]),
        Route("/api/schemes", service.list_schemes, methods=["GET"]),
        Route("/api/formats", service.list_formats, methods=["GET"]),
        Route("/api/formats/{id}", service.get_format, methods=["GET"]),
        Route("/api/validate", service.validate_payload, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/", pages.home, methods=["GET"]),
        Route("/e/{key}", pages.inspector, methods=["GET"]),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(pages.STATIC)), name="static"),
    ]
