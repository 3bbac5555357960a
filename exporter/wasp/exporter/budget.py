"""A connection budget shared by many targets, and the small pool that honours it.

The budget counts connections *open* (busy or idle), all targets together, so
the databases never see more than ``fleet.max_connections`` sessions from one
exporter. A target that needs a connection while the budget is spent closes
the longest-idle connection of any target sharing the budget, or waits for one
to come back. Idle connections are closed after ``idle_timeout`` anyway.

Without a budget, each target keeps using psycopg_pool; this pool exists
because a psycopg_pool cannot give its idle connections to another pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool

__all__ = ["BudgetPool", "ConnectionBudget"]


@dataclass
class _Idle:
    pool: BudgetPool
    conn: psycopg.AsyncConnection[Any]
    since: float


class ConnectionBudget:
    """The most connections open at once across every target that shares it."""

    def __init__(self, limit: int, *, idle_timeout: float = 30.0) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.open = 0
        self.waits = 0
        self._idle: list[_Idle] = []  # oldest first
        self._freed = asyncio.Condition()

    async def take(self, deadline: float) -> None:
        """Take a slot for a new connection: free, or freed by closing the longest-idle one."""
        waited = False
        async with self._freed:
            while self.open >= self.limit:
                if self._idle:
                    victim = self._idle.pop(0)
                    victim.pool.forget(victim.conn)
                    self.open -= 1
                    await _close_quietly(victim.conn)
                    continue
                if not waited:
                    self.waits += 1
                    waited = True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise psycopg_pool.PoolTimeout(
                        f"connection budget spent: {self.limit} connections open across "
                        "targets (fleet.max_connections)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), left)
            self.open += 1

    async def give_back(self) -> None:
        """A connection was closed: its slot is free."""
        async with self._freed:
            self.open -= 1
            self._freed.notify()

    async def parked(self, pool: BudgetPool, conn: psycopg.AsyncConnection[Any]) -> None:
        """A connection went idle: another target may take its slot."""
        async with self._freed:
            self._idle.append(_Idle(pool, conn, time.monotonic()))
            self._freed.notify()

    def unpark(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """An idle connection is in use again."""
        self._idle = [i for i in self._idle if i.conn is not conn]

    async def expire(self) -> None:
        """Close connections idle longer than idle_timeout."""
        now = time.monotonic()
        async with self._freed:
            old = [i for i in self._idle if now - i.since > self.idle_timeout]
            self._idle = [i for i in self._idle if now - i.since <= self.idle_timeout]
            for i in old:
                i.pool.forget(i.conn)
                self.open -= 1
                await _close_quietly(i.conn)
            if old:
                self._freed.notify_all()


async def _close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


class BudgetPool:
    """A target's connections under a shared budget (the subset of psycopg_pool that TargetDB uses)."""

    def __init__(self, budget: ConnectionBudget, dsn: str, *, kwargs: dict[str, Any],
                 max_size: int) -> None:
        self.budget = budget
        self.dsn = dsn
        self.kwargs = kwargs
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._all: set[psycopg.AsyncConnection[Any]] = set()
        self._expirer: asyncio.Task[None] | None = None

    async def open(self, wait: bool = False) -> None:
        """Start closing idle connections after the budget's idle_timeout."""
        self._expirer = asyncio.create_task(self._expire_loop())

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.budget.idle_timeout / 2))
            await self.budget.expire()

    async def close(self, timeout: float = 5.0) -> None:
        """Close every connection of this target and give their slots back."""
        if self._expirer:
            self._expirer.cancel()
        for conn in list(self._all):
            self.budget.unpark(conn)
            self.forget(conn)
            await _close_quietly(conn)
            await self.budget.give_back()

    def forget(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Drop `conn` from this pool (the budget closed it)."""
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one use: an idle one of this target, or a new one within the budget."""
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError:
            raise psycopg_pool.PoolTimeout("every connection of this target is busy") from None
        try:
            conn = await self._get(deadline)
            try:
                yield conn
            finally:
                await self._put(conn)
        finally:
            self._slots.release()

    async def _get(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn = self._idle.pop()
            self.budget.unpark(conn)
            if not conn.closed:
                return conn
            self._all.discard(conn)
            await self.budget.give_back()
        await self.budget.take(deadline)
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, **self.kwargs)
        except BaseException:
            await self.budget.give_back()
            raise
        self._all.add(conn)
        return conn

    async def _put(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._all.discard(conn)
            await _close_quietly(conn)
            await self.budget.give_back()
            return
        self._idle.append(conn)
        await self.budget.parked(self, conn)
