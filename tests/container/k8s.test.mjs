// k8s.test.mjs — validates deploy/kubernetes offline (node --test tests/container/).
//
// 1. Every YAML document parses (duplicate keys are errors) and is one of the kinds below.
// 2. Schema: kubernetes-models validates each object against the JSON schema generated from
//    the Kubernetes OpenAPI spec (types, required fields, enums, formats such as quantities).
// 3. Unknown fields: kubernetes-types + the TypeScript compiler check each object as a typed
//    literal, so a misspelt or misplaced field is an error (what `kubeconform -strict` adds).
// 4. Consistency the schemas cannot see: selectors match the pod labels, the Service port
//    and the probes name a container port, probes hit /healthz and /readyz, mounts name
//    volumes, the ConfigMaps referenced exist, non-root + read-only root filesystem, the
//    policy ConfigMap equals policies/policy.lua, the reloader command is in the image.
//
// `node tests/container/k8s.test.mjs --fix` copies policies/policy.lua into configmap.yaml.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import YAML from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const dir = process.env.HLSGATE_K8S_DIR || path.join(repo, 'deploy/kubernetes'); // env: mutation checks
const require = createRequire(import.meta.url);
const policyFile = path.join(repo, 'policies/policy.lua');

if (process.argv.includes('--fix')) {
  const file = path.join(dir, 'configmap.yaml');
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const cm = docs.find((d) => d.get('metadata')?.get('name') === 'hlsgate-policy');
  cm.setIn(['data', 'policy.lua'], fs.readFileSync(policyFile, 'utf8'));
  fs.writeFileSync(file, docs.map((d) => d.toString({ lineWidth: 0 })).join(''));
  console.log(`updated ${path.relative(repo, file)} from policies/policy.lua`);
  process.exit(0);
}

// kind → [kubernetes-models module, kubernetes-types module, type name]
const KINDS = {
  'v1/ConfigMap': ['kubernetes-models/v1/ConfigMap', 'kubernetes-types/core/v1', 'ConfigMap'],
  'v1/Service': ['kubernetes-models/v1/Service', 'kubernetes-types/core/v1', 'Service'],
  'apps/v1/Deployment': ['kubernetes-models/apps/v1/Deployment', 'kubernetes-types/apps/v1', 'Deployment'],
  'autoscaling/v2/HorizontalPodAutoscaler': ['kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
    'kubernetes-types/autoscaling/v2', 'HorizontalPodAutoscaler'],
  'policy/v1/PodDisruptionBudget': ['kubernetes-models/policy/v1/PodDisruptionBudget',
    'kubernetes-types/policy/v1', 'PodDisruptionBudget'],
};

const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
const objects = []; // { file, obj }
for (const f of files) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), 'utf8'), { uniqueKeys: true });
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
    const obj = d.toJS();
    if (obj != null) objects.push({ file: f, obj });
  }
}
const key = (o) => `${o.apiVersion}/${o.kind}`;
const find = (kind, name) => objects.map((x) => x.obj).find((o) => o.kind === kind && o.metadata?.name === name);
const one = (kind) => {
  const all = objects.map((x) => x.obj).filter((o) => o.kind === kind);
  assert.equal(all.length, 1, `exactly one ${kind}`);
  return all[0];
};

test('every manifest parses and is a known kind', () => {
  assert.ok(files.length >= 4, `manifests found: ${files.join(', ')}`);
  for (const { file, obj } of objects) {
    assert.ok(KINDS[key(obj)], `${file}: unexpected ${key(obj)}`);
    assert.ok(obj.metadata?.name, `${file}: ${obj.kind} has a name`);
  }
});

test('schema: kubernetes-models (Kubernetes OpenAPI JSON schemas)', async () => {
  for (const { file, obj } of objects) {
    const mod = await import(KINDS[key(obj)][0]);
    const Model = mod[obj.kind];
    try {
      new Model(obj).validate();
    } catch (e) {
      const detail = (e.errors || []).map((x) => `${x.instancePath} ${x.message}`).join('; ');
      assert.fail(`${file}: ${obj.kind} ${obj.metadata.name}: ${e.message} ${detail}`);
    }
  }
});

test('unknown fields: kubernetes-types + TypeScript excess-property checks', () => {
  const ts = require('typescript');
  const imports = new Map();
  let body = '';
  objects.forEach(({ file, obj }, i) => {
    const [, mod, type] = KINDS[key(obj)];
    const alias = `${type}_${mod.replace(/\W/g, '_')}`;
    imports.set(alias, `import type { ${type} as ${alias} } from '${mod}';`);
    body += `// ${file}\nexport const o${i}: ${alias} = ${JSON.stringify(obj, null, 2)};\n`;
  });
  const source = [...imports.values()].join('\n') + '\n' + body;
  const virtual = path.join(here, '__k8s_manifests__.ts'); // never written to disk
  const options = { noEmit: true, strict: true, module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Node10, target: ts.ScriptTarget.ES2022,
    types: [], skipLibCheck: true };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    path.resolve(name) === virtual ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === virtual || fileExists(name);
  const program = ts.createProgram([virtual], options, host);
  const diags = ts.getPreEmitDiagnostics(program).map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file) return msg;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const lines = source.split('\n');
    let f = '?';
    for (let l = line; l >= 0; l--) if (lines[l].startsWith('// ')) { f = lines[l].slice(3); break; }
    return `${f}: ${lines[line].trim()} — ${msg}`;
  });
  assert.deepEqual(diags, []);
});

const dep = one('Deployment');
const pod = dep.spec.template.spec;
const gateway = pod.containers.find((c) => c.name === 'hlsgate');
const reloader = pod.containers.find((c) => c.name === 'policy-reloader');
const matches = (sel, labels) => Object.entries(sel).every(([k, v]) => labels[k] === v);

test('deployment: selector, probes, ports', () => {
  const labels = dep.spec.template.metadata.labels;
  assert.ok(matches(dep.spec.selector.matchLabels, labels), 'selector matches the pod labels');
  assert.ok(gateway, 'a container named hlsgate');
  const port = gateway.ports.find((p) => p.name === 'http');
  assert.equal(port?.containerPort, 8080, 'port http = 8080 (the image listens there)');
  assert.equal(gateway.readinessProbe.httpGet.path, '/readyz');
  assert.equal(gateway.livenessProbe.httpGet.path, '/healthz');
  for (const p of [gateway.readinessProbe, gateway.livenessProbe]) {
    assert.ok(p.httpGet.port === 'http' || p.httpGet.port === 8080, 'probes use the http port');
  }
  for (const c of pod.containers) {
    assert.ok(c.resources?.requests && c.resources?.limits, `${c.name}: requests and limits`);
  }
});

test('deployment: non-root, read-only root filesystem, no privilege escalation', () => {
  const dockerfile = fs.readFileSync(path.join(repo, 'Dockerfile'), 'utf8');
  const user = dockerfile.match(/^USER\s+(\d+)/m)?.[1];
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(String(pod.securityContext.runAsUser), user, 'runAsUser = the Dockerfile USER');
  for (const c of pod.containers) {
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${c.name}: no privilege escalation`);
    assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${c.name}: drops all capabilities`);
  }
});

test('deployment: volumes, ConfigMaps and Secret references', () => {
  const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
  for (const c of pod.containers) {
    for (const m of c.volumeMounts || []) assert.ok(volumes.has(m.name), `${c.name}: volume ${m.name} exists`);
  }
  const policyMount = gateway.volumeMounts.find((m) => m.mountPath === '/etc/hlsgate');
  assert.ok(policyMount, 'the policy is mounted at /etc/hlsgate');
  const cmName = volumes.get(policyMount.name).configMap?.name;
  const cm = find('ConfigMap', cmName);
  assert.ok(cm, `ConfigMap ${cmName} is defined`);
  assert.ok(cm.data['policy.lua'], 'it holds policy.lua (HLSGATE_POLICY=/etc/hlsgate/policy.lua)');
  for (const e of gateway.envFrom || []) {
    if (e.configMapRef) assert.ok(find('ConfigMap', e.configMapRef.name), `ConfigMap ${e.configMapRef.name}`);
  }
  const secret = (gateway.envFrom || []).find((e) => e.secretRef)?.secretRef.name;
  assert.ok(secret, 'gateway env comes from a Secret (HLSGATE_JWT_SECRET, AWS keys)');
  // Nothing secret may sit in a ConfigMap or a literal env value.
  for (const o of objects.map((x) => x.obj).filter((o) => o.kind === 'ConfigMap')) {
    for (const k of Object.keys(o.data || {})) {
      assert.ok(!/SECRET|ACCESS_KEY|ADMIN_KEY|PROXY_KEY|SESSION_TOKEN/.test(k), `${o.metadata.name}: ${k} belongs in the Secret`);
    }
  }
  for (const c of pod.containers) {
    for (const e of c.env || []) assert.ok(!/SECRET|KEY|TOKEN/.test(e.name) || e.valueFrom, `${c.name}: ${e.name} literal`);
  }
});

test('deployment: reload on ConfigMap change without a restart (sidecar)', () => {
  assert.equal(pod.shareProcessNamespace, true, 'the sidecar must see the gateway process');
  assert.ok(reloader, 'a policy-reloader container');
  assert.equal(reloader.image, gateway.image, 'the reloader reuses the gateway image');
  const cmd = reloader.command?.[0];
  const dockerfile = fs.readFileSync(path.join(repo, 'Dockerfile'), 'utf8');
  assert.ok(dockerfile.includes(` ${cmd}\n`), `${cmd} is installed by the Dockerfile`);
  const gm = gateway.volumeMounts.find((m) => m.mountPath === '/etc/hlsgate');
  const rm = reloader.volumeMounts.find((m) => m.name === gm.name);
  const envDir = reloader.env.find((e) => e.name === 'HLSGATE_RELOAD_DIR')?.value ?? '/etc/hlsgate';
  assert.equal(rm?.mountPath, envDir, 'the reloader watches the mounted policy directory');
  // The grace period covers preStop + the gateway's drain.
  const drain = Number(gateway.args?.[gateway.args.indexOf('--drain-timeout') + 1] ?? 30);
  const pre = Number(gateway.lifecycle?.preStop?.exec?.command?.at(-1) ?? 0);
  assert.ok(pod.terminationGracePeriodSeconds > drain + pre,
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > ${pre} + ${drain}`);
});

test('the policy ConfigMap is the default policy (policies/policy.lua)', () => {
  const cmName = pod.volumes.find((v) => v.configMap)?.configMap.name;
  assert.equal(find('ConfigMap', cmName).data['policy.lua'], fs.readFileSync(policyFile, 'utf8'),
    'out of date: run `node tests/container/k8s.test.mjs --fix`');
});

test('service, HPA and PDB point at the deployment', () => {
  const labels = dep.spec.template.metadata.labels;
  const svc = one('Service');
  assert.ok(matches(svc.spec.selector, labels), 'Service selector matches the pods');
  for (const p of svc.spec.ports) {
    assert.ok(gateway.ports.some((c) => c.name === p.targetPort || c.containerPort === p.targetPort),
      `Service targetPort ${p.targetPort} is a container port`);
  }
  const hpa = one('HorizontalPodAutoscaler');
  assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name], ['Deployment', dep.metadata.name]);
  assert.ok(hpa.spec.minReplicas <= hpa.spec.maxReplicas);
  if (hpa.spec.metrics.some((m) => m.resource?.name === 'cpu')) {
    assert.ok(gateway.resources.requests.cpu, 'CPU utilization needs a CPU request');
  }
  const pdb = one('PodDisruptionBudget');
  assert.ok(matches(pdb.spec.selector.matchLabels, labels), 'PDB selector matches the pods');
});

test('kustomization lists every manifest', () => {
  const k = YAML.parse(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'));
  assert.equal(k.kind, 'Kustomization');
  assert.deepEqual([...k.resources].sort(), files);
});

// ---- the TLS overlay (deploy/kubernetes/tls, docs/tls.md) ----
// kustomize's strategic merge for what the patches use: maps merge, lists of named items
// (containers, ports, env, volumeMounts, volumes) merge by name, other values replace.
function merge(base, patch) {
  if (Array.isArray(base) && Array.isArray(patch) && patch.every((x) => x && x.name)) {
    const out = base.map((x) => ({ ...x }));
    for (const p of patch) {
      const i = out.findIndex((x) => x.name === p.name);
      if (i >= 0) out[i] = merge(out[i], p);
      else out.push(p);
    }
    return out;
  }
  if (base && patch && typeof base === 'object' && typeof patch === 'object' && !Array.isArray(patch)) {
    const out = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  return patch;
}

const tlsDir = path.join(dir, 'tls');
test('TLS overlay: kustomization, patches, and the merged objects are valid', async () => {
  const k = YAML.parse(fs.readFileSync(path.join(tlsDir, 'kustomization.yaml'), 'utf8'));
  assert.deepEqual(k.resources, ['..']);
  const merged = [];
  for (const { path: p } of k.patches) {
    const patch = YAML.parse(fs.readFileSync(path.join(tlsDir, p), 'utf8'), { uniqueKeys: true });
    const target = find(patch.kind, patch.metadata.name);
    assert.ok(target, `${p} patches an existing ${patch.kind} ${patch.metadata.name}`);
    merged.push(merge(target, patch));
  }
  for (const obj of merged) {
    const Model = (await import(KINDS[key(obj)][0]))[obj.kind];
    try {
      new Model(obj).validate();
    } catch (e) {
      assert.fail(`tls: ${obj.kind}: ${e.message} ${(e.errors || []).map((x) => `${x.instancePath} ${x.message}`).join('; ')}`);
    }
  }
  const d = merged.find((o) => o.kind === 'Deployment');
  const s = merged.find((o) => o.kind === 'Service');
  const spec = d.spec.template.spec;
  const gw = spec.containers.find((c) => c.name === 'hlsgate');
  const rl = spec.containers.find((c) => c.name === 'policy-reloader');
  const env = (c, n) => c.env.find((e) => e.name === n)?.value;
  // The listener, the container port and the Service agree.
  const https = gw.ports.find((p) => p.name === 'https');
  assert.equal(Number(env(gw, 'HLSGATE_TLS_LISTEN').split(':').pop()), https.containerPort);
  assert.ok(gw.ports.some((p) => p.name === 'http'), 'the plain port stays (probes, metrics)');
  assert.equal(s.spec.ports.find((p) => p.name === 'https')?.targetPort, 'https');
  assert.ok(s.spec.ports.some((p) => p.name === 'http'));
  // The certificate and key come from the Secret volume, mounted where the env points.
  const vol = spec.volumes.find((v) => v.secret?.secretName === 'hlsgate-tls');
  assert.ok(vol, 'a volume from the Secret hlsgate-tls');
  const mount = gw.volumeMounts.find((m) => m.name === vol.name);
  assert.equal(mount?.readOnly, true);
  for (const [n, f] of [['HLSGATE_TLS_CERT', 'tls.crt'], ['HLSGATE_TLS_KEY', 'tls.key']])
    assert.equal(env(gw, n), `${mount.mountPath}/${f}`, `${n} is the Secret's ${f}`);
  assert.equal(vol.secret.defaultMode & 0o007, 0, 'the key is not world-readable');
  assert.equal(String(spec.securityContext.fsGroup), String(spec.securityContext.runAsGroup), 'the gateway group reads it');
  // The reloader watches both the policy and the certificate (HUP reloads both).
  const watched = env(rl, 'HLSGATE_RELOAD_DIR').split(':');
  assert.ok(watched.includes('/etc/hlsgate') && watched.includes(mount.mountPath), watched.join(':'));
  assert.equal(rl.volumeMounts.find((m) => m.name === vol.name)?.mountPath, mount.mountPath);
  // Still nothing secret in a literal env value: HLSGATE_TLS_KEY is a path.
  for (const c of spec.containers)
    for (const e of c.env || []) assert.ok(!/SECRET|TOKEN/.test(e.name) && (!/KEY/.test(e.name) || e.valueFrom ||
                                           e.value.startsWith('/')), `${c.name}: ${e.name}`);
});
