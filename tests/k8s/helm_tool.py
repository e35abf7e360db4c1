"""Runs inside the checkers' venv (.tools/k8s-checks), never in the project's .venv.

The k8s tests call it through subprocess so that the project's environment does not need
helm-python-sdk or the KEDA models (checkov's dependencies conflict with the project's).
It reads one JSON request on stdin and writes one JSON answer on stdout:

    render  {"chart", "release", "namespace", "kube_version",
             "cases": {name: {"values", "lint", "api_versions"}}}
            -> {name: {"ok", "error", "manifests": {template: text}, "lint": report | null}}
            Helm 4's engine (helm-python-sdk) renders offline: values.schema.json is enforced,
            `lookup` returns nothing, and .Capabilities.APIVersions holds the built-in APIs plus
            the case's "api_versions" (what `helm template --api-versions` adds: the cluster's
            CRDs). A case whose values are rejected comes back with ok=false.
    crds    {"objects": [manifest, ...]}
            -> {"results": [{"kind", "name", "errors": [...]}]}
            Validates ScaledObject / TriggerAuthentication against the cloudcoil KEDA models and
            ServiceMonitor / PrometheusRule against the Prometheus Operator models and, because
            those models ignore unknown fields, also reports every field the model does not know
            (a misspelt key would otherwise pass silently).
    promql  {"expressions": [text, ...]}
            -> {"results": [{"expression", "error", "selectors": [{"metric", "matchers"}],
                             "grouping": [[label, ...], ...]}]}
            Parses each expression with promql-parser (the Rust PromQL parser's bindings) and
            lists what it reads: each selector's metric name and label matchers
            ([label, "=" | "!=" | "=~" | "!~", value]), and the labels of each `by (...)`
            (`without (...)` is refused: it keeps labels nobody listed). A selector without a
            metric name (only {__name__=~...}) is an error: every query must name what it reads.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _render(chart: Any, values: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    """Chart.render with the options it does not pass on: helm-python-sdk 0.2.2's wrapper drops
    api_versions, which its native helm_render accepts (the same JSON options object)."""
    from helm_python import _native

    rendered: dict[str, str] = json.loads(
        _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))
    )
    return rendered


def render(request: dict[str, Any]) -> dict[str, Any]:
    import helm_python

    chart = helm_python.Chart.load(request["chart"])
    answer: dict[str, Any] = {}
    for name, case in request["cases"].items():
        values = case.get("values") or {}
        result: dict[str, Any] = {"ok": True, "error": None, "manifests": {}, "lint": None}
        options = {
            "name": request["release"],
            "namespace": request["namespace"],
            "is_install": True,
            "api_versions": case.get("api_versions") or [],
        }
        try:
            result["manifests"] = _render(chart, values, options)
        except helm_python.HelmError as exc:
            result["ok"] = False
            result["error"] = str(exc)
        if case.get("lint"):
            result["lint"] = helm_python.lint(
                request["chart"],
                values,
                strict=True,
                namespace=request["namespace"],
                kube_version=request["kube_version"],
            )
        answer[name] = result
    return answer


def _unknown_fields(given: Any, known: Any, path: str) -> list[str]:
    """Keys present in the manifest but absent from the model's dump of it."""
    problems: list[str] = []
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            if key not in known:
                problems.append(f"{path}.{key}: unknown field")
            else:
                problems.extend(_unknown_fields(value, known[key], f"{path}.{key}"))
    elif isinstance(given, list) and isinstance(known, list):
        for index, (g, k) in enumerate(zip(given, known, strict=False)):
            problems.extend(_unknown_fields(g, k, f"{path}[{index}]"))
    return problems


def crds(request: dict[str, Any]) -> dict[str, Any]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from pydantic import ValidationError

    try:
        from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
    except ImportError:
        sys.exit(
            "cloudcoil-models-prometheus-operator is missing from the checkers' venv: add "
            "cloudcoil-models-prometheus-operator==0.80.1.0 to requirements/k8s-checks.lock and "
            "run `make .tools/k8s-checks/.installed`"
        )

    models = {
        "ScaledObject": ("keda.sh/v1alpha1", ScaledObject),
        "TriggerAuthentication": ("keda.sh/v1alpha1", TriggerAuthentication),
        "ServiceMonitor": ("monitoring.coreos.com/v1", ServiceMonitor),
        "PrometheusRule": ("monitoring.coreos.com/v1", PrometheusRule),
    }
    results = []
    for obj in request["objects"]:
        kind = obj.get("kind")
        errors: list[str] = []
        api_version, model = models.get(kind, (None, None))
        if model is None:
            errors.append(f"no model for kind {kind!r}")
        elif obj.get("apiVersion") != api_version:
            errors.append(f"apiVersion {obj.get('apiVersion')!r} is not {api_version}")
        else:
            try:
                parsed = model.model_validate(obj)
            except ValidationError as exc:
                errors.extend(
                    f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
                )
            else:
                dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
                errors.extend(_unknown_fields(obj.get("spec"), dumped.get("spec"), "spec"))
        results.append(
            {"kind": kind, "name": (obj.get("metadata") or {}).get("name"), "errors": errors}
        )
    return {"results": results}


MATCH_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _describe(parsed: Any) -> dict[str, Any]:
    import promql_parser

    selectors: list[dict[str, Any]] = []
    grouping: list[list[str]] = []
    errors: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if not node.name:
                errors.append("a selector names no metric")
            matchers = [*node.matchers.matchers]
            for group in node.matchers.or_matchers or []:
                matchers.extend(group)
            selectors.append(
                {
                    "metric": node.name,
                    "matchers": [
                        [m.name, MATCH_OPS[str(m.op).rsplit(".", 1)[-1]], m.value]
                        for m in matchers
                        if m.name != "__name__"
                    ],
                }
            )
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if node.modifier.type == promql_parser.AggModifierType.Without:
                errors.append(f"{node.op} without (...): list the labels kept with by (...)")
            else:
                grouping.append(list(node.modifier.labels))
        return True

    promql_parser.walk(parsed, visit)
    return {"error": "; ".join(errors) or None, "selectors": selectors, "grouping": grouping}


def promql(request: dict[str, Any]) -> dict[str, Any]:
    try:
        import promql_parser
    except ImportError:
        sys.exit(
            "promql-parser is missing from the checkers' venv: add promql-parser==0.11.0 to "
            "requirements/k8s-checks.lock and run `make .tools/k8s-checks/.installed`"
        )

    results = []
    for expression in request["expressions"]:
        result: dict[str, Any] = {"expression": expression, "selectors": [], "grouping": []}
        try:
            parsed = promql_parser.parse(expression)
        except ValueError as exc:
            result["error"] = str(exc)
        else:
            result.update(_describe(parsed))
        results.append(result)
    return {"results": results}


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    handlers = {"render": render, "crds": crds, "promql": promql}
    if command not in handlers:
        print(f"usage: {sys.argv[0]} render|crds|promql < request.json", file=sys.stderr)
        return 2
    request = json.load(sys.stdin)
    json.dump(handlers[command](request), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
