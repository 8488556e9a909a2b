// The Portico operator console: plain JavaScript over the admin API.
// Everything shown comes from the server as text (textContent, never
// innerHTML): payloads and errors are the providers' and callers' words.
"use strict";

const TOKEN_KEY = "portico-admin-token"; // sessionStorage: this tab only
const PAGE = 50;
const REPLAYABLE = ["failed", "dead"];

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let dlqQuery = null; // the filter the shown rows came from
let dlqCursor = null;
let dlqShown = 0;
let openEvent = null;
let openSeq = 0;
let dryRun = null; // the request the operator confirmed, as counted
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
    cache: "no-store",
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (r.status === 401) {
    throw new Refused(json && json.message ? json.message : "The admin token was refused.");
  }
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
    signOut(`Signed out: ${e.message}`);
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

// A date input's day, in the operator's own time zone, as an instant.
function dayStart(value) {
  return new Date(value + "T00:00").toISOString();
}
function dayEnd(value) {
  return new Date(new Date(value + "T00:00").getTime() + 86400000 - 1).toISOString();
}

// Signing in and out.

async function signIn(candidate) {
  token = candidate;
  try {
    await api("/api/admin/tenants");
  } catch (e) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    const el = $("sign-in-error");
    el.textContent = e instanceof Refused ? `That token was refused: ${e.message}` : e.message;
    el.hidden = false;
    $("sign-in").hidden = false;
    $("token").focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $("token").value = "";
  $("sign-in-error").hidden = true;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  show("plugins");
  $("tab-plugins").focus();
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

const views = { plugins: loadPlugins, dlq: () => loadDlq(false), deliveries: loadDeliveries, outbox: loadOutbox, tenants: loadTenants };

function show(view) {
  for (const tab of document.querySelectorAll(".tabs button")) {
    const on = tab.dataset.view === view;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    $(tab.dataset.view).hidden = !on;
  }
  clearInterval(pluginTimer);
  if (view === "plugins") pluginTimer = setInterval(() => loadPlugins().catch(failed), 5000);
  say("");
  views[view]().catch(failed);
}

// Plugins (refreshed every 5 s while shown).

async function health() {
  const r = await fetch("/api/health", { cache: "no-store" });
  if (!r.ok) throw new Error(`health answered ${r.status}`);
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

function filterNow() {
  const f = $("dlq-filter").elements;
  return {
    status: f.status.value,
    source: f.source.value,
    since: f.since.value ? dayStart(f.since.value) : "",
    until: f.until.value ? dayEnd(f.until.value) : "",
    order: f.order.value,
  };
}

async function loadDlq(more) {
  if (!more) {
    dlqQuery = filterNow();
    dlqCursor = null;
  }
  const q = new URLSearchParams({ status: dlqQuery.status, order: dlqQuery.order, limit: String(PAGE) });
  for (const k of ["source", "since", "until"]) if (dlqQuery[k]) q.set(k, dlqQuery[k]);
  if (more && dlqCursor) q.set(dlqQuery.order === "newest" ? "before" : "after", String(dlqCursor));
  const page = await api("/api/admin/dlq?" + q.toString());
  const body = $("dlq-table").tBodies[0];
  if (!more) {
    body.replaceChildren();
    dlqShown = 0;
  }
  for (const e of page.events) {
    const row = body.insertRow();
    row.dataset.id = e.id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "row-open";
    open.textContent = String(e.id);
    open.setAttribute("aria-label", `Open event ${e.id}`);
    open.addEventListener("click", () => openDetail(e.id).catch(failed));
    const first = document.createElement("td");
    first.appendChild(open);
    row.appendChild(first);
    cell(row, e.source);
    cell(row, e.item_kind || e.kind);
    cell(row, e.status, "st-" + e.status).dataset.role = "status";
    cell(row, e.attempts);
    cell(row, e.error ? (e.error.length > 160 ? e.error.slice(0, 160) + "…" : e.error) : "", "error-cell");
    cell(row, when(e.created_at));
  }
  dlqShown += page.events.length;
  dlqCursor = page.next_after || page.next_before || null;
  $("dlq-more").hidden = !dlqCursor;
  $("dlq-count").textContent = dlqShown === 0 ? "No events match." : `${dlqShown} shown${dlqCursor ? ", more to load" : ""}.`;
  // Only failed and dead events can be replayed as a filter.
  const statuses = dlqQuery.status.split(",");
  $("replay-filter").disabled = !statuses.every((s) => REPLAYABLE.includes(s));
}

async function openDetail(id) {
  const seq = ++openSeq;
  const e = await api("/api/admin/dlq/" + encodeURIComponent(id));
  if (seq !== openSeq) return; // a later one was asked for
  for (const r of document.querySelectorAll("#dlq-table tr.selected")) r.classList.remove("selected");
  const row = document.querySelector(`#dlq-table tr[data-id="${Number(e.id)}"]`);
  if (row) {
    row.classList.add("selected");
    const status = row.querySelector('[data-role="status"]');
    if (status) {
      status.textContent = e.status;
      status.className = "st-" + e.status;
      // The row shows the event as it is now (its error too).
      status.nextElementSibling.textContent = e.attempts;
      status.nextElementSibling.nextElementSibling.textContent = e.error || "";
    }
  }
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
  $("event-payload").textContent = e.payload_pretty !== undefined ? e.payload_pretty : e.payload_text || "";
  $("event").hidden = false;
  $("event-title").focus();
}

// What one replayed event came to, in words.
function outcomeText(o) {
  if (!o) return "no outcome";
  if (o.kind === "skipped") return `skipped: ${o.reason}`;
  if (o.kind === "delivery") {
    const items = (o.items || []).map((i) => `${i.dedup_key}: ${i.status}${i.error ? " — " + i.error : ""}`);
    return `delivery ${o.status || ""}${items.length ? " (" + items.join("; ") + ")" : ""}`;
  }
  return `${o.status}${o.error ? " — " + o.error : ""}`;
}

async function replayOne() {
  if (!openEvent) return;
  const button = $("replay-one");
  button.disabled = true;
  $("replay-result").textContent = "Replaying…";
  try {
    const r = await api(`/api/admin/dlq/${openEvent.id}/replay`, { method: "POST" });
    const text = r.succeeded ? `Replayed: ${outcomeText(r.outcome)}.` : `The replay did not succeed: ${outcomeText(r.outcome)}`;
    await openDetail(openEvent.id);
    $("replay-result").textContent = text;
  } catch (e) {
    $("replay-result").textContent = "";
    failed(e);
  } finally {
    button.disabled = false;
  }
}

async function replayDryRun() {
  const q = dlqQuery || filterNow();
  const body = { status: q.status.split(",").filter((s) => REPLAYABLE.includes(s)) };
  if (q.source) body.source = q.source;
  if (q.since) body.since = q.since;
  // What exists now: events failing after the count are not replayed unseen.
  body.until = q.until || new Date().toISOString();
  const counted = await api("/api/admin/dlq/replay", { method: "POST", body: Object.assign({ dry_run: true }, body) });
  dryRun = Object.assign(body, { limit: counted.matched });
  $("replay-confirm-text").textContent = counted.matched === 0
    ? "No failed or dead event matches this filter: nothing to replay."
    : `${counted.matched} event(s) match (status ${body.status.join(", ")}${body.source ? ", source " + body.source : ""}). Replay them?`;
  $("replay-filter-go").hidden = counted.matched === 0;
  $("replay-confirm").hidden = false;
  $("replay-filter-cancel").focus();
}

async function replayGo() {
  if (!dryRun) return;
  const body = dryRun;
  dryRun = null;
  $("replay-confirm").hidden = true;
  for (const b of ["replay-filter", "replay-filter-go"]) $(b).disabled = true;
  say("Replaying…");
  try {
    const r = await api("/api/admin/dlq/replay", { method: "POST", body });
    say(`Replayed ${r.matched}: ${r.succeeded} succeeded, ${r.failed} still failing.`);
    const list = $("replay-report-list");
    list.replaceChildren();
    for (const o of r.outcomes || []) {
      const li = document.createElement("li");
      li.textContent = `Event ${o.event_id}: ${outcomeText(o)}`;
      list.appendChild(li);
    }
    $("replay-report-title").textContent = `Replay of ${r.matched} event(s)`;
    $("replay-report").hidden = false;
    $("replay-report-title").focus();
    await loadDlq(false);
  } finally {
    for (const b of ["replay-filter", "replay-filter-go"]) $(b).disabled = false;
  }
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
  if (o.error) {
    $("outbox-totals").textContent = "";
    say(o.error, true);
    return;
  }
  for (const k of o.kinds || []) {
    const row = body.insertRow();
    cell(row, k.plugin);
    cell(row, k.kind);
    cell(row, k.pending);
    cell(row, k.oldest_pending_age_seconds === null || k.oldest_pending_age_seconds === undefined ? "" : `${Math.round(k.oldest_pending_age_seconds)} s ago`);
    cell(row, k.stopped || "", k.stopped ? "error-cell st-failed" : "");
  }
  if ((o.kinds || []).length === 0) say("No loaded plugin declares an outbox.");
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
const tabs = [...document.querySelectorAll(".tabs button")];
for (const tab of tabs) {
  tab.addEventListener("click", () => show(tab.dataset.view));
  tab.addEventListener("keydown", (ev) => {
    const at = tabs.indexOf(tab);
    const to = {
      ArrowRight: (at + 1) % tabs.length,
      ArrowLeft: (at - 1 + tabs.length) % tabs.length,
      Home: 0,
      End: tabs.length - 1,
    }[ev.key];
    if (to !== undefined) {
      ev.preventDefault();
      tabs[to].focus();
      show(tabs[to].dataset.view);
    }
  });
}
$("dlq-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  $("event").hidden = true;
  loadDlq(false).catch(failed);
});
// A changed filter no longer matches what was counted or shown.
$("dlq-filter").addEventListener("change", () => {
  $("replay-confirm").hidden = true;
  dryRun = null;
});
$("dlq-more").addEventListener("click", () => loadDlq(true).catch(failed));
$("replay-one").addEventListener("click", () => replayOne());
$("replay-filter").addEventListener("click", () => replayDryRun().catch(failed));
$("replay-filter-go").addEventListener("click", () => replayGo().catch(failed));
$("replay-filter-cancel").addEventListener("click", () => {
  $("replay-confirm").hidden = true;
  dryRun = null;
});
$("add-tenant").addEventListener("submit", (ev) => addTenant(ev).catch(failed));
$("add-source").addEventListener("submit", (ev) => addSource(ev).catch(failed));

if (token) {
  $("sign-in").hidden = true;
  signIn(token);
} else {
  $("token").focus();
}
