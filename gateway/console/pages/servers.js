// Managed Servers: the fleet list with its live requests and state bars, and each row's actions.
import { api, can, query } from "../api.js";
import { ErrorMessage, RequestsBar, StateBar, go, html, usePolling, useState } from "../ui.js";
import { runAction } from "./actions.js";

const LIVE_SECONDS = 1; // polling with ETag: an unchanged page costs a 304 (docs/decisions.md: measured by make bench-console)

export function ServerList() {
  const [search, setSearch] = useState("");
  const [sort, setSort] = useState("name");
  const [perPage, setPerPage] = useState(25);
  const [pageNumber, setPage] = useState(1);
  const [menu, setMenu] = useState(null); // {server, x, y}
  const [actionError, setActionError] = useState(null);
  const path = `/servers${query({ search, sort, per_page: perPage, page: pageNumber })}`;
  const { data, error, refresh } = usePolling(() => api("GET", path, undefined, { poll: true }), LIVE_SECONDS, [path]);
  const pages = data ? Math.max(1, Math.ceil(data.total / data.per_page)) : 1;
  const openMenu = (event, server) => {
    if (!can.operate()) return;
    event.preventDefault();
    setMenu({ server, x: event.clientX, y: event.clientY });
  };
  const act = async (action, server) => {
    setMenu(null);
    setActionError(null);
    try {
      await runAction(action, server);
      refresh();
    } catch (failure) {
      setActionError(failure);
    }
  };
  return html`<section class="servers" onClick=${() => menu && setMenu(null)}>
    <h1>Managed Servers</h1>
    <div class="toolbar">
      <input type="search" placeholder="Search by name" aria-label="Search" value=${search}
             onInput=${(e) => { setSearch(e.target.value); setPage(1); }} />
      <button onClick=${refresh}>Refresh</button>
      ${can.operate() && html`<button class="primary" onClick=${() => go("#/servers/new")}>Add server</button>`}
    </div>
    <${ErrorMessage} error=${error || actionError} />
    <table class="list">
      <thead><tr>
        <th><button class="link sort" onClick=${() => setSort(sort === "name" ? "-name" : "name")}>
          Name ${sort === "name" ? "▲" : "▼"}</button></th>
        <th>Address</th><th>Requests</th><th>State</th><th>DNS</th><th>Monitor</th><th>DHCP</th>
        ${can.operate() && html`<th><span class="sr">Actions</span></th>`}
      </tr></thead>
      <tbody>${(data?.items || []).map((server) => html`
        <tr key=${server.id} data-server=${server.id} onContextMenu=${(e) => openMenu(e, server)}>
          <td><a href="#/servers/${server.id}">${server.name}</a></td>
          <td>${server.address}</td>
          <td><${RequestsBar} requests=${server.requests} status=${server.requests_status} /></td>
          <td><${StateBar} state=${server.state} /></td>
          <td>${server.versions?.dns || "—"}</td>
          <td>${server.versions?.monitor || "—"}</td>
          <td>${server.versions?.dhcp || "—"}</td>
          ${can.operate() && html`<td><button class="gear" aria-label="Actions for ${server.name}"
                                       onClick=${(e) => { e.stopPropagation(); openMenu(e, server); }}>⚙</button></td>`}
        </tr>`)}
      </tbody>
    </table>
    ${data && data.total === 0 && html`<p class="empty">No servers${search ? ` match “${search}”` : ""}.</p>`}
    <div class="paging">
      <label>Items per page <select value=${perPage} onChange=${(e) => { setPerPage(Number(e.target.value)); setPage(1); }}>
        ${[10, 25, 50, 100].map((n) => html`<option value=${n}>${n}</option>`)}
      </select></label>
      <button disabled=${pageNumber <= 1} onClick=${() => setPage(pageNumber - 1)}>Previous</button>
      <span class="page-of">Page ${pageNumber} of ${pages} (${data?.total ?? "…"} servers)</span>
      <button disabled=${pageNumber >= pages} onClick=${() => setPage(pageNumber + 1)}>Next</button>
    </div>
    ${menu && html`<${ActionMenu} ...${menu} onAction=${act} />`}
  </section>`;
}

const ACTIONS = [["push-install", "Push install"], ["push-update", "Push update"], ["diagnostics", "Diagnostics"],
  ["bundle", "Download setup bundle"], ["delete", "Delete"]];

function ActionMenu({ server, x, y, onAction }) {
  return html`<ul class="menu" role="menu" style=${{ left: `${x}px`, top: `${y}px` }}
                  onClick=${(e) => e.stopPropagation()}>
    ${ACTIONS.map(([action, label]) => html`<li role="menuitem">
      <button onClick=${() => onAction(action, server)}>${label}</button></li>`)}
  </ul>`;
}
