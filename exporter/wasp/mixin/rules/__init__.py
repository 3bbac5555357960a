"""Generate Prometheus alert and recording rules, their promtool unit tests and the Alertmanager config.

Every expression names its metrics through the catalog (`wasp.mixin.promql`),
so a renamed metric or a label that a metric does not have breaks the
generator, not production. Every selector, threshold, range and `for` comes
from one `Settings` object (`wasp.mixin.settings`), which the panels read too.
One module per rule group; the test inputs that prove each alert are data next
to the alert, emitted as promtool tests.

    wasp rules --out rules/                    # write rules/*.yml, rules/tests/*.yml, rules/alertmanager.yml
    wasp rules --out rules/ --check            # exit 1 when the committed files differ
    wasp rules --out DIR --settings site.yml   # with your selectors, thresholds and durations
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from wasp.mixin import output
from wasp.mixin.rules import (
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
from wasp.mixin.rules.files import anchor, render
from wasp.mixin.rules.model import Alert, Builder, Case, Fired, Group, Recording, Series
from wasp.mixin.rules.templates import render_template
from wasp.mixin.settings import Settings

__all__ = [
    "GROUPS", "Alert", "Case", "Fired", "Group", "Recording", "Series", "add_arguments",
    "anchor", "build", "main", "render_files", "render_template",
]

#: the rule groups in output order: recording rules first, so alerts can use them
GROUPS: tuple[Callable[[Builder], None], ...] = (
    recording.build, slo.build, exporter.build, app.build, postgres.build, storage.build,
    replication.build, failover.build, backup.build, pgbouncer.build, log.build, doctor.build,
)


def build(cfg: Settings | None = None) -> list[Group]:
    """Every rule group, in a stable order."""
    b = Builder(cfg or Settings())
    for make in GROUPS:
        make(b)
    return b.groups


def render_files(cfg: Settings | None = None) -> dict[str, str]:
    """Every generated file under rules/, path -> text."""
    cfg = cfg or Settings()
    return render(cfg, build(cfg))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp rules`."""
    output.add_common_arguments(p, "rules")
    p.add_argument("--runbook-url", default=None, metavar="URL",
                   help="where the runbook is: each alert's runbook_url is URL#alertname "
                   "(overrides the settings' runbook_url)")
    p.add_argument("--job", default=None,
                   help="the scrape job of the exporters (overrides the settings' selector)")


def main(args: argparse.Namespace) -> int:
    """Write (or check) the generated files."""
    cfg = output.settings_from(args)
    if cfg is None:
        return output.EXIT_USAGE
    if args.job:
        cfg = cfg.replace(selector=(("job", args.job),))
    if args.runbook_url:
        cfg = cfg.replace(runbook_url=args.runbook_url)
    return output.write_or_check(Path(args.out), render_files(cfg), check=args.check,
                                 command="wasp rules")
