// The Portico operator console: plain JavaScript over the admin API.
// Everything shown comes from the server as text (textContent, never
// innerHTML): payloads and errors are the providers' and callers' words.
"use strict";

const TOKEN_KEY = "portico-admin-token"; // sessionStorage: this tab only
const PAGE = 50;

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let dlqCursor = null;
let dlqShown = 0;
let openEvent = null;
let pluginTimer = null;

class Refused extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (r.status === 401) throw new Refused("The admin token was refused: check PORTICO_ADMIN_TOKEN and sign in again.");
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    const why = json && json.message ? json.message : text || r.statusText;
    throw new Error(`${r.status}: ${why}`);
  }
  return json;
}

function say(message, isError) {
  const el = $("status");
  el.textContent = message || "";
  el.classList.toggle("error", !!isError);
}

function failed(e) {
  if (e instanceof Refused) {
    signOut(e.message);
  } else {
    say(e.message || String(e), true);
  }
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

// Signing in and out.

async function signIn(candidate) {
  token = candidate;
  try {
    await api("/api/admin/tenants");
  } catch (e) {
    token = null;
    const el = $("sign-in-error");
    el.textContent = e instanceof Refused ? "That token was refused: it is not this server's PORTICO_ADMIN_TOKEN." : e.message;
    el.hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $("sign-in-error").hidden = true;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  show("plugins");
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(pluginTimer);
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  const el = $("sign-in-error");
  el.hidden = !message;
  el.textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

// Tabs.

const views = { plugins: loadPlugins, dlq: loadDlq, deliveries: loadDeliveries, outbox: loadOutbox, tenants: loadTenants };

function show(view) {
  for (const tab of document.querySelectorAll(".tabs button")) {
    const on = tab.dataset.view === view;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    $(tab.dataset.view).hidden = !on;
  }
  clearInterval(pluginTimer);
  if (view === "plugins") pluginTimer = setInterval(loadPlugins, 5000);
  say("");
  views[view]().catch(failed);
}

// Plugins (refreshed every 5 s while shown).

async function health() {
  const r = await fetch("/api/health");
  return r.json();
}

async function loadPlugins() {
  const h = await health();
  const body = $("plugins-table").tBodies[0];
  body.replaceChildren();
  const sources = $("dlq-filter").elements.source;
  const known = new Set([...sources.options].map((o) => o.value));
  for (const p of h.plugins || []) {
    const row = body.insertRow();
    cell(row, p.name);
    cell(row, p.state, "state-" + p.state);
    cell(row, p.version);
    const sha = cell(row, p.sha256 ? p.sha256.slice(0, 12) : "");
    if (p.sha256) sha.title = p.sha256;
    cell(row, (p.routes || []).join("\n")).style.whiteSpace = "pre-line";
    cell(row, p.reloads);
    cell(row, p.error ? `${p.error}${p.error_at ? " (" + when(p.error_at) + ")" : ""}` : "", "error-cell");
    if (!known.has(p.name)) {
      sources.add(new Option(p.name, p.name));
      known.add(p.name);
    }
  }
  $("plugins-updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// Dead letters: paged by the API (a cursor), never filtered in the page.

function dlqQuery() {
  const f = $("dlq-filter").elements;
  const q = new URLSearchParams({ status: f.status.value, limit: String(PAGE) });
  if (f.source.value) q.set("source", f.source.value);
  if (f.since.value) q.set("since", f.since.value);
  if (f.until.value) q.set("until", f.until.value + "T23:59:59Z");
  return q;
}

async function loadDlq(more) {
  const q = dlqQuery();
  if (more && dlqCursor) q.set("after", String(dlqCursor));
  const page = await api("/api/admin/dlq?" + q.toString());
  const body = $("dlq-table").tBodies[0];
  if (!more) {
    body.replaceChildren();
    dlqShown = 0;
  }
  for (const e of page.events) {
    const row = body.insertRow();
    row.className = "clickable";
    row.tabIndex = 0;
    row.dataset.id = e.id;
    cell(row, e.id);
    cell(row, e.source);
    cell(row, e.item_kind || e.kind);
    cell(row, e.status, "st-" + e.status);
    cell(row, e.attempts);
    cell(row, e.error ? (e.error.length > 160 ? e.error.slice(0, 160) + "…" : e.error) : "", "error-cell");
    cell(row, when(e.created_at));
    row.addEventListener("click", () => openDetail(e.id, row));
    row.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        openDetail(e.id, row);
      }
    });
  }
  dlqShown += page.events.length;
  dlqCursor = page.next_after || null;
  $("dlq-more").hidden = !dlqCursor;
  $("dlq-count").textContent = dlqShown === 0 ? "No events match." : `${dlqShown} shown${dlqCursor ? ", more to load" : ""}.`;
}

async function openDetail(id, row) {
  for (const r of document.querySelectorAll("#dlq-table tr.selected")) r.classList.remove("selected");
  if (row) row.classList.add("selected");
  const e = await api("/api/admin/dlq/" + encodeURIComponent(id));
  openEvent = e;
  $("event-title").textContent = `Event ${e.id}`;
  const facts = $("event-facts");
  facts.replaceChildren();
  const fact = (name, value) => {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    facts.append(dt, dd);
  };
  fact("Status", e.status);
  fact("Source", e.source);
  fact("Item", e.item_kind || e.kind);
  fact("Dedup key", e.dedup_key);
  fact("Error", e.error);
  fact("Attempts", e.attempts);
  fact("Next attempt", when(e.next_attempt_at));
  fact("Correlation id", e.correlation_id);
  fact("Delivery", e.parent_id);
  fact("Created", when(e.created_at));
  fact("Updated", when(e.updated_at));
  $("event-headers").textContent = JSON.stringify(e.headers || {}, null, 2);
  $("event-payload").textContent = e.payload_json !== undefined ? JSON.stringify(e.payload_json, null, 2) : e.payload_text || "";
  $("replay-result").textContent = "";
  $("event").hidden = false;
  $("replay-one").focus();
}

async function replayOne() {
  if (!openEvent) return;
  const button = $("replay-one");
  button.disabled = true;
  $("replay-result").textContent = "Replaying…";
  try {
    const r = await api(`/api/admin/dlq/${openEvent.id}/replay`, { method: "POST" });
    const o = r.outcome || {};
    const status = o.status || (o.kind === "skipped" ? "skipped" : "");
    $("replay-result").textContent = r.succeeded
      ? `Replayed: ${status || "done"}.`
      : `The replay did not succeed: ${status}${o.error || o.reason ? " — " + (o.error || o.reason) : ""}`;
    await openDetail(openEvent.id, document.querySelector(`#dlq-table tr[data-id="${openEvent.id}"]`));
    $("replay-result").textContent = r.succeeded ? `Replayed: ${status || "done"}.` : $("replay-result").textContent;
  } catch (e) {
    failed(e);
  } finally {
    button.disabled = false;
  }
}

function replayFilter() {
  const f = $("dlq-filter").elements;
  const body = { status: f.status.value.split(",").filter((s) => ["failed", "dead", "received"].includes(s)) };
  if (body.status.length === 0) body.status = ["failed"];
  if (f.source.value) body.source = f.source.value;
  if (f.since.value) body.since = f.since.value;
  if (f.until.value) body.until = f.until.value + "T23:59:59Z";
  return body;
}

async function replayDryRun() {
  const body = Object.assign(replayFilter(), { dry_run: true });
  const r = await api("/api/admin/dlq/replay", { method: "POST", body });
  $("replay-confirm-text").textContent = r.matched === 0
    ? "No failed or dead event matches this filter: nothing to replay."
    : `${r.matched} event(s) match (status ${body.status.join(", ")}${body.source ? ", source " + body.source : ""}). Replay them?`;
  $("replay-filter-go").hidden = r.matched === 0;
  $("replay-confirm").hidden = false;
  (r.matched === 0 ? $("replay-filter-cancel") : $("replay-filter-go")).focus();
}

async function replayGo() {
  $("replay-confirm").hidden = true;
  say("Replaying…");
  const r = await api("/api/admin/dlq/replay", { method: "POST", body: replayFilter() });
  say(`Replayed ${r.matched}: ${r.succeeded} succeeded, ${r.failed} still failing.`);
  await loadDlq(false);
}

// Deliveries, outbox, tenants.

async function loadDeliveries() {
  const page = await api("/api/admin/deliveries?limit=50");
  const body = $("deliveries-table").tBodies[0];
  body.replaceChildren();
  for (const d of page.deliveries) {
    const row = body.insertRow();
    cell(row, d.id);
    cell(row, d.source);
    cell(row, d.status, "st-" + d.status);
    cell(row, d.correlation_id);
    cell(row, when(d.created_at));
  }
  if (page.deliveries.length === 0) say("No deliveries yet.");
}

async function loadOutbox() {
  const h = await health();
  const body = $("outbox-table").tBodies[0];
  body.replaceChildren();
  const o = h.outbox || {};
  for (const k of o.kinds || []) {
    const row = body.insertRow();
    cell(row, k.plugin);
    cell(row, k.kind);
    cell(row, k.pending);
    cell(row, k.oldest_pending_age_seconds === null || k.oldest_pending_age_seconds === undefined ? "" : `${Math.round(k.oldest_pending_age_seconds)} s ago`);
    cell(row, k.stopped || "", k.stopped ? "error-cell st-failed" : "");
  }
  $("outbox-totals").textContent = `Delivered ${o.delivered || 0}, failed ${o.failed || 0} since this process started.${o.last_error ? " Last error: " + o.last_error : ""}`;
}

async function loadTenants() {
  const [tenants, sources] = await Promise.all([api("/api/admin/tenants"), api("/api/admin/lead-sources")]);
  const body = $("tenants-table").tBodies[0];
  body.replaceChildren();
  for (const t of tenants.tenants) {
    const row = body.insertRow();
    cell(row, t.id);
    cell(row, t.name);
    const mine = (sources.sources || []).filter((s) => s.tenant_id === t.id);
    cell(row, mine.map((s) => `${s.kind}: ${s.external_key}${s.secrets && s.secrets.length ? " (secrets: " + s.secrets.join(", ") + ")" : ""}`).join("\n")).style.whiteSpace = "pre-line";
  }
}

async function addTenant(ev) {
  ev.preventDefault();
  const name = $("tenant-name").value.trim();
  const t = await api("/api/admin/tenants", { method: "POST", body: { name } });
  say(`Tenant ${t.id} (${t.name}) added.`);
  $("tenant-name").value = "";
  $("source-tenant").value = t.id;
  await loadTenants();
}

async function addSource(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  const body = { tenant_id: Number(f.tenant_id.value), kind: f.kind.value.trim(), external_key: f.key.value.trim() };
  await api("/api/admin/lead-sources", { method: "POST", body });
  say(`Source ${body.kind} ${body.external_key} added to tenant ${body.tenant_id}.`);
  f.key.value = "";
  await loadTenants();
}

// Wiring.

$("sign-in-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", () => signOut(""));
for (const tab of document.querySelectorAll(".tabs button")) {
  tab.addEventListener("click", () => show(tab.dataset.view));
  tab.addEventListener("keydown", (ev) => {
    const tabs = [...document.querySelectorAll(".tabs button")];
    const at = tabs.indexOf(tab);
    const next = ev.key === "ArrowRight" ? tabs[(at + 1) % tabs.length] : ev.key === "ArrowLeft" ? tabs[(at - 1 + tabs.length) % tabs.length] : null;
    if (next) {
      ev.preventDefault();
      next.focus();
      show(next.dataset.view);
    }
  });
}
$("dlq-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  $("event").hidden = true;
  loadDlq(false).catch(failed);
});
$("dlq-more").addEventListener("click", () => loadDlq(true).catch(failed));
$("replay-one").addEventListener("click", () => replayOne());
$("replay-filter").addEventListener("click", () => replayDryRun().catch(failed));
$("replay-filter-go").addEventListener("click", () => replayGo().catch(failed));
$("replay-filter-cancel").addEventListener("click", () => { $("replay-confirm").hidden = true; });
$("add-tenant").addEventListener("submit", (ev) => addTenant(ev).catch(failed));
$("add-source").addEventListener("submit", (ev) => addSource(ev).catch(failed));

if (token) {
  signIn(token);
} else {
  $("token").focus();
}
