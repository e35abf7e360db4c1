// Validates ExternalSecret objects against the External Secrets Operator's external-secrets.io/v1
// API (@kubernetes-models/external-secrets, generated from the operator's Go types), for tests/k8s.
// Runs with the checkers' npm tools (.tools/k8s-checks/npm, from requirements/k8s-checks-npm).
//
//   node external_secrets.mjs < [object, ...]  ->  [{"kind", "name", "errors": [...]}, ...]
//
// The models check types, enums and required fields, not unknown keys. So each key the object
// has is also probed: replaced by a value of a type no field of the API has (an array of arrays
// of numbers), the object must then be refused; a key it still accepts is one the API ignores,
// reported as "unknown field" (a misspelt key would otherwise pass silently).
import { ExternalSecret } from "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret";

const PROBE = [[0]];

function errorsOf(obj) {
  try {
    new ExternalSecret(obj).validate();
    return [];
  } catch (error) {
    return [String(error.message)];
  }
}

function paths(node, prefix = []) {
  if (Array.isArray(node)) return node.flatMap((item, i) => paths(item, [...prefix, i]));
  if (node === null || typeof node !== "object") return [];
  return Object.entries(node).flatMap(([key, value]) => [[...prefix, key], ...paths(value, [...prefix, key])]);
}

function probed(obj, path) {
  const copy = structuredClone(obj);
  let node = copy;
  for (const part of path.slice(0, -1)) node = node[part];
  node[path[path.length - 1]] = PROBE;
  return copy;
}

function check(obj) {
  if (obj.apiVersion !== "external-secrets.io/v1" || obj.kind !== "ExternalSecret") {
    return [`not an external-secrets.io/v1 ExternalSecret: ${obj.apiVersion} ${obj.kind}`];
  }
  const errors = errorsOf(obj);
  if (errors.length) return errors;
  // metadata is Kubernetes' own (kubernetes-validate's job): probe the spec only.
  for (const path of paths(obj.spec, ["spec"])) {
    if (!errorsOf(probed(obj, path)).length) errors.push(`${path.join(".")}: unknown field`);
  }
  return errors;
}

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk)).on("end", () => resolve(text));
}));
const results = input.map((obj) => ({ kind: obj.kind, name: obj.metadata?.name, errors: check(obj) }));
process.stdout.write(JSON.stringify(results));
