"""Alertmanager routing: pages to PagerDuty, warnings to Slack, info to a quiet Slack channel."""

from __future__ import annotations

from typing import Any

from wasp.mixin.settings import Settings

__all__ = ["PRIMARY_DOWN_IMPLIES", "alertmanager_config"]

#: alerts that a primary (or PgBouncer) out of reach causes elsewhere: inhibited by WaspTargetDown
PRIMARY_DOWN_IMPLIES = (
    "WaspStandbysMissing", "WaspWALReceiverNotStreaming", "WaspStandbyHeartbeatStale",
    "WaspStandbyReplayDelayHigh", "WaspHeartbeatWriterStopped", "WaspStandbyTargetDown",
    "WaspPgBouncerClientsWaiting", "WaspPgBouncerPoolSaturated",
)


def alertmanager_config(cfg: Settings) -> dict[str, Any]:
    """Alertmanager: page -> PagerDuty, warning -> Slack, info -> a low-traffic Slack channel."""
    group_by = ["alertname", "job", "target", "stanza"]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "slack-warnings",
            "group_by": group_by,
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": ['severity="page"'], "receiver": "pagerduty", "repeat_interval": "1h"},
                {"matchers": ['severity="warning"'], "receiver": "slack-warnings"},
                {"matchers": ['severity="info"'], "receiver": "slack-info", "repeat_interval": "24h"},
            ],
        },
        "inhibit_rules": [
            {"source_matchers": ['alertname="WaspExporterDown"'],
             "target_matchers": ['alertname!="WaspExporterDown"'],
             "equal": ["job", "instance"]},
            {"source_matchers": ['alertname="WaspTargetDown"'],
             "target_matchers": ['alertname!~"WaspTargetDown|WaspExporterDown"'],
             "equal": ["job", "instance", "target"]},
            {"source_matchers": ['alertname="WaspStandbyTargetDown"'],
             "target_matchers": ['alertname!~"WaspTargetDown|WaspStandbyTargetDown|WaspExporterDown"'],
             "equal": ["job", "instance", "target"]},
            # the primary down: what it implies on the standbys and PgBouncer is no news
            {"source_matchers": ['alertname="WaspTargetDown"', 'severity="page"'],
             "target_matchers": [f'alertname=~"{"|".join(PRIMARY_DOWN_IMPLIES)}"'],
             "equal": ["job", "instance"]},
            {"source_matchers": ['severity="page"'],
             "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "job", "instance", "target"]},
        ],
        "receivers": [
            {"name": "pagerduty", "pagerduty_configs": [{
                "routing_key_file": "/etc/alertmanager/secrets/pagerduty_routing_key",
                "send_resolved": True,
                "description": '{{ .CommonAnnotations.summary }}',
                "details": {"runbook": '{{ .CommonAnnotations.runbook_url }}',
                            "description": '{{ .CommonAnnotations.description }}'},
            }]},
            {"name": "slack-warnings", "slack_configs": [{
                "api_url_file": "/etc/alertmanager/secrets/slack_webhook_url",
                "channel": "#wasp-alerts",
                "send_resolved": True,
                "title": '[{{ .Status | toUpper }}] {{ .CommonAnnotations.summary }}',
                "text": '{{ range .Alerts }}{{ .Annotations.description }}\n'
                        '{{ .Annotations.runbook_url }}\n{{ end }}',
            }]},
            {"name": "slack-info", "slack_configs": [{
                "api_url_file": "/etc/alertmanager/secrets/slack_webhook_url",
                "channel": "#wasp-info",
                "send_resolved": False,
                "title": '{{ .CommonAnnotations.summary }}',
                "text": '{{ range .Alerts }}{{ .Annotations.description }}\n{{ end }}',
            }]},
        ],
    }

