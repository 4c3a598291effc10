"""deploy/monitoring: every PromQL expression parses (promtool) and names only metrics that a real
`/metrics` scrape of a running service has; the Kubernetes objects are well formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.files import ROOT, load_yaml
from tests.service.model_repo import write_model
from tests.service.servers import API_KEY, ServerProcess

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "prometheusrule.yaml"
# Grafana's variables, replaced the way Grafana does before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": "mlp-serve", "$model": ".*"}
# Series Prometheus makes itself, not the service.
SYNTHETIC = {"up"}


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rendered(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def rule_expressions() -> list[str]:
    return [rule["expr"] for group in load_yaml(RULES)["spec"]["groups"]
            for rule in group["rules"]]


def metric_names(node: Any) -> Iterator[str]:
    """Every metric a PromQL expression selects, from promql-parser's syntax tree."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        for matcher in node.matchers.matchers:
            if matcher.name == "__name__":
                yield matcher.value
        return
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from metric_names(child)
    for arg in getattr(node, "args", None) or []:
        yield from metric_names(arg)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: apt-get install prometheus (make test does as root)")
    return path


def check_rules(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Sample names of a real scrape, after a success, a client error and a server error."""
    repo = tmp_path_factory.mktemp("monitoring") / "models"
    write_model(repo, "mnist-mlp", 1)
    server = ServerProcess(repo)
    try:
        server.wait_ready()
        body = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                            "data": [0.0] * 784}]}
        assert httpx.post(f"{server.url}/v2/models/mnist-mlp/infer", json=body,
                          timeout=30).status_code == 200
        assert httpx.post(f"{server.url}/v2/models/mnist-mlp/infer", content=b"{",
                          timeout=30).status_code == 400
        control = f"{server.url}/v2/repository/models/nothing-here/load"
        assert httpx.post(control, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=30).status_code == 404  # counts a failed model load
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
    finally:
        server.stop()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    """As recording rules: promtool parses each expression the way Prometheus will."""
    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    rules = [{"record": f"dashboard:query_{i}", "expr": rendered(e)}
             for i, e in enumerate(expressions)]
    result = check_rules([{"name": "dashboard", "rules": rules}], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    groups = load_yaml(RULES)["spec"]["groups"]
    result = check_rules(groups, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert {"MlpServeTargetDown", "MlpServeHighErrorRatio", "MlpServeLatencyP99OverBudget",
            "MlpServeQueueSaturated", "MlpServeShedding"} <= alerts


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The check above can fail: a missing bracket does not pass."""
    result = check_rules([{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(a[5m])"}]}],
                         tmp_path)
    assert result.returncode != 0


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_metric_named_exists_in_a_real_scrape(source: str, scraped: set[str]) -> None:
    expressions = ([rendered(e) for e in dashboard_expressions()] if source == "dashboard"
                   else rule_expressions())
    named = {name for e in expressions for name in metric_names(promql_parser.parse(e))}
    assert len(named) >= 3
    assert sorted(named - scraped - SYNTHETIC) == []


def test_the_name_extractor_finds_what_is_there() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="1"}[5m]))) / on() '
            'group_left sum(b) > bool -c or absent(up{job="j"}) or max_over_time(d[5m:1m])')
    assert set(metric_names(promql_parser.parse(expr))) == {"a_bucket", "b", "c", "up", "d"}


def test_the_template_variables_are_defined_and_the_rules_target_the_service_job() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    used = {m for e in dashboard_expressions() for m in re.findall(r"\$(\w+)", e)}
    assert used - {"__rate_interval"} <= defined
    service = load_yaml(ROOT / "deploy" / "k8s" / "service.yaml")
    assert all(f'job="{service["metadata"]["name"]}"' in e for e in rule_expressions())


def test_service_monitor_scrapes_the_service_port_and_labels() -> None:
    monitor = load_yaml(MONITORING / "servicemonitor.yaml")
    service = load_yaml(ROOT / "deploy" / "k8s" / "service.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])


def test_grpc_server_errors_count_as_errors_and_grpc_successes_as_successes(
        tmp_path: Path) -> None:
    """promtool's rule unit test: 10 UNAVAILABLE gRPC answers a minute beside 100 OK ones fire
    the error alert (HTTP's 5xx and gRPC's codes alike); gRPC client errors do not."""
    groups = load_yaml(RULES)["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    series = 'mlp_requests_total{{job="mlp-serve", protocol="grpc", status="{}"}}'
    description = next(rule["annotations"]["description"] for group in groups
                       for rule in group["rules"] if rule.get("alert") == "MlpServeHighErrorRatio")
    fired = {"exp_labels": {"severity": "critical"}, "exp_annotations": {
        "summary": "mlp-serve answers 9.091% of requests with a server error",
        "description": description}}

    def case(status: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"interval": "1m", "input_series": [
            {"series": series.format(status), "values": "0+10x30"},
            {"series": series.format("OK"), "values": "0+100x30"}],
            "alert_rule_test": [{"eval_time": "20m", "alertname": "MlpServeHighErrorRatio",
                                 "exp_alerts": alerts}]}

    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
            "tests": [case("UNAVAILABLE", [fired]), case("INVALID_ARGUMENT", [])]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool(), "test", "rules", str(tmp_path / "tests.yaml")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
