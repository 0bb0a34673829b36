// The console's shell: sign-in, the menu, the health banner and the page for the location's #route.
import { can, onSignedOut, session, signIn, signOut, whoAmI } from "./api.js";
import { ErrorMessage, Field, html, useEffect, useHash, usePolling, useState } from "./ui.js";
import { render } from "/console/vendor/htm/standalone.module.js";
import { ServerList } from "./pages/servers.js";
import { AddServer } from "./pages/wizard.js";
import { ServerDetails } from "./pages/server.js";
import { TaskProgress, DiagnosticsRun } from "./pages/tasks.js";
import { AdminSettings } from "./pages/settings.js";
import { Users, Rollouts } from "./pages/admin.js";
import { Notifications } from "./pages/notifications.js";
import { ChangePassword } from "./pages/account.js";

const ROUTES = [
  [/^#\/(servers)?$/, () => html`<${ServerList} />`],
  [/^#\/servers\/new$/, () => html`<${AddServer} />`],
  [/^#\/servers\/(\d+)(?:\/(\w+))?$/, (id, tab) => html`<${ServerDetails} id=${Number(id)} tab=${tab || "settings"} />`],
  [/^#\/tasks\/(install|update)\/([0-9a-f]{32})$/, (kind, id) => html`<${TaskProgress} kind=${kind} id=${id} />`],
  [/^#\/servers\/(\d+)\/diagnostics\/([0-9a-f]{32})$/, (server, run) =>
    html`<${DiagnosticsRun} serverId=${Number(server)} runId=${run} />`],
  [/^#\/settings$/, () => html`<${AdminSettings} />`],
  [/^#\/users$/, () => html`<${Users} />`],
  [/^#\/notifications$/, () => html`<${Notifications} />`],
  [/^#\/rollouts$/, () => html`<${Rollouts} />`],
  [/^#\/password$/, () => html`<${ChangePassword} />`],
];

function page(hash) {
  for (const [pattern, view] of ROUTES) {
    const match = hash.match(pattern);
    if (match) return view(...match.slice(1));
  }
  return html`<p class="error">No such page: ${hash}</p>`;
}

function SignIn({ onSignedIn }) {
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      onSignedIn(await signIn(form.get("name"), form.get("password")));
    } catch (failure) {
      setError(failure);
    }
  };
  return html`<form class="signin" onSubmit=${submit}>
    <h1>Steward</h1>
    <${Field} label="User name" name="name"><input name="name" autocomplete="username" required autofocus /><//>
    <${Field} label="Password" name="password">
      <input name="password" type="password" autocomplete="current-password" required />
    <//>
    <${ErrorMessage} error=${error} />
    <button type="submit">Sign in</button>
  </form>`;
}

// A service that does not answer is named here; the rest of the page keeps working.
function HealthBanner() {
  const { data } = usePolling(async () => {
    const response = await fetch("/healthz", { cache: "no-store" });
    return response.json();
  }, 20, []);
  if (!data || data.status === "ok") return null;
  const down = Object.entries(data.services || {}).filter(([, s]) => !s.reachable).map(([name]) => name);
  if (!data.broker?.reachable) down.unshift("RabbitMQ");
  return html`<p class="banner" role="status">Not answering now: ${down.join(", ") || "—"}
    ${(data.problems || []).map((problem) => html`<br />${problem}`)}</p>`;
}

function Shell({ user, hash }) {
  const menu = [["#/", "Managed Servers"], ["#/rollouts", "Rollouts"], ["#/notifications", "Notifications"],
    ["#/users", can.administer() ? "Users and tokens" : "API tokens"]];
  if (can.administer()) menu.push(["#/settings", "Settings"]);
  return html`<header>
      <a class="brand" href="#/">Steward</a>
      <nav>${menu.map(([href, label]) => html`<a href=${href} class=${hash === href ? "current" : ""}>${label}</a>`)}</nav>
      <a class="who" href="#/password" title="Change your password">${user.name} (${user.role})</a>
      <button class="link" onClick=${() => signOut().finally(() => location.reload())}>Sign out</button>
    </header>
    <${HealthBanner} />
    <main>${page(hash)}</main>`;
}

function App() {
  const [user, setUser] = useState(undefined); // undefined: still asking; null: signed out
  const hash = useHash();
  useEffect(() => {
    whoAmI().then(setUser, () => setUser(null));
    return onSignedOut(() => setUser(null)); // an expired session: sign in again, on the same #route
  }, []);
  if (user === undefined) return html`<p class="loading">Loading…</p>`;
  if (!user) return html`<${SignIn} onSignedIn=${setUser} />`;
  return html`<${Shell} user=${session.user || user} hash=${hash} />`;
}

render(html`<${App} />`, document.getElementById("app"));
