// A capture's deliveries: each attempt to forward it (`hookscope listen`, a server-side forward)
// as one line, oldest first, with its reply one click away. Whoever forwarded wrote every field,
// so all of it enters the page as text, like a capture.
const { el, api, size } = HS;

// Retries must not push the body out of sight: beyond this many lines the earlier ones fold.
const SHOWN = 3;

const OUTCOME = { delivered: "good", retrying: "warn", failed: "bad" };

function host(target) {
  try {
    return new URL(target).host || target;
  } catch (e) {
    return target;
  }
}

function duration(ms) {
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function bytes(count) {
  return count < 1024 ? `${count} ${count === 1 ? "byte" : "bytes"}` : size(count);
}

// "forwarded to localhost:3000 by alice@laptop: 500 in 12 ms", the full URL on hover.
function sentence(delivery) {
  const took = typeof delivery.elapsed_ms === "number" ? duration(delivery.elapsed_ms) : null;
  const result = delivery.status !== null
    ? `${delivery.status}${took ? ` in ${took}` : ""}`
    : `${delivery.error}${took ? ` after ${took}` : ""}`;
  return el("span", { class: "delivery-what" }, "forwarded to ",
    el("span", { class: "target", title: delivery.target }, host(delivery.target)),
    `${delivery.by ? ` by ${delivery.by}` : ""}: ${result}`);
}

// A reply as it was received (a replay's answer, a delivery's reply): headers, then the body as
// text, or its size when it is not text.
export function replyParts(response, { foldHeaders = false } = {}) {
  const headers = el("table", { class: "kv" }, el("tbody", {},
    response.headers.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, value)))));
  return [
    foldHeaders ? el("details", {}, el("summary", {}, `Response headers · ${response.headers.length}`), headers) : headers,
    el("pre", { class: "raw reply-body" }, response.body_text !== null
      ? response.body_text || "(empty body)" : `(${bytes(response.body_size)}, not text)`),
    response.truncated ? el("p", { class: "muted" }, "The reply was longer: only its start was kept.") : null,
  ];
}

export class Deliveries {
  // `deliveries` in full (with `response`) or, from the stream, without it (fetched on demand).
  constructor(captureId, deliveries) {
    this.captureId = captureId;
    this.known = new Map();
    this.unfolded = false;
    this.title = el("h3", { id: "deliveries-title" });
    this.more = el("button", { type: "button", class: "ghost small", "aria-controls": "delivery-list",
                               onclick: () => { this.unfolded = true; this.fold(); } });
    this.list = el("ol", { class: "delivery-list", id: "delivery-list" });
    this.node = el("section", { class: "deliveries", "aria-labelledby": "deliveries-title" },
      el("header", {}, this.title, this.more), this.list);
    deliveries.forEach((delivery) => this.add(delivery));
    this.fold();
  }

  // Returns whether the delivery was new.
  add(delivery) {
    const known = this.known.get(delivery.id);
    if (known) {
      if ("response" in delivery) known.delivery = delivery;
      return false;
    }
    const entry = { delivery, panel: el("div", { class: "delivery-reply" }) };
    const line = el("details", { class: "delivery" },
      el("summary", {},
        el("span", { class: `badge ${OUTCOME[delivery.outcome] || ""}` }, delivery.outcome),
        sentence(delivery),
        delivery.attempt > 1 ? el("span", { class: "muted" }, `attempt ${delivery.attempt}`) : null,
        el("time", { class: "muted", datetime: delivery.at, title: delivery.at }, new Date(delivery.at).toLocaleTimeString())),
      entry.panel);
    line.addEventListener("toggle", () => { if (line.open) this.open(entry); });
    this.known.set(delivery.id, entry);
    this.list.append(el("li", {}, line));
    this.fold();
    return true;
  }

  fold() {
    const lines = [...this.list.children];
    const folded = this.unfolded ? 0 : Math.max(0, lines.length - SHOWN);
    lines.forEach((line, index) => { line.hidden = index < folded; });
    this.more.hidden = folded === 0;
    this.more.textContent = `Show ${folded} earlier ${folded === 1 ? "attempt" : "attempts"}`;
    this.more.setAttribute("aria-expanded", String(folded === 0));
    this.title.textContent = `Deliveries · ${lines.length}`;
    this.node.hidden = lines.length === 0;
  }

  // The deliveries as the server has them now: the replies of those that came from the stream,
  // and any the stream did not bring (while it was reconnecting).
  async refresh() {
    const capture = await api("GET", `/api/captures/${encodeURIComponent(this.captureId)}`);
    for (const delivery of capture.deliveries) this.add(delivery);
  }

  async open(entry) {
    if (!("response" in entry.delivery)) {
      entry.panel.replaceChildren(el("p", { class: "muted" }, "Loading the reply…"));
      try {
        await this.refresh();
      } catch (e) {
        entry.panel.replaceChildren(el("p", { class: "form-error" }, e.message));
        return;
      }
    }
    const delivery = entry.delivery;
    const response = delivery.response;
    const answer = delivery.status === null
      ? `No reply: ${delivery.error}.`
      : response ? `Replied ${delivery.status}.` : `Replied ${delivery.status}; the reply itself was not recorded.`;
    const parts = [
      el("p", {}, "Sent to ", el("code", {}, delivery.target), ` at ${delivery.at}`,
        delivery.by ? ` by ${delivery.by}` : "", `, attempt ${delivery.attempt}: ${delivery.outcome}.`),
      el("p", {}, answer),
      response ? replyParts(response) : null];
    entry.panel.replaceChildren(...parts.flat().filter(Boolean));
  }
}
