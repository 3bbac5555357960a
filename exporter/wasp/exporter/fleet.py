"""Many databases from one exporter: probes, service discovery, shards, a connection budget.

Prometheus already distributes work (service discovery, relabelling, hashmod
sharding, federation); the exporter fits into it:

- ``/probe?target=NAME`` serves one target's last rendered series (the
  multi-target exporter pattern). Configured targets are collected in the
  background as always. A target not in the file is named by host, port and
  database with an ``auth_module``: its credentials come from the module, its
  address must match the module's allow-list, it starts collecting on the
  first probe (answering ``wasp_target_up 0`` with the reason until its first
  round) and is dropped when nobody probed it for ``probe_idle``.
- ``/sd`` lists the targets this exporter collects in Prometheus's HTTP SD
  format, so one ``http_sd_configs`` block covers the fleet.
- ``--shard I/N`` keeps the targets whose ``hashmod(name, N)`` is ``I``,
  computed as Prometheus's ``hashmod`` relabel action computes it, so N
  exporters split a fleet with no overlap and no gap.
- A connection budget bounds the database connections open at once across
  every target, configured or probed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg.conninfo import make_conninfo

from wasp.config.fleet import AuthModule, FleetSettings, Shard
from wasp.config.nodes import ConfigError
from wasp.config.schema import Config, TargetConfig, load_pack
from wasp.exporter.budget import ConnectionBudget
from wasp.exporter.engine import Engine
from wasp.exporter.exposition import Rendered, render, render_samples
from wasp.model import Family, MetricSpec

__all__ = ["Fleet", "ProbeError", "hashmod", "shard_config"]

log = logging.getLogger(__name__)

EngineFactory = Callable[..., Engine]


def hashmod(value: str, modulus: int) -> int:
    """Prometheus's hashmod: the md5 of `value`, its last 8 bytes as a big-endian uint64, mod N."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def shard_config(cfg: Config, shard: Shard | None) -> Config:
    """`cfg` with only the targets of `shard` (all of them without a shard)."""
    if shard is None or shard.count == 1:
        return cfg
    kept = tuple(t for t in cfg.targets if hashmod(t.name, shard.count) == shard.index)
    return replace(cfg, targets=kept)


class ProbeError(Exception):
    """A probe that cannot be served: the HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Probed:
    """A target first named by a probe: its own engine and when it was last asked for."""

    name: str
    engine: Engine
    last_probe: float
    started: float = field(default_factory=time.monotonic)


FLEET_METRICS = (
    MetricSpec("wasp_fleet_targets", "gauge", ("source",),
               "Targets this exporter collects, by where they come from (config or probe)"),
    MetricSpec("wasp_fleet_shard_info", "gauge", ("index", "count"),
               "This exporter's shard of the fleet (always 1)"),
    MetricSpec("wasp_fleet_connections_open", "gauge", (),
               "Database connections open now, all targets together"),
    MetricSpec("wasp_fleet_connection_budget", "gauge", (),
               "The most database connections open at once (fleet.max_connections)"),
    MetricSpec("wasp_fleet_connection_waits_total", "counter", (),
               "Connections that had to wait for the budget"),
    MetricSpec("wasp_probe_requests_total", "counter", ("result",),
               "Probe requests by result (ok, pending, bad_request, not_found)"),
    MetricSpec("wasp_probe_target_pending", "gauge", ("target", "reason"),
               "1 while a probed target has not completed its first round, with why"),
)
_SPEC = {m.name: m for m in FLEET_METRICS}


class Fleet:
    """The targets of one exporter: configured (the main engine) and probed (one engine each)."""

    def __init__(self, engine: Engine, settings: FleetSettings, *,
                 factory: EngineFactory, budget: ConnectionBudget | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.factory = factory
        self.budget = budget
        self.probed: dict[str, Probed] = {}
        self.requests: dict[str, int] = {"ok": 0, "pending": 0, "bad_request": 0, "not_found": 0}
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        engine.family_sources.append(self.families)

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Start dropping idle probed targets."""
        self._reaper = asyncio.create_task(self._reap_loop(), name="wasp-fleet-reaper")

    async def stop(self) -> None:
        """Stop every probed target's engine."""
        if self._reaper:
            self._reaper.cancel()
        for p in list(self.probed.values()):
            await p.engine.stop()
        self.probed.clear()

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.settings.probe_idle / 4))
            await self.reap()

    async def reap(self, now: float | None = None) -> list[str]:
        """Drop probed targets nobody asked for within probe_idle; returns their names."""
        now = time.monotonic() if now is None else now
        gone = [p for p in self.probed.values() if now - p.last_probe > self.settings.probe_idle]
        for p in gone:
            log.info("probed target %s dropped: not probed for %.0fs", p.name, now - p.last_probe)
            self.probed.pop(p.name, None)
            await p.engine.stop()
        return [p.name for p in gone]

    # -- /probe -----------------------------------------------------------------
    async def probe(self, params: dict[str, str]) -> Rendered:
        """The exposition of the target a probe names (ProbeError when it cannot be served)."""
        try:
            rendered = await self._probe(params)
        except ProbeError as e:
            self.requests["bad_request" if e.status == 400 else "not_found"] += 1
            raise
        return rendered

    async def _probe(self, params: dict[str, str]) -> Rendered:
        target = params.get("target", "").strip()
        if not target:
            raise ProbeError(400, "missing parameter: target (a configured target's name, "
                             "or host:port/database with auth_module)")
        module_name = params.get("auth_module")
        if module_name is None:
            if target not in self.engine.targets:
                raise ProbeError(404, f"unknown target {target!r}: not in this exporter's "
                                 "configuration (or not in its shard); give auth_module to "
                                 "probe a target that is not configured")
            self.requests["ok"] += 1
            return target_exposition(self.engine, target)
        module = self.settings.auth_module(module_name)
        if module is None:
            known = ", ".join(m.name for m in self.settings.auth_modules) or "none configured"
            raise ProbeError(400, f"unknown auth_module {module_name!r} (known: {known})")
        host, port, dbname = _parse_address(target, params)
        _check_allowed(module, host, port, dbname)
        name = f"{host}:{port}/{dbname}"
        async with self._lock:
            p = self.probed.get(name)
            if p is None:
                p = await self._start_probed(name, module, host, port, dbname)
        p.last_probe = time.monotonic()
        if not p.engine.serving_ready:
            self.requests["pending"] += 1
            return pending_exposition(p)
        self.requests["ok"] += 1
        return p.engine.rendered

    async def _start_probed(self, name: str, module: AuthModule, host: str, port: int,
                            dbname: str) -> Probed:
        try:
            password = module.password()
        except ConfigError as e:
            raise ProbeError(500, f"auth_module {module.name}: {e.message}") from None
        dsn = make_conninfo("", host=host, port=port, dbname=dbname, user=module.user,
                            **({"password": password} if password else {}), **dict(module.options))
        t = TargetConfig(name=name, type="postgres", dsn_inline=dsn, packs=module.packs,
                         pool_max=module.pool_max, connect_timeout=module.connect_timeout)
        main = self.engine.cfg
        queries = [q for q in main.queries if q.pack is None and q.targets is None]
        for pack in module.packs:
            queries.extend(load_pack(pack, main.pack_settings(pack)))
        cfg = replace(main, targets=(t,), queries=tuple(queries), sections=())
        engine = self.factory(cfg, budget=self.budget)
        await engine.start()
        log.info("probed target %s started (auth module %s)", name, module.name)
        p = Probed(name=name, engine=engine, last_probe=time.monotonic())
        self.probed[name] = p
        return p

    # -- /sd ----------------------------------------------------------------------
    def service_discovery(self, address: str) -> list[dict[str, Any]]:
        """HTTP SD target groups: one per configured target, scraped via /probe at `address`."""
        groups = []
        shard = self.settings.shard
        for name, t in sorted(self.engine.targets.items()):
            labels = {"__param_target": name, "target": name,
                      "__metrics_path__": "/probe", **dict(t.config.labels)}
            if shard is not None:
                labels["__meta_wasp_shard"] = f"{shard.index}/{shard.count}"
            groups.append({"targets": [address], "labels": labels})
        return groups

    # -- self-metrics -------------------------------------------------------------
    def families(self) -> list[Family]:
        """The fleet's own metrics (shown on /metrics of the main engine)."""
        s: dict[str, list[tuple[tuple[str, ...], float]]] = {m.name: [] for m in FLEET_METRICS}
        s["wasp_fleet_targets"] += [(("config",), float(len(self.engine.targets))),
                                    (("probe",), float(len(self.probed)))]
        shard = self.settings.shard or Shard(0, 1)
        s["wasp_fleet_shard_info"].append(((str(shard.index), str(shard.count)), 1.0))
        if self.budget is not None:
            s["wasp_fleet_connections_open"].append(((), float(self.budget.open)))
            s["wasp_fleet_connection_budget"].append(((), float(self.budget.limit)))
            s["wasp_fleet_connection_waits_total"].append(((), float(self.budget.waits)))
        for result, n in sorted(self.requests.items()):
            s["wasp_probe_requests_total"].append(((result,), float(n)))
        for p in self.probed.values():
            if not p.engine.serving_ready:
                s["wasp_probe_target_pending"].append(((p.name, _pending_reason(p)), 1.0))
        return [_SPEC[n].family(v) for n, v in s.items() if v]


def _parse_address(target: str, params: dict[str, str]) -> tuple[str, int, str]:
    """host:port/database (port and database may also come as parameters)."""
    rest, _, dbname = target.partition("/")
    host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    port_text = port_text or params.get("port", "5432")
    dbname = dbname or params.get("database", "")
    if not host or not dbname:
        raise ProbeError(400, f"target {target!r}: expected host:port/database")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProbeError(400, f"target {target!r}: port {port_text!r} is not a port number")
    return host, int(port_text), dbname


def _check_allowed(module: AuthModule, host: str, port: int, dbname: str) -> None:
    if not module.allowed_hosts.match(host):
        raise ProbeError(400, f"host {host!r} is not allowed by auth_module {module.name} "
                         f"(allowed_hosts: {module.allowed_hosts.pattern})")
    if port not in module.allowed_ports:
        raise ProbeError(400, f"port {port} is not allowed by auth_module {module.name} "
                         f"(allowed_ports: {', '.join(map(str, module.allowed_ports))})")
    if not module.allowed_databases.match(dbname):
        raise ProbeError(400, f"database {dbname!r} is not allowed by auth_module {module.name} "
                         f"(allowed_databases: {module.allowed_databases.pattern})")


def _pending_reason(p: Probed) -> str:
    t = p.engine.targets.get(p.name)
    if t is not None and t.checked_once and not t.up:
        return f"down: {t.last_error or 'unreachable'}"
    return "first round running"


def pending_exposition(p: Probed) -> Rendered:
    """`wasp_target_up 0` and the reason, for a probed target before its first round."""
    up = MetricSpec("wasp_target_up", "gauge", ("target",),
                    "1 when the target answered its last check")
    pending = _SPEC["wasp_probe_target_pending"]
    fams = [up.family([((p.name,), 0.0)]),
            pending.family([((p.name, _pending_reason(p)), 1.0)])]
    return render([(f, render_samples(f)) for f in fams], compress=False)


def target_exposition(engine: Engine, name: str) -> Rendered:
    """One configured target's series: its collectors' families and its self-metrics."""
    chunks: list[tuple[Family, str]] = []
    for st in engine.states.values():
        if st.collector.target == name and engine.fresh(st):
            chunks.extend(st.chunks)
    for f in _only_target(engine.self_families(), name):
        chunks.append((f, render_samples(f)))
    return render(chunks, compress=False)


def _only_target(families: Iterable[Family], name: str) -> Iterable[Family]:
    for f in families:
        if "target" not in f.labelnames:
            continue
        i = f.labelnames.index("target")
        samples = tuple(s for s in f.samples if s[0][i] == name)
        if samples:
            yield Family(f.name, f.type, f.help, f.labelnames, samples)
