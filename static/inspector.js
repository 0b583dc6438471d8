"use strict";
// The inspector: a live list of captures (JSON API + Server-Sent Events) and a detail pane.
// Everything from a capture is put into the page as text (HS.el / textContent), never markup.
(() => {
  const { el, api, copy, toast, size, fillOptions } = HS;
  const root = document.getElementById("inspector");
  const token = root.dataset.token;
  const $ = (id) => document.getElementById(id);
  const list = $("capture-list");
  const detail = $("detail");
  const conn = $("conn");
  const state = { endpoint: null, captures: [], selected: null, paused: false, held: [],
                  nextAfter: 0, source: null, current: null };

  // -- endpoint header and settings ---------------------------------------------------------

  function curlExample(url) {
    return `curl -X POST '${url}' -H 'Content-Type: application/json' -d '{"hello": "hookscope"}'`;
  }

  // An empty box means "no limit" (null); 0 too, for the rate, as the placeholder says.
  function optionalNumber(text) {
    return text === "" || Number(text) === 0 ? null : Number(text);
  }

  function showEndpoint(endpoint) {
    state.endpoint = endpoint;
    $("endpoint-name").textContent = endpoint.name || endpoint.alias || "Endpoint";
    $("capture-url").textContent = endpoint.alias_url || endpoint.url;
    $("curl-example").textContent = curlExample(endpoint.alias_url || endpoint.url);
    const form = $("settings");
    form.elements.scheme.value = endpoint.verify ? endpoint.verify.scheme : "";
    form.elements.secrets.value = endpoint.verify ? endpoint.verify.secrets.join(", ") : "";
    form.elements.tolerance_seconds.value = endpoint.verify ? endpoint.verify.tolerance_seconds : 300;
    form.elements.bad_signature.checked = endpoint.reject.bad_signature;
    form.elements.format.value = endpoint.format;
    form.elements.invalid_payload.checked = endpoint.reject.invalid_payload;
    form.elements.status.value = endpoint.response.status;
    form.elements.delay_ms.value = endpoint.response.delay_ms;
    form.elements.body.value = endpoint.response.body || "";
    form.elements.max_captures.value = endpoint.max_captures;
    form.elements.max_bytes.value = endpoint.max_bytes ?? "";
    form.elements.rate_limit.value = endpoint.rate_limit ?? "";
  }

  $("copy-url").addEventListener("click", () => copy($("capture-url").textContent, "URL"));
  $("copy-curl-example").addEventListener("click", () => copy($("curl-example").textContent, "curl example"));
  $("settings-button").addEventListener("click", () => {
    const form = $("settings");
    form.hidden = !form.hidden;
    $("settings-button").setAttribute("aria-expanded", String(!form.hidden));
  });
  $("settings").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    $("settings-error").textContent = "";
    const scheme = form.elements.scheme.value;
    const secrets = form.elements.secrets.value.split(",").map((s) => s.trim()).filter(Boolean);
    const body = {
      verify: scheme ? { scheme, secrets, tolerance_seconds: Number(form.elements.tolerance_seconds.value || 300) } : null,
      format: form.elements.format.value,
      reject: { bad_signature: form.elements.bad_signature.checked,
                invalid_payload: form.elements.invalid_payload.checked },
      response: { status: Number(form.elements.status.value || 200),
                  delay_ms: Number(form.elements.delay_ms.value || 0),
                  body: form.elements.body.value === "" ? null : form.elements.body.value },
      max_captures: Number(form.elements.max_captures.value || 10000),
      max_bytes: optionalNumber(form.elements.max_bytes.value),
      rate_limit: optionalNumber(form.elements.rate_limit.value),
    };
    try {
      showEndpoint(await api("PATCH", `/api/endpoints/${token}`, body));
      toast("Settings saved");
    } catch (e) {
      $("settings-error").textContent = e.message;
    }
  });

  // -- the list -------------------------------------------------------------------------------

  function badge(kind, text, title) {
    return el("span", { class: `badge ${kind}`, title }, text);
  }

  // Badge colour of a verdict status (signature or validation).
  const KIND = { verified: "good", valid: "good", failed: "bad", invalid: "bad", missing: "warn" };
  const kindOf = (status) => KIND[status] || "";

  function signatureBadge(signature) {
    return signature.status === "unchecked" ? null
      : badge(kindOf(signature.status), `sig ${signature.status}`, signature.reason || signature.scheme || "");
  }

  function validationBadge(validation) {
    if (validation.status === "unknown") return null;
    const kind = kindOf(validation.status);
    return badge(kind, validation.status === "valid" ? validation.format : `invalid ${validation.format}`,
                 validation.errors.length ? `${validation.errors.length} errors` : "");
  }

  function row(capture, fresh) {
    const time = new Date(capture.received_at);
    // The list shows what follows the key (/h/<key>); the detail shows the full path.
    const shown = (capture.path.replace(/^\/h\/[^/]+/, "") || "/") + (capture.query ? `?${capture.query}` : "");
    const node = el("li", {
      class: `capture-row${fresh ? " fresh" : ""}`, tabindex: "0", role: "option",
      "aria-selected": String(capture.id === state.selected), dataset: { id: capture.id },
      onclick: () => select(capture.id),
    },
      el("span", { class: `method m-${capture.method}` }, capture.method),
      el("span", { class: "path", title: capture.path }, shown),
      el("span", { class: "badges" }, signatureBadge(capture.signature), validationBadge(capture.validation)),
      el("span", { class: "meta" },
        el("time", { datetime: capture.received_at, title: capture.received_at }, time.toLocaleTimeString()),
        el("span", {}, size(capture.body_size)),
        el("span", {}, `#${capture.seq}`),
        capture.response.status >= 300 ? el("span", {}, `→ ${capture.response.status}`) : null));
    return node;
  }

  function renderList() {
    list.replaceChildren(...state.captures.map((capture) => row(capture, false)));
    $("list-empty").hidden = state.captures.length > 0;
  }

  function filters() {
    const params = new URLSearchParams({ limit: "200" });
    const pairs = [["q", $("search").value.trim()], ["method", $("filter-method").value],
                   ["signature", $("filter-signature").value], ["validation", $("filter-validation").value]];
    for (const [key, value] of pairs) if (value) params.set(key, value);
    return params;
  }

  function matches(capture) {
    const method = $("filter-method").value;
    const signature = $("filter-signature").value;
    const validation = $("filter-validation").value;
    return (!method || capture.method === method)
      && (!signature || capture.signature.status === signature)
      && (!validation || capture.validation.status === validation);
  }

  async function loadList() {
    const data = await api("GET", `/api/endpoints/${token}/captures?${filters()}`);
    state.captures = data.captures;
    renderList();
    return data;
  }

  let searchTimer = null;
  function refilter() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadList().catch((e) => toast(e.message)), 200);
  }
  $("search").addEventListener("input", refilter);
  for (const id of ["filter-method", "filter-signature", "filter-validation"]) $(id).addEventListener("change", refilter);
  for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]) {
    $("filter-method").append(el("option", { value: method }, method));
  }

  function arrive(capture) {
    if (state.captures.some((c) => c.id === capture.id)) return;
    if (state.paused) {
      state.held.push(capture);
      $("paused-note").hidden = false;
      $("paused-note").textContent = `Paused: ${state.held.length} new capture(s) waiting`;
      return;
    }
    if ($("search").value.trim()) { refilter(); return; }  // the server searches bodies too
    if (!matches(capture)) return;
    state.captures.unshift(capture);
    list.prepend(row(capture, true));
    $("list-empty").hidden = true;
    if (!state.selected) select(capture.id);
  }

  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    setConnection(state.paused ? "paused" : (state.source?.readyState === 1 ? "live" : "connecting"));
    if (!state.paused) {
      const held = state.held.splice(0);
      $("paused-note").hidden = true;
      held.forEach(arrive);
    }
  });

  $("clear-all").addEventListener("click", async () => {
    if (!confirm("Delete every capture of this endpoint?")) return;
    await api("DELETE", `/api/endpoints/${token}/captures`);
    state.captures = [];
    state.held = [];
    $("paused-note").hidden = true;
    state.selected = null;
    renderList();
    detail.replaceChildren(el("p", { class: "muted detail-empty" }, "All captures deleted."));
  });

  // -- the live stream ------------------------------------------------------------------------

  function setConnection(status) {
    conn.dataset.state = status;
    conn.textContent = { live: "live", connecting: "connecting", reconnecting: "reconnecting",
                         paused: "paused" }[status];
  }

  function connect() {
    // EventSource resends Last-Event-ID by itself when it reconnects: no gap, no duplicate.
    const source = new EventSource(`/api/endpoints/${token}/stream?after=${state.nextAfter}`);
    state.source = source;
    source.addEventListener("open", () => setConnection(state.paused ? "paused" : "live"));
    source.addEventListener("error", async () => {
      setConnection("reconnecting");
      try {
        await api("GET", `/api/endpoints/${token}`);
      } catch (e) {
        if (/no endpoint/.test(e.message)) {  // deleted: stop trying
          source.close();
          conn.dataset.state = "reconnecting";
          conn.textContent = "endpoint deleted";
        }
      }
    });
    source.addEventListener("capture", (event) => arrive(JSON.parse(event.data)));
  }

  // -- the detail pane ------------------------------------------------------------------------

  function pointerOf(parent, key) {
    return `${parent}/${String(key).replace(/~/g, "~0").replace(/\//g, "~1")}`;
  }

  function scalar(value) {
    if (typeof value === "string") return el("span", { class: "str" }, JSON.stringify(value));
    if (typeof value === "number") return el("span", { class: "num" }, String(value));
    return el("span", { class: "lit" }, String(value));
  }

  // A hostile sender can post megabytes of JSON: nodes are built while a budget lasts, and a
  // closed branch is built only when it is first opened.
  const TREE_BUDGET = 3000;
  let budget = TREE_BUDGET;

  function tree(value, key, pointer, depth) {
    budget -= 1;
    const label = key === null ? null : el("span", { class: "key" }, `${key}: `);
    if (value === null || typeof value !== "object") {
      return el("div", { class: "row", dataset: { pointer } }, label, scalar(value));
    }
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const note = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    const open = depth < 3 && entries.length <= 200 && budget > entries.length;
    const node = el("details", { dataset: { pointer }, open },
      el("summary", {}, label, el("span", { class: "note" }, note)));
    let filled = false;
    const fill = () => {
      if (filled) return;
      filled = true;
      for (const [childKey, child] of entries.slice(0, 2000)) {
        node.append(tree(child, childKey, pointerOf(pointer, childKey), depth + 1));
      }
      if (entries.length > 2000) node.append(el("div", { class: "note" }, `… ${entries.length - 2000} more`));
    };
    if (open) fill();
    else node.addEventListener("toggle", () => { if (node.open) { budget = TREE_BUDGET; fill(); } });
    return node;
  }

  function markErrors(container, errors) {
    const byPointer = new Map();
    for (const error of errors) byPointer.set(error.path, [...(byPointer.get(error.path) || []), error.message]);
    for (const node of container.querySelectorAll("[data-pointer]")) {
      const messages = byPointer.get(node.dataset.pointer);
      if (!messages) continue;
      const target = node.tagName === "DETAILS" ? node.querySelector("summary") : node;
      target.classList.add("has-error");
      target.title = messages.join("\n");
      for (let up = node.parentElement; up && up !== container; up = up.parentElement) {
        if (up.tagName === "DETAILS") up.open = true;
      }
    }
  }

  function bytesOf(capture) {
    if (capture.body_base64 !== null) {
      return Uint8Array.from(atob(capture.body_base64), (c) => c.charCodeAt(0));
    }
    return new TextEncoder().encode(capture.body_text || "");
  }

  function hexdump(bytes) {
    const lines = [];
    for (let offset = 0; offset < Math.min(bytes.length, 64 * 1024); offset += 16) {
      const chunk = bytes.slice(offset, offset + 16);
      const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const text = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
    }
    if (bytes.length > 64 * 1024) lines.push(`… ${bytes.length - 64 * 1024} more bytes`);
    return lines.join("\n");
  }

  async function copyCurl(captureId) {
    try {
      await copy(await curlFor(captureId), "curl command");
    } catch (e) {
      toast(e.message);
    }
  }

  async function curlFor(captureId) {
    // The server writes the command (GET .../export?as=curl): one generator for the page, the
    // API and the CLI, byte for byte whatever the body holds.
    const response = await fetch(`/api/captures/${encodeURIComponent(captureId)}/export?as=curl`);
    if (!response.ok) throw new Error(`could not export the capture (${response.status})`);
    return response.text();
  }

  function table(rows) {
    return el("table", { class: "kv" }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
  }

  function verdictBox(title, status, kind, lines, extra) {
    return el("div", { class: "verdict" },
      el("h3", {}, title, badge(kind, status)), lines.filter(Boolean).map((line) => el("p", {}, line)), extra);
  }

  function bodyViews(capture) {
    const parsed = capture.parsed;
    const views = [];
    const bytes = bytesOf(capture);
    if (parsed.kind === "empty") return el("p", { class: "muted" }, "Empty body.");
    if (parsed.value !== null && ["json", "ndjson", "xml"].includes(parsed.kind)) {
      views.push([parsed.kind === "json" ? "Pretty" : parsed.kind.toUpperCase(), () => {
        budget = TREE_BUDGET;
        const view = el("div", { class: "body-view tree" }, tree(parsed.value, null, "", 0));
        markErrors(view, capture.validation.errors);
        return view;
      }]);
    }
    if (parsed.kind === "form" && parsed.value) {
      views.push(["Form", () => table(parsed.value.map(([k, v]) => [k, v]))]);
    }
    if (parsed.kind === "multipart" && parsed.value) {
      views.push(["Parts", () => table(parsed.value.map((part) => [
        part.name || "(unnamed)",
        `${part.filename ? `file ${part.filename}, ` : ""}${part.content_type}, ${size(part.size)}${part.text !== null ? `\n${part.text}` : ""}`]))]);
    }
    views.push(["Raw", () => el("pre", { class: "body-view" },
      capture.body_text !== null ? capture.body_text : `(binary, ${size(capture.body_size)}: see Hex)`)]);
    views.push(["Hex", () => el("pre", { class: "body-view hex" }, hexdump(bytes))]);

    const holder = el("div", {});
    const tabs = el("div", { class: "tabs", role: "tablist" });
    const show = (index) => {
      tabs.querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-selected", String(i === index)));
      holder.replaceChildren(views[index][1]());
    };
    views.forEach(([name], index) => tabs.append(el("button", { type: "button", role: "tab", onclick: () => show(index) }, name)));
    const wrap = el("div", {}, tabs, holder);
    show(capture.body_text === null && !parsed.value ? views.length - 1 : 0);
    return wrap;
  }

  function renderDetail(capture) {
    state.current = capture;
    const sig = capture.signature;
    const val = capture.validation;
    const sigKind = kindOf(sig.status);
    const valKind = kindOf(val.status);
    const query = new URLSearchParams(capture.query);
    const errors = val.errors.length
      ? el("ul", { class: "errors" }, val.errors.map((e) => el("li", {}, el("code", {}, e.path || "/"), e.message)))
      : null;
    // Through el(): it skips empty parts and flattens lists (replaceChildren would print "null").
    detail.replaceChildren(el("div", { class: "detail-inner" },
      el("div", { class: "detail-head" },
        el("span", { class: `method m-${capture.method}` }, capture.method),
        el("span", { class: "path" }, capture.path + (capture.query ? `?${capture.query}` : "")),
        el("span", { class: "muted" }, new Date(capture.received_at).toLocaleString())),
      el("div", { class: "detail-actions" },
        el("button", { type: "button", onclick: () => copyCurl(capture.id) }, "Copy as curl"),
        el("a", { href: `/api/captures/${capture.id}/body?download=1`, download: "" },
          el("button", { type: "button" }, "Download body")),
        el("button", { type: "button", onclick: reverify }, "Re-verify signature"),
        el("button", { type: "button", class: "danger", onclick: remove }, "Delete")),
      el("div", { class: "verdicts" },
        verdictBox("Signature", sig.status, sigKind, [sig.scheme && `scheme: ${sig.scheme}${sig.auto ? " (auto)" : ""}`,
          sig.reason, sig.secret_index !== null ? `matched secret #${sig.secret_index}` : null]),
        verdictBox("Validation", val.status, valKind, [val.format && `format: ${val.format}${val.detected ? " (detected)" : ""}`,
          val.status === "unknown" ? "no documented format recognised" : null], errors)),
      el("div", { class: "section" }, el("h2", {}, "Overview"), table([
        ["id", capture.id], ["received", capture.received_at], ["from", capture.remote_addr || "?"],
        ["content type", capture.content_type || "(none)"],
        ["size", `${size(capture.body_size)}${capture.truncated ? " (truncated at the limit)" : ""}`],
        ["parsed as", `${capture.parsed.kind}${capture.parsed.error ? ` — ${capture.parsed.error}` : ""}`],
        ["answered", String(capture.response.status)]])),
      capture.query ? el("div", { class: "section" }, el("h2", {}, "Query parameters"),
        table(Array.from(query.entries()))) : null,
      el("div", { class: "section" }, el("h2", {}, "Headers", el("span", { class: "muted" }, `${capture.headers.length}`)),
        table(capture.headers.map(([k, v]) => [k, v]))),
      el("div", { class: "section" }, el("h2", {}, "Body"), bodyViews(capture)),
      (capture.parsed.notes || []).map((note) => el("p", { class: "muted" }, note))));
  }

  async function select(id) {
    state.selected = id;
    for (const node of list.children) node.setAttribute("aria-selected", String(node.dataset.id === id));
    try {
      const capture = await api("GET", `/api/captures/${id}`);
      if (state.selected === id) renderDetail(capture);
    } catch (e) {
      detail.replaceChildren(el("p", { class: "muted detail-empty" }, e.message));
    }
  }

  async function reverify() {
    const capture = state.current;
    try {
      const result = await api("POST", `/api/captures/${capture.id}/verify`);
      toast(`Signature: ${result.signature.status}`);
      select(capture.id);
      loadList();
    } catch (e) { toast(e.message); }
  }

  async function remove() {
    const capture = state.current;
    await api("DELETE", `/api/captures/${capture.id}`);
    state.captures = state.captures.filter((c) => c.id !== capture.id);
    state.selected = null;
    renderList();
    detail.replaceChildren(el("p", { class: "muted detail-empty" }, "Deleted."));
  }

  // -- keyboard ---------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
    if (event.key === "/" && !typing) { event.preventDefault(); $("search").focus(); return; }
    if (event.key === "Escape" && typing) { document.activeElement.blur(); return; }
    if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
    if (event.key === "j" || event.key === "k") {
      const index = state.captures.findIndex((c) => c.id === state.selected);
      const next = event.key === "j" ? index + 1 : Math.max(0, index - 1);
      const target = state.captures[Math.min(next, state.captures.length - 1)];
      if (target) {
        select(target.id);
        list.querySelector(`[data-id="${target.id}"]`)?.scrollIntoView({ block: "nearest" });
      }
    }
  });

  // For the browser tests: the command that "Copy as curl" puts on the clipboard.
  window.HookscopeInspector = { curlFor };

  // -- start ------------------------------------------------------------------------------------

  (async () => {
    await Promise.all([
      fillOptions($("settings-scheme"), "/api/schemes", "schemes", (s) => s.title),
      fillOptions($("settings-format"), "/api/formats", "formats", (f) => f.title),
    ]);
    showEndpoint(await api("GET", `/api/endpoints/${token}`));
    const data = await loadList();
    state.nextAfter = data.next_after;
    if (state.captures.length) select(state.captures[0].id);
    connect();
  })().catch((e) => toast(e.message));
})();
