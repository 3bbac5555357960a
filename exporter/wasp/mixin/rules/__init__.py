"""Generate Prometheus alert and recording rules and their promtool unit tests.

Every expression names its metrics through the catalog (`wasp.mixin.promql`),
so a renamed metric or a label that a metric does not have breaks the
generator, not production. Every selector, threshold, range and `for` comes
from one `Settings` object (`wasp.mixin.settings`), which the panels read too.
One module per rule group; the test inputs that prove each alert are data next
to the alert, emitted as promtool tests.

    wasp rules --out rules/                    # write rules/*.yml and rules/tests/*.yml
    wasp rules --out rules/ --check            # exit 1 when the committed files differ
    wasp rules --out DIR --settings site.yml   # with your selectors, thresholds and durations
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Protocol

from wasp.mixin import output
from wasp.mixin.rules import (
    alerting,
    app,
    backup,
    doctor,
    exporter,
    failover,
    log,
    pgbouncer,
    postgres,
    recording,
    replication,
    slo,
    storage,
)
from wasp.mixin.rules.boundary import Probe
from wasp.mixin.rules.files import anchor, render
from wasp.mixin.rules.model import Alert, Builder, Case, Fired, Group, Recording, Series
from wasp.mixin.rules.templates import render_template
from wasp.mixin.settings import Settings

__all__ = [
    "GROUPS",
    "Alert",
    "Case",
    "Fired",
    "Group",
    "Recording",
    "Series",
    "add_arguments",
    "anchor",
    "build",
    "main",
    "render_files",
    "render_template",
    "uncovered",
]


class GroupModule(Protocol):
    """A module of one rule group: its rules, and the probes of its alerts."""

    def build(self, b: Builder, /) -> None: ...

    def probes(self, cfg: Settings, /) -> Mapping[str, Probe]: ...


def uncovered(groups: list[Group]) -> list[str]:
    """The alert names without a probe: no generated boundary cases, no mutation check."""
    return sorted({a.name for g in groups for a in g.alerts} - {
        a.name for g in groups for a in g.alerts if a.probe})


#: the alert groups in output order (the recording rules come first, so alerts can use them)
GROUPS: tuple[GroupModule, ...] = (
    alerting, exporter, app, postgres, storage, replication, failover, backup, pgbouncer,
    log, doctor,
)


def build(cfg: Settings | None = None) -> list[Group]:
    """Every rule group, in a stable order; every alert with its probe."""
    b = Builder(cfg or Settings())
    recording.build(b)
    slo.build(b)  # its recordings and burn-rate alerts, with their probes
    for module in GROUPS:
        module.build(b)
        b.attach(b.groups[-1], module.probes(b.cfg))
    return b.groups


def render_files(cfg: Settings | None = None, *, tests: bool = True,
                 only: Collection[str] | None = None) -> dict[str, str]:
    """Every generated file under rules/, path -> text (the rule files only without `tests`,
    the paths in `only` when given)."""
    cfg = cfg or Settings()
    return render(cfg, build(cfg), tests=tests, only=only)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp rules`."""
    output.add_common_arguments(p, "rules")
    p.add_argument("--runbook-url", default=None, metavar="URL",
                   help="where the runbook is: each alert's runbook_url is URL#alertname "
                   "(overrides the settings' runbook_url)")
    p.add_argument("--job", default=None,
                   help="the scrape job of the exporters (overrides the settings' selector)")
    p.add_argument("--allow-relative-urls", action="store_true",
                   help="accept a runbook or Grafana URL without a scheme")


def main(args: argparse.Namespace) -> int:
    """Write (or check) the generated files."""
    cfg = output.settings_from(args)
    if cfg is None:
        return output.EXIT_USAGE
    if args.job:
        cfg = cfg.replace(selector=(("job", args.job),))
    if args.runbook_url:
        cfg = cfg.replace(runbook_url=args.runbook_url)
    if args.allow_relative_urls:
        cfg = cfg.replace(allow_relative_urls=True)
    if problems := cfg.relative_urls():
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return output.EXIT_USAGE
    return output.write_or_check(Path(args.out), render_files(cfg), check=args.check,
                                 command="wasp rules")
