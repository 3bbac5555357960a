"""The engine: runs every collector on its own interval and keeps the exposition rendered.

A scrape never waits on a database: collectors run in the background, each
successful run replaces that collector's families, and the exposition bytes
are re-rendered after changes. A run still going when its next turn comes is
skipped and counted, never stacked. The last good families of a collector are
served until its last success is older than `stale_after`, whatever its runs
are doing (when its last run succeeded, not before its next one is overdue:
interval plus timeout), then they are dropped.

A target not known to be up is probed on a connection of its own, which says
why it cannot be reached (`wasp_target_connection_errors_total{reason}`); while
it is down its queries fail at once, without a connection attempt each, and it
is probed again with backoff. One round (`run_once`) tries each target once.
Ready means every query has completed a run, except those whose target was
tried and found down: a down target is `wasp_target_up 0`, not an unready
exporter.

Rendering never holds up a scrape: the list of chunks to render is taken on
the event loop (cheap and consistent), the join and gzip run in a worker
thread, and the finished (plain, gzip) pair replaces the served one in a
single assignment on the loop. Renders are coalesced: one at a time, starts at
least `render_spacing` apart (the one showing the first complete round is not
held back), soon after changes and at least every RENDER_MAX_INTERVAL seconds.
Changes during a render cause exactly one more.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wasp.config.schema import Config, QueryDef, Requires, TargetConfig
from wasp.exporter.budget import ConnectionBudget
from wasp.exporter.collector import CollectContext, CollectError, Collector
from wasp.exporter.db import DBError, TargetDB
from wasp.exporter.exposition import Rendered, render, render_samples
from wasp.exporter.sql import SqlCollector, TopCollector
from wasp.exporter.targets import TargetState, check_requires
from wasp.model import Family

__all__ = ["Engine", "QueryState", "TargetState"]

log = logging.getLogger(__name__)

REQUIRES_RECHECK = 600.0
#: the longest the exposition goes without a render (self-metrics such as ages change)
RENDER_MAX_INTERVAL = 5.0
#: the least time between the starts of two background renders (default)
RENDER_SPACING = 1.0
#: a change waits this long before rendering, so a burst of completions lands in one render
RENDER_DEBOUNCE = 0.05


@dataclass
class QueryState:
    """Everything the engine knows about one collector."""

    collector: Collector
    const_names: tuple[str, ...] = ()
    const_values: tuple[str, ...] = ()
    chunks: list[tuple[Family, str]] = field(default_factory=list)
    last_success: float | None = None
    last_success_mono: float | None = None
    last_ok: bool = False
    last_duration: float = 0.0
    series: int = 0
    runs: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: int = 0
    dropped: int = 0
    completed_once: bool = False
    disabled: str | None = None
    requires_checked: float = 0.0
    task: asyncio.Task[None] | None = None
    last_error: str | None = None


class Engine:
    """Schedules collectors, keeps their last results, renders the exposition."""

    def __init__(self, cfg: Config, *, collectors: Iterable[Collector] | None = None,
                 extra: Iterable[Collector] = (),
                 render_spacing: float = RENDER_SPACING,
                 budget: ConnectionBudget | None = None) -> None:
        self.cfg = cfg
        #: the least time between the starts of two background renders
        self.render_spacing = render_spacing
        self.status_dir = Path(cfg.server.status_dir)
        self.targets: dict[str, TargetState] = {}
        for t in cfg.targets:
            db = None
            if t.type == "postgres":
                db = TargetDB(t.name, t.dsn(), pool_max=t.pool_max, connect_timeout=t.connect_timeout,
                              budget=budget)
            st = TargetState(config=t, db=db)
            st.semaphore = asyncio.Semaphore(t.pool_max)
            self.targets[t.name] = st
        self.states: dict[str, QueryState] = {}
        for c in collectors if collectors is not None else self._build_collectors():
            self.add_collector(c)
        for c in extra:
            self.add_collector(c)
        self._rendered = render([])
        self._render_seq = 0  # bumped by every snapshot
        self._ready_seq: int | None = None  # the first snapshot taken once ready
        self._installed_seq = 0  # the snapshot the served exposition comes from
        self._global = asyncio.Semaphore(cfg.server.max_concurrent_queries)
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: more families to show with the self-metrics (e.g. the fleet's)
        self.family_sources: list[Callable[[], list[Family]]] = []
        self.start_time = time.time()
        self.renders = 0
        #: inside run_once: a target is tried once, never again in the same round
        self._one_round = False

    # -- building ---------------------------------------------------------------
    def _build_collectors(self) -> list[Collector]:
        out: list[Collector] = []
        for t in self.cfg.targets:
            if t.type != "postgres":
                continue
            for q in self.cfg.queries_for(t):
                out.append(self._sql_collector(q, t))
        return out

    def _sql_collector(self, q: QueryDef, t: TargetConfig) -> Collector:
        if q.events is not None:
            from wasp.exporter.windows.events import EventCounterCollector

            return EventCounterCollector(q, t.name)
        if q.window is not None:
            from wasp.exporter.windows import make_window_collector

            c = make_window_collector(q, t.name)
            if c is not None:
                return c
        if q.top is not None:
            return TopCollector(q, t.name)
        return SqlCollector(q, t.name)

    def add_collector(self, c: Collector) -> None:
        """Register a collector (before start)."""
        if c.key in self.states:
            raise ValueError(f"two collectors share the key {c.key!r}")
        names: tuple[str, ...] = ()
        values: tuple[str, ...] = ()
        if c.target is not None:
            t = self.targets.get(c.target)
            if t is None:
                raise ValueError(f"collector {c.name!r} names unknown target {c.target!r}")
            names = ("target", *(k for k, _ in t.config.labels))
            values = (c.target, *(v for _, v in t.config.labels))
        self.states[c.key] = QueryState(collector=c, const_names=names, const_values=values)

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Open pools and start every collector's loop."""
        for t in self.targets.values():
            if t.db is not None:
                await t.db.open()
        self._tasks.append(asyncio.create_task(self._render_loop(), name="wasp-render"))
        for st in self.states.values():
            self._tasks.append(asyncio.create_task(self._loop(st), name=f"wasp-{st.collector.key}"))
        log.info("engine started: %d targets, %d collectors", len(self.targets), len(self.states))

    async def stop(self) -> None:
        """Stop scheduling, cancel running queries (server side too), close pools."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        running = [st.task for st in self.states.values() if st.task and not st.task.done()]
        for t in self.targets.values():
            if t.db is not None:
                await t.db.cancel_running()
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        for t in self.targets.values():
            if t.db is not None:
                await t.db.close()
        for st in self.states.values():
            try:
                await st.collector.close()
            except Exception:  # one collector's cleanup must not keep the others open
                log.exception("closing collector %s failed", st.collector.key)
        self._tasks.clear()
        log.info("engine stopped")

    async def run_once(self) -> Rendered:
        """Run every collector once (concurrently, within limits) and render.

        Every target is tried once, all at the same time, before the queries: the
        queries of one that cannot be reached fail at once with its reason, so the
        round takes about one connect timeout per round, not one per query.
        """
        for t in self.targets.values():
            if t.db is not None:
                await t.db.open()
        self._one_round = True
        try:
            await asyncio.gather(*(self._ensure_target(t) for t in self.targets.values()
                                   if t.db is not None))
            await asyncio.gather(*(self._run(st) for st in self.states.values()))
        finally:
            self._one_round = False
        return self.render_now()

    def _target_down(self, st: QueryState) -> bool:
        """True when the collector's target was tried and cannot be reached."""
        t = self.targets.get(st.collector.target) if st.collector.target else None
        return t is not None and t.db is not None and t.checked_once and not t.up

    @property
    def ready(self) -> bool:
        """True once every query has completed a run, or its target was tried and is down."""
        return all(st.completed_once or st.disabled or self._target_down(st)
                   for st in self.states.values())

    @property
    def serving_ready(self) -> bool:
        """True once the exposition served holds every collector's first round."""
        return self._ready_seq is not None and self._installed_seq >= self._ready_seq

    @property
    def rendered(self) -> Rendered:
        """The last rendered exposition."""
        return self._rendered

    # -- scheduling -------------------------------------------------------------
    async def _loop(self, st: QueryState) -> None:
        loop = asyncio.get_running_loop()
        interval = st.collector.interval
        # a little spread so queries with the same interval do not all fire together
        next_t = loop.time() + random.uniform(0, min(0.5, interval / 10))
        while not self._stopping.is_set():
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if st.task is not None and not st.task.done():
                st.skipped += 1
                log.warning("query %s still running after %.0fs: skipping this turn",
                            st.collector.key, interval)
                self._dirty.set()
            else:
                st.task = asyncio.create_task(self._run(st))
            next_t += interval
            now = loop.time()
            if next_t < now:
                next_t = now + interval

    async def _ensure_target(self, t: TargetState) -> bool:
        """Ping a postgres target when due (once per round in run_once); whether it is up."""
        up = await t.ensure_up(one_round=self._one_round)
        self._dirty.set()
        return up

    async def _run(self, st: QueryState) -> None:
        c = st.collector
        t = self.targets.get(c.target) if c.target else None
        db = t.db if t is not None else None
        start = time.monotonic()
        try:
            if t is not None and db is not None:
                if not await self._ensure_target(t):
                    # the target's own log line says why; one per query would drown it
                    self._failed(st, "connection", f"target {t.config.name} is down "
                                 f"({t.down_cause}): {t.last_error}", start, quiet=True)
                    return
                if not self._role_ok(st, t) or not await self._requires_ok(st, t):
                    return
            ctx = CollectContext(now=time.time(), status_dir=self.status_dir, db=db)
            # the target's own slot first: its queued queries never sit on a global slot
            # while they wait for their target (a hung target keeps to its pool_max slots)
            async with t.semaphore if t is not None else contextlib.nullcontext(), self._global:
                start = time.monotonic()
                families = await asyncio.wait_for(c.collect(ctx), timeout=c.timeout + 10)
        except CollectError as e:
            self._failed(st, e.reason, str(e), start)
            if t is not None and e.reason == "connection":
                if t.db is None:  # a target its collectors reach themselves (PgBouncer)
                    t.up = False
                    t.checked_once = True
                elif t.up:
                    # probed on a connection of its own at the next ping (after the
                    # backoff), not by every query of this round
                    t.failed(DBError("connection", str(e)))
        except TimeoutError:
            self._failed(st, "timeout", f"no result within {c.timeout:g}s", start)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a collector bug must not take the others down
            log.exception("query %s crashed", c.key)
            self._failed(st, "other", f"{type(e).__name__}: {e}", start)
        else:
            self._succeeded(st, families, start)
            if t is not None and db is None:
                t.up = True
                t.checked_once = True
        finally:
            st.completed_once = True
            self._dirty.set()

    def _role_ok(self, st: QueryState, t: TargetState) -> bool:
        role = st.collector.role
        info = t.db.info if t.db else None
        ok = role == "any" or info is None or (role == "standby") == info.in_recovery
        if not ok:
            if st.disabled != "role" and st.chunks:
                log.info("query %s paused: target is not a %s", st.collector.key, role)
            st.disabled = "role"
            st.chunks = []
            st.series = 0
        elif st.disabled == "role":
            st.disabled = None
        return ok

    async def _requires_ok(self, st: QueryState, t: TargetState) -> bool:
        req: Requires | None = getattr(getattr(st.collector, "query", None), "requires", None)
        if not req:
            return True
        now = time.monotonic()
        if st.requires_checked and now - st.requires_checked < REQUIRES_RECHECK:
            return st.disabled is None
        assert t.db is not None
        missing = await check_requires(t.db, req)
        st.requires_checked = now
        if missing:
            if st.disabled != missing:
                log.warning("query %s disabled on target %s: %s", st.collector.name, t.config.name, missing)
            st.disabled = missing
            st.chunks = []
            st.series = 0
            return False
        if st.disabled:
            log.info("query %s enabled again on target %s", st.collector.name, t.config.name)
        st.disabled = None
        return True

    def _succeeded(self, st: QueryState, families: list[Family], start: float) -> None:
        st.runs += 1
        st.last_duration = time.monotonic() - start
        st.last_ok = True
        st.last_error = None
        st.last_success = time.time()
        st.last_success_mono = time.monotonic()
        cap = st.collector.max_series
        kept: list[Family] = []
        total = 0
        dropped = 0
        for f in families:
            n = len(f.samples)
            if total + n > cap:
                room = max(0, cap - total)
                dropped += n - room
                f = Family(f.name, f.type, f.help, f.labelnames, f.samples[:room])
            total += len(f.samples)
            kept.append(f)
        if dropped:
            st.dropped += dropped
            log.warning("query %s returned %d series over its cap of %d: dropped", st.collector.key,
                        dropped, cap)
        chunks = []
        for f in kept:
            if not f.samples:
                continue
            f = f.with_const_labels(st.const_names, st.const_values)
            chunks.append((f, render_samples(f)))
        st.chunks = chunks
        st.series = total

    def _failed(self, st: QueryState, reason: str, message: str, start: float, *,
                quiet: bool = False) -> None:
        st.runs += 1
        st.last_duration = time.monotonic() - start
        st.errors[reason] += 1
        if st.last_ok or st.last_error != message:
            log.log(logging.DEBUG if quiet else logging.WARNING, "query %s failed (%s): %s",
                    st.collector.key, reason, message)
        st.last_ok = False
        st.last_error = message

    # -- rendering --------------------------------------------------------------
    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -math.inf  # loop time the last render started
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, last + RENDER_MAX_INTERVAL - loop.time())
                await asyncio.wait_for(self._dirty.wait(), timeout=wait)
            # keep render starts `render_spacing` apart, except that the first round
            # complete (the engine turning ready) is shown without that delay
            while (pause := last + self.render_spacing - loop.time()) > 0:
                if self.ready and self._ready_seq is None:
                    break  # no render of the complete first round taken yet
                self._dirty.clear()  # a completion wakes this up to check readiness
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), timeout=pause)
            await asyncio.sleep(RENDER_DEBOUNCE)  # let a burst of completions land in one render
            # changes from here on (also during the render) are picked up by the next one
            self._dirty.clear()
            last = loop.time()
            try:
                await self.render_in_thread()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep serving the last exposition; try again next turn
                log.exception("rendering the exposition failed")

    async def render_in_thread(self) -> Rendered:
        """Render the current state with the join and gzip in a worker thread, then keep it.

        The snapshot is taken here on the loop; the result replaces the served
        exposition only if no later snapshot was installed meanwhile.
        """
        seq, chunks = self._snapshot()
        # join and gzip in a worker thread (zlib releases the GIL)
        rendered = await asyncio.to_thread(render, chunks)
        return self._install(seq, rendered)

    def render_now(self) -> Rendered:
        """Render the exposition from the current state right here (blocking) and keep it."""
        seq, chunks = self._snapshot()
        return self._install(seq, render(chunks))

    def _snapshot(self) -> tuple[int, list[tuple[Family, str]]]:
        """What to render now: every collector's current chunks and the self-metrics."""
        now = time.monotonic()
        stale = self.cfg.server.stale_after
        chunks: list[tuple[Family, str]] = []
        for st in self.states.values():
            if not st.chunks:
                continue
            # by age, whatever the runs are doing (one may be waiting on a dead server);
            # a query whose last run succeeded keeps its series until its next run is overdue
            # (its cycle may be longer than stale_after)
            c = st.collector
            limit = max(stale, c.interval + c.timeout) if st.last_ok else stale
            if st.last_success_mono is not None and now - st.last_success_mono > limit:
                log.warning("query %s: last good result is %.0fs old, dropping it",
                            st.collector.key, now - st.last_success_mono)
                st.chunks = []
                st.series = 0
                continue
            chunks.extend(st.chunks)
        for f in self.self_families():
            chunks.append((f, render_samples(f)))
        self._render_seq += 1
        if self._ready_seq is None and self.ready:
            self._ready_seq = self._render_seq
        return self._render_seq, chunks

    def _install(self, seq: int, rendered: Rendered) -> Rendered:
        """Serve `rendered` unless a later snapshot is already served; returns what is served."""
        if seq > self._installed_seq:
            self._installed_seq = seq
            self._rendered = rendered  # one assignment: plain and gzip always travel together
            self.renders += 1
        return self._rendered

    def fresh(self, st: QueryState) -> bool:
        """Whether a collector's current families may be served (not past stale_after)."""
        if not st.chunks:
            return False
        if st.last_ok or st.last_success_mono is None:
            return True
        return time.monotonic() - st.last_success_mono <= self.cfg.server.stale_after

    def self_families(self) -> list[Family]:
        """The self-metrics and the families of every extra source."""
        from wasp.exporter.selfmetrics import self_families

        out = self_families(self)
        for source in self.family_sources:
            out.extend(source())
        return out
