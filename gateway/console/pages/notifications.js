// Notifications: channels and rules (add, edit, delete), a channel's test message, the delivery log with retry.
import { api, can } from "../api.js";
import { ErrorMessage, Field, StateBar, html, usePolling, useState, when } from "../ui.js";

// Each kind's settings as the API takes them; a secret is never shown, and left empty on an edit it stays.
const KIND_FIELDS = {
  email: [["host", "SMTP host"], ["port", "Port", "number"], ["starttls", "STARTTLS", "checkbox"],
    ["username", "User name"], ["password", "Password", "secret"], ["sender", "Sender"],
    ["recipients", "Recipients (comma-separated)", "list"]],
  webhook: [["url", "URL"], ["secret", "Signing secret (16 characters or more)", "secret"]],
  chat: [["url", "Incoming-webhook URL", "secret"], ["payload_template", "Payload template", "textarea"]],
};
const SEVERITIES = ["info", "warning", "critical"];

// The events a rule may name, as the API's own document lists them.
let notifiable = null;
async function notifiableEvents() {
  notifiable ??= fetch("/api/v2/openapi.json").then((r) => r.json())
    .then((spec) => spec.components.schemas.RuleCreate.properties.event_types.items.enum);
  return notifiable;
}

function settingsToSend(kind, form, editing) {
  const settings = {};
  for (const [key, , type] of KIND_FIELDS[kind]) {
    const value = form[key];
    if (type === "secret" && !value && editing) continue;
    if (type === "number") settings[key] = value === "" || value === undefined ? undefined : Number(value);
    else if (type === "checkbox") settings[key] = Boolean(value);
    else if (type === "list") settings[key] = String(value || "").split(",").map((s) => s.trim()).filter(Boolean);
    else settings[key] = value === "" ? null : value;
    if (settings[key] === undefined) delete settings[key];
  }
  return settings;
}

function ChannelForm({ channel, onDone }) {
  const editing = Boolean(channel);
  const initial = channel
    ? { name: channel.name, enabled: channel.enabled, ...channel.settings,
      recipients: (channel.settings.recipients || []).join(", ") }
    : { name: "", enabled: true, port: 587, starttls: true };
  const [form, setForm] = useState(initial);
  const [kind, setKind] = useState(channel?.kind || "webhook");
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const set = (key, type) => (e) => {
    const value = type === "checkbox" ? e.target.checked : e.target.value;
    setForm((last) => ({ ...last, [key]: value }));
  };
  const save = async (event) => {
    event.preventDefault();
    const body = { name: form.name, enabled: form.enabled, settings: settingsToSend(kind, form, editing) };
    try {
      if (editing) await api("PATCH", `/notifications/channels/${channel.id}`, body);
      else await api("POST", "/notifications/channels", { ...body, kind });
      onDone();
    } catch (error) {
      setErrors(error.details);
      setFailure(error);
    }
  };
  return html`<form class="channel-form" data-channel=${channel?.id || "new"} onSubmit=${save}>
    <h2>${editing ? `Edit channel ${channel.name}` : "Add a channel"}</h2>
    <${Field} label="Channel name" name="name" errors=${errors}><input value=${form.name} onInput=${set("name")} /><//>
    ${!editing && html`<${Field} label="Kind" name="kind" errors=${errors}>
      <select value=${kind} onChange=${(e) => setKind(e.target.value)}>${Object.keys(KIND_FIELDS).map((k) => html`<option value=${k}>${k}</option>`)}
      </select><//>`}
    <${Field} label="Enabled" name="enabled" errors=${errors}>
      <input type="checkbox" checked=${form.enabled} onChange=${set("enabled", "checkbox")} /><//>
    ${KIND_FIELDS[kind].map(([key, label, type]) => html`<${Field} label=${label} name=${key} errors=${errors}
        hint=${type === "secret" && editing && channel.settings[`${key}_set`] ? "set; leave empty to keep it" : ""}>
      ${type === "textarea" ? html`<textarea value=${form[key] || ""} onInput=${set(key)} />`
        : type === "checkbox" ? html`<input type="checkbox" checked=${Boolean(form[key])} onChange=${set(key, type)} />`
        : html`<input type=${type === "secret" ? "password" : type === "number" ? "number" : "text"}
                      autocomplete="off" value=${form[key] ?? ""} onInput=${set(key)} />`}<//>`)}
    <${ErrorMessage} error=${failure} />
    <button class="primary" type="submit">${editing ? "Save channel" : "Add channel"}</button>
    <button type="button" onClick=${onDone}>Cancel</button>
  </form>`;
}

function RuleForm({ rule, channels, onDone }) {
  const editing = Boolean(rule);
  const events = usePolling(notifiableEvents, 0, []);
  const [form, setForm] = useState(rule ? { ...rule, server_search: rule.server_search || "" }
    : { name: "", enabled: true, event_types: [], min_severity: "warning", server_search: "", channel_ids: [] });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const change = (key, value) => setForm((last) => ({ ...last, [key]: value }));
  const toggle = (key, value) => (e) => {
    const on = e.target.checked;
    setForm((last) => ({ ...last, [key]: on ? [...last[key], value] : last[key].filter((v) => v !== value) }));
  };
  const save = async (event) => {
    event.preventDefault();
    const body = { name: form.name, enabled: form.enabled, event_types: form.event_types,
      min_severity: form.min_severity, server_ids: form.server_ids || [], server_search: form.server_search || null,
      channel_ids: form.channel_ids };
    try {
      if (editing) await api("PATCH", `/notifications/rules/${rule.id}`, body);
      else await api("POST", "/notifications/rules", body);
      onDone();
    } catch (error) {
      setErrors(error.details);
      setFailure(error);
    }
  };
  return html`<form class="rule-form" data-rule=${rule?.id || "new"} onSubmit=${save}>
    <h2>${editing ? `Edit rule ${rule.name}` : "Add a rule"}</h2>
    <${Field} label="Rule name" name="name" errors=${errors}>
      <input value=${form.name} onInput=${(e) => change("name", e.target.value)} /><//>
    <${Field} label="Enabled" name="enabled" errors=${errors}><input type="checkbox" checked=${form.enabled}
      onChange=${(e) => change("enabled", e.target.checked)} /><//>
    <fieldset class="choices"><legend>Events (none: every event)</legend>
      ${(events.data || []).map((name) => html`<label><input type="checkbox" checked=${form.event_types.includes(name)}
        onChange=${toggle("event_types", name)} /> ${name}</label>`)}</fieldset>
    <${Field} label="Minimum severity" name="min_severity" errors=${errors}>
      <select value=${form.min_severity} onChange=${(e) => change("min_severity", e.target.value)}>
        ${SEVERITIES.map((s) => html`<option value=${s}>${s}</option>`)}</select><//>
    <${Field} label="Only servers whose name contains" name="server_search" errors=${errors}>
      <input value=${form.server_search} onInput=${(e) => change("server_search", e.target.value)} /><//>
    <fieldset class="choices"><legend>Channels</legend>
      ${channels.map((c) => html`<label><input type="checkbox" checked=${form.channel_ids.includes(c.id)}
        onChange=${toggle("channel_ids", c.id)} /> ${c.name}</label>`)}
      ${errors.channel_ids && html`<span class="field-error" data-field="channel_ids">${[].concat(errors.channel_ids)
        .join("; ")}</span>`}</fieldset>
    <${ErrorMessage} error=${failure} />
    <button class="primary" type="submit">${editing ? "Save rule" : "Add rule"}</button>
    <button type="button" onClick=${onDone}>Cancel</button>
  </form>`;
}

export function Notifications() {
  const channels = usePolling(() => api("GET", "/notifications/channels"), 0, []);
  const rules = usePolling(() => api("GET", "/notifications/rules"), 0, []);
  const deliveries = usePolling(() => api("GET", "/notifications/deliveries"), 10, []);
  const [editing, setEditing] = useState(null); // {channel} | {rule}, either null (a new one) or the one edited
  const [result, setResult] = useState(null);
  const attempt = (work) => work().then((answer) => { setResult(answer); channels.refresh(); rules.refresh();
    deliveries.refresh(); }, setResult);
  const done = () => { setEditing(null); channels.refresh(); rules.refresh(); };
  const remove = (what, item) => confirm(`Delete ${what} ${item.name}?`) &&
    attempt(() => api("DELETE", `/notifications/${what}s/${item.id}`).then(() => ({ message: `Deleted ${item.name}.` })));
  const channelName = (id) => (channels.data || []).find((c) => c.id === id)?.name || `#${id}`;
  const admin = can.administer();
  return html`<section class="notifications">
    <${ErrorMessage} error=${channels.error || rules.error || deliveries.error} />
    ${result instanceof Error ? html`<${ErrorMessage} error=${result} />`
      : result && html`<p class="ok" role="status">${result.message || result.state || "Done."}</p>`}
    <h1>Channels</h1>
    <table class="list channels"><thead><tr><th>Name</th><th>Kind</th><th>Enabled</th><th></th></tr></thead>
      <tbody>${(channels.data || []).map((c) => html`<tr data-channel=${c.id}><td>${c.name}</td><td>${c.kind}</td>
        <td>${c.enabled ? "yes" : "no"}</td>
        <td>${admin && html`<button class="link" onClick=${() => attempt(() =>
          api("POST", `/notifications/channels/${c.id}/test`))}>Send test</button>
          <button class="link" onClick=${() => setEditing({ channel: c })}>Edit</button>
          <button class="link danger" onClick=${() => remove("channel", c)}>Delete</button>`}</td></tr>`)}</tbody></table>
    ${admin && !editing && html`<button onClick=${() => setEditing({ channel: null })}>Add channel</button>`}
    ${editing && "channel" in editing && html`<${ChannelForm} key=${editing.channel?.id || "new"}
      channel=${editing.channel} onDone=${done} />`}
    <h1>Rules</h1>
    <table class="list rules"><thead><tr><th>Name</th><th>Events</th><th>Minimum severity</th><th>Servers</th>
      <th>Channels</th><th></th></tr></thead>
      <tbody>${(rules.data || []).map((r) => html`<tr data-rule=${r.id}><td>${r.name}${r.enabled ? "" : " (off)"}</td>
        <td>${(r.event_types || []).join(", ") || "all"}</td><td>${r.min_severity}</td>
        <td>${r.server_search ? `name contains “${r.server_search}”` : r.server_ids.length ? r.server_ids.join(", ") : "all"}</td>
        <td>${(r.channel_ids || []).map(channelName).join(", ")}</td>
        <td>${admin && html`<button class="link" onClick=${() => setEditing({ rule: r })}>Edit</button>
          <button class="link danger" onClick=${() => remove("rule", r)}>Delete</button>`}</td></tr>`)}</tbody></table>
    ${admin && !editing && html`<button onClick=${() => setEditing({ rule: null })}>Add rule</button>`}
    ${editing && "rule" in editing && html`<${RuleForm} key=${editing.rule?.id || "new"} rule=${editing.rule}
      channels=${channels.data || []} onDone=${done} />`}
    <h1>Delivery log</h1>
    <table class="list"><thead><tr><th>Event</th><th>Channel</th><th>State</th><th>Attempts</th><th>Updated</th><th></th></tr></thead>
      <tbody>${(deliveries.data || []).map((d) => html`<tr><td>${(d.event_types || []).join(", ")}</td>
        <td>${d.channel_name}</td><td><${StateBar} state=${d.status} /></td><td>${d.attempts}${d.last_error &&
        html` <small>${d.last_error}</small>`}</td><td>${when(d.delivered_at || d.created_at)}</td>
        <td>${admin && d.status === "dead" && html`<button class="link" onClick=${() =>
          attempt(() => api("POST", `/notifications/deliveries/${d.id}/retry`))}>Retry</button>`}</td></tr>`)}</tbody></table>
  </section>`;
}
