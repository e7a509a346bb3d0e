// Validates Prometheus Operator objects against the operator's CRD schemas, offline, with the
// models of npm @kubernetes-models/prometheus-operator (installed by .ci/npm-install.sh).
//
//   node .ci/validate-prometheus-operator.mjs manifests.json
//
// The file holds a JSON array of objects (ServiceMonitor, PrometheusRule). Prints a JSON array with
// one {kind, name, errors} per object: errors is null for a valid object, else the validator's
// message. Exits 0 when it could check every object, 2 on an object of another kind.
import { readFileSync } from "node:fs";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = { PrometheusRule, ServiceMonitor };
const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = [];
for (const object of objects) {
  const Model = MODELS[object.kind];
  if (!Model || object.apiVersion !== Model.apiVersion) {
    console.error(`no model for ${object.apiVersion} ${object.kind}`);
    process.exit(2);
  }
  let errors = null;
  try {
    new Model(object).validate();
  } catch (error) {
    errors = error.message;
  }
  results.push({ kind: object.kind, name: object.metadata?.name ?? null, errors });
}
console.log(JSON.stringify(results));
