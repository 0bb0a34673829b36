// The per-server actions, shared by the list's menu and the details page: each answers with where to look next.
import { api, download } from "../api.js";
import { go } from "../ui.js";

export async function runAction(action, server) {
  if (action === "push-install") {
    const task = await api("POST", `/servers/${server.id}/actions/push-install`, {});
    go(`#/tasks/install/${task.id}`);
  } else if (action === "push-update") {
    const task = await api("POST", `/servers/${server.id}/actions/push-update`, {});
    go(`#/tasks/update/${task.task_id}`);
  } else if (action === "diagnostics") {
    const run = await api("POST", `/servers/${server.id}/actions/diagnostics`);
    go(`#/servers/${server.id}/diagnostics/${run.id}`);
  } else if (action === "bundle") {
    await download(`/servers/${server.id}/bundle`, `setup-${server.id}.tar`);
  } else if (action === "delete") {
    if (!confirm(`Delete ${server.name}? Steward first removes what it installed there.`)) return;
    await api("DELETE", `/servers/${server.id}`);
    go("#/");
  }
}
