"""What the chart ships to watch datasync: the metrics ports and their reach, the ServiceMonitors,
the Grafana dashboard and the PrometheusRule, all held to the metric names of
docs/observability.md (its table is parsed here: the one place those names are written)."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest
import yaml

from datasync.contract import DESTINATIONS
from tests.k8s.k8s_support import (
    CHART,
    RELEASE,
    REPO,
    TEMPLATE_FAILURES,
    api_deployment,
    by_name,
    component,
    consumer_deployments,
    env_of,
    helm_tool,
    of_kind,
    positive_cases,
    settings_config_map,
)

pytestmark = pytest.mark.k8s

OBSERVABILITY = REPO / "docs" / "observability.md"
KUBERNETES_DOC = REPO / "docs" / "kubernetes.md"
DASHBOARD_FILE = CHART / "dashboards" / "datasync.json"
SIDECAR_LABEL = "grafana_dashboard"
# Labels the scrape adds to every series (the ServiceMonitor's target labels), besides the app's.
SCRAPE_LABELS = {"namespace"}
# Grafana's interval macros, which are no PromQL: a duration stands in for them when parsing.
GRAFANA_MACROS = re.compile(r"\$__(rate_interval|interval|range)\b")
# The alerts issue 9 asks for, by name; each has a values key under metrics.prometheusRule.alerts.
ALERTS = {
    "consumerStuck": "DatasyncConsumerStuck",
    "recordsDeadLettered": "DatasyncRecordsDeadLettered",
    "consumerLagHigh": "DatasyncConsumerLagHigh",
    "recordsFailing": "DatasyncRecordsFailing",
    "apiErrors": "DatasyncApiErrors",
    "apiCircuitOpen": "DatasyncApiCircuitOpen",
    "apiPublishUnavailable": "DatasyncApiPublishUnavailable",
    "apiRateLimited": "DatasyncApiRateLimited",
}
RUNBOOK_COMMANDS = ("datasync status", "datasync dlq list ", "datasync trace ")


# --- docs/observability.md: the metric names, types, labels and ports -------------------------


@cache
def defined_metrics() -> dict[str, dict[str, Any]]:
    """docs/observability.md's metrics table: name -> {"type", "labels": {label: values | None}}."""
    metrics: dict[str, dict[str, Any]] = {}
    for line in OBSERVABILITY.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"`datasync_[a-z_]+`", cells[0]):
            continue
        name, kind, label_cell = cells[0].strip("`"), cells[1], cells[2]
        names_part, _, values_part = label_cell.partition("=")
        labels: dict[str, set[str] | None] = {n: None for n in re.findall(r"`(\w+)`", names_part)}
        if values_part:  # "`outcome` = `a`, `b`": the values of the last label named
            labels[list(labels)[-1]] = set(re.findall(r"`(\w+)`", values_part))
        metrics[name] = {"type": kind, "labels": labels}
    return metrics


def series_names() -> dict[str, str]:
    """Series a query may read -> the defined metric: a histogram is read through its _bucket,
    _sum and _count series, a counter and a gauge by their own name."""
    series = {}
    for name, metric in defined_metrics().items():
        suffixes = ("_bucket", "_sum", "_count") if metric["type"] == "histogram" else ("",)
        series.update({name + suffix: name for suffix in suffixes})
    return series


def test_the_metrics_table_is_parsed() -> None:
    metrics = defined_metrics()
    assert len(metrics) >= 12, sorted(metrics)
    assert {m["type"] for m in metrics.values()} == {"counter", "gauge", "histogram"}
    records = metrics["datasync_consumer_records_total"]["labels"]
    assert records["destination"] is None
    assert records["outcome"] == {"applied", "unchanged", "duplicate", "failed", "dead_lettered"}
    assert metrics["datasync_api_requests_total"]["labels"] == dict.fromkeys(
        ("route", "method", "status")
    )
    assert "datasync_consumer_lag_seconds_bucket" in series_names()
    assert "datasync_api_requests_total_bucket" not in series_names()


def test_the_chart_defaults_are_the_ports_the_docs_name() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = " ".join(OBSERVABILITY.read_text().split())
    api_port = re.search(r"`DATASYNC_API_METRICS_PORT` \(default (\d+)", text)
    consumer_port = re.search(r"`DATASYNC_HEALTH_PORT` \(the chart's default (\d+)", text)
    assert api_port and consumer_port, "docs/observability.md no longer names the ports"
    assert values["api"]["metricsPort"] == int(api_port.group(1))
    assert values["consumerDefaults"]["healthPort"] == int(consumer_port.group(1))


def query_problems(expressions: list[str]) -> list[str]:
    """What is wrong with PromQL expressions, measured against docs/observability.md: syntax,
    metrics it does not define, labels those metrics do not have, label values they never take,
    `by (...)` labels that none of the expression's metrics has."""
    parsed = helm_tool(
        "promql", {"expressions": [GRAFANA_MACROS.sub("5m", e) for e in expressions]}
    )["results"]
    series = series_names()
    problems = []
    for result in parsed:
        where = result["expression"]
        if result["error"]:
            problems.append(f"{where}: {result['error']}")
            continue
        if not result["selectors"]:
            problems.append(f"{where}: reads no metric")
        known: set[str] = set(SCRAPE_LABELS)
        for selector in result["selectors"]:
            metric = series.get(selector["metric"])
            if metric is None:
                problems.append(f"{where}: {selector['metric']} is not in docs/observability.md")
                continue
            labels = defined_metrics()[metric]["labels"]
            allowed = (
                set(labels)
                | SCRAPE_LABELS
                | ({"le"} if selector["metric"].endswith("_bucket") else set())
            )
            known |= allowed
            for label, op, value in selector["matchers"]:
                if label not in allowed:
                    problems.append(f"{where}: {metric} has no label {label!r}")
                elif op == "=" and labels.get(label) and value not in labels[label]:
                    problems.append(f"{where}: {metric}'s {label} is never {value!r}")
        for grouping in result["grouping"]:
            problems.extend(
                f"{where}: by ({label}): no metric here has it"
                for label in grouping
                if label not in known
            )
    return problems


def test_the_query_check_notices_what_the_docs_do_not_define() -> None:
    fine = 'sum by (outcome) (rate(datasync_consumer_records_total{outcome="failed"}[5m]))'
    assert query_problems([fine, "max(datasync_api_circuit_open)"]) == []
    bad = {
        "rate(datasync_consumer_lag_secs_bucket[5m])": "not in docs/observability.md",
        "datasync_api_requests_total_bucket": "not in docs/observability.md",
        'rate(datasync_consumer_records_total{outcome="dead_letered"}[5m])': "never 'dead_letered'",
        'rate(datasync_api_publish_total{route="/v1/users"}[5m])': "has no label 'route'",
        "sum by (le) (rate(datasync_api_publish_total[$__rate_interval]))": "by (le)",
        "rate(datasync_api_requests_total[5m]": "parenthesis",
        '{__name__=~"datasync_.*"}': "names no metric",
        "sum without (route) (datasync_api_requests_total)": "without",
        "vector(1)": "reads no metric",
    }
    for expression, expected in bad.items():
        problems = query_problems([expression])
        assert len(problems) == 1 and expected in problems[0], (expression, problems)


# --- Off by default; the Prometheus Operator's kinds need its API ------------------------------


def monitoring_case(predicate: Any) -> list[str]:
    return [
        case for case, values in positive_cases().items() if predicate(values.get("metrics", {}))
    ]


def dashboard_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in of_kind(docs, "ConfigMap")
        if SIDECAR_LABEL in (d["metadata"].get("labels") or {})
    ]


@pytest.mark.parametrize(
    "case", monitoring_case(lambda m: not m.get("grafanaDashboard", {}).get("enabled"))
)
def test_no_dashboard_unless_enabled(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    assert not dashboard_maps(docs)
    assert "datasync/templates/metrics-grafana-dashboard.yaml" not in {
        d["__template"] for d in docs
    }


@pytest.mark.parametrize(
    "case", monitoring_case(lambda m: not m.get("prometheusRule", {}).get("enabled"))
)
def test_no_prometheus_rule_unless_enabled(case: str, manifests: dict[str, list]) -> None:
    assert not of_kind(manifests[case], "PrometheusRule")


def test_the_defaults_turn_every_monitoring_part_off() -> None:
    metrics = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]
    assert metrics["podAnnotations"] is False
    for part in ("serviceMonitor", "grafanaDashboard", "prometheusRule"):
        assert metrics[part]["enabled"] is False, part


@pytest.mark.parametrize("case", sorted(TEMPLATE_FAILURES))
def test_the_chart_refuses_with_what_to_do(case: str, render_results: dict[str, dict]) -> None:
    _, _, expected = TEMPLATE_FAILURES[case]
    result = render_results[case]
    assert not result["ok"], f"{case} rendered"
    assert expected in result["error"], result["error"]
    if "prometheus-operator" in case:
        assert "--api-versions monitoring.coreos.com/v1" in result["error"]


def test_notes_say_what_is_watched(render_results: dict[str, dict]) -> None:
    minimal = render_results["minimal"]["manifests"]["datasync/templates/NOTES.txt"]
    assert "PrometheusRule:                   off (metrics.prometheusRule.enabled)" in minimal
    assert "/metrics: API port 9102, consumers port 9100" in minimal
    notes = render_results["variant-monitoring"]["manifests"]["datasync/templates/NOTES.txt"]
    assert f"{RELEASE}-datasync-grafana-dashboard (label grafana_dashboard=1)" in notes
    enabled = [
        k
        for k, v in positive_cases()["variant-monitoring"]["metrics"]["prometheusRule"][
            "alerts"
        ].items()
        if v.get("enabled") is False
    ]
    assert f"{len(ALERTS) - len(enabled)} alerts:" in notes
    off = render_results["variant-api-metrics-off"]["manifests"]["datasync/templates/NOTES.txt"]
    assert "/metrics: API off" in off


# --- Metrics ports: scraped, never routed -------------------------------------------------------


def metrics_ports(docs: list[dict[str, Any]]) -> set[int]:
    """Container ports named `metrics` of every Deployment."""
    return {
        port["containerPort"]
        for doc in of_kind(docs, "Deployment")
        for container in doc["spec"]["template"]["spec"]["containers"]
        for port in container.get("ports", [])
        if port["name"] == "metrics"
    }


def targets_metrics(service: dict[str, Any], ports: set[int]) -> bool:
    return any(
        p.get("targetPort") == "metrics" or p.get("targetPort") in ports or p["port"] in ports
        for p in service["spec"]["ports"]
    )


@pytest.mark.parametrize("case", list(positive_cases()))
def test_ingress_and_public_services_never_reach_a_metrics_port(
    case: str, manifests: dict[str, list]
) -> None:
    docs = manifests[case]
    services = by_name(docs, "Service")
    ports = metrics_ports(docs)
    routed = {
        path["backend"]["service"]["name"]
        for ingress in of_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    (api_service,) = [
        s for s in services.values() if s["metadata"]["name"] == f"{RELEASE}-datasync-api"
    ]
    for name in routed | {api_service["metadata"]["name"]}:
        assert not targets_metrics(services[name], ports), f"{name} exposes a metrics port"
    for name, service in services.items():
        if targets_metrics(service, ports):
            assert name not in routed, f"the Ingress routes {name}"
            assert service["spec"]["clusterIP"] == "None", f"{name} is not headless"
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
            assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"], name


@pytest.mark.parametrize("case", list(positive_cases()))
def test_the_api_metrics_port_is_the_configmaps(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    values_port = positive_cases()[case].get("api", {}).get("metricsPort", 9102)
    config = settings_config_map(docs)
    assert config["data"]["DATASYNC_API_METRICS_PORT"] == str(values_port)
    # The API binds its metrics to 127.0.0.1 by default: unreachable for Prometheus in a pod.
    assert config["data"]["DATASYNC_API_METRICS_HOST"] == "0.0.0.0"
    api = api_deployment(docs)["spec"]["template"]
    container = api["spec"]["containers"][0]
    assert "DATASYNC_API_METRICS_PORT" not in env_of(container), "set once, in the ConfigMap"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = api["metadata"].get("annotations") or {}
    scraped = positive_cases()[case].get("metrics", {}).get("podAnnotations", False)
    if values_port == 0:
        assert set(ports) == {"http"}
        assert "prometheus.io/scrape" not in annotations
        return
    assert ports["metrics"] == values_port != ports["http"]
    assert (annotations.get("prometheus.io/port") == str(values_port)) == scraped


@pytest.mark.parametrize(
    "case", monitoring_case(lambda m: m.get("serviceMonitor", {}).get("enabled"))
)
def test_service_monitors_scrape_the_api_and_every_consumer(
    case: str, manifests: dict[str, list]
) -> None:
    docs = manifests[case]
    services = of_kind(docs, "Service")
    monitors = of_kind(docs, "ServiceMonitor")
    expected = {component(d) for d in consumer_deployments(docs)}
    if positive_cases()[case].get("api", {}).get("metricsPort", 9102):
        expected.add("api")
    assert {component(m) for m in monitors} == expected
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, f"{monitor['metadata']['name']} selects {len(selected)} Services"
        (service,) = selected
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component(monitor)
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert [p["name"] for p in service["spec"]["ports"]] == [endpoint["port"]] == ["metrics"]
        labels = positive_cases()[case]["metrics"]["serviceMonitor"].get("labels", {})
        assert labels.items() <= monitor["metadata"]["labels"].items()


@pytest.mark.parametrize(
    "case",
    [c for c, v in positive_cases().items() if v.get("networkPolicy", {}).get("enabled", True)],
)
def test_only_metrics_ingress_from_reaches_the_metrics_ports(
    case: str, manifests: dict[str, list]
) -> None:
    docs = manifests[case]
    values = positive_cases()[case].get("networkPolicy", {})
    allowed_from = values.get("metricsIngressFrom", [])
    ports = metrics_ports(docs)
    policies = of_kind(docs, "NetworkPolicy")
    assert policies
    seen = set()
    for policy in policies:
        for rule in policy["spec"]["ingress"]:
            rule_ports = {p["port"] for p in rule["ports"]}
            if not rule_ports & ports:
                continue
            name = policy["metadata"]["name"]
            assert rule_ports <= ports, f"{name}: a metrics port shares a rule with {rule_ports}"
            assert rule["from"] == allowed_from, f"{name}: {rule.get('from')}"
            seen |= rule_ports
    if not allowed_from:  # no scraper named: no rule admits anyone to a metrics port
        assert seen == set(), seen
        return
    assert seen == ports, f"metrics ports without a rule: {ports - seen}"
    if 9102 in ports:
        api = by_name(docs, "NetworkPolicy")[f"{RELEASE}-datasync-api"]["spec"]["ingress"]
        assert [{p["port"] for p in r["ports"]} for r in api] == [{8080}, {9102}]


# --- The Grafana dashboard ----------------------------------------------------------------------


def rendered_dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (config_map,) = dashboard_maps(docs)
    assert list(config_map["data"]) == ["datasync.json"]
    return json.loads(config_map["data"]["datasync.json"])


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every panel target's expr and every query variable's label_values() metric."""
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = (
                variable["query"]["query"]
                if isinstance(variable["query"], dict)
                else variable["query"]
            )
            match = re.fullmatch(r"label_values\((.+), *(\w+)\)", query)
            assert match, f"variable {variable['name']}: {query}"
            queries.append(match.group(1))
    return queries


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


@pytest.mark.parametrize(
    "case", monitoring_case(lambda m: m.get("grafanaDashboard", {}).get("enabled"))
)
def test_the_dashboard_config_map_is_the_file_for_the_grafana_sidecar(
    case: str, manifests: dict[str, list]
) -> None:
    docs = manifests[case]
    (config_map,) = dashboard_maps(docs)
    assert config_map["metadata"]["labels"][SIDECAR_LABEL] == "1"
    values = positive_cases()[case]["metrics"]["grafanaDashboard"]
    assert (
        values.get("annotations", {}).items()
        <= (config_map["metadata"].get("annotations") or {}).items()
    )
    dashboard = rendered_dashboard(docs)
    source = json.loads(DASHBOARD_FILE.read_text())
    # The chart fills in the destination variable and nothing else.
    for name in ("query", "options"):
        variables(source)["destination"].pop(name)
        variables(dashboard)["destination"].pop(name)
    assert dashboard == source


def test_every_panel_reads_only_defined_metrics_through_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    datasource = variables(dashboard)["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    assert variables(dashboard)["namespace"]["datasource"]["uid"] == "${datasource}"
    queries = dashboard_queries(dashboard)
    assert not query_problems(queries)
    read = {
        series_names()[s]
        for q in queries
        for s in re.findall(r"datasync_\w+", q)
        if s in series_names()
    }
    assert read == set(defined_metrics()), f"not on the dashboard: {set(defined_metrics()) - read}"


def test_the_dashboard_has_the_panels_an_operator_needs() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    queries = " ".join(dashboard_queries(dashboard))
    for needed in (
        "sum by (status) (rate(datasync_api_requests_total",
        "histogram_quantile(0.5, sum by (le) (rate(datasync_api_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(datasync_api_request_duration_seconds_bucket",
        "sum by (outcome) (rate(datasync_api_publish_total",
        "max(datasync_api_circuit_open",
        "sum(rate(datasync_api_rate_limited_total",
        "sum by (outcome) (rate(datasync_consumer_records_total",
        'outcome="dead_lettered"',
        "histogram_quantile(0.5, sum by (le) (rate(datasync_consumer_lag_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(datasync_consumer_lag_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(datasync_consumer_lag_seconds_bucket",
        "datasync_consumer_batch_records_bucket",
        "max(datasync_consumer_seconds_since_poll",
    ):
        assert needed in queries, needed
    for panel in dashboard["panels"]:
        x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
        assert 0 <= x and x + w <= 24, panel["title"]
    cells = [
        (p["id"], x, y)
        for p in dashboard["panels"]
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len({(x, y) for _, x, y in cells}) == len(cells), "panels overlap"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def consumer_rows(dashboard: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(panels before the row that repeats per destination, the panels in that row)."""
    panels = dashboard["panels"]
    (index,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p.get("repeat")]
    assert panels[index]["repeat"] == "destination" and "$destination" in panels[index]["title"]
    assert not any(p["type"] == "row" for p in panels[index + 1 :]), "the repeated row is last"
    return panels[:index], panels[index + 1 :]


@pytest.mark.parametrize(
    "case", monitoring_case(lambda m: m.get("grafanaDashboard", {}).get("enabled"))
)
def test_every_enabled_destination_has_its_row(case: str, manifests: dict[str, list]) -> None:
    docs = manifests[case]
    dashboard = rendered_dashboard(docs)
    destination = variables(dashboard)["destination"]
    enabled = [component(d).removeprefix("consumer-") for d in consumer_deployments(docs)]
    if case == "variant-one-consumer-off":
        assert enabled == ["crm"]
    elif not positive_cases()[case].get("consumers"):
        assert sorted(enabled) == sorted(DESTINATIONS)
    assert destination["type"] == "custom" and destination["includeAll"] is True
    assert destination["query"].split(",") == enabled
    assert [o["value"] for o in destination["options"]] == ["$__all", *enabled]
    assert destination["current"]["value"] == ["$__all"], "all rows shown by default"
    api_panels, consumer_panels = consumer_rows(dashboard)
    assert consumer_panels
    for panel in consumer_panels:
        for target in panel["targets"]:
            assert 'destination=~"$destination"' in target["expr"], panel["title"]
    for panel in api_panels:
        for target in panel.get("targets", []):
            assert "datasync_api_" in target["expr"] and "$destination" not in target["expr"]


# --- The PrometheusRule -------------------------------------------------------------------------


def alert_rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (rule,) = of_kind(docs, "PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert all("alert" in r for r in rules), "only alerting rules"
    alerts = {r["alert"]: r for r in rules}
    assert len(alerts) == len(rules), "alert names are unique"
    return alerts


RULE_CASES = monitoring_case(lambda m: m.get("prometheusRule", {}).get("enabled"))


@pytest.mark.parametrize("case", RULE_CASES)
def test_every_alert_has_severity_for_summary_and_a_runbook(
    case: str, manifests: dict[str, list]
) -> None:
    values = positive_cases()[case]["metrics"]["prometheusRule"]
    alerts = alert_rules(manifests[case])
    assert alerts
    for name, rule in alerts.items():
        assert re.fullmatch(r"[0-9]+(ms|s|m|h|d|w)", str(rule.get("for", ""))), f"{name}: for"
        assert rule["for"] not in ("0s", "0m"), f"{name} fires on one evaluation"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert values.get("alertLabels", {}).items() <= rule["labels"].items(), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert all(len(text) > 30 for text in annotations.values()), name
        assert annotations["runbook"].startswith(RUNBOOK_COMMANDS), (
            f"{name}: {annotations['runbook']}"
        )
        # Every label an annotation prints is kept by every aggregation of the expression.
        for label in set(re.findall(r"\$labels\.(\w+)", " ".join(annotations.values()))):
            for grouping in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
                assert label in [g.strip() for g in grouping.split(",")], f"{name}: {label}"


@pytest.mark.parametrize("case", RULE_CASES)
def test_alert_expressions_read_only_defined_metrics(case: str, manifests: dict[str, list]) -> None:
    alerts = alert_rules(manifests[case])
    assert not query_problems([rule["expr"] for rule in alerts.values()])


def test_the_alerts_and_their_defaults(manifests: dict[str, list]) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]
    assert set(defaults["alerts"]) == set(ALERTS)
    (case,) = [c for c in RULE_CASES if c.startswith("ci-")]
    alerts = alert_rules(manifests[case])
    assert set(alerts) == set(ALERTS.values())
    stuck = alerts["DatasyncConsumerStuck"]
    assert stuck["expr"].startswith(
        "max by (namespace, destination) (datasync_consumer_seconds_since_poll)"
    )
    assert stuck["expr"].endswith("> 90") and stuck["for"] == "5m"
    dead = alerts["DatasyncRecordsDeadLettered"]["expr"]
    assert 'increase(datasync_consumer_records_total{outcome="dead_lettered"}[10m])' in dead
    assert dead.endswith("> 0")
    lag = alerts["DatasyncConsumerLagHigh"]["expr"]
    assert (
        lag.startswith("histogram_quantile(0.95, ")
        and "datasync_consumer_lag_seconds_bucket" in lag
    )
    for key, name in ALERTS.items():
        default = defaults["alerts"][key]
        rule = alerts[name]
        assert rule["for"] == default["for"] and rule["labels"]["severity"] == default["severity"]
        if "threshold" in default:
            assert re.search(rf"> {re.escape(str(default['threshold']))}$", rule["expr"]), name
        if "window" in default:
            assert f"[{default['window']}]" in rule["expr"], name


def test_alert_values_reach_the_rules(manifests: dict[str, list]) -> None:
    overrides = positive_cases()["variant-monitoring"]["metrics"]["prometheusRule"]["alerts"]
    alerts = alert_rules(manifests["variant-monitoring"])
    assert (
        ALERTS["apiRateLimited"] not in alerts and overrides["apiRateLimited"]["enabled"] is False
    )
    stuck = alerts[ALERTS["consumerStuck"]]
    assert stuck["expr"].endswith("> 120") and stuck["for"] == "7m"
    assert stuck["labels"]["severity"] == "warning"
    assert "120 s ago" in stuck["annotations"]["description"]


def test_the_monitoring_docs_name_every_alert_and_value() -> None:
    text = KUBERNETES_DOC.read_text()
    section = text[text.index("## Monitoring") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    for name in ALERTS.values():
        assert f"`{name}`" in section, name
    for value in (
        "metrics.podAnnotations",
        "metrics.serviceMonitor.enabled",
        "metrics.grafanaDashboard.enabled",
        "metrics.prometheusRule.enabled",
        "networkPolicy.metricsIngressFrom",
        "api.metricsPort",
        "--api-versions monitoring.coreos.com/v1",
    ):
        assert value in section, value
