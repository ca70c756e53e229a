// deploy/ checked against schemas and against the server itself: every Kubernetes object is
// validated (kubernetes-models, KEDA, Prometheus Operator, Gateway API; InferencePool by hand), each
// kustomization is assembled the way kustomize would for what these files use (resources,
// strategic-merge patches, images, namespace), and what the manifests promise is checked on the
// real code: flag and env names and values (the CLI's own parser), the port, /health as the probe
// target, the drain arithmetic, labels that select the right pods, and every metric name the
// autoscalers, the endpoint picker, the Grafana dashboard and docs/deploy.md use.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { CONFIG_KEYS, envName, flagName, loadConfig, parseBytes, SERVER_DEFAULTS, SHUTDOWN_MARGIN_MS, type Config } from '../../src/config.ts';
import { engineMetricsHooks } from '../../src/engine/metrics.ts';
import { buildApp } from '../../src/server/app.ts';
import { FakeEngine } from '../server/fake-engine.ts';
import { makeApp, TEST_CONFIG } from '../server/helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const K8S = path.join(ROOT, 'deploy', 'k8s');
const DASHBOARD = path.join(ROOT, 'deploy', 'grafana', 'specserve.json');
const DOC = path.join(ROOT, 'docs', 'deploy.md');

/** What the CLI allows itself after --shutdown-timeout-ms to abort streams and close the engine. */
const CLI_SHUTDOWN_MARGIN_S = SHUTDOWN_MARGIN_MS / 1000;
/** Files under deploy/k8s that are neither Kubernetes objects nor kustomizations. */
const NOT_KUBERNETES = new Set(['autoscaling/hpa/prometheus-adapter-values.yaml']);
/** Environment variables the specserve container may set besides the config's own. */
const FOREIGN_ENV = new Set(['CUDA_CACHE_PATH']);
/** The overlays an operator applies, and what each must pin. */
const OVERLAYS = { cpu: { provider: 'cpu', gpus: 0 }, gpu: { provider: 'cuda', gpus: 1 } } as const;
/** The EPP (gateway-api-inference-extension v1.5.0) flags these manifests use, from its
 *  pkg/epp/server/options.go AddFlags; the metric-name flags are listed there too but Validate()
 *  refuses them since v1.4, so they must not appear. */
const EPP_FLAGS = new Set(['pool-name', 'pool-namespace', 'pool-group', 'config-file', 'grpc-port', 'grpc-health-port', 'metrics-port', 'refresh-metrics-interval', 'tracing']);
const EPP_REFUSED_FLAGS = ['total-queued-requests-metric', 'total-running-requests-metric', 'kv-cache-usage-percentage-metric', 'lora-info-metric', 'cache-info-metric'];
/** Top-level fields of EndpointPickerConfig v1alpha1 (apix/config/v1alpha1/endpointpickerconfig_types.go,
 *  v1.5.0); the EPP decodes strictly, so anything else stops it at start. */
const EPP_CONFIG_FIELDS = new Set(['apiVersion', 'kind', 'featureGates', 'plugins', 'schedulingProfiles', 'saturationDetector', 'dataLayer', 'flowControl', 'parser']);

/** Flags of other programs that docs/deploy.md quotes: kubectl, helm, node. (npm run loadtest's are
 *  checked against loadtest/loadtest.ts.) */
const DOC_FOREIGN_FLAGS = new Set(['--dry-run', '--from-literal', '--raw', '--values', '--import', '--test']);

// Manifests are data of every shape; these checks index into them freely.
type Obj = Record<string, any>;

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : [full];
  });
}

function readDocs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((doc, i) => {
    assert.deepEqual(doc.errors, [], `${path.relative(ROOT, file)} document ${i} does not parse`);
    return doc.toJS() as Obj;
  }).filter((obj) => obj !== null);
}

const isMap = (value: unknown): value is Obj => typeof value === 'object' && value !== null && !Array.isArray(value);

/** List fields that strategic merge patches merge by a key instead of replacing (k8s patchMergeKey). */
const MERGE_KEYS: Record<string, string> = { containers: 'name', initContainers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath', ports: 'containerPort' };

/** Enough of a strategic merge for these patches; a patch naming a container the target lacks is
 *  an error here (kustomize would silently add an image-less container). */
function strategicMerge(target: unknown, patch: unknown, field = ''): unknown {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    if (key === undefined || !Array.isArray(target)) return structuredClone(patch);
    const merged = structuredClone(target) as Obj[];
    for (const item of patch as Obj[]) {
      const at = merged.findIndex((existing) => existing[key] === item[key]);
      if (at >= 0) merged[at] = strategicMerge(merged[at], item) as Obj;
      else if (field === 'containers') assert.fail(`patch names container ${item.name}, which the target does not have`);
      else merged.push(structuredClone(item));
    }
    return merged;
  }
  if (isMap(patch) && isMap(target)) {
    const merged: Obj = { ...target };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete merged[key];
      else merged[key] = strategicMerge(target[key], value, key);
    }
    return merged;
  }
  return structuredClone(patch);
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

interface Built {
  objects: Obj[];
  /** Every file this kustomization reads, transitively (relative to deploy/k8s). */
  files: Set<string>;
}

/** Assembles a kustomization: resources (files or folders), patches, images, namespace. */
function build(dir: string): Built {
  const kustomizationFile = path.join(dir, 'kustomization.yaml');
  assert.ok(existsSync(kustomizationFile), `${path.relative(ROOT, dir)} has no kustomization.yaml`);
  const k = parse(readFileSync(kustomizationFile, 'utf8')) as Obj;
  assert.equal(k.kind, 'Kustomization', path.relative(ROOT, kustomizationFile));
  const files = new Set([path.relative(K8S, kustomizationFile)]);
  let objects: Obj[] = [];
  for (const resource of k.resources ?? []) {
    const full = path.resolve(dir, resource);
    assert.ok(existsSync(full), `${path.relative(ROOT, kustomizationFile)} lists ${resource}, which does not exist`);
    if (statSync(full).isDirectory()) {
      const inner = build(full);
      objects.push(...inner.objects);
      for (const file of inner.files) files.add(file);
    } else {
      objects.push(...readDocs(full));
      files.add(path.relative(K8S, full));
    }
  }
  for (const patchRef of k.patches ?? []) {
    const full = path.resolve(dir, patchRef.path);
    assert.ok(existsSync(full), `${path.relative(ROOT, kustomizationFile)} patches with ${patchRef.path}, which does not exist`);
    files.add(path.relative(K8S, full));
    for (const patch of readDocs(full)) {
      const kind = patchRef.target?.kind ?? patch.kind;
      const name = patchRef.target?.name ?? patch.metadata?.name;
      const hits = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
      assert.equal(hits.length, 1, `${path.relative(ROOT, full)} targets ${kind}/${name}: ${hits.length} such objects`);
      objects = objects.map((o) => (o === hits[0] ? (strategicMerge(o, patch) as Obj) : o));
    }
  }
  for (const image of k.images ?? []) {
    let replaced = 0;
    for (const container of objects.flatMap(containersOf)) {
      const [name, tag] = splitImage(container.image);
      if (name !== image.name) continue;
      container.image = `${image.newName ?? name}:${image.newTag ?? tag}`;
      replaced++;
    }
    assert.ok(replaced > 0, `${path.relative(ROOT, kustomizationFile)}: images entry ${image.name} matches no container image`);
  }
  if (k.namespace !== undefined) {
    for (const o of objects) {
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata = { ...o.metadata, namespace: k.namespace };
      // kustomize also moves the service accounts a binding names along with it
      for (const subject of o.kind.endsWith('RoleBinding') ? o.subjects ?? [] : []) {
        if (subject.kind === 'ServiceAccount') subject.namespace = k.namespace;
      }
    }
  }
  return { objects, files };
}

/** Lists of named items sorted by name: kustomize and strategicMerge order merged lists differently. */
function canonical(value: unknown): Obj {
  if (Array.isArray(value)) {
    const items = value.map(canonical);
    return items.every((item) => isMap(item) && typeof item.name === 'string') ? items.sort((a, b) => a.name.localeCompare(b.name)) : items;
  }
  if (!isMap(value)) return value as Obj;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, canonical(v)]));
}

function splitImage(image: string): [string, string] {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, 'latest'];
}

function containersOf(o: Obj): Obj[] {
  return o.spec?.template?.spec?.containers ?? [];
}

function find(objects: Obj[], kind: string, name: string): Obj {
  const hits = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
  assert.equal(hits.length, 1, `expected one ${kind}/${name}, found ${hits.length}`);
  return hits[0];
}

/** A subset of the InferencePool v1 CRD's validation (gateway-api-inference-extension,
 *  config/crd/bases/inference.networking.k8s.io_inferencepools.yaml): no model package exists. */
function validateInferencePool(pool: Obj): void {
  const spec = pool.spec;
  assert.ok(isMap(spec), 'InferencePool: spec is required');
  // Structural CRDs prune unknown fields without a word, so a misspelt one would silently vanish.
  for (const key of Object.keys(spec)) assert.ok(['selector', 'targetPorts', 'appProtocol', 'endpointPickerRef'].includes(key), `InferencePool: unknown spec.${key}`);
  const labels = spec.selector?.matchLabels;
  assert.ok(isMap(labels), 'InferencePool: spec.selector.matchLabels is required');
  const count = Object.keys(labels).length;
  assert.ok(count >= 1 && count <= 64, 'InferencePool: 1 to 64 matchLabels');
  for (const value of Object.values(labels)) {
    assert.ok(typeof value === 'string' && value.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(value), `InferencePool: label value ${value}`);
  }
  assert.ok(Array.isArray(spec.targetPorts) && spec.targetPorts.length >= 1 && spec.targetPorts.length <= 8, 'InferencePool: 1 to 8 targetPorts');
  for (const port of spec.targetPorts) assert.ok(Number.isInteger(port.number) && port.number >= 1 && port.number <= 65535, `InferencePool: port ${port.number}`);
  assert.equal(new Set(spec.targetPorts.map((p: Obj) => p.number)).size, spec.targetPorts.length, 'InferencePool: port numbers must be unique');
  if (spec.appProtocol !== undefined) assert.ok(['http', 'kubernetes.io/h2c'].includes(spec.appProtocol), `InferencePool: appProtocol ${spec.appProtocol}`);
  const epp = spec.endpointPickerRef;
  if (epp !== undefined) {
    assert.ok(typeof epp.name === 'string' && epp.name.length >= 1 && epp.name.length <= 253, 'InferencePool: endpointPickerRef.name is required');
    if ((epp.kind ?? 'Service') === 'Service') assert.ok(Number.isInteger(epp.port?.number), "InferencePool: endpointPickerRef.port is required when kind is 'Service'");
    if (epp.failureMode !== undefined) assert.ok(['FailOpen', 'FailClose'].includes(epp.failureMode), `InferencePool: failureMode ${epp.failureMode}`);
  }
}

const VALIDATORS: Record<string, (o: Obj) => void> = {
  'apps/v1/Deployment': (o) => new Deployment(o as Deployment).validate(),
  'v1/Service': (o) => new Service(o as Service).validate(),
  'v1/Namespace': (o) => new Namespace(o as Namespace).validate(),
  'v1/ConfigMap': (o) => new ConfigMap(o as ConfigMap).validate(),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as ServiceAccount).validate(),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o as PodDisruptionBudget).validate(),
  'rbac.authorization.k8s.io/v1/Role': (o) => new Role(o as Role).validate(),
  'rbac.authorization.k8s.io/v1/RoleBinding': (o) => new RoleBinding(o as RoleBinding).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (o) => new HorizontalPodAutoscaler(o as HorizontalPodAutoscaler).validate(),
  'keda.sh/v1alpha1/ScaledObject': (o) => new ScaledObject(o as ScaledObject).validate(),
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => new ServiceMonitor(o as ServiceMonitor).validate(),
  'gateway.networking.k8s.io/v1/HTTPRoute': (o) => new HTTPRoute(o as HTTPRoute).validate(),
  'inference.networking.k8s.io/v1/InferencePool': validateInferencePool,
};

function validate(o: Obj, where: string): void {
  const validator = VALIDATORS[`${o.apiVersion}/${o.kind}`];
  assert.ok(validator, `${where}: no validator for ${o.apiVersion} ${o.kind}`);
  try {
    validator(o);
  } catch (error) {
    assert.fail(`${where}: ${o.kind}/${o.metadata?.name}: ${(error as Error).message}`);
  }
}

const matches = (selector: Obj, labels: Obj | undefined) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** "4" → 4, "500m" → 0.5, "4Gi" → 4 * 2^30. */
function quantity(value: string | number): number {
  if (typeof value === 'number') return value;
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi|Ti)?$/.exec(value);
  assert.ok(match, `quantity ${value}`);
  const scale: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(match[1]) * scale[match[2] ?? ''];
}

/** The server's arguments: whatever follows src/cli.ts in command + args. */
function cliArgs(container: Obj): string[] {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  const at = argv.indexOf('src/cli.ts');
  assert.ok(at >= 0, `the container must run src/cli.ts: ${argv.join(' ')}`);
  return argv.slice(at + 1);
}

/** The configuration the server would resolve in this container, through the CLI's own parser. */
function containerConfig(container: Obj): Config {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) if (variable.value !== undefined) env[variable.name] = String(variable.value);
  return loadConfig(cliArgs(container), env, ROOT);
}

/** Seconds the preStop hook delays SIGTERM (exec sleep N, or the sleep action). */
function preStopSeconds(container: Obj): number {
  const preStop = container.lifecycle?.preStop;
  assert.ok(preStop, 'the server container needs a preStop hook so endpoints are gone before the drain starts');
  if (preStop.sleep) return preStop.sleep.seconds;
  const command: string[] = preStop.exec?.command ?? [];
  assert.equal(command[0], 'sleep', `preStop: ${command.join(' ')}`);
  return Number(command[1]);
}

const METRIC_NAME = /\bspecserve_[a-zA-Z0-9_]+/g;
type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

/** Every sample name the server exposes, with the type of its family. */
async function exposedMetrics(): Promise<Map<string, MetricType>> {
  // Wired as src/cli.ts wires it: default process metrics, the server's, then the engine's.
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'specserve_' });
  const engine = new FakeEngine();
  const app = await buildApp({ getEngine: () => engine, config: TEST_CONFIG, registry });
  engineMetricsHooks(registry);
  try {
    const response = await app.inject({ url: '/metrics' });
    assert.equal(response.statusCode, 200);
    const names = new Map<string, MetricType>();
    for (const [, name, type] of response.body.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      names.set(name, type as MetricType);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.set(name + suffix, type);
    }
    return names;
  } finally {
    await app.close();
  }
}

/** Checks the metric names in a PromQL expression exist, and are used as their type allows. */
function checkPromQL(expr: string, metrics: Map<string, MetricType>, where: string): string[] {
  const used = expr.match(METRIC_NAME) ?? [];
  assert.ok(used.length > 0, `${where}: no specserve metric in ${expr}`);
  for (const name of used) assert.ok(metrics.has(name), `${where}: ${name} is not a metric the server exposes`);
  let depth = 0;
  for (const char of expr.replace(/"[^"]*"/g, '""')) {
    depth += '({['.includes(char) ? 1 : ')}]'.includes(char) ? -1 : 0;
    assert.ok(depth >= 0, `${where}: unbalanced brackets in ${expr}`);
  }
  assert.equal(depth, 0, `${where}: unbalanced brackets in ${expr}`);
  // rate() of a gauge, or a histogram_quantile() without its le buckets, draws a plausible lie.
  for (const [, fn, name] of expr.matchAll(/\b(rate|increase|irate)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/g)) {
    const type = metrics.get(name);
    assert.ok(type === 'counter' || (type === 'histogram' && /_(bucket|sum|count)$/.test(name)), `${where}: ${fn}() of ${name}, a ${type}`);
  }
  for (const [, by, name] of expr.matchAll(/histogram_quantile\([\d.]+,\s*sum by \(([^)]*)\)\s*\(rate\(([a-zA-Z0-9_]+)/g)) {
    assert.ok(name.endsWith('_bucket') && metrics.get(name) === 'histogram', `${where}: histogram_quantile over ${name}`);
    assert.ok(by.split(',').map((s) => s.trim()).includes('le'), `${where}: histogram_quantile must keep le: ${expr}`);
  }
  const quantiles = (expr.match(/histogram_quantile\(/g) ?? []).length;
  const checked = [...expr.matchAll(/histogram_quantile\([\d.]+,\s*sum by \([^)]*\)\s*\(rate\(/g)].length;
  assert.equal(checked, quantiles, `${where}: write histogram_quantile(q, sum by (le, ...) (rate(x_bucket[...]))): ${expr}`);
  return used;
}

const KUSTOMIZATIONS = walk(K8S)
  .filter((file) => path.basename(file) === 'kustomization.yaml')
  .map((file) => path.relative(K8S, path.dirname(file)));
const assembled = new Map<string, Built>();

/** A kustomization under deploy/k8s, assembled once; a broken one fails every test that needs it. */
function built(dir: string): Built {
  let result = assembled.get(dir);
  if (result === undefined) {
    result = build(path.join(K8S, dir));
    assembled.set(dir, result);
  }
  return result;
}

let metrics: Map<string, MetricType>;

before(async () => {
  metrics = await exposedMetrics();
});

function overlay(name: keyof typeof OVERLAYS): Built {
  assert.ok(KUSTOMIZATIONS.includes(`overlays/${name}`), `deploy/k8s/overlays/${name} is missing`);
  return built(`overlays/${name}`);
}

function server(objects: Obj[]): { deployment: Obj; container: Obj; config: Config } {
  const deployment = find(objects, 'Deployment', 'specserve');
  const container = containersOf(deployment).find((c) => c.name === 'specserve');
  assert.ok(container, 'the specserve Deployment has no specserve container');
  return { deployment, container, config: containerConfig(container) };
}

describe('deploy/k8s files', () => {
  it('every kustomization builds: its files exist, its patches and images hit their targets', () => {
    assert.ok(KUSTOMIZATIONS.length > 0);
    for (const dir of KUSTOMIZATIONS) assert.ok(built(dir).objects.length > 0, `${dir} builds nothing`);
  });

  it('kustomize itself builds the same objects, where kubectl is installed', async (t) => {
    const run = (dir: string) => promisify(execFile)('kubectl', ['kustomize', path.join(K8S, dir)], { encoding: 'utf8' });
    try {
      await run(KUSTOMIZATIONS[0]);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return t.skip('kubectl is not installed: only this file\'s own assembly is checked');
      throw error;
    }
    const outputs = await Promise.all(KUSTOMIZATIONS.map(run));
    const key = (o: Obj) => `${o.kind}/${o.metadata.name}`;
    KUSTOMIZATIONS.forEach((dir, i) => {
      const theirs = parseAllDocuments(outputs[i].stdout).map((doc) => canonical(doc.toJS()));
      const ours = built(dir).objects.map(canonical);
      assert.deepEqual(new Map(ours.map((o) => [key(o), o])), new Map(theirs.map((o) => [key(o), o])), dir);
    });
  });

  it('every file parses and belongs to a kustomization (or is a known non-Kubernetes file)', () => {
    const reached = new Set(KUSTOMIZATIONS.flatMap((dir) => [...built(dir).files]));
    const files = walk(K8S).filter((file) => /\.ya?ml$/.test(file));
    for (const file of files) readDocs(file);
    for (const file of files.map((f) => path.relative(K8S, f))) {
      if (NOT_KUBERNETES.has(file)) continue;
      assert.ok(reached.has(file), `${file} is not listed by any kustomization.yaml`);
    }
    for (const file of NOT_KUBERNETES) assert.ok(existsSync(path.join(K8S, file)), `${file} is gone: update NOT_KUBERNETES`);
  });

  it('every object in every kustomization, patches applied, passes its schema', () => {
    for (const dir of KUSTOMIZATIONS) for (const o of built(dir).objects) validate(o, dir);
  });

  it('every kustomization puts its objects in the same namespace', () => {
    const namespaces = new Set<string>();
    for (const dir of KUSTOMIZATIONS) {
      for (const o of built(dir).objects) {
        if (CLUSTER_SCOPED.has(o.kind)) continue;
        assert.ok(o.metadata.namespace, `${dir}: ${o.kind}/${o.metadata.name} has no namespace`);
        namespaces.add(o.metadata.namespace);
      }
    }
    assert.equal(namespaces.size, 1, `namespaces: ${[...namespaces].join(', ')}`);
    // The overlays create the namespace everything else goes into.
    find(overlay('cpu').objects, 'Namespace', [...namespaces][0]);
  });

  it('the overlays pin the provider, the image and the accelerator', () => {
    for (const [name, expected] of Object.entries(OVERLAYS)) {
      const { container, config } = server(overlay(name as keyof typeof OVERLAYS).objects);
      assert.equal(config.provider, expected.provider, `${name}: provider`);
      assert.equal(container.image, 'specserve:latest', `${name}: image`);
      const gpus = container.resources?.limits?.['nvidia.com/gpu'];
      assert.equal(Number(gpus ?? 0), expected.gpus, `${name}: nvidia.com/gpu limit`);
      if (expected.gpus > 0) {
        const deployment = find(overlay(name as keyof typeof OVERLAYS).objects, 'Deployment', 'specserve');
        assert.ok(deployment.spec.template.spec.tolerations?.length > 0, `${name}: GPU nodes are usually tainted; the overlay shows the toleration`);
        // A surge pod needs a GPU that a full node does not have, which would stall every rollout.
        assert.equal(deployment.spec.strategy.rollingUpdate.maxSurge, 0, `${name}: maxSurge`);
      }
    }
  });
});

describe('the specserve container against the server', () => {
  for (const name of Object.keys(OVERLAYS) as (keyof typeof OVERLAYS)[]) {
    describe(`overlays/${name}`, () => {
      it('uses only flags and environment variables the config defines, with values it accepts', () => {
        const { container, config } = server(overlay(name).objects);
        const knownEnv = new Set(CONFIG_KEYS.map(envName));
        for (const variable of container.env ?? []) {
          assert.ok(knownEnv.has(variable.name) || FOREIGN_ENV.has(variable.name), `env ${variable.name} is not a specserve setting`);
        }
        const knownFlags = new Set([...CONFIG_KEYS.map(flagName), '--config']);
        for (const arg of cliArgs(container).filter((a) => a.startsWith('--'))) {
          assert.ok(knownFlags.has(arg.split('=')[0]), `flag ${arg} is not a specserve flag`);
        }
        // server() resolved the config with loadConfig, which throws on a value the schema refuses.
        assert.equal(config.host, '0.0.0.0', 'the default host (127.0.0.1) is unreachable from outside the pod');
        const explicit = (container.env ?? []).some((v: Obj) => v.name === envName('shutdownTimeoutMs')) ||
          cliArgs(container).some((a) => a.split('=')[0] === flagName('shutdownTimeoutMs'));
        assert.ok(explicit, 'set the shutdown timeout explicitly: the grace period is computed from it');
        const apiKey = (container.env ?? []).find((v: Obj) => v.name === envName('apiKey'));
        assert.ok(apiKey?.valueFrom?.secretKeyRef, 'the API key comes from a Secret, never a literal');
      });

      it('listens on the port the Service, probes and pool use', () => {
        const { deployment, container, config } = server(overlay(name).objects);
        const http = (container.ports ?? []).find((p: Obj) => p.name === 'http');
        assert.ok(http, 'a containerPort named http');
        assert.equal(http.containerPort, config.port);
        assert.equal(config.port, SERVER_DEFAULTS.port);
        const service = find(overlay(name).objects, 'Service', 'specserve');
        for (const port of service.spec.ports) assert.ok(port.targetPort === 'http' || port.targetPort === config.port, `Service port ${port.name}`);
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          const get = container[probe]?.httpGet;
          assert.ok(get, `${probe} missing or not httpGet`);
          assert.equal(get.path, '/health', probe);
          assert.ok(get.port === 'http' || get.port === config.port, `${probe} port`);
        }
        assert.equal(deployment.spec.template.metadata.annotations?.['prometheus.io/port'], String(config.port));
      });

      it('drains within the grace period, and readiness drops out at once', () => {
        const { deployment, container, config } = server(overlay(name).objects);
        const preStop = preStopSeconds(container);
        const drain = config.shutdownTimeoutMs / 1000;
        const grace = deployment.spec.template.spec.terminationGracePeriodSeconds;
        assert.ok(preStop >= 5, `preStop sleeps ${preStop} s: too short for endpoint removal to propagate`);
        assert.ok(grace > preStop + drain + CLI_SHUTDOWN_MARGIN_S, `terminationGracePeriodSeconds ${grace} <= preStop ${preStop} + shutdown ${drain} + ${CLI_SHUTDOWN_MARGIN_S}: SIGKILL would cut streams short`);
        const readiness = container.readinessProbe;
        assert.ok(readiness.periodSeconds <= 5 && readiness.failureThreshold === 1, 'readiness must fail on the first 503 of a drain');
        const liveness = container.livenessProbe;
        assert.ok(liveness.periodSeconds * liveness.failureThreshold > drain + CLI_SHUTDOWN_MARGIN_S, '/health is 503 during a whole drain; liveness must not kill the pod for it');
        const startup = container.startupProbe;
        assert.ok(startup.periodSeconds * startup.failureThreshold >= 300, 'model loads take minutes on a cold node; the startup probe must wait');
      });

      it('fits its threads, KV cache and temp files into what the pod gets', () => {
        const { deployment, container, config } = server(overlay(name).objects);
        const cpus = quantity(container.resources.limits.cpu);
        assert.ok(config.threads >= 1 && config.threads < cpus, `threads ${config.threads} with ${cpus} CPUs: set them explicitly, one core short of the limit`);
        const memory = quantity(container.resources.limits.memory);
        // The KV cache is host memory (typed arrays), beside the weights and the runtime.
        assert.ok(config.kvCacheBytes < memory / 2, `KV cache ${config.kvCacheBytes} bytes in a ${memory}-byte pod`);
        const podSecurity = deployment.spec.template.spec.securityContext;
        const uid = /--uid (\d+)/.exec(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
        assert.equal(String(podSecurity.runAsUser), uid, 'runAsUser is the image user');
        assert.equal(podSecurity.runAsNonRoot, true);
        if (container.securityContext?.readOnlyRootFilesystem) {
          // tsx writes its compile cache under os.tmpdir(); without a writable /tmp the server dies at start.
          const tmp = (container.volumeMounts ?? []).find((m: Obj) => m.mountPath === '/tmp');
          assert.ok(tmp, 'readOnlyRootFilesystem needs a writable /tmp');
          assert.ok(deployment.spec.template.spec.volumes.some((v: Obj) => v.name === tmp.name && v.emptyDir), '/tmp is an emptyDir');
        }
      });
    });
  }
});

describe('labels and references', () => {
  it('the Deployment, Service, PDB, ServiceMonitor and InferencePool select the same pods, and not the EPP', () => {
    const objects = [...overlay('cpu').objects, ...built('monitoring').objects, ...built('inference-pool').objects];
    const deployment = find(objects, 'Deployment', 'specserve');
    const selector = deployment.spec.selector.matchLabels;
    const podLabels = deployment.spec.template.metadata.labels;
    assert.ok(matches(selector, podLabels), 'the Deployment selector does not match its own pods');
    const service = find(objects, 'Service', 'specserve');
    assert.deepEqual(service.spec.selector, selector, 'Service selector');
    assert.deepEqual(find(objects, 'PodDisruptionBudget', 'specserve').spec.selector.matchLabels, selector, 'PDB selector');
    const monitor = find(objects, 'ServiceMonitor', 'specserve');
    assert.ok(matches(monitor.spec.selector.matchLabels, service.metadata.labels), 'the ServiceMonitor does not select the Service');
    const servicePorts = service.spec.ports.map((p: Obj) => p.name);
    for (const endpoint of monitor.spec.endpoints) {
      assert.ok(servicePorts.includes(endpoint.port), `ServiceMonitor port ${endpoint.port}`);
      assert.equal(endpoint.path, '/metrics');
    }
    const pool = find(objects, 'InferencePool', 'specserve');
    assert.deepEqual(pool.spec.selector.matchLabels, selector, 'InferencePool selector');
    const epp = find(objects, 'Deployment', 'specserve-epp');
    assert.ok(!matches(selector, epp.spec.template.metadata.labels), 'the specserve selector also catches the EPP pods');
  });

  it('the autoscalers target the Deployment, and count only its pods in its namespace', () => {
    const deployment = find(overlay('cpu').objects, 'Deployment', 'specserve');
    const podName = `${deployment.metadata.name}-5d8f7c9b4-x2x7k`;
    const eppPodName = 'specserve-epp-6c9d8b7f5-q4w2z';
    const scaled = find(built('autoscaling/keda').objects, 'ScaledObject', 'specserve');
    assert.equal(scaled.spec.scaleTargetRef.name, deployment.metadata.name);
    assert.ok(scaled.spec.minReplicaCount >= 1, 'the queue lives in the pods: at 0 replicas nothing would scale back up');
    for (const trigger of scaled.spec.triggers) {
      const query: string = trigger.metadata.query;
      assert.match(query, /^sum\(/, `${trigger.name}: sum over the replicas`);
      assert.equal(/namespace="([^"]+)"/.exec(query)?.[1], deployment.metadata.namespace, `${trigger.name}: namespace`);
      const podRegex = /pod=~"([^"]+)"/.exec(query)?.[1];
      assert.ok(podRegex, `${trigger.name}: restrict to the Deployment's pods`);
      // Prometheus anchors regex matchers at both ends.
      assert.match(podName, new RegExp(`^(?:${podRegex})$`));
      assert.doesNotMatch(eppPodName, new RegExp(`^(?:${podRegex})$`));
    }
    const hpa = find(built('autoscaling/hpa').objects, 'HorizontalPodAutoscaler', 'specserve');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    assert.ok(hpa.spec.minReplicas >= 1);
  });

  it('the autoscaling thresholds can be reached before the server refuses work', () => {
    const { config } = server(overlay('cpu').objects);
    const scaled = find(built('autoscaling/keda').objects, 'ScaledObject', 'specserve');
    const hpa = find(built('autoscaling/hpa').objects, 'HorizontalPodAutoscaler', 'specserve');
    const thresholds = new Map<string, number[]>();
    const add = (metric: string, value: number) => thresholds.set(metric, [...(thresholds.get(metric) ?? []), value]);
    for (const trigger of scaled.spec.triggers) add(trigger.metadata.query.match(METRIC_NAME)![0], Number(trigger.metadata.threshold));
    for (const metric of hpa.spec.metrics) {
      assert.equal(metric.type, 'Pods');
      assert.equal(metric.pods.target.type, 'AverageValue');
      add(metric.pods.metric.name, quantity(metric.pods.target.averageValue));
    }
    assert.deepEqual([...thresholds.keys()].sort(), ['specserve_requests_running', 'specserve_requests_waiting']);
    // running never exceeds the batch; past maxQueuedRequests waiting requests turn into 429s.
    for (const value of thresholds.get('specserve_requests_running')!) assert.ok(value > 0 && value < config.maxBatchSize, `running threshold ${value} vs batch ${config.maxBatchSize}`);
    for (const value of thresholds.get('specserve_requests_waiting')!) assert.ok(value > 0 && value < config.maxQueuedRequests, `waiting threshold ${value} vs queue ${config.maxQueuedRequests}`);
    for (const [metric, values] of thresholds) assert.equal(new Set(values).size, 1, `KEDA and HPA disagree on ${metric}: ${values.join(' vs ')}`);
  });

  it('the inference pool reaches the server port, its picker and its route', () => {
    const { config } = server(overlay('cpu').objects);
    const objects = built('inference-pool').objects;
    const pool = find(objects, 'InferencePool', 'specserve');
    assert.deepEqual(pool.spec.targetPorts, [{ number: config.port }]);
    const eppService = find(objects, 'Service', pool.spec.endpointPickerRef.name);
    assert.ok(eppService.spec.ports.some((p: Obj) => p.port === pool.spec.endpointPickerRef.port.number), 'endpointPickerRef.port is not an EPP Service port');
    const epp = find(objects, 'Deployment', 'specserve-epp');
    assert.ok(matches(eppService.spec.selector, epp.spec.template.metadata.labels), 'the EPP Service does not select the EPP');
    const route = find(objects, 'HTTPRoute', 'specserve');
    const backends = route.spec.rules.flatMap((r: Obj) => r.backendRefs);
    assert.ok(backends.some((b: Obj) => b.kind === 'InferencePool' && b.group === 'inference.networking.k8s.io' && b.name === pool.metadata.name), 'the HTTPRoute does not send to the pool');
    const specserveGrace = find(overlay('cpu').objects, 'Deployment', 'specserve').spec.template.spec.terminationGracePeriodSeconds;
    assert.ok(epp.spec.template.spec.terminationGracePeriodSeconds >= specserveGrace, 'the picker should outlive the drains it routes around');
  });

  it('the EPP runs with flags it accepts and a config it can decode', () => {
    const objects = built('inference-pool').objects;
    const pool = find(objects, 'InferencePool', 'specserve');
    const epp = find(objects, 'Deployment', 'specserve-epp');
    const container = containersOf(epp)[0];
    const flags = new Map<string, string>();
    for (const arg of container.args) {
      const [, name, value] = /^--([a-z-]+)(?:=(.*))?$/.exec(arg) ?? [];
      assert.ok(name, `EPP arg ${arg}: write --flag=value`);
      assert.ok(!EPP_REFUSED_FLAGS.includes(name), `--${name} stops the EPP at start since v1.4; name metrics in engineConfigs`);
      assert.ok(EPP_FLAGS.has(name), `--${name} is not an EPP flag these manifests know`);
      flags.set(name, value);
    }
    assert.equal(flags.get('pool-name'), pool.metadata.name);
    const configFile = flags.get('config-file')!;
    const mount = container.volumeMounts.find((m: Obj) => configFile.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `--config-file ${configFile} is not on a mounted volume`);
    const volume = epp.spec.template.spec.volumes.find((v: Obj) => v.name === mount.name);
    const configMap = find(objects, 'ConfigMap', volume.configMap.name);
    const text = configMap.data[path.basename(configFile)];
    assert.ok(text, `ConfigMap ${configMap.metadata.name} has no ${path.basename(configFile)}`);
    const config = parse(text) as Obj;
    assert.equal(config.apiVersion, 'inference.networking.x-k8s.io/v1alpha1');
    assert.equal(config.kind, 'EndpointPickerConfig');
    for (const key of Object.keys(config)) assert.ok(EPP_CONFIG_FIELDS.has(key), `EndpointPickerConfig has no field ${key} (the docs' "data" is "dataLayer" in the code)`);
    const plugins = new Map<string, Obj>(config.plugins.map((p: Obj) => [p.name ?? p.type, p]));
    for (const profile of config.schedulingProfiles) for (const ref of profile.plugins) assert.ok(plugins.has(ref.pluginRef), `profile ${profile.name} refers to ${ref.pluginRef}`);
    for (const source of config.dataLayer.sources) {
      assert.ok(plugins.has(source.pluginRef), `dataLayer source ${source.pluginRef}`);
      for (const extractor of source.extractors) assert.ok(plugins.has(extractor.pluginRef), `extractor ${extractor.pluginRef}`);
    }
    const extractor = plugins.get('core-metrics-extractor')!.parameters;
    const engine = extractor.engineConfigs.find((e: Obj) => e.name === extractor.defaultEngine);
    assert.ok(engine, `defaultEngine ${extractor.defaultEngine} has no engineConfigs entry`);
    const podLabels = find(overlay('cpu').objects, 'Deployment', 'specserve').spec.template.metadata.labels;
    assert.equal(podLabels['inference.networking.k8s.io/engine-type'], engine.name, 'the pods name their engine for the extractor');
    assert.equal(plugins.get('metrics-data-source')!.parameters.path, '/metrics');
  });
});

describe('metric names', () => {
  it('the autoscalers read gauges the server exposes', () => {
    const scaled = find(built('autoscaling/keda').objects, 'ScaledObject', 'specserve');
    for (const trigger of scaled.spec.triggers) {
      for (const name of checkPromQL(trigger.metadata.query, metrics, `KEDA ${trigger.name}`)) assert.equal(metrics.get(name), 'gauge', name);
    }
    const hpa = find(built('autoscaling/hpa').objects, 'HorizontalPodAutoscaler', 'specserve');
    const adapter = parse(readFileSync(path.join(K8S, 'autoscaling/hpa/prometheus-adapter-values.yaml'), 'utf8')) as Obj;
    for (const metric of hpa.spec.metrics) {
      const name: string = metric.pods.metric.name;
      assert.equal(metrics.get(name), 'gauge', `HPA: ${name}`);
      // The adapter must both find the series and publish it under the name the HPA asks for.
      const rule = adapter.rules.custom.find((r: Obj) => new RegExp(`^(?:${/__name__=~"([^"]+)"/.exec(r.seriesQuery)?.[1]})$`).test(name));
      assert.ok(rule, `no prometheus-adapter rule selects ${name}`);
      assert.equal(name.replace(new RegExp(rule.name.matches), rule.name.as.replace(/\$\{(\d+)\}/g, '$$$1')), name, `the adapter publishes ${name} under another name`);
      assert.deepEqual(Object.keys(rule.resources.overrides).sort(), ['namespace', 'pod'], 'per-pod metrics need namespace and pod mapped');
    }
  });

  it('the endpoint picker reads the queue, running and KV usage gauges the server exposes', () => {
    const configMap = find(built('inference-pool').objects, 'ConfigMap', 'specserve-epp');
    const config = parse(configMap.data['epp-config.yaml']) as Obj;
    const extractor = config.plugins.find((p: Obj) => p.type === 'core-metrics-extractor').parameters;
    const engine = extractor.engineConfigs.find((e: Obj) => e.name === extractor.defaultEngine);
    const specs = { queuedRequestsSpec: 'specserve_requests_waiting', runningRequestsSpec: 'specserve_requests_running', kvUsageSpec: 'specserve_kv_cache_usage_perc' };
    for (const [field, expected] of Object.entries(specs)) {
      assert.equal(engine[field], expected, field);
      assert.equal(metrics.get(expected), 'gauge', expected);
    }
  });

  it('the Grafana dashboard imports, every panel queries, and every query names real metrics', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Obj;
    assert.ok(dashboard.uid && dashboard.title, 'uid and title');
    const variables = new Map<string, Obj>(dashboard.templating.list.map((v: Obj) => [v.name, v]));
    assert.equal(variables.get('datasource')?.type, 'datasource');
    assert.equal(variables.get('datasource')?.query, 'prometheus');
    const builtins = new Set(['__rate_interval', '__range', '__interval']);
    const used = new Set<string>();
    const ids = new Set<number>();
    const cells = new Set<string>();
    const panels: Obj[] = dashboard.panels.flatMap((p: Obj) => [p, ...(p.panels ?? [])]);
    for (const panel of panels) {
      assert.ok(!ids.has(panel.id), `panel id ${panel.id} twice`);
      ids.add(panel.id);
      const { x, y, w, h } = panel.gridPos;
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        assert.ok(!cells.has(`${i},${j}`), `panel "${panel.title}" overlaps another`);
        cells.add(`${i},${j}`);
      }
      if (panel.type === 'row') continue;
      assert.equal(panel.datasource?.uid, '${datasource}', `panel "${panel.title}" datasource`);
      assert.ok(panel.targets?.length >= 1, `panel "${panel.title}" has no query`);
      for (const target of panel.targets) {
        for (const name of checkPromQL(target.expr, metrics, `panel "${panel.title}"`)) used.add(name);
        for (const [, variable] of target.expr.matchAll(/\$(\w+)/g)) assert.ok(variables.has(variable) || builtins.has(variable), `panel "${panel.title}" uses undefined $${variable}`);
      }
    }
    for (const v of variables.values()) {
      if (v.type !== 'query') continue;
      assert.equal(v.datasource?.uid, '${datasource}', `variable ${v.name} datasource`);
      for (const name of checkPromQL(v.definition, metrics, `variable ${v.name}`)) used.add(name);
    }
    const required = [
      'specserve_generation_tokens_total', 'specserve_requests_total',
      'specserve_time_to_first_token_seconds_bucket', 'specserve_inter_token_latency_seconds_bucket',
      'specserve_spec_decode_num_accepted_tokens_total', 'specserve_spec_decode_num_draft_tokens_total', 'specserve_spec_decode_num_drafts_total',
      'specserve_spec_draft_cap', 'specserve_kv_cache_bytes', 'specserve_kv_cache_usage_perc',
      'specserve_requests_waiting', 'specserve_requests_running',
    ];
    for (const name of required) assert.ok(used.has(name), `the dashboard does not show ${name}`);
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t: Obj) => t.expr as string));
    assert.ok(exprs.some((e) => /status=~"429\|503"/.test(e)), 'the dashboard counts 429 and 503 responses');
  });
});

describe('/health and /metrics as the manifests use them', () => {
  it('/health is public, 503 while loading, 200 when ready, 503 from the start of a drain; /metrics keeps answering', async () => {
    const { app } = await makeApp({ config: { apiKey: 'secret' } });
    try {
      assert.equal((await app.inject({ url: '/v1/models' })).statusCode, 401, 'the key is enforced elsewhere');
      assert.equal((await app.inject({ url: '/health' })).statusCode, 200);
      app.specserve.beginShutdown();
      const draining = await app.inject({ url: '/health' });
      assert.equal(draining.statusCode, 503);
      assert.equal(draining.json().error.code, 'shutting_down');
      assert.equal((await app.inject({ url: '/metrics' })).statusCode, 200, 'scrapes (and so the autoscalers) must see a draining pod');
    } finally {
      await app.close();
    }
    const { app: loading } = await makeApp({ engine: null, config: { apiKey: 'secret' } });
    try {
      const response = await loading.inject({ url: '/health' });
      assert.equal(response.statusCode, 503, 'the startup probe waits on this');
      assert.equal(response.json().error.code, 'model_loading');
    } finally {
      await loading.close();
    }
  });
});

describe('docs/deploy.md', () => {
  it('names only flags, env vars, metrics and deploy/ paths that exist', () => {
    const text = readFileSync(DOC, 'utf8');
    const flags = new Set([...CONFIG_KEYS.map(flagName), '--config']);
    const loadtestSource = readFileSync(path.join(ROOT, 'loadtest', 'loadtest.ts'), 'utf8');
    const clusterSource = readFileSync(path.join(ROOT, 'scripts', 'cluster.ts'), 'utf8');
    const loadtestFlags = new Set([...(loadtestSource + clusterSource).matchAll(/\.option\('(--[a-z-]+)/g)].map((m) => m[1]));
    for (const [flag] of text.matchAll(/(?<![\w-])--[a-z][a-z-]*[a-z]/g)) {
      // EPP flags are quoted as such in the text; kubectl/docker/npm ones are not specserve's.
      if (EPP_FLAGS.has(flag.slice(2)) || EPP_REFUSED_FLAGS.includes(flag.slice(2))) continue;
      if (flags.has(flag) || DOC_FOREIGN_FLAGS.has(flag) || loadtestFlags.has(flag)) continue;
      assert.fail(`docs/deploy.md mentions ${flag}, which is not a specserve flag`);
    }
    const envs = new Set(CONFIG_KEYS.map(envName));
    for (const [env] of text.matchAll(/\bSPECSERVE_[A-Z_]+\b/g)) assert.ok(envs.has(env) || env === 'SPECSERVE_CONFIG', `docs/deploy.md mentions ${env}`);
    for (const [name] of text.matchAll(METRIC_NAME)) {
      // "specserve_spec_decode_*" names a family by its prefix
      const known = name.endsWith('_') ? [...metrics.keys()].some((m) => m.startsWith(name)) : metrics.has(name);
      assert.ok(known, `docs/deploy.md mentions ${name}, which the server does not expose`);
    }
    for (const [, file] of text.matchAll(/(?<![\w/])(deploy\/(?:k8s|grafana)[\w./-]*\w)/g)) assert.ok(existsSync(path.join(ROOT, file)), `docs/deploy.md points at ${file}, which does not exist`);
    for (const bytes of text.matchAll(/SPECSERVE_KV_CACHE_BYTES=(\S+)/g)) assert.equal(typeof parseBytes(bytes[1]), 'number');
  });
});

