// Aegis console: plain JavaScript against the backend's own API, no build step, no framework.
//
// Security rules this file keeps:
// * data from the API only ever reaches the page through textContent / text nodes, never
//   through innerHTML or attribute-built markup (the CSP forbids inline script anyway);
// * the access token lives in a variable of this closure only; the refresh token in
//   sessionStorage (gone when the tab closes); a 401 triggers at most one refresh, then the
//   request is retried once, else the user signs in again.
"use strict";

(() => {
  const REFRESH_KEY = "aegis.refresh_token";
  const PAGE_SIZE = 50;
  const APPROVER_ROLES = new Set(["approver", "admin"]);
  const ACTION_STATES = new Set([
    "pending_approval",
    "approved",
    "running",
    "succeeded",
    "failed",
    "unknown",
    "refused",
    "denied",
    "rejected",
    "expired",
  ]);
  const SEVERITIES = new Set(["critical", "error", "warning", "info", "none"]);
  const EFFECTS = new Set(["allow", "deny", "require_approval"]);
  const FLAG_STATES = new Set(["open", "confirmed", "dismissed"]);

  let accessToken = null; // never persisted
  let refreshing = null; // the one refresh in flight, shared by concurrent 401s
  let me = null; // {name, roles, kind} from /api/v1/auth/me
  let generation = 0; // bumped at sign-out: answers to an earlier session are dropped
  const loaded = new Set(); // tabs whose content has been fetched since sign-in
  const cursors = { incidents: null, actions: null, audit: null, safety: null };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers (text only) ---------------------------------------------------------------

  function el(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    if (options.className) node.className = options.className;
    if (options.text !== undefined && options.text !== null) {
      node.textContent = String(options.text);
    }
    for (const [name, value] of Object.entries(options.attrs || {})) {
      node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child); // strings become text nodes
    }
    return node;
  }

  function clear(node) {
    node.replaceChildren();
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function fmtTime(value) {
    if (!value) return "—";
    // The backend stores UTC; a timestamp without a zone (SQLite drops it) is UTC too.
    const text = String(value);
    const date = new Date(/(?:[zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`);
    if (Number.isNaN(date.getTime())) return text;
    return date.toISOString().replace("T", " ").replace(/(?:\.\d+)?Z$/, " UTC");
  }

  function asText(value) {
    if (value === null || value === undefined || value === "") return "—";
    if (Array.isArray(value)) return value.map(asText).join(", ");
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function badge(kind, value, allowed) {
    const text = asText(value);
    const known = allowed.has(String(value)) ? String(value) : "other";
    return el("span", { className: `badge ${kind}-${known}`, text });
  }

  // ---- messages ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, requestId) {
      super(message);
      this.status = status;
      this.code = code;
      this.requestId = requestId;
    }

    describe() {
      const parts = [this.code];
      if (this.status) parts.push(`HTTP ${this.status}`);
      if (this.requestId) parts.push(`request id ${this.requestId}`);
      return `${this.message} (${parts.join(", ")})`;
    }
  }

  function describe(error) {
    return error instanceof ApiError ? error.describe() : `Unexpected error: ${error.message}`;
  }

  function say(node, text, tone = "info") {
    node.textContent = text;
    node.className = `message ${tone}`;
    show(node, true);
  }

  function silence(node) {
    node.textContent = "";
    show(node, false);
  }

  function banner(text) {
    $("banner-text").textContent = text;
    show($("banner"), true);
  }

  // ---- API -----------------------------------------------------------------------------------

  async function send(method, path, body, token) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      return await fetch(path, init);
    } catch {
      throw new ApiError(0, "network_error", "Cannot reach the Aegis backend.", "");
    }
  }

  async function errorFrom(response) {
    let code = `http_${response.status}`;
    let message = response.statusText || "Request failed.";
    let requestId = response.headers.get("x-request-id") || "";
    try {
      const body = await response.json();
      if (body && typeof body.error === "object" && body.error !== null) {
        if (body.error.code) code = String(body.error.code);
        if (body.error.message) message = String(body.error.message);
        if (body.error.request_id) requestId = String(body.error.request_id);
      }
    } catch {
      // not JSON: keep the status line
    }
    return new ApiError(response.status, code, message, requestId);
  }

  function keepTokens(pair) {
    accessToken = pair.access_token;
    sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  }

  function dropTokens() {
    accessToken = null;
    sessionStorage.removeItem(REFRESH_KEY);
  }

  function refreshOnce() {
    if (refreshing === null) {
      refreshing = (async () => {
        const token = sessionStorage.getItem(REFRESH_KEY);
        if (!token) return false;
        const response = await send("POST", "/api/v1/auth/refresh", { refresh_token: token });
        if (!response.ok) {
          dropTokens();
          return false;
        }
        keepTokens(await response.json());
        return true;
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  async function api(method, path, body) {
    const asked = generation;
    let response = await send(method, path, body, accessToken);
    if (response.status === 401 && sessionStorage.getItem(REFRESH_KEY)) {
      if (await refreshOnce()) response = await send(method, path, body, accessToken);
    }
    if (asked !== generation) return new Promise(() => {}); // signed out meanwhile: never render
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401) {
        signedOut(`Your session has ended: ${error.describe()}`);
        return new Promise(() => {}); // the sign-in form says why; nothing else renders
      }
      throw error;
    }
    if (response.status === 204) return null;
    return response.json();
  }

  function itemsOf(body, ...keys) {
    if (Array.isArray(body)) return body;
    for (const key of ["items", ...keys]) {
      if (body && Array.isArray(body[key])) return body[key];
    }
    return [];
  }

  // ---- sign in / out -------------------------------------------------------------------------

  function hasRole(roles) {
    return Boolean(me) && me.roles.some((role) => roles.has(role));
  }

  async function enter() {
    me = await api("GET", "/api/v1/auth/me");
    $("whoami").textContent = `${me.name} · ${me.roles.join(", ") || "no roles"}`;
    show($("session"), true);
    show($("login-view"), false);
    show($("app-view"), true);
    selectTab("incidents", false);
  }

  // Forget everything the previous user was shown: the next user starts from empty tabs.
  function resetViews() {
    for (const id of ["incidents-body", "detail-fields", "detail-alerts", "actions-body",
      "safety-body", "policies-body", "audit-body"]) {
      clear($(id));
    }
    for (const id of ["incidents-table", "incident-detail", "incidents-more", "actions-table",
      "actions-more", "safety-table", "safety-more", "policies-table", "policies-digest",
      "audit-table", "audit-more"]) {
      show($(id), false);
    }
    for (const id of ["incidents-message", "actions-message", "safety-message",
      "policies-message", "audit-message"]) {
      silence($(id));
    }
    $("incidents-split").classList.remove("with-detail");
    $("whoami").textContent = "";
    cursors.incidents = null;
    cursors.audit = null;
    loaded.clear();
  }

  function signedOut(message) {
    generation += 1;
    dropTokens();
    me = null;
    resetViews();
    show($("session"), false);
    show($("app-view"), false);
    show($("login-view"), true);
    $("login-submit").disabled = false;
    if (message) {
      const box = $("login-error");
      box.textContent = message;
      show(box, true);
    }
    $("login-username").focus();
  }

  async function onLogin(event) {
    event.preventDefault();
    const box = $("login-error");
    silence(box);
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    if (!username || !password) {
      box.textContent = "Enter your username and password.";
      show(box, true);
      return;
    }
    const submit = $("login-submit");
    submit.disabled = true;
    try {
      const response = await send("POST", "/api/v1/auth/login", { username, password });
      if (!response.ok) throw await errorFrom(response);
      keepTokens(await response.json());
      $("login-password").value = "";
      await enter();
    } catch (error) {
      box.textContent = describe(error);
      show(box, true);
    } finally {
      submit.disabled = false;
    }
  }

  async function onLogout() {
    try {
      // Ends the session server-side: its access and refresh tokens stop working at once. An
      // access token that has expired meanwhile is refreshed first, or the session would live on.
      const response = accessToken
        ? await send("POST", "/api/v1/auth/logout", undefined, accessToken)
        : null;
      if ((response === null || response.status === 401) && (await refreshOnce())) {
        await send("POST", "/api/v1/auth/logout", undefined, accessToken);
      }
    } catch {
      // unreachable backend: the tokens are still forgotten here
    } finally {
      signedOut("");
    }
  }

  // ---- tabs ----------------------------------------------------------------------------------

  const TABS = ["incidents", "actions", "policies", "safety", "audit"];
  const LOADERS = {
    incidents: () => loadIncidents(true),
    actions: () => loadActions(),
    safety: () => loadFlags(),
    policies: () => loadPolicies(),
    audit: () => loadAudit(true),
  };

  function selectTab(name, focus) {
    for (const tab of TABS) {
      const active = tab === name;
      const button = $(`tab-${tab}`);
      button.setAttribute("aria-selected", String(active));
      button.tabIndex = active ? 0 : -1;
      show($(`panel-${tab}`), active);
      if (active && focus) button.focus();
    }
    if (!loaded.has(name)) {
      loaded.add(name);
      LOADERS[name]();
    }
  }

  function onTabKey(event) {
    const index = TABS.indexOf(event.currentTarget.id.replace("tab-", ""));
    let next = null;
    if (event.key === "ArrowRight") next = (index + 1) % TABS.length;
    else if (event.key === "ArrowLeft") next = (index - 1 + TABS.length) % TABS.length;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = TABS.length - 1;
    if (next === null) return;
    event.preventDefault();
    selectTab(TABS[next], true);
  }

  // ---- incidents -----------------------------------------------------------------------------

  async function loadIncidents(reset) {
    const message = $("incidents-message");
    const body = $("incidents-body");
    if (reset) {
      cursors.incidents = null;
      clear(body);
    }
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const status = $("incident-status").value;
    if (status) params.set("status", status);
    if (cursors.incidents) params.set("cursor", String(cursors.incidents));
    say(message, "Loading incidents…");
    try {
      const page = await api("GET", `/api/v1/incidents?${params}`);
      for (const incident of itemsOf(page)) body.append(incidentRow(incident));
      cursors.incidents = page.next_cursor ?? null;
      show($("incidents-more"), cursors.incidents !== null);
      show($("incidents-table"), body.childElementCount > 0);
      if (body.childElementCount === 0) say(message, "No incidents.");
      else silence(message);
    } catch (error) {
      say(message, describe(error), "error");
    }
  }

  function incidentRow(incident) {
    const open = el("button", {
      className: "link",
      text: incident.title || `Incident ${incident.id}`,
      attrs: { type: "button", "aria-label": `Open incident ${incident.id}: ${incident.title}` },
    });
    open.addEventListener("click", (event) => {
      event.stopPropagation();
      openIncident(incident.id);
    });
    const row = el(
      "tr",
      { className: "clickable", attrs: { "data-incident-id": incident.id } },
      el("td", { className: "nowrap", text: incident.id }),
      el("td", { className: "wrap" }, open),
      el("td", {}, badge("status", incident.status, new Set(["open", "resolved"]))),
      el("td", {}, badge("sev", incident.severity, SEVERITIES)),
      el("td", {
        className: "wrap",
        text: `${incident.namespace || "—"}/${incident.workload || "—"}`,
      }),
      el("td", { className: "optional nowrap", text: asText(incident.prediction_status) }),
      el("td", { text: fmtTime(incident.created_at) }),
    );
    row.addEventListener("click", () => openIncident(incident.id));
    return row;
  }

  async function openIncident(id) {
    const detail = $("incident-detail");
    const message = $("incidents-message");
    for (const row of $("incidents-body").children) {
      row.classList.toggle("selected", row.dataset.incidentId === String(id));
    }
    try {
      const incident = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
      silence(message);
      renderIncident(incident);
      show(detail, true);
      $("incidents-split").classList.add("with-detail");
    } catch (error) {
      say(message, describe(error), "error");
    }
  }

  function renderIncident(incident) {
    $("detail-title").textContent = `#${incident.id} ${incident.title}`;
    const fields = $("detail-fields");
    clear(fields);
    const rows = [
      ["Status", incident.status],
      ["Severity", incident.severity],
      ["Namespace", incident.namespace],
      ["Workload", incident.workload],
      ["Opened", fmtTime(incident.created_at)],
      ["Resolved", fmtTime(incident.resolved_at)],
      ["Prediction status", incident.prediction_status],
    ];
    for (const [name, value] of rows) {
      fields.append(el("dt", { text: name }), el("dd", { text: asText(value) }));
    }
    $("detail-prediction-note").textContent =
      incident.prediction_note || `Prediction ${asText(incident.prediction_status)}.`;
    const prediction = $("detail-prediction");
    prediction.textContent = incident.prediction
      ? JSON.stringify(incident.prediction, null, 2)
      : "";
    show(prediction, Boolean(incident.prediction));
    const alerts = $("detail-alerts");
    clear(alerts);
    for (const alert of incident.alerts || []) alerts.append(alertCard(alert));
  }

  function alertCard(alert) {
    const labels = el("ul", { className: "labels", attrs: { "aria-label": "Labels" } });
    for (const [key, value] of Object.entries(alert.labels || {})) {
      labels.append(el("li", { text: `${key}=${value}` }));
    }
    const annotations = alert.annotations || {};
    const summary = annotations.summary || annotations.description || "";
    return el(
      "li",
      { className: "alert-card" },
      el(
        "div",
        { className: "alert-head" },
        el("strong", { className: "wrap", text: alert.alertname }),
        badge("status", alert.status, new Set(["firing", "resolved"])),
        el("span", {
          className: "muted",
          text: `since ${fmtTime(alert.starts_at)} · received ${asText(alert.received_count)}×`,
        }),
      ),
      summary ? el("p", { className: "alert-summary wrap", text: summary }) : null,
      labels,
    );
  }

  // ---- actions and approvals -----------------------------------------------------------------
  // GET /api/v1/actions?status=…; POST /api/v1/actions/{id}/approve {approval_hash, comment}
  // (the hash of the request and dry-run diff shown here) and /reject {comment}.

  function notYet(message, table, what, error) {
    show(table, false);
    if (error instanceof ApiError && error.status === 404 && error.code === "not_found") {
      say(message, `${what} not available yet: this server has no such API (HTTP 404).`, "info");
      return;
    }
    say(message, describe(error), "error");
  }

  // A page at a time, newest first; "Load more" reads the next (older) page.
  async function loadActions(reset = true) {
    const message = $("actions-message");
    const table = $("actions-table");
    const body = $("actions-body");
    if (reset) cursors.actions = null;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const status = $("action-status").value;
    if (status) params.set("status", status);
    if (cursors.actions !== null) params.set("cursor", cursors.actions);
    say(message, "Loading action requests…");
    try {
      const page = await api("GET", `/api/v1/actions?${params}`);
      if (reset) clear(body);
      for (const item of itemsOf(page)) body.append(actionRow(item));
      cursors.actions = page.next_cursor ?? null;
      show($("actions-more"), cursors.actions !== null);
      show(table, body.childElementCount > 0);
      const which = status ? ` ${status.replace("_", " ")}` : "";
      if (body.childElementCount > 0) silence(message);
      else say(message, `No action requests${which}.`);
    } catch (error) {
      show($("actions-more"), false);
      notYet(message, table, "Actions and approvals are", error);
    }
  }

  function paramsText(params) {
    const entries = Object.entries(params || {});
    return entries.length ? entries.map(([k, v]) => `${k}=${asText(v)}`).join(", ") : "";
  }

  function diffList(diff) {
    if (!Array.isArray(diff)) return el("span", { className: "muted", text: "dry run pending" });
    if (diff.length === 0) return el("span", { className: "muted", text: "no change" });
    const list = el("ul", { className: "diff" });
    for (const entry of diff) {
      list.append(
        el("li", {
          text: `${asText(entry.path)}: ${asText(entry.before)} → ${asText(entry.after)}`,
        }),
      );
    }
    return list;
  }

  function actionRow(item) {
    const what = `${item.action} on ${item.namespace}/${item.name}`;
    const params = paramsText(item.params);
    const policy = el("td", { className: "wrap" }, badge("effect", item.decision, EFFECTS));
    if (item.decision_reason) {
      policy.append(el("div", { className: "muted", text: item.decision_reason }));
    }
    return el(
      "tr",
      { attrs: { "data-action-id": item.id } },
      el("td", { text: fmtTime(item.created_at) }),
      el(
        "td",
        { className: "wrap" },
        el("strong", { text: asText(item.action) }),
        params ? el("div", { className: "muted", text: params }) : null,
        item.reason ? el("div", { text: item.reason }) : null,
      ),
      el("td", { className: "wrap", text: `${asText(item.namespace)}/${asText(item.name)}` }),
      el("td", { className: "wrap", text: asText(item.requested_by) }),
      el("td", {}, badge("action", item.status, ACTION_STATES)),
      policy,
      el("td", { className: "wrap" }, diffList(item.dry_run_diff)),
      decisionCell(item, what),
    );
  }

  function decisionCell(item, what) {
    const cell = el("td", { className: "decision" });
    if (item.status !== "pending_approval") {
      const parts = [];
      if (item.approved_by) parts.push(`approved by ${item.approved_by}`);
      if (item.error) parts.push(item.error);
      cell.textContent = parts.join("; ") || "—";
      return cell;
    }
    if (!hasRole(APPROVER_ROLES)) {
      cell.textContent = "awaiting an approver";
      return cell;
    }
    if (me && me.name === item.requested_by) {
      cell.textContent = "your request: another approver decides";
      return cell;
    }
    const comment = el("input", {
      className: "reason",
      attrs: { type: "text", maxlength: "2000", "aria-label": `Comment on ${what}` },
    });
    comment.placeholder = "comment (optional)";
    const approve = el("button", {
      className: "button small",
      text: "Approve",
      attrs: { type: "button", "aria-label": `Approve ${what}` },
    });
    const reject = el("button", {
      className: "button small danger",
      text: "Reject",
      attrs: { type: "button", "aria-label": `Reject ${what}` },
    });
    const buttons = [approve, reject];
    if (!item.approval_hash) {
      approve.disabled = true;
      approve.title = item.error || "The dry run has not finished yet.";
    }
    approve.addEventListener("click", () => {
      const body = { approval_hash: item.approval_hash, comment: comment.value.trim() };
      decide(item, "approve", body, buttons);
    });
    reject.addEventListener("click", () =>
      decide(item, "reject", { comment: comment.value.trim() }, buttons),
    );
    cell.append(comment, el("div", { className: "decision-buttons" }, approve, reject));
    return cell;
  }

  async function decide(item, verb, body, buttons) {
    const message = $("actions-message");
    for (const button of buttons) button.disabled = true;
    try {
      const path = `/api/v1/actions/${encodeURIComponent(item.id)}/${verb}`;
      const updated = await api("POST", path, body);
      await loadActions();
      say(
        message,
        `${item.action} on ${item.namespace}/${item.name}: ${asText(updated && updated.status)}.`,
        "ok",
      );
    } catch (error) {
      for (const button of buttons) button.disabled = false;
      say(message, describe(error), "error");
    }
  }

  // ---- safety flags --------------------------------------------------------------------------
  // GET /api/v1/safety/flags?status=…; POST /api/v1/safety/flags/{id}/review {verdict, note}.

  // A page at a time, newest first; "Load more" reads the next (older) page.
  async function loadFlags(reset = true) {
    const message = $("safety-message");
    const table = $("safety-table");
    const body = $("safety-body");
    if (reset) cursors.safety = null;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const status = $("safety-status").value;
    if (status) params.set("status", status);
    if (cursors.safety !== null) params.set("cursor", String(cursors.safety));
    say(message, "Loading safety flags…");
    try {
      const page = await api("GET", `/api/v1/safety/flags?${params}`);
      if (reset) clear(body);
      for (const item of itemsOf(page)) body.append(flagRow(item));
      cursors.safety = page.next_cursor ?? null;
      show($("safety-more"), cursors.safety !== null);
      show(table, body.childElementCount > 0);
      if (body.childElementCount > 0) silence(message);
      else say(message, `No safety flags${status ? ` ${status}` : ""}.`);
    } catch (error) {
      show($("safety-more"), false);
      notYet(message, table, "Safety flags are", error);
    }
  }

  function flagRow(item) {
    return el(
      "tr",
      { attrs: { "data-flag-id": String(item.id) } },
      el("td", { text: fmtTime(item.created_at) }),
      el("td", {}, el("strong", { text: asText(item.reason) })),
      el("td", { className: "wrap", text: `${asText(item.subject_kind)} ${asText(item.subject_id)}` }),
      el("td", { className: "wrap", text: asText(item.excerpt) }),
      el("td", {}, badge("flag", item.status, FLAG_STATES)),
      reviewCell(item),
    );
  }

  function reviewCell(item) {
    const cell = el("td", { className: "decision" });
    if (item.status !== "open") {
      const note = item.review_note ? `: ${item.review_note}` : "";
      cell.textContent = `${item.status} by ${asText(item.reviewed_by)}${note}`;
      return cell;
    }
    if (!hasRole(APPROVER_ROLES)) {
      cell.textContent = "awaiting a reviewer";
      return cell;
    }
    const what = `${item.reason} flag on ${item.subject_kind} ${item.subject_id}`;
    const note = el("input", {
      className: "reason",
      attrs: { type: "text", maxlength: "2000", "aria-label": `Note on ${what}` },
    });
    note.placeholder = "note (optional)";
    const confirm = el("button", {
      className: "button small danger",
      text: "Confirm",
      attrs: { type: "button", "aria-label": `Confirm ${what}` },
    });
    const dismiss = el("button", {
      className: "button small",
      text: "Dismiss",
      attrs: { type: "button", "aria-label": `Dismiss ${what}` },
    });
    const buttons = [confirm, dismiss];
    confirm.addEventListener("click", () => review(item, "confirmed", note, buttons));
    dismiss.addEventListener("click", () => review(item, "dismissed", note, buttons));
    cell.append(note, el("div", { className: "decision-buttons" }, confirm, dismiss));
    return cell;
  }

  async function review(item, verdict, note, buttons) {
    const message = $("safety-message");
    for (const button of buttons) button.disabled = true;
    try {
      const path = `/api/v1/safety/flags/${encodeURIComponent(item.id)}/review`;
      await api("POST", path, { verdict, note: note.value.trim() });
      await loadFlags();
      say(message, `${item.reason} flag on ${item.subject_kind} ${item.subject_id}: ${verdict}.`, "ok");
    } catch (error) {
      for (const button of buttons) button.disabled = false;
      say(message, describe(error), "error");
    }
  }

  // ---- policies ------------------------------------------------------------------------------
  // GET /api/v1/policy → [{id, version, active, document}], GET /api/v1/policy/digest.

  function conditionsText(doc) {
    const parts = [];
    for (const [key, value] of Object.entries(doc.conditions || {})) {
      if (value !== null && value !== undefined) parts.push(`${key}: ${asText(value)}`);
    }
    for (const [key, value] of Object.entries(doc.unless || {})) {
      if (value !== null && value !== undefined) parts.push(`unless ${key}: ${asText(value)}`);
    }
    return parts.join("; ");
  }

  // What a policy covers: its namespaces, then its names and label selector when it has them,
  // so that a policy limited to some workloads never reads as covering the whole namespace.
  function resourcesText(resources) {
    const parts = [asText(resources.namespaces)];
    const names = resources.names;
    if (Array.isArray(names) && !(names.length === 1 && names[0] === "*")) {
      parts.push(`names: ${asText(names)}`);
    }
    const labels = resources.labels || {};
    if (labels.match_labels && Object.keys(labels.match_labels).length > 0) {
      parts.push(`labels: ${asText(labels.match_labels)}`);
    }
    if (Array.isArray(labels.match_expressions) && labels.match_expressions.length > 0) {
      parts.push(`label expressions: ${asText(labels.match_expressions)}`);
    }
    return parts.join("; ");
  }

  async function loadPolicies() {
    const message = $("policies-message");
    const table = $("policies-table");
    const body = $("policies-body");
    say(message, "Loading policies…");
    try {
      const items = itemsOf(await api("GET", "/api/v1/policy"), "policies");
      clear(body);
      for (const item of items) {
        const doc = item.document || item;
        const resources = doc.resources || {};
        body.append(
          el(
            "tr",
            {},
            el(
              "td",
              { className: "wrap" },
              el("strong", { text: asText(item.id) }),
              doc.name ? el("div", { text: doc.name }) : null,
              doc.description
                ? el("div", { className: "muted", text: doc.description })
                : null,
            ),
            el("td", { text: asText(item.version) }),
            el("td", {}, badge("effect", doc.effect, EFFECTS)),
            el("td", { className: "wrap", text: asText(doc.subjects) }),
            el("td", { className: "wrap", text: asText(doc.actions) }),
            el("td", { className: "wrap", text: resourcesText(resources) }),
            el("td", { className: "wrap", text: conditionsText(doc) || "—" }),
          ),
        );
      }
      show(table, items.length > 0);
      if (items.length === 0) say(message, "No active policies: every action request is denied.");
      else silence(message);
      await loadPolicyDigest();
    } catch (error) {
      notYet(message, table, "Policies are", error);
    }
  }

  async function loadPolicyDigest() {
    const line = $("policies-digest");
    try {
      const found = await api("GET", "/api/v1/policy/digest");
      const count = asText(found.policies);
      line.textContent = `Active set: ${count} policies, digest ${asText(found.digest)}`;
      show(line, true);
    } catch {
      show(line, false); // the list above is what matters; the digest is a detail
    }
  }

  // ---- audit ---------------------------------------------------------------------------------

  async function loadAudit(reset) {
    const message = $("audit-message");
    const table = $("audit-table");
    const body = $("audit-body");
    if (reset) {
      cursors.audit = null;
      clear(body);
    }
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const since = $("audit-since").value;
    if (since) params.set("since", new Date(Date.now() - Number(since) * 1000).toISOString());
    const type = $("audit-type").value.trim();
    if (type) params.set("type", type);
    const actor = $("audit-actor").value.trim();
    if (actor) params.set("actor", actor);
    if (cursors.audit !== null) params.set("cursor", String(cursors.audit));
    say(message, "Loading audit entries…");
    try {
      const page = await api("GET", `/api/v1/audit?${params}`);
      for (const entry of itemsOf(page)) {
        body.append(
          el(
            "tr",
            {},
            el("td", { className: "nowrap", text: entry.seq }),
            el("td", { text: fmtTime(entry.created_at) }),
            el("td", { className: "wrap", text: entry.actor }),
            el("td", { className: "wrap", text: entry.event_type }),
            el("td", { className: "wrap", text: asText(entry.resource) }),
            el("td", {}, badge("outcome", entry.outcome, new Set(["ok"]))),
          ),
        );
      }
      cursors.audit = page.next_cursor ?? null;
      show($("audit-more"), cursors.audit !== null);
      show(table, body.childElementCount > 0);
      if (body.childElementCount === 0) say(message, "No audit entries match.");
      else silence(message);
    } catch (error) {
      show(table, false);
      show($("audit-more"), false);
      const prefix = error instanceof ApiError && error.status === 403 ? "Not allowed: " : "";
      say(message, prefix + describe(error), "error");
    }
  }

  // ---- start ---------------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", onLogout);
    $("banner-close").addEventListener("click", () => show($("banner"), false));
    for (const tab of TABS) {
      const button = $(`tab-${tab}`);
      button.addEventListener("click", () => selectTab(tab, false));
      button.addEventListener("keydown", onTabKey);
    }
    $("incident-status").addEventListener("change", () => loadIncidents(true));
    $("incidents-reload").addEventListener("click", () => loadIncidents(true));
    $("incidents-more").addEventListener("click", () => loadIncidents(false));
    $("action-status").addEventListener("change", () => loadActions(true));
    $("actions-reload").addEventListener("click", () => loadActions(true));
    $("actions-more").addEventListener("click", () => loadActions(false));
    $("safety-status").addEventListener("change", () => loadFlags(true));
    $("safety-reload").addEventListener("click", () => loadFlags(true));
    $("safety-more").addEventListener("click", () => loadFlags(false));
    $("policies-reload").addEventListener("click", () => loadPolicies());
    $("audit-reload").addEventListener("click", () => loadAudit(true));
    $("audit-more").addEventListener("click", () => loadAudit(false));
  }

  async function start() {
    wire();
    if (!sessionStorage.getItem(REFRESH_KEY)) {
      signedOut("");
      return;
    }
    try {
      if (!(await refreshOnce())) {
        signedOut("");
        return;
      }
      await enter();
    } catch (error) {
      signedOut("");
      banner(describe(error));
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
