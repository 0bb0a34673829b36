// Small pieces every page uses. htm's Preact bundle escapes every text it renders: nothing here sets innerHTML.
import { html, useEffect, useRef, useState } from "/console/vendor/htm/standalone.module.js";

export { html, useEffect, useRef, useState };

export function useHash() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const changed = () => setHash(location.hash || "#/");
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

// Calls load() now and every `seconds` (0: once); the page shows the last answer and the last error.
export function usePolling(load, seconds, deps) {
  const [state, setState] = useState({ data: null, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    let timer = null;
    const run = async () => {
      try {
        const data = await load();
        if (live) setState({ data, error: null });
      } catch (error) {
        if (live) setState((last) => ({ data: last.data, error }));
      }
      if (live && seconds) timer = setTimeout(run, seconds * 1000);
    };
    run();
    return () => { live = false; clearTimeout(timer); };
  }, [...deps, tick]);
  return { ...state, refresh: () => setTick((n) => n + 1) };
}

export function ErrorMessage({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message}</p>`;
}

// A labelled input with the API's error for it (details.<name>) right beside it.
export function Field({ label, name, errors, children, hint }) {
  const messages = errors?.[name];
  const text = Array.isArray(messages) ? messages.join("; ") : messages && JSON.stringify(messages);
  return html`<label class="field ${text ? "invalid" : ""}">
    <span class="label">${label}</span>
    ${children}
    ${hint && html`<small>${hint}</small>`}
    ${text && html`<span class="field-error" data-field=${name}>${text}</span>`}
  </label>`;
}

export function Tabs({ tabs, current, base }) {
  return html`<nav class="tabs">${tabs.map(([key, label]) =>
    html`<a href="${base}/${key}" class=${key === current ? "current" : ""}>${label}</a>`)}</nav>`;
}

export function RequestsBar({ requests = 0, status }) {
  const cells = [1, 2, 3, 4, 5].map((n) => html`<i class=${n <= requests ? "on" : ""}></i>`);
  return html`<span class="requests ${status || "red"}" data-status=${status || "red"}
                    title="${requests} heartbeats in the last 2 minutes">${cells}</span>`;
}

export function StateBar({ state = "unknown" }) {
  return html`<span class="state ${state}" data-state=${state}>${state}</span>`;
}

export function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString() : "—";
}

export function go(hash) {
  location.hash = hash;
}
