// Admin settings: one module per section, each with its own Save Changes and its errors in place.
import { api } from "../api.js";
import { ErrorMessage, Field, html, usePolling, useState } from "../ui.js";

const MODULES = [["monitoring", "Monitoring"], ["update", "Update"], ["rabbitmq", "RabbitMQ"], ["backup", "Managed Backups"]];
const CHOICES = { communication_type: ["push", "pull"], mode: ["internet", "local"] };
const SECRETS = { rabbitmq: ["password"], backup: ["password"] };
const TESTED = ["host", "port", "user", "password", "vhost"]; // what Test Credentials tries (the rest is saved only)

export function AdminSettings() {
  const { data, error } = usePolling(() => api("GET", "/settings"), 0, []);
  if (!data) return html`<${ErrorMessage} error=${error} />`;
  return html`<section class="admin-settings"><h1>Settings</h1>
    ${MODULES.map(([section, title]) => html`<${Module} key=${section} section=${section} title=${title}
                                                        saved=${data[section]} />`)}
  </section>`;
}

function Module({ section, title, saved }) {
  const editable = Object.keys(saved).filter((key) => !key.endsWith("_set"));
  const [form, setForm] = useState(() => Object.fromEntries(
    [...editable.map((key) => [key, saved[key] ?? ""]), ...(SECRETS[section] || []).map((key) => [key, ""])]));
  const [errors, setErrors] = useState({});
  const [status, setStatus] = useState(null);
  const [tested, setTested] = useState(null);
  const changes = () => Object.fromEntries(Object.entries(form)
    .filter(([key, value]) => !(SECRETS[section] || []).includes(key) || value !== "")
    .map(([key, value]) => [key, typeof saved[key] === "number" ? Number(value) : value === "" ? null : value]));
  const save = async (event) => {
    event.preventDefault();
    try {
      await api("PATCH", "/settings", { [section]: changes() });
      setErrors({});
      setStatus({ message: "Saved." });
    } catch (error) {
      setErrors(error.details?.[section] || {});
      setStatus(error);
    }
  };
  const test = async () => {
    try {
      const given = changes();
      const tried = Object.fromEntries(TESTED.filter((key) => key in given).map((key) => [key, given[key]]));
      setTested(await api("POST", "/settings/rabbitmq/test", tried));
    } catch (error) {
      setTested({ ok: false, message: error.message });
    }
  };
  const input = (key) => {
    const value = form[key];
    const set = (v) => setForm({ ...form, [key]: v });
    if (typeof saved[key] === "boolean") {
      return html`<input type="checkbox" name=${key} checked=${value} onChange=${(e) => set(e.target.checked)} />`;
    }
    if (CHOICES[key]) {
      return html`<select name=${key} value=${value} onChange=${(e) => set(e.target.value)}>
        ${CHOICES[key].map((choice) => html`<option value=${choice}>${choice}</option>`)}</select>`;
    }
    const secret = (SECRETS[section] || []).includes(key);
    return html`<input name=${key} type=${secret ? "password" : typeof saved[key] === "number" ? "number" : "text"}
      placeholder=${secret && saved[`${key}_set`] ? "(saved; type to replace)" : ""} value=${value}
      onInput=${(e) => set(e.target.value)} />`;
  };
  return html`<form class="module" data-module=${section} onSubmit=${save}>
    <h2>${title}</h2>
    ${Object.keys(form).map((key) => html`<${Field} label=${key.replaceAll("_", " ")} name=${key} errors=${errors}>
      ${input(key)}<//>`)}
    ${status && html`<p class=${status instanceof Error ? "error" : "ok"} role="status">${status.message}</p>`}
    <div class="buttons">
      <button class="primary" type="submit">Save Changes</button>
      ${section === "rabbitmq" && html`<button type="button" onClick=${test}>Test Credentials</button>`}
    </div>
    ${tested && html`<p class="test-result ${tested.ok ? "ok" : "error"}">${tested.ok ? "Connected" : "Failed"}:
      ${tested.message}</p>`}
  </form>`;
}
