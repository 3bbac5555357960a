"""The `replica` pack: what `wasp replica` recorded, and Patroni's view of the cluster.

Two collectors. One turns the companion's status records into metrics (the
last result of each action, and the last failover with the lag it accepted:
its data-loss window). The other reads Patroni's REST API ``/cluster`` where
the operator runs Patroni: members, roles, states, lag and timelines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from wasp.companions.status import read_records
from wasp.config.replica import PatroniSettings, ReplicaSettings
from wasp.config.schema import Config
from wasp.exporter.collector import CollectContext, CollectError, Collector, ErrorReason
from wasp.model import Family, MetricSpec, Sample

__all__ = ["METRICS", "PatroniCollector", "ReplicaRecordsCollector", "build_collectors",
           "families_from_cluster", "families_from_records"]


def build_collectors(cfg: Config) -> list[Collector]:
    """The collectors of the replica pack for this configuration."""
    settings: ReplicaSettings = cfg.section("replica") or ReplicaSettings()
    out: list[Collector] = [ReplicaRecordsCollector(interval=settings.status_interval)]
    if settings.patroni is not None:
        out.append(PatroniCollector(settings.patroni))
    return out


# ---------------------------------------------------------------------------
# status records
# ---------------------------------------------------------------------------
class ReplicaRecordsCollector(Collector):
    """Reads <status_dir>/replica/*.json written by setup, promote and rejoin."""

    def __init__(self, *, interval: float = 15.0) -> None:
        self.name = "replica_records"
        self.target = None
        self.interval = interval
        self.timeout = min(5.0, interval)

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Read the records (off the event loop) and build families."""
        try:
            records = await asyncio.to_thread(read_records, ctx.status_dir, "replica")
        except OSError as e:
            raise CollectError("other", f"cannot read replica records: {e}") from None
        return families_from_records(records)


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    return None


def families_from_records(records: Mapping[str, Mapping[str, Any]]) -> list[Family]:
    """Last result per (action, replica) and the last successful promotion."""
    ts: list[Sample] = []
    ok: list[Sample] = []
    took: list[Sample] = []
    last_promote: Mapping[str, Any] | None = None
    for rec in records.values():
        action, replica = rec.get("action"), rec.get("replica")
        finished = _num(rec.get("finished_at"))
        if not isinstance(action, str) or not isinstance(replica, str) or finished is None:
            continue
        key = (action, replica)
        ts.append((key, finished))
        ok.append((key, 1.0 if rec.get("ok") is True else 0.0))
        d = _num(rec.get("duration_seconds"))
        if d is not None:
            took.append((key, d))
        if action == "promote" and rec.get("ok") is True and (
                last_promote is None or finished > float(last_promote["finished_at"])):
            last_promote = rec
    labels = ("action", "replica")
    fams = [
        Family("wasp_replica_action_last_timestamp_seconds", "gauge",
               "When the last run of a wasp replica action ended, unix seconds.", labels,
               tuple(sorted(ts))),
        Family("wasp_replica_action_last_success", "gauge",
               "1 when the last run of a wasp replica action succeeded, 0 when it failed.",
               labels, tuple(sorted(ok))),
        Family("wasp_replica_action_last_duration_seconds", "gauge",
               "How long the last run of a wasp replica action took.", labels,
               tuple(sorted(took))),
    ]
    fo: dict[str, list[Sample]] = {k: [] for k in (
        "timestamp", "lag", "lag_known", "forced", "hb", "timeline")}
    if last_promote is not None:
        rkey = (str(last_promote["replica"]),)
        fo["timestamp"].append((rkey, float(last_promote["finished_at"])))
        lag = _num(last_promote.get("accepted_lag_bytes"))
        fo["lag_known"].append((rkey, 0.0 if lag is None else 1.0))
        if lag is not None:
            fo["lag"].append((rkey, lag))
        fo["forced"].append((rkey, 1.0 if last_promote.get("forced") else 0.0))
        hb = _num(last_promote.get("heartbeat_age_seconds"))
        if hb is not None:
            fo["hb"].append((rkey, hb))
        tl = _num(last_promote.get("timeline"))
        if tl is not None:
            fo["timeline"].append((rkey, tl))
    rl = ("replica",)
    fams += [
        Family("wasp_replica_failover_last_timestamp_seconds", "gauge",
               "When the last manual failover (wasp replica promote) finished, unix seconds; "
               "replica is the promoted node.", rl, tuple(fo["timestamp"])),
        Family("wasp_replica_failover_last_accepted_lag_bytes", "gauge",
               "WAL the promoted replica had not received from the old primary when promoted: "
               "the data-loss window of the last failover (absent when unknown).", rl,
               tuple(fo["lag"])),
        Family("wasp_replica_failover_last_lag_known", "gauge",
               "1 when the accepted lag of the last failover was measured, 0 when the old "
               "primary could not be asked.", rl, tuple(fo["lag_known"])),
        Family("wasp_replica_failover_last_forced", "gauge",
               "1 when the last failover was forced past a failed safety check.", rl,
               tuple(fo["forced"])),
        Family("wasp_replica_failover_last_heartbeat_age_seconds", "gauge",
               "Heartbeat age on the promoted replica at promotion: an upper bound of the "
               "time window whose commits may be lost.", rl, tuple(fo["hb"])),
        Family("wasp_replica_failover_last_timeline_id", "gauge",
               "Timeline the last failover started.", rl, tuple(fo["timeline"])),
    ]
    return fams


# ---------------------------------------------------------------------------
# Patroni
# ---------------------------------------------------------------------------
class PatroniCollector(Collector):
    """GET /cluster from the first Patroni REST endpoint that answers."""

    def __init__(self, settings: PatroniSettings) -> None:
        self.settings = settings
        self.name = "patroni_cluster"
        self.target = None
        self.interval = settings.interval
        self.timeout = settings.timeout

    async def collect(self, ctx: CollectContext) -> list[Family]:
        """Fetch /cluster and build families."""
        errors = []
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for url in self.settings.urls:
                try:
                    async with session.get(f"{url}/cluster") as resp:
                        body = await resp.text()
                        if resp.status != 200:
                            errors.append(f"{url}: HTTP {resp.status}")
                            continue
                    data = json.loads(body)
                except TimeoutError:
                    errors.append(f"{url}: no answer within {self.settings.timeout:g}s")
                    continue
                except aiohttp.ClientError as e:
                    errors.append(f"{url}: {e}")
                    continue
                except ValueError:
                    errors.append(f"{url}: /cluster did not return JSON")
                    continue
                if not isinstance(data, dict) or not isinstance(data.get("members"), list):
                    errors.append(f"{url}: /cluster has no members list")
                    continue
                return families_from_cluster(data, scope=self.settings.name)
        reason: ErrorReason = ("timeout" if all("no answer" in e for e in errors)
                               else "connection")
        raise CollectError(reason, "Patroni REST API unreachable: " + "; ".join(errors))


LEADER_ROLES = ("leader", "master", "primary", "standby_leader")
RUNNING_STATES = ("running", "streaming")


def families_from_cluster(data: Mapping[str, Any], *, scope: str) -> list[Family]:
    """Families from one /cluster document."""
    info: list[Sample] = []
    leader: list[Sample] = []
    running: list[Sample] = []
    lag: list[Sample] = []
    tl: list[Sample] = []
    members = [m for m in data.get("members", []) if isinstance(m, dict) and m.get("name")]
    for m in members:
        name = str(m["name"])
        role = str(m.get("role", ""))
        state = str(m.get("state", ""))
        info.append(((scope, name, role, state, str(m.get("host", "")), str(m.get("port", ""))),
                     1.0))
        leader.append(((scope, name), 1.0 if role in LEADER_ROLES else 0.0))
        running.append(((scope, name), 1.0 if state in RUNNING_STATES else 0.0))
        if isinstance(m.get("lag"), (int, float)) and not isinstance(m.get("lag"), bool):
            lag.append(((scope, name), float(m["lag"])))
        elif role in LEADER_ROLES:
            lag.append(((scope, name), 0.0))
        if isinstance(m.get("timeline"), int):
            tl.append(((scope, name), float(m["timeline"])))
    ml = ("scope", "member")
    return [
        Family("wasp_patroni_members", "gauge", "Members listed by Patroni's /cluster.",
               ("scope",), (((scope,), float(len(members))),)),
        Family("wasp_patroni_paused", "gauge",
               "1 when Patroni's automatic failover is paused (maintenance mode).", ("scope",),
               (((scope,), 1.0 if data.get("pause") else 0.0),)),
        Family("wasp_patroni_member_info", "gauge",
               "Always 1: a Patroni member with its role, state, host and port in labels.",
               ("scope", "member", "role", "state", "host", "port"), tuple(info)),
        Family("wasp_patroni_member_leader", "gauge",
               "1 for the member Patroni made leader (or standby leader), 0 for the others.", ml,
               tuple(leader)),
        Family("wasp_patroni_member_running", "gauge",
               "1 when Patroni reports the member's PostgreSQL running or streaming.", ml,
               tuple(running)),
        Family("wasp_patroni_member_lag_bytes", "gauge",
               "Replication lag of the member behind the leader as Patroni reports it.", ml,
               tuple(lag)),
        Family("wasp_patroni_member_timeline_id", "gauge",
               "Timeline of the member as Patroni reports it.", ml, tuple(tl)),
    ]


def _specs() -> tuple[MetricSpec, ...]:
    # the builders define every family even with no data: read the catalog off them
    fams = families_from_records({}) + families_from_cluster({"members": []}, scope="")
    return tuple(MetricSpec(f.name, f.type, f.labelnames, f.help) for f in fams)


#: every metric of the pack (the catalog reads this)
METRICS: tuple[MetricSpec, ...] = _specs()
