"""Prometheus files of the compose stack: the scrape config (``prometheus.yml``) and the alert rules
(``alerts.yml``), shipped in the package so that a deployment without the checkout has them too."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMETHEUS_CONFIG = HERE / "prometheus.yml"
ALERT_RULES = HERE / "alerts.yml"
