// The capture list: newest first, paged back through all of history as it scrolls, one tab stop
// (a listbox whose rows are options), filled live by the stream.
import { kindOf } from "./detail.js";

const { el, api, size } = HS;

const PAGE = 100;

function badge(kind, text, title) {
  return el("span", { class: `badge ${kind}`, title }, text);
}

export class CaptureList {
  constructor(app) {
    this.app = app;
    this.node = document.getElementById("capture-list");
    this.state = document.getElementById("list-state");
    this.count = document.getElementById("list-count");
    this.more = document.getElementById("list-more");
    this.captures = [];
    this.oldest = null;  // the smallest seq loaded
    this.exhausted = false;
    this.loading = null;
    this.generation = 0;  // a new filter makes older pages still in flight stale
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadOlder();
    }, { root: this.node.parentElement, rootMargin: "400px" });
    this.observer.observe(this.more);
    document.getElementById("load-older").addEventListener("click", () => this.loadOlder());
    this.node.addEventListener("click", (event) => {
      const item = event.target.closest(".capture-row");
      if (item) this.app.rowClicked(item.dataset.id, event);
    });
    this.node.addEventListener("keydown", (event) => this.key(event));
    this.node.addEventListener("focus", () => {
      if (!this.node.getAttribute("aria-activedescendant") && this.captures.length) this.mark(this.app.selected || this.captures[0].id);
    });
  }

  filters() {
    const params = new URLSearchParams();
    const pairs = [["q", document.getElementById("search").value.trim()],
                   ["method", document.getElementById("filter-method").value],
                   ["signature", document.getElementById("filter-signature").value],
                   ["validation", document.getElementById("filter-validation").value]];
    for (const [key, value] of pairs) if (value) params.set(key, value);
    return params;
  }

  filtered() {
    return [...this.filters().keys()].length > 0;
  }

  matches(capture) {
    const f = this.filters();
    if (f.get("q")) return null;  // the server searches bodies too: ask it
    return (!f.get("method") || capture.method === f.get("method"))
      && (!f.get("signature") || capture.signature.status === f.get("signature"))
      && (!f.get("validation") || capture.validation.status === f.get("validation"));
  }

  row(capture, fresh) {
    const shown = (capture.path.replace(/^\/h\/[^/]+/, "") || "/") + (capture.query ? `?${capture.query}` : "");
    const endpoint = this.app.endpoint;
    const sig = capture.signature;
    const val = capture.validation;
    const badges = [];
    if (!(sig.status === "unchecked" && !endpoint?.verify)) {
      badges.push(badge(kindOf(sig.status), `sig ${sig.status}`, sig.reason || sig.scheme || ""));
    }
    if (val.status === "valid") badges.push(badge("good", val.format, "valid"));
    if (val.status === "invalid") badges.push(badge("bad", `invalid ${val.format}`, `${val.errors.length} errors`));
    const time = new Date(capture.received_at);
    return el("li", {
      class: `capture-row${fresh ? " fresh" : ""}`, role: "option", id: `row-${capture.id}`,
      "aria-selected": String(capture.id === this.app.selected), dataset: { id: capture.id },
    },
      el("span", { class: `method m-${capture.method}` }, capture.method),
      el("span", { class: "path", title: capture.path }, shown),
      el("span", { class: "seq muted" }, `#${capture.seq}`),
      el("span", { class: "meta" },
        el("time", { datetime: capture.received_at, title: capture.received_at }, time.toLocaleTimeString()),
        el("span", {}, size(capture.body_size)),
        capture.response.status >= 300 ? el("span", {}, `→ ${capture.response.status}`) : null,
        badges));
  }

  render() {
    this.node.replaceChildren(...this.captures.map((c) => this.row(c, false)));
    this.update();
  }

  update() {
    const total = this.app.endpoint?.capture_count ?? this.captures.length;
    if (this.filtered()) {
      this.count.textContent = `${this.captures.length}${this.exhausted ? "" : "+"} matching`;
    } else {
      this.count.textContent = this.captures.length ? `${this.captures.length} of ${Math.max(total, this.captures.length)}` : "";
    }
    this.more.hidden = this.exhausted;
    let text = "";
    if (!this.captures.length) {
      if (this.filtered()) text = "No captures match these filters.";
      else if (this.loading) text = "Loading…";
      else text = "Waiting for the first request…";
    } else if (this.exhausted && this.captures.length > PAGE) {
      text = "That is the first capture.";
    }
    this.state.textContent = text;
  }

  async reload() {
    this.generation += 1;
    this.captures = [];
    this.oldest = null;
    this.exhausted = false;
    this.node.replaceChildren();
    await this.loadOlder(true);
  }

  async loadOlder(first = false) {
    if (this.exhausted || (this.loading && !first)) return this.loading;
    const generation = this.generation;
    const params = this.filters();
    params.set("limit", String(PAGE));
    if (this.oldest !== null) params.set("before", String(this.oldest));
    this.loading = (async () => {
      try {
        const data = await api("GET", `/api/endpoints/${this.app.token}/captures?${params}`);
        if (generation !== this.generation) return;
        if (first) this.app.nextAfter = Math.max(this.app.nextAfter, data.next_after);
        const known = new Set(this.captures.map((c) => c.id));
        const page = data.captures.filter((c) => !known.has(c.id));
        this.captures.push(...page);
        this.node.append(...page.map((c) => this.row(c, false)));
        if (data.captures.length) this.oldest = data.captures[data.captures.length - 1].seq;
        this.exhausted = data.captures.length < PAGE;
      } finally {
        if (generation === this.generation) this.loading = null;
        this.update();
      }
    })();
    return this.loading;
  }

  // A capture from the stream: at the top, without moving what the reader is looking at.
  arrive(capture) {
    if (this.captures.some((c) => c.id === capture.id)) return false;
    const pane = this.node.parentElement;
    const before = pane.scrollTop;
    const node = this.row(capture, true);
    this.captures.unshift(capture);
    this.node.prepend(node);
    if (before > 0) pane.scrollTop = before + node.offsetHeight;
    this.update();
    return true;
  }

  remove(id) {
    const index = this.captures.findIndex((c) => c.id === id);
    if (index === -1) return null;
    this.captures.splice(index, 1);
    document.getElementById(`row-${id}`)?.remove();
    this.update();
    return this.captures[index] || this.captures[index - 1] || null;
  }

  mark(id) {
    for (const node of this.node.querySelectorAll('[aria-selected="true"]')) node.setAttribute("aria-selected", "false");
    const node = document.getElementById(`row-${id}`);
    if (node) {
      node.setAttribute("aria-selected", "true");
      this.node.setAttribute("aria-activedescendant", node.id);
      node.scrollIntoView({ block: "nearest" });
    }
  }

  neighbour(id, step) {
    const index = this.captures.findIndex((c) => c.id === id);
    const next = this.captures[Math.min(Math.max(index + step, 0), this.captures.length - 1)];
    if (step > 0 && index >= this.captures.length - 3) this.loadOlder();
    return next;
  }

  key(event) {
    const keys = { ArrowDown: 1, ArrowUp: -1, j: 1, k: -1 };
    if (event.key in keys && !event.altKey && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      event.stopPropagation();
      const target = this.neighbour(this.app.selected, keys[event.key]);
      if (target) this.app.select(target.id);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      const id = this.app.selected || this.captures[0]?.id;
      if (id) this.app.select(id, { open: true });
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      const target = event.key === "Home" ? this.captures[0] : this.captures[this.captures.length - 1];
      if (target) this.app.select(target.id);
    }
  }
}
