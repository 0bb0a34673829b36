// Add server: the product's five steps. Nothing is sent before Review; the API's field errors then lead back
// to the step holding the field, shown beside it.
import { api } from "../api.js";
import { ErrorMessage, Field, go, html, useState } from "../ui.js";

const STEPS = [
  ["Name and address", ["name", "address"]],
  ["Operating system", ["os"]],
  ["SSH credentials", ["ssh_user", "ssh_port", "ssh_password", "ssh_private_key"]],
  ["Components and runtime", ["components", "runtime", "monitoring_api_ip"]],
  ["Review", []],
];
const COMPONENTS = [["dns", "DNS (Knot)"], ["dhcp", "DHCP (Kea)"], ["monitor", "Monitor (agent)"]];

export function AddServer() {
  const [step, setStep] = useState(0);
  const [form, setForm] = useState({ name: "", address: "", os: "ubuntu", ssh_user: "root", ssh_port: 22,
    auth: "password", ssh_password: "", ssh_private_key: "", components: ["dns", "dhcp", "monitor"],
    runtime: "docker", monitoring_api_ip: "" });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const set = (name) => (event) => setForm({ ...form, [name]: event.target.value });
  const toggle = (component) => setForm({ ...form, components: form.components.includes(component)
    ? form.components.filter((c) => c !== component) : [...form.components, component] });
  const readKey = async (event) => {
    const file = event.target.files[0];
    if (file) setForm({ ...form, ssh_private_key: await file.text() });
  };

  const submit = async () => {
    const body = { name: form.name, address: form.address, os: form.os, ssh_user: form.ssh_user,
      ssh_port: Number(form.ssh_port), components: form.components, runtime: form.runtime };
    if (form.auth === "password" && form.ssh_password) body.ssh_password = form.ssh_password;
    if (form.auth === "key" && form.ssh_private_key) body.ssh_private_key = form.ssh_private_key;
    if (form.monitoring_api_ip) body.monitoring_api_ip = form.monitoring_api_ip;
    try {
      const server = await api("POST", "/servers", body);
      go(`#/servers/${server.id}`);
    } catch (error) {
      setFailure(error);
      setErrors(error.details || {});
      const first = STEPS.findIndex(([, fields]) => fields.some((f) => f in (error.details || {})));
      if (first >= 0) setStep(first);
    }
  };

  const views = [
    () => html`
      <${Field} label="Name" name="name" errors=${errors}><input name="name" value=${form.name} onInput=${set("name")} /><//>
      <${Field} label="Address (FQDN or IP)" name="address" errors=${errors}>
        <input name="address" value=${form.address} onInput=${set("address")} /><//>`,
    () => html`
      <${Field} label="Operating system" name="os" errors=${errors}>
        <select name="os" value=${form.os} onChange=${set("os")}>
          <option value="ubuntu">Ubuntu</option><option value="centos">CentOS</option>
        </select><//>`,
    () => html`
      <${Field} label="SSH user" name="ssh_user" errors=${errors}>
        <input name="ssh_user" value=${form.ssh_user} onInput=${set("ssh_user")} /><//>
      <${Field} label="SSH port" name="ssh_port" errors=${errors}>
        <input name="ssh_port" type="number" value=${form.ssh_port} onInput=${set("ssh_port")} /><//>
      <fieldset class="choice">
        <label><input type="radio" name="auth" checked=${form.auth === "password"}
                      onChange=${() => setForm({ ...form, auth: "password" })} /> Password</label>
        <label><input type="radio" name="auth" checked=${form.auth === "key"}
                      onChange=${() => setForm({ ...form, auth: "key" })} /> Private key file</label>
      </fieldset>
      ${form.auth === "password"
        ? html`<${Field} label="SSH password" name="ssh_password" errors=${errors}>
            <input name="ssh_password" type="password" autocomplete="off" value=${form.ssh_password}
                   onInput=${set("ssh_password")} /><//>`
        : html`<${Field} label="Private key file" name="ssh_private_key" errors=${errors}
                         hint=${form.ssh_private_key ? "key loaded" : ""}>
            <input name="ssh_private_key" type="file" onChange=${readKey} /><//>`}`,
    () => html`
      <${Field} label="Components" name="components" errors=${errors}>
        <span class="checks">${COMPONENTS.map(([value, label]) => html`<label>
          <input type="checkbox" checked=${form.components.includes(value)} onChange=${() => toggle(value)} />
          ${label}</label>`)}</span><//>
      <${Field} label="Runtime" name="runtime" errors=${errors}>
        <select name="runtime" value=${form.runtime} onChange=${set("runtime")}>
          <option value="docker">Docker containers</option><option value="process">Plain processes</option>
        </select><//>
      <${Field} label="Monitoring API IP (optional)" name="monitoring_api_ip" errors=${errors}>
        <input name="monitoring_api_ip" value=${form.monitoring_api_ip} onInput=${set("monitoring_api_ip")} /><//>`,
    () => html`<dl class="review">
      <dt>Name</dt><dd>${form.name}</dd><dt>Address</dt><dd>${form.address}</dd><dt>OS</dt><dd>${form.os}</dd>
      <dt>SSH</dt><dd>${form.ssh_user}@${form.address}:${form.ssh_port} with a ${form.auth}</dd>
      <dt>Components</dt><dd>${form.components.join(", ") || "none"}</dd><dt>Runtime</dt><dd>${form.runtime}</dd>
    </dl>`,
  ];
  const last = step === STEPS.length - 1;
  return html`<section class="wizard">
    <h1>Add server</h1>
    <ol class="steps">${STEPS.map(([label], n) => html`<li class=${n === step ? "current" : ""}>
      <button class="link" onClick=${() => setStep(n)}>${n + 1}. ${label}</button></li>`)}</ol>
    <h2>Step ${step + 1} of ${STEPS.length}: ${STEPS[step][0]}</h2>
    <div class="step">${views[step]()}</div>
    <${ErrorMessage} error=${failure} />
    <div class="buttons">
      <button onClick=${() => go("#/")}>Cancel</button>
      <button disabled=${step === 0} onClick=${() => setStep(step - 1)}>Back</button>
      ${last ? html`<button class="primary" onClick=${submit}>Add server</button>`
             : html`<button class="primary" onClick=${() => setStep(step + 1)}>Next</button>`}
    </div>
  </section>`;
}
