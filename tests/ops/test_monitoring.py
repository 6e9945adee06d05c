"""monitoring/: the Grafana dashboard and the Prometheus alert rules use only metrics a real `/metrics` exposes,
the alerts cover what the issue asks (lag growing, dead letters, a service gone, a spool backlog), and compose's
`monitoring` profile starts Prometheus and Grafana with both loaded and scrapes every pheromone container."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from pheromone.services.runtime import service_names
from pheromone.services.web.routes import HttpSide
from tests.ops.conftest import StartRuntime
from tests.ops.test_http import get
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana" / "dashboards" / "pheromone.json").read_text())
ALERTS = yaml.safe_load((MONITORING / "alerts.yml").read_text())
PROMETHEUS = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",)}
FROM_PROMETHEUS = {"up"}
"""Series Prometheus makes itself."""


def expressions() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in ALERTS["groups"] for r in g["rules"]]
    return exprs


def used_metrics() -> set[str]:
    found = {m for e in expressions() for m in re.findall(r"\bpheromone_[a-z_]+\b", e)}
    return found | {m for e in expressions() for m in FROM_PROMETHEUS if re.search(rf"\b{m}\{{", e)}


def exposed(text: str) -> set[str]:
    """Every series name the exposition can hold: each family's name with its type's suffixes."""
    names = set()
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(s.name for s in family.samples)
    return names


async def test_every_metric_the_dashboard_and_alerts_use_is_exposed(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime(list(service_names()), http_port=0)
    side = HttpSide(runtime)
    await side.start()
    try:
        status, text = await get(side.port, "/metrics")
    finally:
        await side.close()
    assert status == 200
    used = used_metrics()
    assert len(used) >= 12, f"the metric extraction found too little: {used}"
    missing = sorted(m for m in used - FROM_PROMETHEUS if m not in exposed(text))
    assert not missing, f"dashboard or alerts use metrics /metrics does not have: {missing}"


def test_a_metric_that_does_not_exist_would_be_caught() -> None:
    text = "# HELP pheromone_x_total x\n# TYPE pheromone_x_total counter\npheromone_x_total 1.0\n"
    assert "pheromone_x_total" in exposed(text) and "pheromone_group_lag" not in exposed(text)


def test_the_alerts_cover_lag_dead_letters_service_gone_and_spool() -> None:
    rules = {r["alert"]: r for g in ALERTS["groups"] for r in g["rules"]}
    wanted = {"PheromoneLagGrowing": "pheromone_group_lag", "PheromoneDeadLetters": "pheromone_dead_letters_total",
              "PheromoneServiceGone": "up", "PheromoneSpoolBacklog": "pheromone_spool_events"}
    for name, metric in wanted.items():
        assert name in rules and metric in rules[name]["expr"], name
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["expr"].count("(") == rule["expr"].count(")"), name
    assert "deriv(" in rules["PheromoneLagGrowing"]["expr"], "growing, not merely high"


def test_the_dashboard_is_provisioned_against_the_prometheus_datasource() -> None:
    datasource = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_the_monitoring_profile_loads_both_and_scrapes_every_container() -> None:
    services: dict[str, Any] = COMPOSE["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == ["monitoring"] == grafana["profiles"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for s in (prometheus, grafana) for v in s["volumes"]
              if v.startswith("./")}
    for target, source in mounts.items():
        assert source.exists(), f"{source} is mounted at {target} but does not exist"
    assert mounts["/etc/prometheus/alerts.yml"] == MONITORING / "alerts.yml"
    assert "/etc/prometheus/alerts.yml" in PROMETHEUS["rule_files"]
    provider = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "dashboards" / "pheromone.yml").read_text())["providers"][0]
    assert mounts[provider["options"]["path"]] == MONITORING / "grafana" / "dashboards"
    (scrape,) = PROMETHEUS["scrape_configs"]
    (sd,) = scrape["dns_sd_configs"]
    serving = {n for n, s in services.items() if "build" in s and not s.get("profiles")}
    assert set(sd["names"]) == serving
    assert str(sd["port"]) == COMPOSE["x-service"]["environment"]["PHEROMONE_HTTP_PORT"]
    assert scrape["job_name"] == "pheromone"  # the job PheromoneServiceGone's `up{job=...}` names


async def test_the_spool_gauges_count_what_clients_left_unsent(start_runtime: StartRuntime, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "spool-a.jsonl").write_bytes(b'{"e":1}\n{"e":2}\n{"e":3}\n')
    runtime = await start_runtime(["broadcaster"], metrics_interval_s=0.05)

    def spooled() -> bool:
        return runtime.metrics.spool_events._value.get() == 3  # type: ignore[attr-defined,no-any-return]

    await eventually(spooled, what="three spooled events counted")
    assert runtime.metrics.spool_bytes._value.get() == 24  # type: ignore[attr-defined]
