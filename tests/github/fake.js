#!/usr/bin/env node
'use strict';
// A stateful fake of the GitHub REST endpoints tj-deploy uses. Its responses are GitHub's own
// examples from @octokit/openapi with the dynamic fields patched, so they stay valid against the
// published contract; tests put Prism (proxy mode, --errors) in front of it to validate both
// directions. State is per repository; tests drive it through /_fake/* (not proxied):
//   PUT  /_fake/repos/:owner/:repo   {branches:{name:[sha,...oldest→newest]}, check_runs:[{name,head_sha,status,conclusion,complete_after}],
//                                      statuses:[{sha,context,state}], deployments:[{sha,environment,state}], read_only:bool,
//                                      compares:{"<base>...<head>":{files:[{filename,status}],ahead_by}} (a PR's base and head
//                                      need not share one branch history)}
//   PATCH /_fake/repos/:owner/:repo  {branches:{name:[sha,...]}}: moves branches, keeping the rest of the state
//   GET  /_fake/repos/:owner/:repo   → the state (deployments with statuses, check runs, check_runs_by_head_sha, request log)
// Like GitHub: check runs are paginated (per_page ≤ 100, default 30; page), and a `success`
// status with auto_inactive (default true) on a non-production deployment adds an `inactive`
// status to every older deployment of the same environment whose latest status is `success`.
//   POST /_fake/faults               {method, path (substring), status, times, retry_after, after:bool,
//                                     skip: let this many matching requests through first}
// Usage: node fake.js <spec.json> <port>
const http = require('http');
const fs = require('fs');

const [, , specPath, portArg] = process.argv;
const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
const ex = (name) => JSON.parse(JSON.stringify(spec.components.examples[name].value));
const EX = {
  branch: ex('branch-get'),
  compare: ex('commit-comparison'),
  checkRun: ex('check-run'),
  combined: ex('combined-commit-status'),
  deployment: ex('deployment-simple-example'),
  deploymentStatus: ex('deployment-status'),
};
const clone = (o) => JSON.parse(JSON.stringify(o));
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

const repos = new Map();
let faults = [];
let nextId = 1000;

function repo(owner, name) {
  const key = `${owner}/${name}`;
  if (!repos.has(key)) {
    repos.set(key, { branches: {}, check_runs: [], statuses: [], deployments: [], read_only: false, compares: {}, log: [] });
  }
  return repos.get(key);
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(text);
}

const notFound = (res) => send(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });

function checkRunView(r, owner, name) {
  const c = clone(EX.checkRun);
  Object.assign(c, {
    id: r.id, name: r.name, head_sha: r.head_sha, status: r.status, conclusion: r.conclusion || null,
    external_id: r.external_id || '', details_url: r.details_url || 'https://example.com',
    started_at: r.started_at || now(), completed_at: r.status === 'completed' ? (r.completed_at || now()) : null,
    url: `https://api.github.com/repos/${owner}/${name}/check-runs/${r.id}`,
    html_url: `https://github.com/${owner}/${name}/runs/${r.id}`,
  });
  c.output = Object.assign(c.output || {}, { title: r.output_title || null, summary: r.output_summary || null, text: null });
  return c;
}

function deploymentView(d, owner, name) {
  const v = clone(EX.deployment);
  Object.assign(v, {
    id: d.id, sha: d.sha, ref: d.ref, environment: d.environment, original_environment: d.environment,
    payload: d.payload || {}, description: d.description || null, task: d.task || 'deploy',
    production_environment: !!d.production_environment, transient_environment: false,
    created_at: d.created_at, updated_at: d.created_at,
    url: `https://api.github.com/repos/${owner}/${name}/deployments/${d.id}`,
    statuses_url: `https://api.github.com/repos/${owner}/${name}/deployments/${d.id}/statuses`,
    repository_url: `https://api.github.com/repos/${owner}/${name}`,
  });
  return v;
}

function statusView(s, d, owner, name) {
  const v = clone(EX.deploymentStatus);
  Object.assign(v, {
    id: s.id, state: s.state, description: s.description || '', environment: d.environment,
    created_at: s.created_at, updated_at: s.created_at,
    url: `https://api.github.com/repos/${owner}/${name}/deployments/${d.id}/statuses/${s.id}`,
    deployment_url: `https://api.github.com/repos/${owner}/${name}/deployments/${d.id}`,
    repository_url: `https://api.github.com/repos/${owner}/${name}`,
  });
  // The spec types these as URIs, so an empty string would break the contract: omit them.
  for (const k of ['environment_url', 'log_url']) {
    if (s[k]) v[k] = s[k]; else delete v[k];
  }
  if (s.log_url) v.target_url = s.log_url;
  return v;
}

function setup(owner, name, body) {
  const r = repo(owner, name);
  r.branches = body.branches || {};
  r.read_only = !!body.read_only;
  r.compares = body.compares || {};
  r.check_runs = (body.check_runs || []).map((c) => ({ id: nextId++, status: 'completed', conclusion: 'success', polls: 0, ...c }));
  r.statuses = body.statuses || [];
  r.deployments = (body.deployments || []).map((d) => {
    const id = nextId++;
    return {
      id, sha: d.sha, ref: d.sha, environment: d.environment, payload: {}, created_at: now(),
      statuses: d.state ? [{ id: nextId++, state: d.state, created_at: now() }] : [],
    };
  });
  r.log = [];
}

function route(req, res, body) {
  const url = new URL(req.url, 'http://fake');
  const p = url.pathname;
  let m;
  if ((m = p.match(/^\/_fake\/repos\/([^/]+)\/([^/]+)$/))) {
    if (req.method === 'PUT') { setup(m[1], m[2], body || {}); return send(res, 200, { ok: true }); }
    if (req.method === 'PATCH') { Object.assign(repo(m[1], m[2]).branches, (body || {}).branches || {}); return send(res, 200, { ok: true }); }
    const r = repo(m[1], m[2]);
    const byHead = {};
    for (const c of r.check_runs) (byHead[c.head_sha] = byHead[c.head_sha] || []).push(c);
    return send(res, 200, { ...r, deployments: r.deployments, check_runs_by_head_sha: byHead });
  }
  if (p === '/_fake/faults' && req.method === 'POST') { faults.push({ ...body, left: body.times || 1 }); return send(res, 200, { ok: true }); }

  if (!/^(token|Bearer) \S+/.test(req.headers.authorization || '')) {
    return send(res, 401, { message: 'Requires authentication', documentation_url: 'https://docs.github.com/rest' });
  }
  m = p.match(/^\/repos\/([^/]+)\/([^/]+)(\/.*)$/);
  if (!m) return notFound(res);
  const [owner, name, rest] = [m[1], m[2], m[3]];
  const r = repo(owner, name);
  r.log.push(`${req.method} ${rest}${url.search}`);

  const fault = faults.find((f) => {
    if (f.left <= 0 || f.method !== req.method || !p.includes(f.path)) return false;
    if (f.skip > 0) { f.skip -= 1; return false; }
    return true;
  });
  const answerFault = () => {
    fault.left -= 1;
    const headers = fault.retry_after ? { 'retry-after': String(fault.retry_after) } : {};
    return send(res, fault.status, { message: `fake fault ${fault.status}` }, headers);
  };
  if (fault && !fault.after) return answerFault();
  // With `after`, the request takes effect and then the answer is lost (a 502 from a proxy).
  const reply = fault && fault.after ? () => answerFault() : (status, b, h) => send(res, status, b, h);

  if (req.method === 'GET' && (m = rest.match(/^\/branches\/(.+)$/))) {
    const hist = r.branches[decodeURIComponent(m[1])];
    if (!hist || !hist.length) return notFound(res);
    const b = clone(EX.branch);
    b.name = decodeURIComponent(m[1]);
    b.commit.sha = hist[hist.length - 1];
    return reply(200, b);
  }
  if (req.method === 'GET' && (m = rest.match(/^\/compare\/([0-9a-f]+)\.\.\.([0-9a-f]+)$/))) {
    const [base, head] = [m[1], m[2]];
    const given = r.compares[`${base}...${head}`];
    if (given) {
      const c = clone(EX.compare);
      const tmpl = c.files[0];
      c.ahead_by = given.ahead_by || 1;
      c.behind_by = 0;
      c.status = 'ahead';
      c.total_commits = c.ahead_by;
      c.commits = [];
      c.base_commit.sha = base;
      c.merge_base_commit.sha = base;
      c.files = (given.files || []).map((f) => Object.assign(clone(tmpl), {
        sha: head, filename: f.filename, status: f.status || 'added', patch: undefined,
        blob_url: `https://github.com/${owner}/${name}/blob/${head}/${f.filename}`,
        raw_url: `https://github.com/${owner}/${name}/raw/${head}/${f.filename}`,
        contents_url: `https://api.github.com/repos/${owner}/${name}/contents/${f.filename}?ref=${head}`,
      }));
      return reply(200, c);
    }
    const hist = Object.values(r.branches).find((h) => h.includes(base) && h.includes(head));
    if (!hist) return notFound(res);
    const [i, j] = [hist.indexOf(base), hist.indexOf(head)];
    const c = clone(EX.compare);
    const tmpl = c.commits[0];
    c.ahead_by = Math.max(0, j - i);
    c.behind_by = Math.max(0, i - j);
    c.status = j > i ? 'ahead' : j < i ? 'behind' : 'identical';
    c.total_commits = c.ahead_by;
    c.commits = hist.slice(i + 1, j + 1).map((sha, k) => { const x = clone(tmpl); x.sha = sha; x.commit.message = `change ${k + 1}`; return x; });
    c.base_commit.sha = base;
    c.merge_base_commit.sha = base;
    return reply(200, c);
  }
  if (req.method === 'GET' && (m = rest.match(/^\/commits\/([0-9a-f]+)\/check-runs$/))) {
    const runs = r.check_runs.filter((c) => c.head_sha === m[1]);
    for (const c of runs) {
      c.polls += 1;
      if (c.complete_after && c.status !== 'completed' && c.polls >= c.complete_after) {
        c.status = 'completed';
        c.conclusion = c.final_conclusion || 'success';
        c.completed_at = now();
      }
    }
    const perPage = Math.min(Number(url.searchParams.get('per_page') || 30), 100);
    const page = Math.max(Number(url.searchParams.get('page') || 1), 1);
    const shown = runs.slice((page - 1) * perPage, page * perPage);
    return reply(200, { total_count: runs.length, check_runs: shown.map((c) => checkRunView(c, owner, name)) });
  }
  if (req.method === 'GET' && (m = rest.match(/^\/commits\/([0-9a-f]+)\/status$/))) {
    const c = clone(EX.combined);
    const st = r.statuses.filter((s) => s.sha === m[1]);
    const tmpl = c.statuses[0];
    c.sha = m[1];
    c.statuses = st.map((s, k) => Object.assign(clone(tmpl), { id: k + 1, state: s.state, context: s.context }));
    c.total_count = st.length;
    c.state = st.length === 0 ? 'pending' : st.some((s) => s.state === 'failure' || s.state === 'error') ? 'failure' : st.every((s) => s.state === 'success') ? 'success' : 'pending';
    return reply(200, c);
  }
  if (req.method === 'GET' && rest === '/deployments') {
    const sha = url.searchParams.get('sha');
    const env = url.searchParams.get('environment');
    const list = r.deployments.filter((d) => (!sha || d.sha === sha) && (!env || d.environment === env)).slice().reverse();
    return reply(200, list.map((d) => deploymentView(d, owner, name)));
  }
  if (req.method === 'POST' && rest === '/deployments') {
    const d = {
      id: nextId++, sha: body.ref, ref: body.ref, environment: body.environment || 'production', payload: body.payload || {},
      description: body.description, task: body.task, production_environment: body.production_environment,
      created_at: now(), statuses: [], request: body,
    };
    r.deployments.push(d);
    return reply(201, deploymentView(d, owner, name));
  }
  if ((m = rest.match(/^\/deployments\/(\d+)\/statuses$/))) {
    const d = r.deployments.find((x) => x.id === Number(m[1]));
    if (!d) return notFound(res);
    if (req.method === 'GET') return reply(200, d.statuses.slice().reverse().map((s) => statusView(s, d, owner, name)));
    if (req.method === 'POST') {
      const s = { id: nextId++, state: body.state, description: body.description, environment_url: body.environment_url, log_url: body.log_url, created_at: now(), request: body };
      d.statuses.push(s);
      if (s.state === 'success' && body.auto_inactive !== false && !d.production_environment) {
        for (const x of r.deployments) {
          const last = x.statuses[x.statuses.length - 1];
          if (x.id < d.id && x.environment === d.environment && !x.production_environment && last && last.state === 'success') {
            x.statuses.push({ id: nextId++, state: 'inactive', created_at: now(), auto: true });
          }
        }
      }
      return reply(201, statusView(s, d, owner, name));
    }
  }
  if (req.method === 'POST' && rest === '/check-runs') {
    if (r.read_only) return send(res, 403, { message: 'Resource not accessible by integration', documentation_url: 'https://docs.github.com/rest' });
    const c = { id: nextId++, polls: 0, name: body.name, head_sha: body.head_sha, status: body.status || 'queued', conclusion: body.conclusion, external_id: body.external_id, details_url: body.details_url, started_at: body.started_at, output_title: body.output && body.output.title, output_summary: body.output && body.output.summary, request: body, own: true };
    r.check_runs.push(c);
    return reply(201, checkRunView(c, owner, name));
  }
  if ((m = rest.match(/^\/check-runs\/(\d+)$/))) {
    const c = r.check_runs.find((x) => x.id === Number(m[1]));
    if (!c) return notFound(res);
    if (req.method === 'PATCH') {
      if (body.status) c.status = body.status;
      if (body.conclusion) { c.conclusion = body.conclusion; c.status = 'completed'; }
      if (body.completed_at) c.completed_at = body.completed_at;
      if (body.output) { c.output_title = body.output.title; c.output_summary = body.output.summary; }
      c.updates = (c.updates || []).concat([body]);
      return reply(200, checkRunView(c, owner, name));
    }
    if (req.method === 'GET') return reply(200, checkRunView(c, owner, name));
  }
  return notFound(res);
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    if (chunks.length) {
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (_) { return send(res, 400, { message: 'Problems parsing JSON' }); }
    }
    try { route(req, res, body); } catch (e) { send(res, 500, { message: String(e && e.stack || e) }); }
  });
}).listen(Number(portArg), '127.0.0.1', () => console.log(`fake github on ${portArg}`));
