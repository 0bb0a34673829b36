// One server: Settings, Services, Monitoring, RPS and Tasks, and its actions.
import { api, can, query } from "../api.js";
import { ErrorMessage, Field, RequestsBar, StateBar, Tabs, html, usePolling, useState, when } from "../ui.js";
import { runAction } from "./actions.js";
import { Chart } from "./charts.js";

const TABS = [["settings", "Settings"], ["services", "Services"], ["monitoring", "Monitoring"], ["rps", "RPS"],
  ["tasks", "Tasks"]];

export function ServerDetails({ id, tab }) {
  const { data: server, error, refresh } = usePolling(() => api("GET", `/servers/${id}`), 5, [id]);
  const [actionError, setActionError] = useState(null);
  if (!server) return html`<${ErrorMessage} error=${error} />${!error && html`<p class="loading">Loading…</p>`}`;
  const act = (action) => runAction(action, server).then(refresh, setActionError);
  const views = { settings: ServerSettings, services: Services, monitoring: Monitoring, rps: Rps, tasks: Tasks };
  const View = views[tab] || ServerSettings;
  return html`<section class="server">
    <h1>${server.name} <${StateBar} state=${server.state} /> <${RequestsBar} requests=${server.requests}
                                                                           status=${server.requests_status} /></h1>
    ${can.operate() && html`<div class="toolbar actions">
      <button onClick=${() => act("push-install")}>Push install</button>
      <button onClick=${() => act("push-update")}>Push update</button>
      <button onClick=${() => act("diagnostics")}>Diagnostics</button>
      <button onClick=${() => act("bundle")}>Download setup bundle</button>
      <button class="danger" onClick=${() => act("delete")}>Delete</button>
    </div>`}
    <${ErrorMessage} error=${error || actionError} />
    <${Tabs} tabs=${TABS} current=${tab} base="#/servers/${id}" />
    <${View} server=${server} onSaved=${refresh} />
  </section>`;
}

function ServerSettings({ server, onSaved }) {
  const [form, setForm] = useState({ name: server.name, address: server.address, os: server.os,
    ssh_user: server.ssh_user, ssh_port: server.ssh_port, runtime: server.runtime,
    monitoring_api_ip: server.monitoring_api_ip || "" });
  const [errors, setErrors] = useState({});
  const [message, setMessage] = useState(null);
  const set = (name) => (event) => setForm({ ...form, [name]: event.target.value });
  const save = async (event) => {
    event.preventDefault();
    const change = { ...form, ssh_port: Number(form.ssh_port), monitoring_api_ip: form.monitoring_api_ip || null };
    try {
      await api("PATCH", `/servers/${server.id}`, change);
      setErrors({});
      setMessage({ message: "Saved." });
      onSaved();
    } catch (error) {
      setErrors(error.details);
      setMessage(error);
    }
  };
  const readOnly = !can.operate();
  const input = (name, label, type = "text") => html`<${Field} label=${label} name=${name} errors=${errors}>
    <input name=${name} type=${type} value=${form[name]} onInput=${set(name)} disabled=${readOnly} /><//>`;
  return html`<form class="settings" onSubmit=${save}>
    ${input("name", "Name")} ${input("address", "Address")} ${input("ssh_user", "SSH user")}
    ${input("ssh_port", "SSH port", "number")} ${input("monitoring_api_ip", "Monitoring API IP")}
    <${Field} label="OS" name="os" errors=${errors}><select name="os" value=${form.os} onChange=${set("os")}
      disabled=${readOnly}><option value="ubuntu">Ubuntu</option><option value="centos">CentOS</option></select><//>
    <${Field} label="Runtime" name="runtime" errors=${errors}><select name="runtime" value=${form.runtime}
      onChange=${set("runtime")} disabled=${readOnly}><option value="docker">Docker</option>
      <option value="process">Process</option></select><//>
    <p>Server user: ${server.server_user}; SSH secret stored: ${server.ssh_auth || "none"}</p>
    ${message && html`<p class=${message instanceof Error ? "error" : "ok"}>${message.message}</p>`}
    ${!readOnly && html`<button class="primary" type="submit">Save Changes</button>`}
  </form>`;
}

function Services({ server }) {
  return html`<table class="list"><thead><tr><th>Component</th><th>Version</th><th>State</th><th>Since</th></tr></thead>
    <tbody>${server.components.map((c) => html`<tr><td>${c.name}</td><td>${server.versions?.[c.name] || c.version || "—"}</td>
      <td><${StateBar} state=${c.state} /></td><td>${when(c.updated_at)}</td></tr>`)}</tbody></table>`;
}

const RANGES = [["1 hour", 3600, 60], ["6 hours", 6 * 3600, 300], ["1 day", 86400, 900], ["1 week", 7 * 86400, 3600]];

function Monitoring({ server }) {
  const [range, setRange] = useState(0);
  const [raw, setRaw] = useState(false);
  const [, seconds, aggregated] = RANGES[range];
  const step = raw ? 60 : aggregated;
  const span = () => ({ start: new Date(Date.now() - seconds * 1000).toISOString(), step });
  const system = usePolling(() => api("GET", `/monitoring/servers/${server.id}/system${query(span())}`), 30, [range, raw]);
  const dns = usePolling(() => api("GET", `/monitoring/servers/${server.id}/dns${query(span())}`), 30, [range, raw]);
  const points = system.data?.points || [];
  const series = (name, scale = 1) => [points.map((p) => Date.parse(p.at) / 1000), points.map((p) => p[name] / scale)];
  const mib = 1024 * 1024;
  return html`<div class="monitoring">
    <div class="toolbar">
      <label>Range <select value=${range} onChange=${(e) => setRange(Number(e.target.value))}>
        ${RANGES.map(([label], n) => html`<option value=${n}>${label}</option>`)}</select></label>
      <label><input type="checkbox" checked=${raw} onChange=${(e) => setRaw(e.target.checked)} /> Raw (per minute)</label>
    </div>
    <${ErrorMessage} error=${system.error || dns.error} />
    <div class="charts">
      <${Chart} title="CPU load (1 min)" data=${series("load1")} />
      <${Chart} title="Memory used (MiB)" data=${series("memory_used_bytes", mib)} />
      <${Chart} title="Swap used (MiB)" data=${series("swap_used_bytes", mib)} />
      <${Chart} title="Disk used (max %)" data=${series("disk_used_max_percent")} />
      <${Chart} title="Connections" data=${series("connections_established")} />
      <${Chart} title="DNS queries" data=${[(dns.data?.points || []).map((p) => Date.parse(p.at) / 1000),
                                            (dns.data?.points || []).map((p) => p.total)]} />
    </div>
  </div>`;
}

function Rps({ server }) {
  const [name, setName] = useState("");
  const [asked, setAsked] = useState(null);
  const records = usePolling(() => api("GET", `/monitoring/servers/${server.id}/records${query({ search: name })}`),
    0, [name]);
  const rps = usePolling(() => asked ? api("GET", `/monitoring/records/rps${query({ name: asked, server_id: server.id,
    start: new Date(Date.now() - 3600e3).toISOString() })}`) : Promise.resolve(null), 0, [asked]);
  const points = rps.data?.points || [];
  return html`<div class="rps">
    <div class="toolbar"><input type="search" placeholder="Record name" aria-label="Record" value=${name}
      onInput=${(e) => setName(e.target.value)} /></div>
    <${ErrorMessage} error=${records.error || rps.error} />
    <table class="list"><thead><tr><th>Record</th><th>Type</th><th>Last access</th><th></th></tr></thead>
      <tbody>${(records.data?.items || []).map((r) => html`<tr><td>${r.name}</td><td>${r.type}</td>
        <td>${when(r.last_access)}</td><td><button class="link" onClick=${() => setAsked(r.name)}>Hits</button></td></tr>`)}
      </tbody></table>
    ${asked && html`<h3>${asked}: requests per second, last hour</h3>
      <${Chart} title="requests/s" data=${[points.map((p) => Date.parse(p.at) / 1000), points.map((p) => p.rps)]} />
      <p>${points.reduce((sum, p) => sum + p.hits, 0)} hits in the last hour</p>`}
  </div>`;
}

function Tasks({ server }) {
  // Installs, diagnostics (every kind GET /tasks lists) and updates, newest first; each opens its progress view and log.
  const history = usePolling(async () => {
    const [tasks, updates] = await Promise.all([api("GET", `/tasks${query({ server_id: server.id, per_page: 50 })}`),
      api("GET", `/servers/${server.id}/update-tasks`)]);
    const known = new Set(tasks.items.map((t) => t.id));
    return [...tasks.items, ...updates.filter((t) => !known.has(t.id))]
      .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  }, 10, [server.id]);
  return html`<div class="tasks">
    <${ErrorMessage} error=${history.error} />
    <table class="list"><thead><tr><th>Kind</th><th>State</th><th>Step</th><th>By</th><th>Started</th><th>Finished</th>
      </tr></thead>
      <tbody>${(history.data || []).map((t) => html`<tr data-task=${t.id}>
        <td><a href=${t.kind === "diagnostics" ? `#/servers/${server.id}/diagnostics/${t.id}`
          : `#/tasks/${t.kind === "update" ? "update" : "install"}/${t.id}`}>${t.kind}</a></td>
        <td><${StateBar} state=${t.state} /></td><td>${t.step_index} of ${t.step_count}</td><td>${t.requested_by}</td>
        <td>${when(t.started_at)}</td><td>${when(t.finished_at)}</td></tr>`)}</tbody></table>
  </div>`;
}
