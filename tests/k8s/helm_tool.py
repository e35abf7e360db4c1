"""Runs inside the checkers' venv (.tools/k8s-checks), never in the project's .venv.

The k8s tests call it through subprocess so that the project's environment does not need
helm-python-sdk or the KEDA models (checkov's dependencies conflict with the project's).
It reads one JSON request on stdin and writes one JSON answer on stdout:

    render  {"chart", "release", "namespace", "kube_version", "cases": {name: {"values", "lint"}}}
            -> {name: {"ok", "error", "manifests": {template: text}, "lint": report | null}}
            Helm 4's engine (helm-python-sdk) renders offline: values.schema.json is enforced,
            `lookup` returns nothing. A case whose values are rejected comes back with ok=false.
    keda    {"objects": [manifest, ...]}
            -> {"results": [{"kind", "name", "errors": [...]}]}
            Validates ScaledObject / TriggerAuthentication against the cloudcoil KEDA models and,
            because those models ignore unknown fields, also reports every field the model does
            not know (a misspelt key would otherwise pass silently).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def render(request: dict[str, Any]) -> dict[str, Any]:
    import helm_python

    chart = helm_python.Chart.load(request["chart"])
    answer: dict[str, Any] = {}
    for name, case in request["cases"].items():
        values = case.get("values") or {}
        result: dict[str, Any] = {"ok": True, "error": None, "manifests": {}, "lint": None}
        try:
            result["manifests"] = chart.render(
                values,
                name=request["release"],
                namespace=request["namespace"],
                is_install=True,
            )
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


def keda(request: dict[str, Any]) -> dict[str, Any]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from pydantic import ValidationError

    models = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication}
    results = []
    for obj in request["objects"]:
        kind = obj.get("kind")
        errors: list[str] = []
        model = models.get(kind)
        if model is None:
            errors.append(f"no KEDA model for kind {kind!r}")
        elif obj.get("apiVersion") != "keda.sh/v1alpha1":
            errors.append(f"apiVersion {obj.get('apiVersion')!r} is not keda.sh/v1alpha1")
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


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    handlers = {"render": render, "keda": keda}
    if command not in handlers:
        print(f"usage: {sys.argv[0]} render|keda < request.json", file=sys.stderr)
        return 2
    request = json.load(sys.stdin)
    json.dump(handlers[command](request), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
