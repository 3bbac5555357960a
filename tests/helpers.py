"""Small helpers for reading expositions in tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str | bytes, name: str) -> list[tuple[dict[str, str], float]]:
    """All samples named `name` (exact sample name) with their labels."""
    if isinstance(text, bytes):
        text = text.decode()
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out.append((dict(s.labels), float(s.value)))
    return out


def value(text: str | bytes, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`, or None."""
    found = [v for lab, v in samples(text, name) if all(lab.get(k) == x for k, x in labels.items())]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


def num(text: str | bytes, name: str, **labels: str) -> float:
    """Like `value`, for a sample that must be there: fails naming the metric when it is not."""
    v = value(text, name, **labels)
    if v is None:
        raise AssertionError(f"no sample of {name} matches {labels}")
    return v


def names(text: str | bytes) -> set[str]:
    """Every sample name in an exposition."""
    if isinstance(text, bytes):
        text = text.decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def config(dsn: str, queries: dict[str, Any], *, packs: list[str] | None = None,
           status_dir: str = "/tmp/wasp-test-status", **server: Any) -> dict[str, Any]:
    """A config dict with one target `main`."""
    return {
        "server": {"status_dir": status_dir, **server},
        "targets": {"main": {"dsn": dsn, "packs": packs or []}},
        "queries": queries,
    }


def gauge_query(sql: str, metric: str, column: str = "n", labels: list[str] | None = None,
                **extra: Any) -> dict[str, Any]:
    """A one-value query definition."""
    return {"sql": sql, "labels": labels or [],
            "values": [{"column": column, "metric": metric, "type": "gauge", "help": "test"}],
            **extra}


def require_tool(name: str, hint: str = "") -> str:
    """The path of executable `name` (the venv's first, then PATH).

    Every tool the tests use is installed by scripts/setup.sh, so a missing one
    fails the test (a skip would hide a broken set-up).
    """
    exe = Path(sys.executable).parent / name
    path = str(exe) if exe.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed{hint or ' (run scripts/setup.sh)'}")
    return path


def openssl(*args: str, cwd: Path) -> None:
    """Run the openssl command in `cwd` (fails the test with its output)."""
    import subprocess

    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


def make_ca(d: Path, name: str = "ca") -> None:
    """A throw-away certificate authority: d/name.crt and d/name.key (EC P-256)."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=wasp test {name}", cwd=d)


def make_cert(d: Path, name: str, cn: str, *, sans: tuple[str, ...] = (), ca: str = "ca") -> Path:
    """d/name.crt and d/name.key signed by d/ca.crt, with subjectAltNames (e.g. IP:127.0.0.1)."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
            cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={','.join(sans)}\n" if sans else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", str(ext), cwd=d)
    return d / f"{name}.crt"
