"""Background rendering: join and gzip off the event loop, coalesced, consistent, safe at shutdown."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import wasp.exporter.engine as engine_mod
from helpers import config, value
from wasp.companions.pgcluster import free_port
from wasp.config.schema import parse_config
from wasp.exporter.collector import CollectContext, Collector
from wasp.exporter.engine import Engine
from wasp.exporter.exposition import Rendered, render
from wasp.exporter.web import make_app
from wasp.model import Family


class BigCollector(Collector):
    """Many series (a large exposition) carrying a value the test sets."""

    def __init__(self, n: int = 20_000, interval: float = 0.1) -> None:
        self.name = "big"
        self.target = None
        self.interval = interval
        self.timeout = 5.0
        self.max_series = n
        self.n = n
        self.value = 1.0

    async def collect(self, ctx: CollectContext) -> list[Family]:
        v = self.value
        return [Family("wasp_test_big", "gauge", "h", ("i",), tuple(((str(i),), v) for i in range(self.n)))]


class GatedCollector(Collector):
    """One round (long interval) that finishes when the test says so, after an optional delay."""

    def __init__(self, k: int, delay: float = 0.0, gated: bool = False) -> None:
        self.name = f"gated_{k}"
        self.target = None
        self.interval = 300.0
        self.timeout = 30.0
        self.k = k
        self.delay = delay
        self.go = asyncio.Event()
        if not gated:
            self.go.set()

    async def collect(self, ctx: CollectContext) -> list[Family]:
        await self.go.wait()
        await asyncio.sleep(self.delay)
        return [Family("wasp_test_gated", "gauge", "h", ("k",), (((str(self.k),), float(self.k)),))]


class RenderHook:
    """Wraps the engine's render: records the calling thread, can hold a render in progress."""

    def __init__(self) -> None:
        self.real: Callable[..., Rendered] = render  # what the engine calls
        self.threads: list[int] = []
        self.holding = threading.Event()  # hold the next render until `gate` is set
        self.gate = threading.Event()
        self.entered = threading.Event()  # a held render is waiting at the gate
        self.left = threading.Event()  # the held render has finished
        self.fail_next = False

    def __call__(self, chunks: Any, **kw: Any) -> Rendered:
        self.threads.append(threading.get_ident())
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("render failed on purpose")
        held = self.holding.is_set()
        if held:
            self.holding.clear()
            self.entered.set()
            self.gate.wait(10)  # on the old code this blocks the event loop itself
        try:
            return self.real(chunks, **kw)
        finally:
            if held:
                self.left.set()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[RenderHook]:
    h = RenderHook()
    monkeypatch.setattr(engine_mod, "render", h)
    yield h
    h.gate.set()  # never leave a worker thread waiting


async def until(cond: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Poll `cond` on the loop (a generous deadline: for hangs, not for speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.01)


async def serve(engine: Engine) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_render_runs_off_the_loop_and_scrapes_meanwhile_get_the_previous_body(
        dsn: str, hook: RenderHook) -> None:
    big = BigCollector()
    engine = Engine(parse_config(config(dsn, {})), collectors=[big], render_spacing=0.2)
    hook.threads.clear()  # the empty exposition made by the constructor
    loop_thread = threading.get_ident()
    runner, base = await serve(engine)
    await engine.start()
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            async def scrape(gz: bool) -> bytes:
                async with s.get(base + "/metrics",
                                 headers={"Accept-Encoding": "gzip" if gz else "identity"}) as r:
                    assert r.status == 200
                    assert r.headers.get("Content-Encoding") == ("gzip" if gz else None)
                    return await r.read()

            await until(lambda: value(engine.rendered.text, "wasp_test_big", i="7") == 1, "first body")
            assert len(engine.rendered.text) > 400_000

            hook.holding.set()
            big.value = 2.0
            await until(hook.entered.is_set, "a render reached the hook")
            served = engine.rendered
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            tick_task = asyncio.create_task(ticker())
            bodies = await asyncio.gather(*(scrape(i % 2 == 0) for i in range(8)))
            await asyncio.sleep(0.05)
            # all of that happened while the render was still in progress
            assert not hook.left.is_set()
            assert ticks > 0
            tick_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await tick_task
            for i, b in enumerate(bodies):
                assert b == (served.gz if i % 2 == 0 else served.text)
            assert gzip.decompress(bodies[0]) == bodies[1]
            assert value(bodies[1], "wasp_test_big", i="7") == 1

            hook.gate.set()
            await until(lambda: value(engine.rendered.text, "wasp_test_big", i="7") == 2, "new body")
            plain, gz = await scrape(False), await scrape(True)
            assert value(plain, "wasp_test_big", i="7") == 2
            assert value(gzip.decompress(gz), "wasp_test_big", i="7") == 2
            r = engine.rendered
            assert gzip.decompress(r.gz) == r.text  # the pair always comes from one render
    finally:
        await engine.stop()
        await runner.cleanup()
    assert hook.threads and all(t != loop_thread for t in hook.threads)


async def test_burst_of_completions_renders_a_bounded_number_of_times(dsn: str, hook: RenderHook,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "RENDER_MAX_INTERVAL", 60.0)  # only changes cause renders here
    n = 40
    collectors = [GatedCollector(k, delay=k * 0.02) for k in range(n)]
    cfg = parse_config(config(dsn, {}, max_concurrent_queries=n))
    engine = Engine(cfg, collectors=collectors)  # default spacing
    assert engine.render_spacing == 1.0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await engine.start()
    try:
        def all_there() -> bool:
            text = engine.rendered.text
            return all(value(text, "wasp_test_gated", k=str(k)) == k for k in range(n))

        await until(lambda: engine.ready, "all collectors ran")
        await until(all_there, "the last state rendered")
        elapsed = loop.time() - t0
        # render starts are at least a spacing apart, but for the one when the engine turned ready
        assert engine.renders <= elapsed / engine.render_spacing + 3, (engine.renders, elapsed)
    finally:
        await engine.stop()


async def test_changes_during_a_render_cause_exactly_one_more(dsn: str, hook: RenderHook,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "RENDER_MAX_INTERVAL", 60.0)  # only changes cause renders here
    collectors = [GatedCollector(k, gated=True) for k in range(10)]
    cfg = parse_config(config(dsn, {}, max_concurrent_queries=len(collectors)))
    engine = Engine(cfg, collectors=collectors, render_spacing=0.2)
    await engine.start()
    try:
        await until(lambda: engine.renders >= 1, "the start-up render")
        hook.holding.set()
        collectors[0].go.set()
        await until(hook.entered.is_set, "a render reached the hook")
        before = engine.renders
        for c in collectors[1:]:
            c.go.set()
        await until(lambda: engine.ready, "all collectors ran")
        assert engine.renders == before  # held: nothing new installed, nothing stacked
        # every collector ran, but /metrics does not serve that round yet: not ready
        assert not engine.serving_ready
        held_text = engine.rendered.text
        hook.gate.set()
        await until(lambda: engine.renders == before + 2, "the held render and one more")
        assert engine.serving_ready
        text = engine.rendered.text
        assert text != held_text
        assert all(value(text, "wasp_test_gated", k=str(k)) == k for k in range(10))
        await asyncio.sleep(5 * engine.render_spacing)
        assert engine.renders == before + 2
    finally:
        await engine.stop()


async def test_stop_with_a_render_in_flight(dsn: str, hook: RenderHook) -> None:
    big = BigCollector(n=1000)
    engine = Engine(parse_config(config(dsn, {})), collectors=[big], render_spacing=0.1)
    await engine.start()
    await until(lambda: value(engine.rendered.text, "wasp_test_big", i="7") == 1, "first body")
    hook.holding.set()
    big.value = 2.0
    await until(hook.entered.is_set, "a render reached the hook")
    served, renders = engine.rendered, engine.renders
    await engine.stop()  # returns with the render still held in its thread
    assert not hook.left.is_set()
    hook.gate.set()
    assert await asyncio.to_thread(hook.left.wait, 10)
    await asyncio.sleep(0.05)  # the finished render's result is dropped, not installed
    assert engine.rendered is served and engine.renders == renders


async def test_periodic_render_and_a_failed_render_does_not_stop_rendering(
        dsn: str, hook: RenderHook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "RENDER_MAX_INTERVAL", 0.2)
    engine = Engine(parse_config(config(dsn, {})), collectors=[], render_spacing=0.05)
    await engine.start()
    try:
        await until(lambda: engine.renders >= 2, "renders without any change")
        hook.fail_next = True
        calls = len(hook.threads)
        await until(lambda: len(hook.threads) > calls and not hook.fail_next, "the failing render")
        after = engine.renders
        await until(lambda: engine.renders > after, "rendering goes on")
    finally:
        await engine.stop()


def test_render_now_stays_synchronous_and_wins_over_an_older_snapshot(dsn: str) -> None:
    engine = Engine(parse_config(config(dsn, {})), collectors=[])
    seq_old, chunks_old = engine._snapshot()
    now = engine.render_now()
    assert engine.renders == 1 and engine.rendered is now
    late = engine._install(seq_old, render(chunks_old))  # an older render finishing late
    assert late is now and engine.renders == 1


async def test_first_complete_round_is_not_held_back_by_the_spacing(dsn: str) -> None:
    collectors = [GatedCollector(k, gated=True) for k in range(3)]
    cfg = parse_config(config(dsn, {}, max_concurrent_queries=len(collectors)))
    engine = Engine(cfg, collectors=collectors, render_spacing=3600.0)
    await engine.start()
    try:
        await until(lambda: engine.renders >= 1, "the start-up render")
        for c in collectors:
            c.go.set()
        # well before the spacing: the render that shows the first complete round
        await until(lambda: value(engine.rendered.text, "wasp_exporter_ready") == 1, "ready rendered")
        text = engine.rendered.text
        assert all(value(text, "wasp_test_gated", k=str(k)) == k for k in range(3))
    finally:
        await engine.stop()
