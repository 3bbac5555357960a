"""The jsonlog follower and the pack's counters on real files (no server needed here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wasp.config.log import LogSettings, SamplingSettings
from wasp.exporter.exposition import families_text
from wasp.packs.log.collector import LogCollector
from wasp.packs.log.follow import Follower, Round
from wasp.packs.log.metrics import LogStats, is_local
from wasp.packs.log.parse import parse_line, role_commands


def rec(msg: str, sev: str = "LOG", **kw: object) -> bytes:
    """One jsonlog line as the server writes it."""
    body = {"timestamp": "2026-12-04 16:42:11.143 UTC", "pid": 1, "error_severity": sev,
            "message": msg, **kw}
    return json.dumps(body).encode() + b"\n"


def fail(user: str, addr: str = "127.0.0.1", db: str = "app") -> bytes:
    return rec(f'password authentication failed for user "{user}"', "FATAL", state_code="28P01",
               user=user, dbname=db, remote_host=addr)


def lines(f: Follower, current: str | None = None) -> list[bytes]:
    return list(f.read(Round(), current))


def collector(tmp: Path, **kw: object) -> LogCollector:
    s = LogSettings(directory=str(tmp / "log"), start_at="beginning",
                    sampling=SamplingSettings(50, 0, 0.25), **kw)  # type: ignore[arg-type]
    return LogCollector(s)


def values(fams: list, name: str) -> dict[tuple[str, ...], float]:  # type: ignore[type-arg]
    for f in fams:
        if f.name == name:
            return dict(f.samples)
    return {}


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    line = rec("hello")
    p.write_bytes(line[:10])
    f = Follower(str(tmp_path), "*.json", start_at_end=False)
    assert lines(f) == []
    with p.open("ab") as fh:
        fh.write(line[10:] + rec("two")[:5])
    assert lines(f) == [line[:-1]]
    assert f.positions[str(p)].offset == len(line)


def test_rotation_truncation_rename_and_first_start(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_bytes(rec("history"))
    f = Follower(str(tmp_path), "*.json", start_at_end=True)
    assert lines(f) == []  # history at the first start is skipped
    with old.open("ab") as fh:
        fh.write(rec("one"))
    new = tmp_path / "new.json"
    new.write_bytes(rec("two"))
    os.utime(new, ns=(old.stat().st_mtime_ns + 10**9,) * 2)
    rnd = Round()
    got = list(f.read(rnd))
    assert [json.loads(x)["message"] for x in got] == ["one", "two"]  # old drained first
    assert rnd.new_files == 1
    # truncated in place: read again from byte 0
    new.write_bytes(rec("t"))
    rnd = Round()
    assert [json.loads(x)["message"] for x in f.read(rnd)] == ["t"]
    assert rnd.truncations == 1
    # truncated and written past the old position before the next look: the head tells
    new.write_bytes(rec("v1") + rec("v2") + rec("v3"))
    rnd = Round()
    assert [json.loads(x)["message"] for x in f.read(rnd)] == ["v1", "v2", "v3"]
    assert rnd.truncations == 1
    # renamed: the position goes with the inode, nothing read twice
    with new.open("ab") as fh:
        fh.write(rec("u"))
    new.rename(tmp_path / "renamed.json")
    assert [json.loads(x)["message"] for x in lines(f)] == ["u"]
    # the server's current file is followed even when the pattern does not match it
    other = tmp_path / "custom.log.jsonl"
    other.write_bytes(rec("c"))
    assert [json.loads(x)["message"] for x in lines(f, current=other.name)] == ["c"]


def test_bad_lines_are_counted_and_reading_goes_on(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    p = tmp_path / "log" / "pg.json"
    c = collector(tmp_path, max_line_bytes=4096)
    huge = rec("x" * 10_000)
    p.write_bytes(rec("a") + b"{not json\n" + huge + b'{"message": "\xff"}\n' + fail("bob")
                  + b"\x00\x01binary\n" + huge[:6000])
    fams = c.round(tmp_path / "status", 0.0)
    unparsed = values(fams, "wasp_log_unparsed_lines_total")
    # the last line is unfinished but already too long: counted now, skipped to its newline
    assert unparsed == {("json",): 2.0, ("too_long",): 2.0, ("encoding",): 1.0}
    assert values(fams, "wasp_log_lines_total") == {(): 2.0}
    # the rest of the huge line arrives: not counted again, the next line is read
    with p.open("ab") as fh:
        fh.write(huge[6000:] + fail("bob"))
    fams = c.round(tmp_path / "status", 0.0)
    assert values(fams, "wasp_log_unparsed_lines_total") == unparsed
    assert values(fams, "wasp_log_auth_failures_total") == {("bob", "app", "127.0.0.1"): 2.0}
    assert values(fams, "wasp_log_read_bytes_total") == {(): float(p.stat().st_size)}


def test_restart_resumes_from_saved_positions_and_counters(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    p = tmp_path / "log" / "pg.json"
    status = tmp_path / "status"
    p.write_bytes(fail("bob") * 3)
    c1 = collector(tmp_path)
    assert values(c1.round(status, 0.0), "wasp_log_auth_failures_total")[
        ("bob", "app", "127.0.0.1")] == 3
    with p.open("ab") as fh:  # written while nothing runs
        fh.write(fail("bob") * 2 + fail("bob")[:7])
    c2 = collector(tmp_path)
    fams = c2.round(status, 0.0)
    assert values(fams, "wasp_log_auth_failures_total")[("bob", "app", "127.0.0.1")] == 5
    with p.open("ab") as fh:
        fh.write(fail("bob")[7:])
    c3 = collector(tmp_path)
    assert values(c3.round(status, 0.0), "wasp_log_auth_failures_total")[
        ("bob", "app", "127.0.0.1")] == 6


def test_label_bound_keeps_top_values_and_exact_total() -> None:
    st = LogStats(top=3, evict_after=100.0)
    for i in range(20):
        st.line(parse_line(fail("eve", f"10.0.0.{i}")[:-1]), now=1.0)
    for _ in range(5):
        st.line(parse_line(fail("bob", "10.0.9.9")[:-1]), now=1.0)
    c = st.counters["wasp_log_auth_failures_total"]
    addrs = {k[2] for k in c}
    assert len(addrs) == 4 and "other" in addrs  # three addresses plus other
    assert sum(c.values()) == 25
    assert c[("eve", "app", "10.0.0.0")] == 1
    # a busier value takes the slot of an idle one once it has been idle long enough
    for _ in range(3):
        st.line(parse_line(fail("bob", "10.0.9.9")[:-1]), now=500.0)
    c = st.counters["wasp_log_auth_failures_total"]
    assert c[("bob", "app", "10.0.9.9")] == 3  # counts from its admission on
    assert sum(1 for k in c if k[2] not in ("other",)) == 3
    assert c[("eve", "app", "other")] == 17  # no count moved between series
    assert sum(c.values()) == 28 - 1  # the evicted address's series went away


def test_role_commands_and_durations_weighted() -> None:
    assert role_commands("GRANT SELECT ON t TO bob") == ["grant"]
    assert role_commands("/* x */ alter user bob with superuser; revoke all on t from x") == [
        "alter_role", "revoke"]
    assert role_commands("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r") == [
        "alter_default_privileges"]
    assert role_commands("select 'grant'") == []
    st = LogStats()
    st.sampling = SamplingSettings(min_duration_statement=100, min_duration_sample=0,
                                   sample_rate=0.25)
    for ms in (0.5, 3.0, 99.99, 100.0, 250.0):
        st.line(parse_line(rec(f"duration: {ms:.3f} ms  statement: select 1", user="u",
                               dbname="d")[:-1]), 0.0)
    st.line(parse_line(rec("duration: 1.000 ms  parse <unnamed>: select 1", user="u",
                           dbname="d")[:-1]), 0.0)
    h = st.hist[("d", "u")]
    assert sum(h.counts) == 3 * 4 + 2  # three sampled (x4), two over the threshold (x1)
    assert st.counters["wasp_log_slow_statements_total"] == {("d", "u"): 2.0}
    text = families_text({f.name: f for f in st.families(ready=("ok", True), checks={},
                                                         files=1)})
    assert 'wasp_log_statement_duration_seconds_bucket{database="d",user="u",le="0.001"} 4' \
        in text
    assert 'wasp_log_statement_duration_seconds_count{database="d",user="u"} 14' in text
    assert "# TYPE wasp_log_statement_duration_seconds histogram" in text


def test_superuser_logins_say_whether_they_came_from_the_host() -> None:
    assert is_local("[local]") and is_local("127.0.0.5") and is_local("::1")
    assert not is_local("10.0.0.1") and not is_local("2001:db8::1") and not is_local("host.x")
    st = LogStats(superusers=("postgres", "admin"))
    for user, addr in (("postgres", "[local]"), ("admin", "203.0.113.9"), ("app", "10.0.0.1")):
        st.line(parse_line(rec(f"connection authorized: user={user} database=app", user=user,
                               dbname="app", remote_host=addr)[:-1]), 0.0)
    assert st.counters["wasp_log_superuser_logins_total"] == {
        ("postgres", "[local]", "true"): 1.0, ("admin", "203.0.113.9", "false"): 1.0}
