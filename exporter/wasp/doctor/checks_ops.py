"""Checks of the operations groups: backups, availability, connections.

Pure functions of the gathered facts; each returns one Check.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable

from wasp.config.cron import CronError, parse_cron
from wasp.doctor.gather import IDLE_IN_TRANSACTION_LIMIT, Facts, Setup
from wasp.doctor.model import Check, Severity

__all__ = ["OPS_CHECKS", "schedule_gap"]

MiB = 1024.0 * 1024.0
DRILL_MAX_AGE = 7 * 86400.0
RPO_WARN_BYTES, RPO_FAIL_BYTES = 16 * MiB, 64 * MiB
HEARTBEAT_MAX_AGE = 60.0
HEADROOM_WARN, HEADROOM_FAIL = 0.8, 0.9


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def schedule_gap(expr: str) -> float | None:
    """The longest time between two runs of a 5-field cron schedule (over a week), seconds."""
    try:
        spec = parse_cron(expr)
    except CronError:
        return None
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday
    hits = [m for m in range(0, 7 * 1440 + 1) if spec.matches(start + dt.timedelta(minutes=m))]
    if not hits:
        return None
    gaps = [b - a for a, b in itertools.pairwise(hits)] + [hits[0] + 7 * 1440 - hits[-1]]
    return 60.0 * max(gaps)


def _c(id_: str, title: str, sev: Severity) -> Callable[..., Check]:
    group = {"backup": "backups", "availability": "availability",
             "connections": "connections"}[id_.split(".")[0]]

    def make(status: str, evidence: str, fix: str = "", value: float | None = None) -> Check:
        return Check(id_, group, title, sev, status, evidence, fix, value)  # type: ignore[arg-type]
    return make


# ---------------------------------------------------------------------------
# backups
# ---------------------------------------------------------------------------
NO_BACKUP = ("configure the backup: section and run `wasp backup init` "
             "(docs/backup.md)")


def backup_stanza(f: Facts, s: Setup) -> Check:
    c = _c("backup.stanza", "a pgBackRest stanza exists", "critical")
    b = f.backup
    if b is None:
        return c("fail", "no backup: section for this target", NO_BACKUP, 0)
    if b.get("error"):
        return c("fail", f"stanza {b['stanza']}: {b['error']}",
                 "check the repository and its passphrase: `wasp backup status`", 0)
    if not b.get("stanza_exists"):
        return c("fail", f"stanza {b['stanza']} is not in the repository",
                 "`wasp backup init`", 0)
    return c("pass", f"stanza {b['stanza']}: {b.get('status', 'ok')}, "
             f"{b.get('backups', 0)} backups", value=1)


def backup_fresh(f: Facts, s: Setup) -> Check:
    c = _c("backup.fresh", "the newest backup is younger than its schedule", "critical")
    b = f.backup
    if b is None:
        return c("fail", "no backup: section for this target", NO_BACKUP)
    gaps = [g for k in ("full", "diff", "incr") if (e := b["schedule"].get(k))
            and (g := schedule_gap(e)) is not None]
    allowed = min(gaps) + 3600.0 if gaps else 86400.0 + 3600.0
    newest = b.get("newest")
    if not newest:
        return c("fail", f"stanza {b['stanza']} has no completed backup",
                 "`wasp backup run --type full`")
    age = f.now - float(newest["stop"])
    ev = (f"newest backup {newest['label']} ({newest['type']}) is {_age(age)} old; "
          f"the schedule allows {_age(allowed)}")
    if age <= allowed:
        return c("pass", ev, value=age)
    return c("fail", ev, "find why the scheduled job did not run: `wasp backup status`, "
             "the scheduler's log", age)


def backup_drill(f: Facts, s: Setup) -> Check:
    c = _c("backup.drill", "a restore drill passed within a week", "critical")
    b = f.backup
    if b is None:
        return c("fail", "no backup: section for this target", NO_BACKUP)
    d = b.get("drill")
    if not d or d.get("last_success_at") is None:
        return c("fail", "no restore drill ever passed: no backup is proven restorable",
                 "`wasp backup run --type drill`")
    age = f.now - float(d["last_success_at"])
    if age > DRILL_MAX_AGE:
        return c("fail", f"the last good drill was {_age(age)} ago (limit 7 d)",
                 "schedule drills weekly (backup.schedule.drill)", age)
    if d.get("state") != "ok":
        return c("warn", f"the last drill failed; the last good one was {_age(age)} ago",
                 "`wasp backup status` shows the failed check", age)
    label = f" of {d['label']}" if d.get("label") else ""
    return c("pass", f"the drill{label} passed {_age(age)} ago", value=age)


def backup_archiving(f: Facts, s: Setup) -> Check:
    c = _c("backup.archiving", "WAL archiving works", "critical")
    mode = f.settings.get("archive_mode")
    a = f.archiver
    fix = ("ALTER SYSTEM SET archive_mode = on; set archive_command through `wasp backup init`; "
           "restart PostgreSQL")
    if mode in (None, "off"):
        return c("fail", f"archive_mode={mode or 'unknown'}: no WAL is archived, "
                 "no point-in-time recovery", fix, 0)
    if a is None:
        return c("skip", "pg_stat_archiver not readable")
    if a["failing"]:
        return c("fail", f"the last archive attempt failed ({a['failed']:.0f} failures)",
                 "read the PostgreSQL log for archive_command errors", 0)
    if not a["archived"]:
        return c("warn", "archive_mode is on but nothing was archived yet",
                 "SELECT pg_switch_wal(); then check pg_stat_archiver", 0)
    return c("pass", f"{a['archived']:.0f} WAL files archived, the newest "
             f"{_age(a['age'] or 0)} ago, no failure since", value=1)


def backup_rpo(f: Facts, s: Setup) -> Check:
    c = _c("backup.rpo_bytes", "WAL not yet archived is small (RPO in bytes)", "warning")
    a = f.archiver
    if f.settings.get("archive_mode") in (None, "off"):
        return c("fail", "archiving is off: everything since the last backup would be lost",
                 "turn archiving on (see backup.archiving)")
    if a is None or a.get("unarchived_bytes") is None:
        return c("skip", "no archived WAL yet to measure against")
    n = float(a["unarchived_bytes"])
    ev = f"{_mib(n)} of WAL written and not archived"
    fix = "lower archive_timeout; check that archiving keeps up"
    if n <= RPO_WARN_BYTES:
        return c("pass", ev, value=n)
    return c("warn" if n <= RPO_FAIL_BYTES else "fail", ev, fix, n)


# ---------------------------------------------------------------------------
# availability
# ---------------------------------------------------------------------------
def replicas_streaming(f: Facts, s: Setup) -> Check:
    c = _c("availability.replicas", "replicas are streaming", "critical")
    if f.replicas is None:
        return c("skip", "pg_stat_replication not readable")
    streaming = [r for r in f.replicas if r["state"] == "streaming"]
    n = float(len(streaming))
    names = ", ".join(f"{r['name']} (replay lag {r['replay_lag_seconds']:.1f} s)"
                      for r in streaming)
    if len(streaming) >= s.min_replicas:
        return c("pass", f"{len(streaming)} streaming: {names}", value=n)
    return c("fail", f"{len(streaming)} replicas streaming, {s.min_replicas} wanted"
             + (f": {names}" if names else ""),
             "`wasp replica setup --name r1 ...` (docs/replication.md)", n)


def slots_healthy(f: Facts, s: Setup) -> Check:
    c = _c("availability.slots", "replication slots are healthy", "warning")
    if f.slots is None:
        return c("skip", "pg_replication_slots not readable")
    bad = [sl for sl in f.slots if not sl["active"] or sl["wal_status"] in ("lost", "unreserved")]
    if not f.slots:
        return c("pass", "no replication slots (nothing retains WAL)", value=0)
    if not bad:
        return c("pass", f"{len(f.slots)} slots, all active", value=0)
    worst = max(bad, key=lambda sl: sl["retained_bytes"] or 0)
    return c("fail", f"{len(bad)} of {len(f.slots)} slots inactive or losing WAL; "
             f"{worst['name']} ({worst['wal_status']}) retains "
             f"{_mib(worst['retained_bytes'] or 0)}",
             f"bring the replica back, or SELECT pg_drop_replication_slot('{worst['name']}');",
             float(len(bad)))


def heartbeat_fresh(f: Facts, s: Setup) -> Check:
    c = _c("availability.heartbeat", "the replication heartbeat is fresh", "warning")
    if f.heartbeat_installed is None:
        return c("skip", "could not look for wasp.heartbeat")
    if not f.heartbeat_installed:
        return c("warn", "no wasp.heartbeat table: an idle primary and a broken link look alike",
                 "`wasp replica heartbeat --install` and run it as a service")
    if f.heartbeat_age is None:
        return c("skip", "wasp.heartbeat not readable (grant pg_monitor)")
    ev = f"heartbeat written {_age(f.heartbeat_age)} ago"
    if f.heartbeat_age <= HEARTBEAT_MAX_AGE:
        return c("pass", ev, value=f.heartbeat_age)
    return c("fail", ev + f" (limit {HEARTBEAT_MAX_AGE:.0f} s)",
             "start `wasp replica heartbeat` (docs/replication.md)", f.heartbeat_age)


# ---------------------------------------------------------------------------
# connections
# ---------------------------------------------------------------------------
def pooler(f: Facts, s: Setup) -> Check:
    c = _c("connections.pooler", "a connection pooler is in front", "warning")
    p = f.pooler
    if p is None:
        return c("fail", "no pgbouncer target is configured",
                 "put PgBouncer in front (transaction pooling) and add a pgbouncer target", 0)
    if not p["up"]:
        return c("fail", f"PgBouncer console unreachable: {p['error']}",
                 "check that PgBouncer runs and the stats user may log in", 0)
    return c("pass", f"PgBouncer answers: {p['pools']} pools, {p['waiting']} clients waiting",
             value=1)


def headroom(f: Facts, s: Setup) -> Check:
    c = _c("connections.headroom", "max_connections has headroom", "critical")
    if f.activity is None or "max_connections" not in f.settings:
        return c("skip", "pg_stat_activity not readable")
    limit = float(f.settings["max_connections"]) - float(
        f.settings.get("superuser_reserved_connections", 3))
    used = float(f.activity["connections"])
    ratio = used / limit if limit > 0 else 1.0
    ev = f"{used:.0f} of {limit:.0f} client connections in use ({ratio:.0%})"
    fix = "pool connections through PgBouncer, or raise max_connections with memory in mind"
    if ratio < HEADROOM_WARN:
        return c("pass", ev, value=ratio)
    return c("warn" if ratio < HEADROOM_FAIL else "fail", ev, fix, ratio)


def idle_in_transaction(f: Facts, s: Setup) -> Check:
    c = _c("connections.idle_in_transaction", "no long idle-in-transaction sessions", "warning")
    if f.activity is None:
        return c("skip", "pg_stat_activity not readable")
    n = float(f.activity["idle_in_transaction"])
    oldest = float(f.activity["oldest_idle_in_transaction"])
    if n == 0:
        return c("pass", f"none idle in transaction over {_age(IDLE_IN_TRANSACTION_LIMIT)} "
                 f"(oldest {_age(oldest)})", value=0)
    return c("fail", f"{n:.0f} sessions idle in transaction over "
             f"{_age(IDLE_IN_TRANSACTION_LIMIT)}, the oldest {_age(oldest)}",
             "ALTER SYSTEM SET idle_in_transaction_session_timeout = '5min'; "
             "SELECT pg_reload_conf(); and fix the client that holds them", n)


OPS_CHECKS: tuple[Callable[[Facts, Setup], Check], ...] = (
    backup_stanza, backup_fresh, backup_drill, backup_archiving, backup_rpo,
    replicas_streaming, slots_healthy, heartbeat_fresh,
    pooler, headroom, idle_in_transaction,
)
