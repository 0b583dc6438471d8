// The inspector: the endpoint's captures live (JSON API + Server-Sent Events), one open in the
// detail pane, with its actions. Everything from a capture enters the page as text, never markup.
import { Detail } from "./detail.js";
import { CaptureList } from "./list.js";
import { Settings } from "./settings.js";

const { el, api, copy, toast } = HS;
const $ = (id) => document.getElementById(id);

function curlExample(url) {
  return `curl -X POST '${url}' -H 'Content-Type: application/json' -d '{"hello": "hookscope"}'`;
}

class Inspector {
  constructor() {
    this.token = $("inspector").dataset.token;
    this.endpoint = null;
    this.schemes = [];
    this.selected = null;
    this.paused = false;
    this.held = [];
    this.nextAfter = 0;
    this.source = null;
    this.compareFrom = null;
    this.toast = toast;
    this.workspace = $("workspace");
    this.list = new CaptureList(this);
    this.detail = new Detail($("detail"), this);
    this.settings = new Settings(this);
    this.bindControls();
    this.bindKeys();
  }

  setEndpoint(endpoint) {
    this.endpoint = endpoint;
    $("endpoint-name").textContent = endpoint.name || endpoint.alias || "Endpoint";
    document.title = `${endpoint.name || endpoint.alias || endpoint.token} · Hookscope`;
    $("capture-url").textContent = endpoint.alias_url || endpoint.url;
    this.list.update();
    if (!this.selected) this.showEmpty();
  }

  showEmpty() {
    const url = this.endpoint ? this.endpoint.alias_url || this.endpoint.url : "";
    if (this.list.captures.length) this.detail.empty("Select a capture (j and k move, Enter opens).");
    else if (this.list.filtered()) this.detail.empty("No captures match these filters.");
    else this.detail.empty(`Waiting for the first request. Send one to ${url}, for example:`, curlExample(url));
  }

  // -- selection ------------------------------------------------------------------------------

  rowClicked(id, event) {
    if (event.shiftKey && this.selected && this.selected !== id) {
      this.compare(this.selected, id);
      return;
    }
    if (this.compareFrom) {
      const from = this.compareFrom;
      this.endCompare();
      if (from !== id) { this.compare(from, id); return; }
    }
    this.select(id, { open: true });
  }

  async select(id, { open = false } = {}) {
    this.selected = id;
    this.list.mark(id);
    if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
    if (open || !this.narrow()) this.workspace.classList.add("show-detail");
    this.detail.expect(id);
    try {
      const capture = await api("GET", `/api/captures/${encodeURIComponent(id)}`);
      if (this.selected === id) this.detail.render(capture);
      return capture;
    } catch (e) {
      if (this.selected === id) this.detail.empty(e.message);
      return null;
    }
  }

  narrow() {
    return matchMedia("(max-width: 760px)").matches;
  }

  back() {
    this.workspace.classList.remove("show-detail");
    this.list.node.focus();
  }

  // -- live -----------------------------------------------------------------------------------

  setConnection(status, text) {
    $("conn").dataset.state = status;
    $("conn").textContent = text || status;
  }

  connect() {
    // EventSource resends Last-Event-ID by itself when it reconnects: no gap, no duplicate.
    const source = new EventSource(`/api/endpoints/${this.token}/stream?after=${this.nextAfter}`);
    this.source = source;
    let dropped = false;
    source.addEventListener("open", () => {
      this.setConnection(this.paused ? "paused" : "live");
      // Deliveries carry no event id, so a resumed stream does not repeat those it missed.
      if (dropped) this.detail.deliveries?.refresh().catch(() => {});
      dropped = false;
    });
    source.addEventListener("error", async () => {
      dropped = true;
      this.setConnection("reconnecting", "reconnecting…");
      try {
        await api("GET", `/api/endpoints/${this.token}`);
      } catch (e) {
        if (/no endpoint/.test(e.message)) {
          source.close();
          this.setConnection("reconnecting", "endpoint deleted");
        }
      }
    });
    source.addEventListener("capture", (event) => {
      if (this.endpoint) this.endpoint.capture_count += 1;  // counted once, held or shown
      this.arrive(JSON.parse(event.data));
    });
    source.addEventListener("delivery", (event) => this.detail.delivered(JSON.parse(event.data)));
  }

  arrive(capture) {
    this.nextAfter = Math.max(this.nextAfter, capture.seq);
    if (this.paused) {
      this.held.push(capture);
      $("paused-note").hidden = false;
      $("paused-note").textContent = `Paused: ${this.held.length} new ${this.held.length === 1 ? "capture" : "captures"} waiting. Resume`;
      return;
    }
    const matches = this.list.matches(capture);
    if (matches === null) { this.refilter(); return; }
    if (!matches || !this.list.arrive(capture)) return;
    if (!this.selected || $("follow").checked) this.select(capture.id);
  }

  setPaused(paused) {
    this.paused = paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(paused));
    this.setConnection(paused ? "paused" : this.source?.readyState === 1 ? "live" : "connecting");
    if (!paused) {
      const held = this.held.splice(0);
      $("paused-note").hidden = true;
      held.forEach((capture) => this.arrive(capture));
    }
  }

  refilter() {
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(async () => {
      try {
        await this.list.reload();  // an open capture stays open, matching or not
        if (!this.selected) this.showEmpty();
      } catch (e) { toast(e.message); }
    }, 200);
  }

  // -- actions --------------------------------------------------------------------------------

  async copyCurl(id) {
    try {
      await copy(await this.curlFor(id), "curl command");
    } catch (e) { toast(e.message); }
  }

  async curlFor(id) {
    // The server writes the command: one generator for the page, the API and the CLI.
    const response = await fetch(`/api/captures/${encodeURIComponent(id)}/export?as=curl`);
    if (!response.ok) throw new Error(`could not export the capture (${response.status})`);
    return response.text();
  }

  async remove(id) {
    try {
      await api("DELETE", `/api/captures/${encodeURIComponent(id)}`);
    } catch (e) { toast(e.message); return; }
    if (this.endpoint) this.endpoint.capture_count -= 1;
    const next = this.list.remove(id);
    toast("Capture deleted");
    if (next) this.select(next.id);
    else { this.selected = null; history.replaceState(null, "", location.pathname); this.showEmpty(); }
  }

  async reverify(id) {
    try {
      const result = await api("POST", `/api/captures/${encodeURIComponent(id)}/verify`);
      toast(`Signature: ${result.signature.status}`);
      const capture = await this.select(id);
      if (capture) {
        const index = this.list.captures.findIndex((c) => c.id === id);
        if (index !== -1) {
          this.list.captures[index] = { ...this.list.captures[index], signature: capture.signature };
          $(`row-${id}`)?.replaceWith(this.list.row(this.list.captures[index], false));
          this.list.mark(id);
        }
      }
    } catch (e) { toast(e.message); }
  }

  replayKey() {
    return `hookscope-replay-${this.token}`;
  }

  openReplay() {
    if (!this.detail.capture) return;
    const form = $("replay-form");
    let saved = "";
    try { saved = localStorage.getItem(this.replayKey()) || ""; } catch (e) { /* unavailable */ }
    form.elements.url.value = saved || form.elements.url.value;
    $("replay-error").textContent = "";
    $("replay-dialog").showModal();
    form.elements.url.focus();
  }

  async replay() {
    const form = $("replay-form");
    const capture = this.detail.capture;
    const url = form.elements.url.value.trim();
    $("replay-error").textContent = "";
    try {
      const reply = await api("POST", `/api/captures/${encodeURIComponent(capture.id)}/replay`,
                              { url, timeout: Number(form.elements.timeout.value || 10) });
      try { localStorage.setItem(this.replayKey(), url); } catch (e) { /* unavailable */ }
      $("replay-dialog").close();
      if (this.detail.capture?.id === capture.id) this.detail.showReplay(reply, url);
    } catch (e) {
      $("replay-error").textContent = e.details?.length ? e.details.map((d) => d.message).join("; ") : e.message;
    }
  }

  startCompare(id) {
    this.compareFrom = id;
    this.workspace.classList.add("comparing");
    this.workspace.classList.remove("show-detail");
    toast("Pick the capture to compare with (Esc cancels)");
  }

  endCompare() {
    this.compareFrom = null;
    this.workspace.classList.remove("comparing");
  }

  async compare(a, b) {
    try {
      const [diff, left, right] = await Promise.all([
        api("GET", `/api/captures/${encodeURIComponent(a)}/diff/${encodeURIComponent(b)}`),
        this.detail.capture?.id === a ? this.detail.capture : this.select(a, { open: true }),
        api("GET", `/api/captures/${encodeURIComponent(b)}`)]);
      this.workspace.classList.add("show-detail");
      this.detail.showDiff(diff, left, right);
    } catch (e) { toast(e.message); }
  }

  // -- controls and keys ----------------------------------------------------------------------

  bindControls() {
    $("copy-url").addEventListener("click", () => copy($("capture-url").textContent, "URL"));
    $("copy-curl-example").addEventListener("click", () => copy(curlExample($("capture-url").textContent), "curl example"));
    $("search").addEventListener("input", () => this.refilter());
    for (const id of ["filter-method", "filter-signature", "filter-validation"]) $(id).addEventListener("change", () => this.refilter());
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]) {
      $("filter-method").append(el("option", { value: method }, method));
    }
    $("pause").addEventListener("click", () => this.setPaused(!this.paused));
    $("paused-note").addEventListener("click", () => this.setPaused(false));
    $("clear-all").addEventListener("click", async () => {
      if (!confirm("Delete every capture of this endpoint?")) return;
      try { await api("DELETE", `/api/endpoints/${this.token}/captures`); } catch (e) { toast(e.message); return; }
      this.held = [];
      $("paused-note").hidden = true;
      this.selected = null;
      if (this.endpoint) this.endpoint.capture_count = 0;
      history.replaceState(null, "", location.pathname);
      await this.list.reload();
      this.showEmpty();
    });
    $("replay-form").addEventListener("submit", (event) => { event.preventDefault(); this.replay(); });
    $("replay-cancel").addEventListener("click", () => $("replay-dialog").close());
    $("shortcuts-button").addEventListener("click", () => $("shortcuts-dialog").showModal());
    $("shortcuts-close").addEventListener("click", () => $("shortcuts-dialog").close());
    window.addEventListener("hashchange", () => {
      const id = location.hash.slice(1);
      if (id && id !== this.selected) this.select(id, { open: true });
    });
  }

  bindKeys() {
    document.addEventListener("keydown", (event) => {
      if (document.querySelector("dialog[open]")) return;  // a dialog handles its own keys
      const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
      if (event.key === "Escape") {
        if (typing) { document.activeElement.blur(); return; }
        if (this.compareFrom) { this.endCompare(); toast("Comparison cancelled"); return; }
        if (this.workspace.classList.contains("show-detail") && this.narrow()) { this.back(); return; }
        return;
      }
      if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
      const id = this.selected;
      if (event.key === "/") { event.preventDefault(); $("search").focus(); }
      else if (event.key === "?") { event.preventDefault(); $("shortcuts-dialog").showModal(); }
      else if (event.key === "c" && id) { event.preventDefault(); this.copyCurl(id); }
      else if (event.key === "r" && this.detail.capture) { event.preventDefault(); this.openReplay(); }
      else if (["j", "k", "ArrowDown", "ArrowUp"].includes(event.key) && document.activeElement !== this.list.node) {
        if (!["j", "k"].includes(event.key)) return;  // arrows scroll the page elsewhere
        event.preventDefault();
        const step = event.key === "j" ? 1 : -1;
        const target = id ? this.list.neighbour(id, step) : this.list.captures[0];
        if (target) this.select(target.id);
      }
    });
  }

  async start() {
    const [schemes] = await Promise.all([
      api("GET", "/api/schemes").then((d) => d.schemes).catch(() => []),
      HS.fillOptions($("settings-format"), "/api/formats", "formats", (f) => f.title),
    ]);
    this.schemes = schemes;
    this.settings.setSchemes(schemes);
    for (const scheme of this.settings.schemes) $("settings-scheme").append(el("option", { value: scheme.id }, scheme.title));
    this.setEndpoint(await api("GET", `/api/endpoints/${this.token}`));
    await this.list.reload();
    const wanted = location.hash.slice(1);
    if (wanted) await this.select(wanted, { open: true });
    else if (this.list.captures.length) await this.select(this.list.captures[0].id);
    else this.showEmpty();
    this.connect();
  }
}

const inspector = new Inspector();
// For the browser tests: the command that "Copy as curl" puts on the clipboard.
window.HookscopeInspector = { curlFor: (id) => inspector.curlFor(id) };
inspector.start().catch((e) => {
  toast(e.message);
  inspector.detail.empty(`Could not load this endpoint: ${e.message}`);
});
