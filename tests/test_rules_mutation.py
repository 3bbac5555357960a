"""The alert tests pin every threshold and every `for`: rules generated with each alert's `for` set
to 0 and doubled, and each of its thresholds halved and doubled, fail that alert's promtool tests.

Only the mutated alert's tests run (filtered out of its group's files), against the
recording rules and its group's mutated rule file, several promtool processes at once, in
batches that stop at the first failing test.
A mutant whose rule file is identical to the original is equivalent; the alert's probe
must say why (`Probe.equivalent`). Every alert has a probe (`wasp.mixin.rules.uncovered` is
empty), and every number of the settings that an alert's expression reads is one its probe
mutates (a bound's threshold, or one of `Probe.params`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from helpers import require_tool
from wasp.mixin.rules import build, render_files, uncovered
from wasp.mixin.rules.boundary import Probe, minutes
from wasp.mixin.settings import FOR_DEFAULTS, Settings


@dataclass(frozen=True)
class Mutant:
    """Settings that change one alert's `for` or one of its thresholds."""

    alert: str
    group: str
    what: str
    settings: Settings


def mutants() -> Iterator[Mutant]:
    """Every mutant of every alert: `for` 0 and doubled, each threshold halved and doubled."""
    base = Settings()
    for g in build(base):
        for name in dict.fromkeys(a.name for a in g.alerts):
            rules = [a for a in g.alerts if a.name == name]
            if rules[0].probe is None:
                continue  # not covered: the test fails on it
            for a in rules:
                key = f"{name}.{a.severity}"
                key = key if key in FOR_DEFAULTS else name
                doubled = f"{2 * minutes(a.for_)}m" if minutes(a.for_) else a.for_
                yield Mutant(name, g.name, f"for {key} 0s", base.replace(for_={key: "0s"}))
                yield Mutant(name, g.name, f"for {key} {doubled}",
                             base.replace(for_={key: doubled}))
            probe = rules[0].probe
            assert probe is not None, name
            for field in sorted(_mutated(probe)):
                value = getattr(base, field)
                for factor in (0.5, 2):
                    changed = type(value)(value * factor) if isinstance(value, int) else \
                        value * factor
                    yield Mutant(name, g.name, f"{field} x{factor}",
                                 base.replace(**{field: changed}))


def _mutated(probe: Probe) -> set[str]:
    """The settings fields a probe's alert is mutated on."""
    return {b.field for b in probe.bounds if b.field} | set(probe.params)


#: the name of a generated `for` case (wasp.mixin.rules.boundary)
_FOR_CASE = re.compile(r": boundary: \w+ (one interval before|at) for \d+m$")


@functools.cache
def _parsed(text: str) -> dict[str, Any]:
    """A test file as data (parsed once; not to be changed)."""
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _tests_of(original: dict[str, str], group: str, alert: str
              ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The alert's tests in its group's test files: (file, file without its tests, test).

    The boundary cases come first, the `for` cases first of all: they are the ones a mutant
    fails, so the run can stop early.
    """
    out = []
    for path, text in original.items():
        if not (path.startswith(f"tests/{group}.") or path.startswith(f"tests/{group}-")):
            continue
        data = _parsed(text)
        head = {k: v for k, v in data.items() if k != "tests"}
        out += [(path, head, t) for t in data["tests"]
                if any(a["alertname"] == alert for a in t.get("alert_rule_test", []))]

    def order(test: dict[str, Any]) -> int:
        name = test["name"]
        return 0 if _FOR_CASE.search(name) else 1 if ": boundary: " in name else 2
    return sorted(out, key=lambda x: order(x[2]))


def _run(m: Mutant, original: dict[str, str], promtool: str) -> tuple[Mutant, str]:
    """'killed', 'equivalent' or 'survived'.

    The alert's tests run in batches of 1, 2, 4 ... tests, stopping at the first that fails.
    """
    rule_file = f"{m.group}.yml"
    files = render_files(m.settings, tests=False, only=(rule_file, "wasp-recording.yml"))
    if files[rule_file] == original[rule_file] and \
            files["wasp-recording.yml"] == original["wasp-recording.yml"]:
        return m, "equivalent"
    tests = _tests_of(original, m.group, m.alert)
    assert tests, f"no test of {m.alert}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tests").mkdir()
        for name in (rule_file, "wasp-recording.yml"):
            (root / name).write_text(files[name])
        done, size, batch = 0, 1, 0
        while done < len(tests):
            chunk, done, size, batch = tests[done:done + size], done + size, 2 * size, batch + 1
            by_file: dict[str, list[dict[str, Any]]] = {}
            heads = {}
            for path, head, test in chunk:
                by_file.setdefault(path, []).append(test)
                heads[path] = head
            runs = []
            for path, kept in by_file.items():
                out = root / "tests" / f"{batch}-{Path(path).name}"
                out.write_text(yaml.safe_dump({**heads[path], "tests": kept}))
                runs.append(str(out))
            r = subprocess.run([promtool, "test", "rules", *runs], cwd=root / "tests",
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                return m, "killed"
        return m, "survived"


def test_every_mutant_of_every_alert_fails_its_tests() -> None:
    promtool = require_tool("promtool")
    original = render_files(Settings())
    probes = {a.name: a.probe for g in build() for a in g.alerts if a.probe}
    every = list(mutants())
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(lambda m: _run(m, original, promtool), every))
    survived = [f"{m.alert}: {m.what}" for m, r in results if r == "survived"]
    unexplained = [f"{m.alert}: {m.what}" for m, r in results
                   if r == "equivalent" and not probes[m.alert].equivalent]
    killed = sum(r == "killed" for _, r in results)
    equivalent = sum(r == "equivalent" for _, r in results)
    missing = uncovered(build())
    print(f"\nmutation score: {killed}/{len(results) - equivalent} killed "
          f"({equivalent} equivalent, explained in their probes)")
    print(f"alerts probed: {len(probes)}, not covered (no probe, not mutated): {len(missing)}")
    assert not missing, f"alerts without a probe (no boundary cases, no mutants): {missing}"
    assert not survived, f"mutants no test noticed: {survived}"
    assert not unexplained, f"equivalent mutants without a reason in the probe: {unexplained}"
    assert killed >= 150


def _numbers(base: Settings) -> Iterator[tuple[str, Settings]]:
    """Each number of the settings moved (doubled plus one, so that a 0 moves too)."""
    for f in dataclasses.fields(Settings):
        value = getattr(base, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield f.name, base.replace(**{f.name: type(value)(2 * value + 1)})


def test_every_number_an_alert_reads_is_mutated() -> None:
    """A threshold left out of its probe's bounds would be neither pinned nor mutated."""
    base = Settings()
    exprs = {(a.name, a.severity): a.expr for g in build(base) for a in g.alerts}
    probes = {a.name: a.probe for g in build(base) for a in g.alerts if a.probe}
    missing = uncovered(build(base))
    assert not missing, f"alerts without a probe: {missing}"
    unmutated = []
    for field, moved in _numbers(base):
        read = sorted({name for g in build(moved) for a in g.alerts
                       if exprs[(name := a.name, a.severity)] != a.expr})
        unmutated += [f"{name}: {field}" for name in read if field not in _mutated(probes[name])]
    assert not unmutated, f"settings an alert reads that its probe does not mutate: {unmutated}"


def test_the_check_sees_a_mutant_that_survives() -> None:
    """A rule whose threshold is left out of its probe's bounds is not mutated: prove the harness
    reports a survivor when an alert's tests do not pin its threshold."""
    promtool = require_tool("promtool")
    original = render_files(Settings())
    # the hand-written cases alone do not pin the skip threshold: strip the boundary cases
    weak = {p: yaml.safe_dump({**yaml.safe_load(t), "tests": [
        x for x in yaml.safe_load(t)["tests"] if not x["name"].split(": ", 1)[-1]
        .startswith("boundary")]}) if p.startswith("tests/wasp-exporter") else t
        for p, t in original.items()}
    m = Mutant("WaspQuerySkipping", "wasp-exporter", "query_skips x2",
               Settings().replace(query_skips=4))
    assert _run(m, weak, promtool)[1] == "survived"
    assert _run(m, original, promtool)[1] == "killed"
