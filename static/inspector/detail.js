// The detail pane: what one capture is (a bar with its actions, a strip of verdicts, tabs for the
// body, headers, query and details), its deliveries, replay answers and diffs shown in place.
import { bodyPanel } from "./body.js";
import { Deliveries, replyParts } from "./deliveries.js";

const { el, size } = HS;

const KIND = { verified: "good", valid: "good", failed: "bad", invalid: "bad", missing: "warn", unknown: "" };

export function kindOf(status) {
  return KIND[status] ?? "";
}

// What a person should check, by what went wrong.
function signatureHint(signature, headers) {
  const reason = signature.reason || "";
  if (signature.status === "missing") {
    return headers.length
      ? `The request has no ${headers.join(" / ")} header: check that the sender is set up to sign, and that a proxy does not drop it.`
      : "Check that the sender is set up to sign its requests.";
  }
  if (signature.status !== "failed") return null;
  if (/timestamp/.test(reason) && /tolerance/.test(reason)) {
    return "Check the sender's clock, or whether this is an old delivery sent again; Settings › Tolerance accepts older ones.";
  }
  if (/timestamp|not a number/.test(reason)) return "Check the timestamp header the sender sends.";
  return "Check the secret (copy it again from the sender; mind prefixes like whsec_ and base64), and that the sender signs exactly these bytes: a proxy or framework that re-encodes the body breaks the signature.";
}

// The headers a signature verdict rests on: the scheme's own, and a generic scheme's options.
export function signatureHeaders(endpoint, signature, schemes) {
  const names = new Set();
  const scheme = schemes.find((s) => s.id === signature.scheme);
  for (const name of scheme?.headers || []) names.add(name.toLowerCase());
  const options = endpoint?.verify || {};
  if (signature.scheme && signature.scheme === options.scheme) {
    for (const [key, value] of Object.entries(options)) {
      if (key.endsWith("header") && typeof value === "string" && value) names.add(value.toLowerCase());
    }
  }
  if (signature.scheme === "hmac" && !options.header) names.add("x-signature");
  if (signature.scheme === "token" && !options.header) names.add("authorization");
  return [...names];
}

function chip(kind, label, text, expanded, controls) {
  return el("button", { type: "button", class: `chip ${kind}`, "aria-expanded": String(expanded), "aria-controls": controls },
    el("span", { class: "chip-label" }, label), el("span", {}, text));
}

function table(rows, options = {}) {
  return el("table", { class: "kv" },
    options.empty && rows.length === 0 ? el("caption", { class: "muted" }, options.empty) : null,
    el("tbody", {}, rows.map(([k, v, extra]) => el("tr", { class: extra?.class || null },
      el("th", {}, k), el("td", {}, v, extra?.note ? el("span", { class: "tag" }, extra.note) : null)))));
}

export class Detail {
  constructor(pane, app) {
    this.pane = pane;
    this.app = app;
    this.capture = null;
    this.body = null;
    this.deliveries = null;
    this.loading = null;  // the capture being fetched, and the deliveries streamed meanwhile
    this.pending = [];
    this.tab = "body";
  }

  // A fetch of the capture has started: deliveries that arrive before it answers may be missing
  // from its answer, so they are kept for render().
  expect(id) {
    this.loading = id;
    this.pending = [];
  }

  empty(message, curl) {
    this.capture = null;
    this.deliveries = null;
    this.loading = null;
    this.pane.replaceChildren(el("div", { class: "detail-empty" },
      el("p", { class: "muted" }, message), curl ? el("pre", { class: "curl-example" }, curl) : null));
  }

  render(capture) {
    const app = this.app;
    this.capture = capture;
    const sig = capture.signature;
    const val = capture.validation;
    const endpoint = app.endpoint;
    const sigHeaders = signatureHeaders(endpoint, sig, app.schemes);
    const chips = [];
    const panels = [];
    // No signature badge at all where the endpoint checks none.
    if (!(sig.status === "unchecked" && !endpoint?.verify)) {
      const lines = [];
      if (sig.scheme) lines.push(`Scheme: ${sig.scheme}${sig.auto ? " (picked by auto)" : ""}.`);
      if (sigHeaders.length && sig.status !== "unchecked") {
        lines.push(el("span", {}, "Read from ", sigHeaders.map((h, i) => [i ? ", " : "", el("a", {
          href: "#", class: "header-link", onclick: (e) => { e.preventDefault(); this.showTab("headers", h); } }, h)]), "."));
      }
      if (sig.reason) lines.push(sig.reason[0].toUpperCase() + sig.reason.slice(1) + ".");
      if (sig.status === "verified" && sig.secret_index !== null) {
        const total = endpoint?.verify?.secrets?.length || 1;
        lines.push(`Matched secret ${sig.secret_index + 1}${total > 1 ? ` of ${total}` : ""}.`);
      }
      if (sig.status === "unchecked") lines.push("Not checked: a body cut at the size limit, or a capture from before the endpoint had a scheme (Re-verify checks it now).");
      const hint = signatureHint(sig, sigHeaders);
      const open = sig.status === "failed" || sig.status === "missing";
      chips.push(chip(kindOf(sig.status), "Signature", sig.status, open, "sig-detail"));
      panels.push(el("div", { class: "verdict-detail", id: "sig-detail", hidden: !open },
        lines.map((line) => el("p", {}, line)), hint ? el("p", { class: "hint" }, hint) : null));
    }
    if (val.status !== "unknown" || val.format) {
      const count = val.errors.length;
      const text = val.status === "valid" ? `valid ${val.format}` : val.status === "invalid"
        ? `${count} ${count === 1 ? "error" : "errors"} · ${val.format}` : `unknown${val.format ? ` · ${val.format}` : ""}`;
      chips.push(chip(kindOf(val.status), "Payload", text, val.status === "invalid", "val-detail"));
      panels.push(el("div", { class: "verdict-detail", id: "val-detail", hidden: val.status !== "invalid" },
        el("p", {}, `Format: ${val.format || "none"}${val.detected ? " (detected)" : ""}.`),
        count ? el("ul", { class: "errors" }, val.errors.map((error) => el("li", {},
          el("a", { href: "#", class: "pointer", dataset: { pointer: error.path }, onclick: (e) => {
            e.preventDefault();
            this.showTab("body");
            if (!this.body.reveal(error.path)) app.toast(`${error.path || "/"} is not in the shown body`);
          } }, error.path || "/"), " ", error.message))) : null));
    } else {
      chips.push(el("span", { class: "chip plain" }, el("span", { class: "chip-label" }, "Payload"),
        el("span", {}, capture.parsed.kind)));
    }
    for (const node of chips) {
      if (node.tagName === "BUTTON") {
        node.addEventListener("click", () => {
          const panel = panels.find((p) => p.id === node.getAttribute("aria-controls"));
          panel.hidden = !panel.hidden;
          node.setAttribute("aria-expanded", String(!panel.hidden));
        });
      }
    }

    const shownPath = capture.path + (capture.query ? `?${capture.query}` : "");
    const bar = el("div", { class: "detail-bar" },
      el("button", { type: "button", class: "back", "aria-label": "Back", onclick: () => app.back() }, "‹ Back"),
      el("span", { class: `method m-${capture.method}` }, capture.method),
      el("span", { class: "path", title: shownPath }, shownPath),
      el("span", { class: "when muted", title: capture.received_at }, `#${capture.seq} · ${new Date(capture.received_at).toLocaleString()}`));
    const menuItems = el("div", { class: "menu-items", id: "export-menu", hidden: true },
        el("button", { type: "button", onclick: () => app.copyCurl(capture.id) }, "Copy as curl"),
        el("a", { class: "button", href: `/api/captures/${encodeURIComponent(capture.id)}/export?as=curl`, download: `${capture.id}.sh` }, "curl command"),
        el("a", { class: "button", href: `/api/captures/${encodeURIComponent(capture.id)}/export?as=har`, download: `${capture.id}.har` }, "HAR"),
        el("a", { class: "button", href: `/api/captures/${encodeURIComponent(capture.id)}/export?as=json`, download: `${capture.id}.json` }, "JSON fixture"));
    const exportButton = el("button", { type: "button", "aria-expanded": "false", "aria-controls": "export-menu",
                                        onclick: () => {
                                          menuItems.hidden = !menuItems.hidden;
                                          exportButton.setAttribute("aria-expanded", String(!menuItems.hidden));
                                        } }, "Export");
    menuItems.addEventListener("click", () => { menuItems.hidden = true; exportButton.setAttribute("aria-expanded", "false"); });
    const exportMenu = el("div", { class: "menu" }, exportButton, menuItems);
    const actions = el("div", { class: "detail-actions" },
      el("button", { type: "button", onclick: () => app.openReplay() }, "Replay…"),
      el("button", { type: "button", onclick: () => app.startCompare(capture.id) }, "Compare with…"),
      el("button", { type: "button", onclick: () => app.copyCurl(capture.id) }, "Copy as curl"),
      exportMenu,
      endpoint?.verify ? el("button", { type: "button", onclick: () => app.reverify(capture.id) }, "Re-verify") : null,
      el("button", { type: "button", class: "danger", onclick: () => app.remove(capture.id) }, "Delete"));

    this.body = bodyPanel(capture);
    const query = Array.from(new URLSearchParams(capture.query).entries());
    const headerRows = capture.headers.map(([k, v]) => {
      const read = sigHeaders.includes(k.toLowerCase()) && sig.status !== "unchecked";
      return [k, v, read ? { class: `sig-header ${kindOf(sig.status)}`, note: `signature (${sig.status})` } : null];
    });
    const tabs = [
      ["body", `Body${capture.body_size ? ` · ${size(capture.body_size)}` : ""}`, () => this.body.node],
      ["headers", `Headers · ${capture.headers.length}`, () => table(headerRows)],
      ["query", `Query · ${query.length}`, () => table(query, { empty: "No query parameters." })],
      ["details", "Details", () => table([
        ["id", capture.id], ["sequence", `#${capture.seq}`], ["received", capture.received_at],
        ["from", capture.remote_addr || "?"], ["method", capture.method], ["path", capture.path],
        ["content type", capture.content_type || "(none)"],
        ["size", `${size(capture.body_size)}${capture.truncated ? " (cut at the size limit)" : ""}`],
        ["parsed as", `${capture.parsed.kind}${capture.parsed.error ? `: ${capture.parsed.error}` : ""}`],
        ["answered", String(capture.response.status)]])],
    ];
    const tabBar = el("div", { class: "tabs", role: "tablist", "aria-label": "Capture" });
    const panel = el("div", { class: "tab-panel", role: "tabpanel", tabindex: "-1" });
    this.tabs = new Map();
    for (const [id, label, build] of tabs) {
      const button = el("button", { type: "button", role: "tab", id: `tab-${id}`, "aria-selected": "false",
                                    onclick: () => this.showTab(id) }, label);
      tabBar.append(button);
      this.tabs.set(id, { button, build });
    }
    this.panel = panel;
    this.extra = el("div", { class: "detail-extra" });  // a replay's answer, a diff
    const streamed = this.loading === capture.id ? this.pending : [];
    this.loading = null;
    this.pending = [];
    this.deliveries = new Deliveries(capture.id, [...capture.deliveries, ...streamed]);
    this.pane.replaceChildren(el("div", { class: "detail-inner" }, bar, actions,
      el("div", { class: "verdict-strip" }, el("div", { class: "chips" }, chips), panels),
      this.deliveries.node, this.extra, tabBar, panel));
    this.showTab(this.tab);
  }

  showTab(id, highlight) {
    if (!this.tabs?.has(id)) id = "body";
    this.tab = id;
    for (const [key, { button }] of this.tabs) button.setAttribute("aria-selected", String(key === id));
    this.panel.setAttribute("aria-labelledby", `tab-${id}`);
    this.panel.replaceChildren(this.tabs.get(id).build());
    if (highlight) {
      const row = [...this.panel.querySelectorAll("tr")].find((tr) => tr.querySelector("th")?.textContent.toLowerCase() === highlight);
      if (row) { row.scrollIntoView({ block: "center" }); row.classList.add("flash"); }
    }
  }

  // A delivery from the stream: on the capture shown, a new line that does not move what is
  // being read below it.
  delivered(delivery) {
    if (this.loading === delivery.capture) this.pending.push(delivery);
    if (this.capture?.id !== delivery.capture) return;
    const scrolled = this.pane.scrollTop;
    const before = this.deliveries.node.offsetHeight;
    if (this.deliveries.add(delivery) && scrolled > 0) {
      this.pane.scrollTop = scrolled + this.deliveries.node.offsetHeight - before;
    }
  }

  showReplay(reply, target) {
    const response = reply.response;
    const kind = response.status < 300 ? "good" : response.status < 500 ? "warn" : "bad";
    this.extra.replaceChildren(el("section", { class: "result", "aria-label": "Replay answer" },
      el("header", {}, el("h3", {}, "Replayed to ", el("code", {}, target)),
        el("span", { class: `chip ${kind}` }, `${response.status}`), el("span", { class: "muted" }, `${reply.elapsed_ms} ms`),
        el("button", { type: "button", class: "ghost small", onclick: () => this.extra.replaceChildren() }, "Dismiss")),
      replyParts(response, { foldHeaders: true })));
    this.extra.scrollIntoView({ block: "nearest" });
  }

  showDiff(diff, a, b) {
    const side = (label, value) => el("td", { class: label }, typeof value === "string" ? value : JSON.stringify(value, null, 2));
    const rows = [];
    const add = (section, path, before, after) => rows.push(el("tr", {}, el("th", {}, section), el("td", { class: "mono" }, path),
      side("a", before), side("b", after)));
    if (diff.method) add("method", "", diff.method.a, diff.method.b);
    if (diff.path) add("path", "", diff.path.a, diff.path.b);
    for (const section of ["query", "headers"]) {
      for (const item of diff[section].changed) add(section, item.name, item.a, item.b);
      for (const item of diff[section].removed) add(section, item.name, item.value, "(absent)");
      for (const item of diff[section].added) add(section, item.name, "(absent)", item.value);
    }
    if (diff.body.kind) add("body", "kind", diff.body.kind.a, diff.body.kind.b);
    for (const item of diff.body.changed) add("body", item.path || "/", item.a, item.b);
    for (const item of diff.body.removed) add("body", item.path, item.value, "(absent)");
    for (const item of diff.body.added) add("body", item.path, "(absent)", item.value);
    this.extra.replaceChildren(el("section", { class: "result diff", "aria-label": "Comparison" },
      el("header", {}, el("h3", {}, "Compared with ", el("a", { href: `#${b.id}`, onclick: (e) => { e.preventDefault(); this.app.select(b.id); } }, `#${b.seq}`)),
        el("span", { class: `chip ${diff.identical ? "good" : "warn"}` }, diff.identical ? "identical" : `${rows.length} differences`),
        el("button", { type: "button", class: "ghost small", onclick: () => this.extra.replaceChildren() }, "Dismiss")),
      rows.length ? el("table", { class: "kv diff-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "where"), el("th", {}, "name / pointer"), el("th", {}, `#${a.seq} (this)`), el("th", {}, `#${b.seq}`))),
        el("tbody", {}, rows)) : el("p", { class: "muted" }, "Same method, path, query, headers and body.")));
  }
}
