// Users and API tokens, fleet rollouts.
import { api, can, session } from "../api.js";
import { ErrorMessage, Field, StateBar, html, usePolling, useState, when } from "../ui.js";

function useForm(initial) {
  const [form, setForm] = useState(initial);
  return [form, (name) => (event) => setForm({ ...form, [name]: event.target.value }), setForm];
}

export function Users() {
  const users = usePolling(() => can.administer() ? api("GET", "/users") : Promise.resolve([]), 0, []);
  const tokens = usePolling(() => api("GET", "/tokens"), 0, []);
  const [form, set] = useForm({ name: "", role: "viewer", password: "" });
  const [errors, setErrors] = useState({});
  const [shown, setShown] = useState(null);
  const [failure, setFailure] = useState(null);
  const attempt = (work) => work().then(() => { setErrors({}); setFailure(null); users.refresh(); tokens.refresh(); },
    (error) => { setErrors(error.details); setFailure(error); });
  const addUser = (event) => {
    event.preventDefault();
    attempt(() => api("POST", "/users", { name: form.name, role: form.role, ...(form.password && { password: form.password }) }));
  };
  const newToken = () => attempt(async () => setShown((await api("POST", "/tokens", { name: "console" })).token));
  return html`<section class="users">
    <${ErrorMessage} error=${users.error || tokens.error || failure} />
    ${can.administer() && html`<h1>Users</h1>
      <table class="list"><thead><tr><th>Name</th><th>Role</th><th>Groups</th><th>Password</th><th></th></tr></thead>
        <tbody>${(users.data || []).map((u) => html`<tr><td>${u.name}</td><td>${u.role}</td><td>${u.groups.join(", ")}</td>
          <td>${u.password_set ? "set" : "—"}</td>
          <td><button class="link danger" onClick=${() => confirm(`Delete user ${u.name}?`) &&
            attempt(() => api("DELETE", `/users/${u.id}`))}>Delete</button></td></tr>`)}</tbody></table>
      <form class="inline" onSubmit=${addUser}>
        <${Field} label="Name" name="name" errors=${errors}><input name="name" value=${form.name} onInput=${set("name")} /><//>
        <${Field} label="Role" name="role" errors=${errors}><select name="role" value=${form.role} onChange=${set("role")}>
          <option>viewer</option><option>operator</option><option>admin</option></select><//>
        <${Field} label="Password" name="password" errors=${errors}>
          <input name="password" type="password" autocomplete="new-password" value=${form.password} onInput=${set("password")} /><//>
        <button class="primary" type="submit">Add user</button>
      </form>`}
    <h1>API tokens</h1>
    <table class="list"><thead><tr><th>Name</th><th>User</th><th>Scope</th><th>Starts with</th><th>Last used</th><th></th></tr></thead>
      <tbody>${(tokens.data || []).map((t) => html`<tr><td>${t.name}</td><td>${t.user}</td><td>${t.scope}</td>
        <td><code>${t.prefix}</code></td><td>${when(t.last_used_at)}</td>
        <td><button class="link danger" onClick=${() => attempt(() => api("DELETE", `/tokens/${t.id}`))}>Revoke</button></td>
      </tr>`)}</tbody></table>
    <button onClick=${newToken}>New API token for ${session.user.name}</button>
    ${shown && html`<p class="ok">Copy it now, it is shown once: <code class="secret">${shown}</code></p>`}
  </section>`;
}

export function Rollouts() {
  const rollouts = usePolling(() => api("GET", "/rollouts"), 3, []);
  const [form, set] = useForm({ search: "", component: "", canary_size: 1, batch_size: 5, max_failures: 1 });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const attempt = (work) => work().then(() => { setErrors({}); setFailure(null); rollouts.refresh(); },
    (error) => { setErrors(error.details); setFailure(error); });
  const start = (event) => {
    event.preventDefault();
    attempt(() => api("POST", "/rollouts", { search: form.search, ...(form.component && { component: form.component }),
      canary_size: Number(form.canary_size), batch_size: Number(form.batch_size), max_failures: Number(form.max_failures) }));
  };
  return html`<section class="rollouts"><h1>Rollouts</h1>
    <${ErrorMessage} error=${rollouts.error || failure} />
    ${can.operate() && html`<form class="inline" onSubmit=${start}>
      <${Field} label="Servers whose name contains" name="search" errors=${errors}>
        <input name="search" value=${form.search} onInput=${set("search")} /><//>
      <${Field} label="Component" name="component" errors=${errors}><select name="component" value=${form.component}
        onChange=${set("component")}><option value="">all</option><option>dns</option><option>dhcp</option>
        <option>monitor</option></select><//>
      <${Field} label="Canary" name="canary_size" errors=${errors}><input name="canary_size" type="number"
        value=${form.canary_size} onInput=${set("canary_size")} /><//>
      <${Field} label="Batch size" name="batch_size" errors=${errors}><input name="batch_size" type="number"
        value=${form.batch_size} onInput=${set("batch_size")} /><//>
      <${Field} label="Max failures" name="max_failures" errors=${errors}><input name="max_failures" type="number"
        value=${form.max_failures} onInput=${set("max_failures")} /><//>
      <button class="primary" type="submit">Start rollout</button></form>`}
    ${(rollouts.data || []).map((r) => html`<article class="rollout" key=${r.id}>
      <h2>Rollout ${r.id} <${StateBar} state=${r.state} /></h2>
      <p>${when(r.created_at)}; ${r.component || "all components"}</p>
      <p>Wave ${r.current_wave}${r.paused_reason ? `; paused: ${r.paused_reason}` : ""}</p>
      <ol class="waves">${(r.servers || []).map((s) => html`<li>wave ${s.wave}: ${s.server_name}
        <${StateBar} state=${s.state} /> ${s.message}</li>`)}</ol>
      ${can.operate() && r.state === "paused" && html`<button onClick=${() =>
        attempt(() => api("POST", `/rollouts/${r.id}/actions/resume`))}>Resume</button>`}
      ${can.operate() && ["running", "paused"].includes(r.state) && html`<button onClick=${() =>
        attempt(() => api("POST", `/rollouts/${r.id}/actions/cancel`))}>Cancel</button>`}
    </article>`)}
  </section>`;
}
