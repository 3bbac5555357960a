"""Generate the Grafana dashboards (dashboards/*.json) from the metric catalog and the settings.

One module per board, one small function per panel. Every metric is named
through the catalog and every label matcher is checked against it; the
thresholds of a panel that shows what an alert watches come from the same
`Settings` field as the alert. The output is deterministic: sorted keys,
stable uids, panel ids and grid positions assigned in order.

    wasp dashboards --out dashboards/                    # write
    wasp dashboards --out dashboards/ --check            # exit 1 when a committed file differs
    wasp dashboards --out DIR --settings site.yml        # with your thresholds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from wasp.mixin import output
from wasp.mixin.dashboards.business import BUSINESS
from wasp.mixin.dashboards.exporter import EXPORTER
from wasp.mixin.dashboards.kpi import KPI
from wasp.mixin.dashboards.log import LOG
from wasp.mixin.dashboards.panels import Dashboard, Panel, age, agg, rate, sel
from wasp.mixin.dashboards.pgbouncer import PGBOUNCER
from wasp.mixin.dashboards.postgres import POSTGRES
from wasp.mixin.dashboards.replication import REPLICATION
from wasp.mixin.settings import Settings

__all__ = ["DASHBOARDS", "Dashboard", "Panel", "add_arguments", "age", "agg", "build_all", "main",
           "rate", "render", "sel"]

DASHBOARDS: tuple[Dashboard, ...] = (KPI, BUSINESS, POSTGRES, REPLICATION, PGBOUNCER, EXPORTER,
                                    LOG)


def render(model: dict[str, Any]) -> str:
    """The canonical text of a dashboard: sorted keys, two-space indent, final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all(settings: Settings | None = None) -> dict[str, str]:
    """file name -> rendered JSON of every dashboard."""
    s = settings or Settings()
    return {d.filename: render(d.build(s)) for d in DASHBOARDS}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `wasp dashboards`."""
    output.add_common_arguments(p, "dashboards")


def main(args: argparse.Namespace) -> int:
    """Write (or check) every dashboard."""
    s = output.settings_from(args)
    if s is None:
        return output.EXIT_USAGE
    return output.write_or_check(Path(args.out), build_all(s), check=args.check,
                                 command="wasp dashboards")
