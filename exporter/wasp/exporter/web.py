"""HTTP: /metrics serves pre-rendered bytes; /healthz, /readyz and a landing page."""

from __future__ import annotations

from aiohttp import web

from wasp import __version__
from wasp.exporter.engine import Engine
from wasp.exporter.exposition import CONTENT_TYPE
from wasp.exporter.fleet import Fleet, ProbeError
from wasp.exporter.webauth import WebGuard

__all__ = ["ENGINE_KEY", "FLEET_KEY", "make_app"]

ENGINE_KEY = web.AppKey("engine", Engine)
FLEET_KEY = web.AppKey("fleet", Fleet)

_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>wasp exporter</title></head>
<body><h1>wasp exporter {version}</h1>
<ul>
<li><a href="metrics">/metrics</a>: the exposition ({series} series, rendered in the background)</li>
<li><a href="healthz">/healthz</a>: the process is alive</li>
<li><a href="readyz">/readyz</a>: configuration loaded, the first round done and served on /metrics</li>
<li><a href="sd">/sd</a>: the targets, in Prometheus HTTP service discovery format</li>
<li>/probe?target=NAME: one target's series (the multi-target exporter pattern)</li>
</ul></body></html>
"""


async def metrics(request: web.Request) -> web.Response:
    """The last rendered exposition; gzip when the client accepts it."""
    rendered = request.app[ENGINE_KEY].rendered
    if "gzip" in request.headers.get("Accept-Encoding", "") and rendered.gz:
        return web.Response(body=rendered.gz, headers={
            "Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return web.Response(body=rendered.text, headers={"Content-Type": CONTENT_TYPE,
                                                     "Vary": "Accept-Encoding"})


async def healthz(request: web.Request) -> web.Response:
    """Alive."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready once every query has run once and /metrics serves that round."""
    engine = request.app[ENGINE_KEY]
    if engine.serving_ready:
        return web.Response(text="ready\n")
    if engine.ready:
        return web.Response(status=503, text="not ready: the first round is being rendered\n")
    waiting = sum(1 for s in engine.states.values() if not s.completed_once and not s.disabled)
    return web.Response(status=503, text=f"not ready: {waiting} queries have not run yet\n")


async def landing(request: web.Request) -> web.Response:
    """A small page linking the endpoints."""
    engine = request.app[ENGINE_KEY]
    return web.Response(text=_LANDING.format(version=__version__, series=engine.rendered.series),
                        content_type="text/html")


async def probe(request: web.Request) -> web.Response:
    """One target's series: /probe?target=NAME[&auth_module=M]."""
    try:
        rendered = await request.app[FLEET_KEY].probe(dict(request.query))
    except ProbeError as e:
        return web.Response(status=e.status, text=e.message + "\n")
    return web.Response(body=rendered.text, headers={"Content-Type": CONTENT_TYPE})


async def service_discovery(request: web.Request) -> web.Response:
    """The targets as Prometheus HTTP SD target groups, each scraped through /probe here."""
    address = request.query.get("address") or request.host
    return web.json_response(request.app[FLEET_KEY].service_discovery(address))


def make_app(engine: Engine, fleet: Fleet | None = None, *,
             guard: WebGuard | None = None) -> web.Application:
    """The aiohttp application around an engine (and its fleet: /probe, /sd).

    `guard` adds basic auth and the configured headers to every route.
    """
    app = web.Application(middlewares=[guard.middleware] if guard is not None else [])
    app[ENGINE_KEY] = engine
    if fleet is not None:
        app[FLEET_KEY] = fleet
        app.router.add_get("/probe", probe)
        app.router.add_get("/sd", service_discovery)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", landing)
    return app
