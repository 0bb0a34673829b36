// Live progress of an install or update (step k of N, each step's output as it comes, the end state), and a
// diagnostics run (a task too) with each check's result as it comes, and its log.
import { api, download } from "../api.js";
import { ErrorMessage, StateBar, html, usePolling, when } from "../ui.js";

const FINISHED = ["succeeded", "failed", "rolled_back", "cancelled"];

async function loadTask(kind, id) {
  if (kind === "update") {
    const task = await api("GET", `/update-tasks/${id}`);
    return { task, steps: task.steps.map((s, n) => ({ position: n + 1, name: s.name, state: s.status, output: s.output,
      started_at: s.started_at, finished_at: s.finished_at })) };
  }
  const [task, log] = await Promise.all([api("GET", `/tasks/${id}`), api("GET", `/tasks/${id}/log`)]);
  return { task, steps: log.steps };
}

export function TaskProgress({ kind, id }) {
  const { data, error } = usePolling(async () => {
    const loaded = await loadTask(kind, id);
    return FINISHED.includes(loaded.task.state) ? { ...loaded, done: true } : loaded;
  }, 1, [kind, id]);
  if (!data) return html`<${ErrorMessage} error=${error} /><p class="loading">Loading…</p>`;
  const { task, steps } = data;
  const percent = task.step_count ? Math.round((100 * task.step_index) / task.step_count) : 0;
  const logPath = kind === "update" ? `/update-tasks/${id}/log` : null;
  return html`<section class="progress">
    <h1>${kind === "update" ? "Push update" : "Push install"}: <a href="#/servers/${task.server_id}">${task.server_name}</a></h1>
    <p class="task-state">State: <${StateBar} state=${task.state} /></p>
    <p class="step-of">Step ${task.step_index} of ${task.step_count}${task.current_step ? `: ${task.current_step}` : ""}</p>
    <progress max="100" value=${percent}></progress>
    ${task.error && html`<p class="error">${task.error}</p>`}
    ${task.outcome && html`<pre class="outcome">${JSON.stringify(task.outcome, null, 2)}</pre>`}
    <${ErrorMessage} error=${error} />
    <ol class="step-log">${steps.map((step) => html`<li data-step=${step.position}>
      <strong>${step.name}</strong> <${StateBar} state=${step.state} /> <small>${when(step.started_at)}</small>
      ${step.output && html`<pre>${step.output}</pre>`}</li>`)}</ol>
    ${logPath && html`<button onClick=${() => download(logPath, `update-${id}.log`)}>Download Log File</button>`}
  </section>`;
}

export function DiagnosticsRun({ serverId, runId }) {
  const { data: run, error } = usePolling(() => api("GET", `/servers/${serverId}/diagnostics/${runId}`), 1, [runId]);
  if (!run) return html`<${ErrorMessage} error=${error} /><p class="loading">Loading…</p>`;
  const done = FINISHED.includes(run.state);
  return html`<section class="diagnostics">
    <h1>Diagnostics: <a href="#/servers/${serverId}">${run.server_name}</a></h1>
    <p class="task-state">Result: <${StateBar} state=${run.state} /> ${done ? when(run.finished_at)
      : `check ${run.step_index} of ${run.step_count}${run.current_step ? `: ${run.current_step}` : ""}`}</p>
    ${run.error && html`<p class="error">${run.error}</p>`}
    <table class="list"><thead><tr><th>Check</th><th>Result</th><th>Message</th></tr></thead>
      <tbody>${run.checks.map((check) => html`<tr data-check=${check.name}><td>${check.name}</td>
        <td><${StateBar} state=${check.status} /></td><td>${check.message}</td></tr>`)}</tbody></table>
    ${done && html`<button class="primary" onClick=${() => download(`/servers/${serverId}/diagnostics/${runId}/log`,
      `diagnostics-${runId}.log`)}>Download Log File</button>`}
  </section>`;
}
