"""The operations files: Ray cluster launcher config, KubeRay RayService, Prometheus scrape config
and alert rules, Grafana dashboard, Dockerfile and CI workflow. Each must parse, follow the
schema of the tool that reads it, and agree with the code: the Serve applications with
deployments/serve_config.yaml, every queried metric with cluster/metrics.py or Ray's own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.util import validate_config
from ray.serve.schema import ServeDeploySchema

from cluster.metrics import prometheus_names
from tests.services import require_module

ROOT = Path(__file__).resolve().parents[2]
YAML_FILES = [
    "cluster.yaml",
    "cluster/prometheus.yml",
    "cluster/alerts.yml",
    "cluster/kuberay/rayservice.yaml",
    "deployments/serve_config.yaml",
    ".github/workflows/ci.yml",
]
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
      |(?P<range>\[\s*[0-9smhdwy]+\s*(?::\s*[0-9smhdwy]*\s*)?\])
      |(?P<duration>(?:\d+(?:ms|[smhdwy]))+\b)
      |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      |(?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=,(){}\[\]])
      |(?P<space>\s+)""",
    re.VERBOSE,
)
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:]*$")
GROUP_KEYS = {"name", "rules", "interval", "limit", "query_offset", "labels"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def load_yaml(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text())


def rayservice() -> dict[str, Any]:
    manifest: dict[str, Any] = load_yaml("cluster/kuberay/rayservice.yaml")
    return manifest


def embedded_serve_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    return config


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects. Raises ValueError for a character PromQL has
    no token for and for unbalanced brackets."""
    tokens = []
    position = 0
    while position < len(expr):
        match = PROMQL_TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"no PromQL token at {expr[position : position + 20]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
        position = match.end()
    names = set()
    brackets: list[str] = []
    label_list_depth: int | None = None
    for i, (kind, text) in enumerate(tokens):
        if text in "([{":
            brackets.append(text)
            previous = tokens[i - 1][1] if i else ""
            if text == "(" and previous in LABEL_LIST_KEYWORDS:
                label_list_depth = len(brackets)
        elif text in ")]}":
            if not brackets or {"(": ")", "[": "]", "{": "}"}[brackets.pop()] != text:
                raise ValueError(f"unbalanced {text!r} in {expr!r}")
            if label_list_depth is not None and len(brackets) < label_list_depth:
                label_list_depth = None
        elif kind == "ident":
            following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
            in_labels = "{" in brackets or label_list_depth is not None
            called = following == "(" or following in LABEL_LIST_KEYWORDS
            if not in_labels and not called and text not in PROMQL_KEYWORDS:
                names.add(text)
    if brackets:
        raise ValueError(f"unclosed {brackets[-1]!r} in {expr!r}")
    return names


def rule_file_problems(document: Any) -> list[str]:
    """What Prometheus would refuse in a rule file, as far as its structure goes."""
    if not isinstance(document, dict) or set(document) != {"groups"}:
        return ["a rule file is a mapping with only `groups`"]
    problems = []
    names = [group.get("name") for group in document["groups"]]
    if len(set(names)) != len(names):
        problems.append(f"group names repeat: {names}")
    for group in document["groups"]:
        where = f"group {group.get('name')!r}"
        if not isinstance(group.get("name"), str) or not group.get("rules"):
            problems.append(f"{where}: needs a name and rules")
        problems += [f"{where}: unknown key {key!r}" for key in set(group) - GROUP_KEYS]
        for rule in group.get("rules") or []:
            problems += _rule_problems(where, rule)
    return problems


def _rule_problems(where: str, rule: dict[str, Any]) -> list[str]:
    name = rule.get("alert") or rule.get("record")
    where = f"{where}, rule {name!r}"
    problems = [f"{where}: unknown key {key!r}" for key in set(rule) - RULE_KEYS]
    if ("alert" in rule) == ("record" in rule):
        problems.append(f"{where}: needs exactly one of alert and record")
    if not isinstance(name, str) or not RULE_NAME.match(name):
        problems.append(f"{where}: invalid name")
    if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
        problems.append(f"{where}: needs an expr")
    else:
        try:
            promql_metric_names(rule["expr"])
        except ValueError as error:
            problems.append(f"{where}: {error}")
    for key in ("for", "keep_firing_for"):
        if key in rule and ("record" in rule or not DURATION.match(str(rule[key]))):
            problems.append(f"{where}: {key} must be a duration on an alert")
    for key in ("labels", "annotations"):
        value = rule.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            problems.append(f"{where}: {key} must map strings to strings")
    if "annotations" in rule and "record" in rule:
        problems.append(f"{where}: a recording rule has no annotations")
    return problems


def ray_metric_names() -> set[str]:
    """The names Ray's own metrics are scraped under: those its shipped Grafana panels query,
    and every metric Serve defines."""
    root = Path(ray.__file__).parent
    names = set()
    for path in (root / "dashboard" / "modules" / "metrics" / "dashboards").glob("*_panels.py"):
        names |= set(re.findall(r"\bray_[a-z0-9_]+", path.read_text()))
    for path in (root / "serve").rglob("*.py"):
        for kind, name in re.findall(
            r'\b(Counter|Gauge|Histogram)\(\s*"([a-z0-9_]+)"', path.read_text()
        ):
            exported = f"ray_{name}"
            if kind == "Counter":
                names.add(exported if exported.endswith("_total") else f"{exported}_total")
            elif kind == "Histogram":
                names |= {f"{exported}_bucket", f"{exported}_sum", f"{exported}_count"}
            else:
                names.add(exported)
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml("cluster/alerts.yml")["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads((ROOT / "cluster" / "grafana-dashboard.json").read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


@pytest.mark.parametrize("name", YAML_FILES)
def test_yaml_file_parses_to_a_mapping(name: str) -> None:
    assert isinstance(load_yaml(name), dict)


def test_cluster_launcher_config_is_valid_for_ray() -> None:
    validate_config(load_yaml("cluster.yaml"))


def test_cluster_launcher_has_a_cpu_head_and_autoscaled_gpu_workers() -> None:
    config = load_yaml("cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    gpu_types = [t for t in types.values() if re.match(r"g\d", t["node_config"]["InstanceType"])]
    assert config["provider"]["type"] == "aws"
    assert not re.match(r"[gp]\d", head["node_config"]["InstanceType"])
    assert {t["node_config"]["InstanceType"] for t in gpu_types} >= {"g5.xlarge", "g6e.xlarge"}
    assert all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in gpu_types)
    assert config["docker"]["image"].endswith("-gpu")


def test_cluster_launcher_installs_the_project_and_starts_the_dashboard() -> None:
    config = load_yaml("cluster.yaml")
    assert "/home/ray/studio" in config["file_mounts"]
    assert any('pip install --quiet ".[neural]"' in c for c in config["setup_commands"])
    head_start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head_start
    assert "--dashboard-host=0.0.0.0" in head_start
    assert "--metrics-export-port=8080" in " ".join(config["worker_start_ray_commands"])


def test_every_worker_type_offers_render_slots() -> None:
    """The clip and assembly tasks ask for a `render_slot`: a cluster without any never runs
    them."""
    config = load_yaml("cluster.yaml")
    workers = {
        name: t
        for name, t in config["available_node_types"].items()
        if name != config["head_node_type"]
    }
    assert all(t["resources"].get("render_slot", 0) > 0 for t in workers.values())
    groups = rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert all("render_slot" in group["rayStartParams"]["resources"] for group in groups)


def test_rayservice_embeds_a_valid_serve_config() -> None:
    ServeDeploySchema.model_validate(embedded_serve_config())


def test_rayservice_serves_the_applications_of_the_serve_config() -> None:
    def shape(config: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                app["name"],
                app.get("route_prefix", "/"),
                app["import_path"],
                app.get("args", {}),
                sorted(d["name"] for d in app.get("deployments", [])),
            )
            for app in config["applications"]
        )

    assert shape(embedded_serve_config()) == shape(load_yaml("deployments/serve_config.yaml"))


def test_rayservice_has_cpu_head_cpu_workers_and_gpu_workers() -> None:
    manifest = rayservice()
    cluster = manifest["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    groups = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    gpu = groups["gpu"]
    gpu_container = gpu["template"]["spec"]["containers"][0]
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    assert cluster["rayVersion"] == ray.__version__
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    assert (
        "nvidia.com/gpu"
        not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    assert (
        gpu_container["resources"]["limits"]["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"]
    )
    assert gpu_container["image"].endswith("-gpu")
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] > 0


def test_manifests_run_the_image_the_dockerfile_builds() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None and base.group(1) == f"rayproject/ray:{ray.__version__}-py311"
    assert f"BASE_IMAGE=rayproject/ray:{ray.__version__}-py311-gpu" in dockerfile
    tags = set(re.findall(r"-t (\S+)", dockerfile))
    cluster = rayservice()["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    images = {group["template"]["spec"]["containers"][0]["image"] for group in templates}
    launcher = load_yaml("cluster.yaml")["docker"]
    assert images | {launcher["image"], launcher["head_image"]} <= tags


def test_prometheus_scrapes_every_ray_node_and_loads_the_alerts() -> None:
    config = load_yaml("cluster/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    files = [f for sd in jobs["ray"]["file_sd_configs"] for f in sd["files"]]
    assert files == ["/tmp/ray/prom_metrics_service_discovery.json"]
    assert all((ROOT / "cluster" / name).is_file() for name in config["rule_files"])


def test_alert_rules_follow_the_rule_file_schema() -> None:
    assert rule_file_problems(load_yaml("cluster/alerts.yml")) == []


def test_rule_file_check_reports_broken_rules() -> None:
    broken = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {"alert": "Bad name", "expr": "sum(rate(x[5m])", "for": "10 minutes"},
                    {"record": "r", "alert": "A", "expr": "x"},
                    {"alert": "NoExpr", "labels": {"severity": 1}},
                ],
            }
        ]
    }
    problems = rule_file_problems(broken)
    assert any("invalid name" in p for p in problems)
    assert any("unclosed" in p for p in problems)
    assert any("duration" in p for p in problems)
    assert any("exactly one of alert and record" in p for p in problems)
    assert any("needs an expr" in p for p in problems)
    assert any("labels must map strings" in p for p in problems)


def test_alerts_cover_failures_latency_backlog_crash_loops_and_the_ledger() -> None:
    expressions = " ".join(rule["expr"] for rule in alert_rules())
    for metric in (
        'ray_studio_jobs_total{state="failed"}',
        "ray_studio_http_request_duration_seconds_bucket",
        "ray_studio_job_queue_depth",
        "ray_serve_deployment_replica_starts_total",
        "ray_studio_ledger_errors_total",
    ):
        assert metric in expressions


def test_alert_and_dashboard_expressions_parse_as_promql() -> None:
    promql_parser = require_module("promql_parser", "promql-parser is a test extra")
    targets = [target for panel in dashboard_panels() for target in panel["targets"]]
    for expr in [rule["expr"] for rule in alert_rules()] + [t["expr"] for t in targets]:
        promql_parser.parse(expr)


def dashboard_metric_names() -> set[str]:
    panels = dashboard_panels()
    assert all(panel["targets"] for panel in panels)
    return set().union(*(promql_metric_names(t["expr"]) for p in panels for t in p["targets"]))


def test_dashboard_panels_query_only_known_metrics() -> None:
    assert dashboard_metric_names() - (prometheus_names() | ray_metric_names()) == set()


def test_dashboard_shows_every_studio_metric() -> None:
    shown = {name for name in prometheus_names() if not name.endswith(("_sum", "_count"))}
    assert shown <= dashboard_metric_names()


def test_alerts_query_only_known_metrics() -> None:
    queried = set().union(*(promql_metric_names(rule["expr"]) for rule in alert_rules()))
    assert queried - (prometheus_names() | ray_metric_names()) == set()


def test_promql_metric_names_skip_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{route=~"/x"}[5m]))) > 2'
        " and on (engine) max by (engine) (b) > 0 or c offset 5m"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b", "c"}


def test_ci_workflow_runs_the_ci_script_on_python_311_with_postgres() -> None:
    workflow = load_yaml(".github/workflows/ci.yml")
    job = workflow["jobs"]["test"]
    steps = job["steps"]
    python = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    assert python["with"]["python-version"] == "3.11"
    assert steps[-1]["run"] == "bash .ci/run"
    assert (ROOT / ".ci" / "run").is_file()
