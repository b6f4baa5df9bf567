// Datanectar's web UI: the task form posts to the JSON API, the runs list and a run's page keep themselves fresh,
// a schedule is paused, resumed and backfilled from its card.
// Every value from the server is written with textContent, never parsed as HTML (the runs list swaps in
// markup the server rendered and escaped).
"use strict";

const ACTIVE = new Set(["PENDING", "RUNNING", "WAITING"]);
const TOKEN_KEY = "datanectar.token";

// --- the API, with the token the page was given (if the service wants one) ---

function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("Accept", "application/json");
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return fetch(url, { ...options, headers, credentials: "same-origin" });
}

async function answerOf(response) {
  try {
    return await response.json();
  } catch {
    return { message: `${response.status} ${response.statusText}` };
  }
}

function setupToken() {
  const input = document.getElementById("api-token");
  if (!input) return;
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("change", async () => {
    const token = input.value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    // pages are opened without headers: the API answers the token with a session cookie that they carry
    // (HttpOnly: no script reads it; it holds no token); an empty field ends the session
    try {
      await api(input.dataset.sessionUrl, { method: token ? "POST" : "DELETE" });
    } catch {
      // the page shows what the service says when it is opened again
    }
    if (document.body.dataset.needsToken) location.reload();
  });
}

// --- small DOM helpers ---

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function badge(state) {
  const text = state || "UNKNOWN";
  return el("span", { class: `badge badge-${text.toLowerCase()}`, "data-state": text }, text);
}

function clock(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) : "—";
}

// --- forms: a 422's messages beside their fields ---

// each field's messages under it; answers the messages of names no field of the form has
function markFieldErrors(form, errors) {
  const elsewhere = [];
  for (const [name, messages] of Object.entries(errors)) {
    const text = [].concat(messages).join("; ");
    const field = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!field) {
      elsewhere.push(`${name}: ${text}`);
      continue;
    }
    const slot = field.querySelector(".field-error");
    slot.textContent = text;
    slot.hidden = false;
    field.classList.add("invalid");
    field.querySelector("[data-param]").setAttribute("aria-invalid", "true");
  }
  return elsewhere;
}

// --- the task form ---

function fieldValue(control) {
  if (control.type === "checkbox") return control.checked ? "true" : "false";
  if (control.multiple) {
    const chosen = [...control.selectedOptions].map((option) => option.value);
    return chosen.length || !control.required ? chosen : undefined;
  }
  return control.value === "" ? undefined : control.value;
}

function setupTaskForm() {
  const form = document.getElementById("task-form");
  if (!form) return;
  const button = document.getElementById("launch");
  const formError = document.getElementById("form-error");
  const result = document.getElementById("form-result");

  function clear() {
    formError.hidden = true;
    formError.replaceChildren();
    result.hidden = true;
    result.replaceChildren();
    for (const node of form.querySelectorAll(".field-error")) {
      node.hidden = true;
      node.textContent = "";
    }
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    for (const node of form.querySelectorAll(".field.invalid")) node.classList.remove("invalid");
  }

  function showGeneral(message, lines = []) {
    formError.replaceChildren(el("strong", {}, message));
    if (lines.length) formError.append(el("ul", {}, ...lines.map((line) => el("li", {}, line))));
    formError.hidden = false;
  }

  function showFieldErrors(errors) {
    const elsewhere = markFieldErrors(form, errors);
    const first = form.querySelector(".field.invalid [data-param]");  // the first in the page, not in the answer
    if (first) first.focus();
    return elsewhere;
  }

  function showDone(data) {
    const links = [];
    if (data.resource_url) links.push(el("a", { href: data.resource_url, id: "result-output" }, "Download the output"));
    if (data.run_id) links.push(el("a", { href: `${form.dataset.runsUrl}/${encodeURIComponent(data.run_id)}` }, "Its run"));
    result.replaceChildren(
      badge(data.job_status),
      " This output already exists: nothing was run. ",
      ...links.flatMap((link, i) => (i ? [" · ", link] : [link])),
    );
    result.hidden = false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const body = {};
    const unreadable = {};
    for (const control of form.querySelectorAll("[data-param]")) {
      if (control.validity && control.validity.badInput) {
        unreadable[control.dataset.param] = [`not a valid ${control.type === "number" ? "number" : "value"}`];
        continue;
      }
      const value = fieldValue(control);
      if (value !== undefined) body[control.dataset.param] = value;
    }
    if (Object.keys(unreadable).length) {
      showFieldErrors(unreadable);
      return;
    }
    button.disabled = true;
    button.textContent = "Launching…";
    try {
      const response = await api(form.dataset.submitUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await answerOf(response);
      if (response.status === 202) {
        window.location.assign(`${form.dataset.runsUrl}/${encodeURIComponent(answer.data.run_id)}`);
        return;
      }
      if (response.ok) {
        showDone(answer.data);
      } else if (response.status === 422 && answer.errors) {
        const elsewhere = showFieldErrors(answer.errors);
        if (elsewhere.length) showGeneral("The task cannot be run with these values:", elsewhere);
      } else {
        showGeneral(answer.message || `${response.status} ${response.statusText}`);
      }
    } catch (error) {
      showGeneral(`The service did not answer: ${error.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Launch";
    }
  });
}

// --- the runs list and a schedule's fires: swapped for a fresh rendering every few seconds ---

function setupRefresh(id) {
  const box = document.getElementById(id);
  if (!box) return;
  const every = Number(box.dataset.refresh) || 2000;
  async function refresh() {
    if (document.visibilityState === "visible") {
      try {
        const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
        if (response.ok) {
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(id);
          if (fresh) box.replaceChildren(...fresh.childNodes);
        }
      } catch {
        // the next refresh tries again
      }
    }
    window.setTimeout(refresh, every);
  }
  window.setTimeout(refresh, every);
}

// --- a schedule's card: pause or resume it, backfill a range ---

function postJson(url, body) {
  return api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function showMessage(node, title, lines = []) {
  node.replaceChildren(el("strong", {}, title));
  if (lines.length) node.append(el("ul", {}, ...lines.map((line) => el("li", {}, line))));
  node.hidden = false;
}

function renderBackfill(node, data) {
  const counts = {};
  for (const fire of data.fires) counts[fire.state] = (counts[fire.state] || 0) + 1;
  const said = Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(", ");
  const items = data.fires.map((fire) =>
    el(
      "li",
      { "data-fire-time": fire.fire_time },
      el("span", { class: "mono small" }, fire.fire_time), " ", badge(fire.state.toUpperCase()),
      ...(fire.run_url ? [" ", el("a", { href: fire.run_url }, "run"), " ", badge(fire.job_status)] : []),
    ),
  );
  node.replaceChildren(
    el("strong", {}, `Backfill ${data.id}: `),
    `${data.fire_times} fire time${data.fire_times === 1 ? "" : "s"} in the range` +
      (data.existing ? `, ${data.existing} fired before` : "") + (said ? ` (${said})` : "") + ". ",
    el("a", { href: data.progress_url, class: "backfill-progress" }, "Follow its progress"),
    el("ul", { class: "backfill-fires" }, ...items),
  );
  node.hidden = false;
}

function setupSchedule(card) {
  const actionError = card.querySelector(".action-error");
  const pause = card.querySelector("button.pause");
  pause.addEventListener("click", async () => {
    pause.disabled = true;
    actionError.hidden = true;
    try {
      const response = await postJson(pause.dataset.url, { paused: pause.dataset.pause === "true" });
      if (response.ok) {
        window.location.reload();
        return;
      }
      const answer = await answerOf(response);
      showMessage(actionError, `Not ${pause.dataset.pause === "true" ? "paused" : "resumed"}: ${answer.message || response.status}`);
    } catch (error) {
      showMessage(actionError, `The service did not answer: ${error.message}`);
    }
    pause.disabled = false;
  });

  const form = card.querySelector("form.backfill");
  const formError = form.querySelector(".form-error");
  const result = form.querySelector(".backfill-result");
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    result.hidden = true;
    for (const field of form.querySelectorAll(".field")) {
      field.classList.remove("invalid");
      field.querySelector(".field-error").hidden = true;
      field.querySelector("[data-param]").removeAttribute("aria-invalid");
    }
    const body = {};
    for (const control of form.querySelectorAll("[data-param]")) body[control.dataset.param] = control.value.trim();
    button.disabled = true;
    try {
      const response = await postJson(form.dataset.url, body);
      const answer = await answerOf(response);
      if (response.ok) {
        renderBackfill(result, answer.data);
      } else if (response.status === 422 && answer.errors) {
        const elsewhere = markFieldErrors(form, answer.errors);
        if (elsewhere.length) showMessage(formError, "Not backfilled:", elsewhere);
      } else {
        showMessage(formError, `Not backfilled: ${answer.message || response.status}`);
      }
    } catch (error) {
      showMessage(formError, `The service did not answer: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
}

// --- one run: its status polled every second until it ends, then the page is rendered afresh ---

function renderSteps(tbody, steps) {
  const rows = steps.map((step) =>
    el(
      "tr",
      {},
      el("td", {}, step.task),
      el("td", {}, badge(step.state)),
      el("td", { class: "small muted" }, step.error || (step.state === "DONE" ? (step.executed ? "ran" : "already done") : "")),
      el("td", {}),
      el("td", { class: "small" }, ...(step.stdout_url ? [el("a", { href: step.stdout_url }, "stdout"), " · ", el("a", { href: step.stderr_url }, "stderr")] : [])),
    ),
  );
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "5", class: "muted empty" }, "Not started yet."))]));
}

// the run's log links: the requested task's, or the step running before it (the note says whose)
function renderLogs(data) {
  document.getElementById("log-links").hidden = !data.stdout_url;
  if (data.stdout_url) {
    document.getElementById("stdout-link").href = data.stdout_url;
    document.getElementById("stderr-link").href = data.stderr_url;
  }
  const note = document.getElementById("logs-note");
  note.textContent = data.logs_note || "";
  note.hidden = !data.logs_note;
}

function renderStatus(data) {
  document.getElementById("run-state").replaceChildren(badge(data.job_status));
  document.getElementById("run-attempt").textContent = `${data.attempt} of ${data.max_attempts}`;
  document.getElementById("run-retry").textContent = clock(data.retry_at);
  renderSteps(document.querySelector("#steps tbody"), data.steps || []);
  renderLogs(data);
  const error = document.getElementById("run-error");
  error.replaceChildren();
  if (data.error) {
    if (data.failed_step) error.append(el("strong", {}, `Failed at ${data.failed_step}: `));
    error.append(el("span", { class: "mono" }, data.error));
  }
  error.hidden = !data.error;
}

function setupRun() {
  const root = document.getElementById("run");
  if (!root) return;
  const cancel = document.getElementById("cancel");
  if (cancel) {
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      const response = await api(root.dataset.cancelUrl, { method: "POST" });
      if (!response.ok && response.status !== 409) {
        const answer = await answerOf(response);
        const error = document.getElementById("cancel-error");
        error.replaceChildren(el("strong", {}, "Not cancelled: "), answer.message || `${response.status} ${response.statusText}`);
        error.hidden = false;
        cancel.disabled = false;
        return;
      }
      window.location.reload();
    });
  }
  if (root.dataset.active !== "true") return;
  async function poll() {
    try {
      const response = await api(root.dataset.statusUrl);
      if (response.ok) {
        const data = (await response.json()).data;
        // the key's status is this run's until the run ends; then the page shows the run as it ended
        if (data.run_id !== root.dataset.runId || !ACTIVE.has(data.job_status)) {
          window.location.reload();
          return;
        }
        renderStatus(data);
      }
    } catch {
      // the next poll tries again
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  setupTaskForm();
  setupRefresh("runs");
  setupRefresh("fires");
  for (const card of document.querySelectorAll(".schedule[data-schedule-id]")) setupSchedule(card);
  setupRun();
});
