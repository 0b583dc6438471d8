// The body viewer: pretty JSON (valid JSON when selected and copied), XML as XML, forms and
// multipart parts as tables, raw text and a hex dump; find, wrap, expand and collapse, copy.
// Everything from the capture enters the page as text, never as markup.
const { el, size, copy } = HS;

// A hostile or huge body must not freeze the page: at most this many lines are built at first
// (the rest of a collapsed branch is built when it is opened), and raw text is shown up to a cap.
const LINE_BUDGET = 20000;
const OPEN_ALL_BELOW = 5000;  // values with fewer nodes open fully; larger ones to OPEN_DEPTH
const OPEN_DEPTH = 2;
const RAW_CAP = 1024 * 1024;
const HEX_CAP = 64 * 1024;
const XML_PRETTY_CAP = 2 * 1024 * 1024;

function isMissing(error) {
  return error.path !== "" && error.message === `missing required ${error.path}`;
}

export function pointerOf(parent, key) {
  return `${parent}/${String(key).replace(/~/g, "~0").replace(/\//g, "~1")}`;
}

function countNodes(value, limit) {
  let count = 0;
  const stack = [value];
  while (stack.length && count <= limit) {
    const item = stack.pop();
    count += 1;
    if (item !== null && typeof item === "object") {
      for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push(child);
    }
  }
  return count;
}

function scalar(value) {
  if (typeof value === "string") return el("span", { class: "j-str" }, JSON.stringify(value));
  if (typeof value === "number") return el("span", { class: "j-num" }, String(value));
  if (value === null) return el("span", { class: "j-null" }, "null");
  return el("span", { class: "j-bool" }, String(value));
}

// One JSON value as lines: `{`, its members (each a line or a nested block), `}`. Indentation is
// real spaces, so a selection copies as valid, indented JSON; toggles, error notes and
// placeholders are outside the selectable text.
class JsonView {
  constructor(value, errors) {
    this.errors = errors;
    this.openAll = countNodes(value, OPEN_ALL_BELOW) < OPEN_ALL_BELOW;
    this.budget = LINE_BUDGET;
    this.root = el("div", { class: "json" });
    this.root.append(...this.node(value, null, "", 0, true).flat().filter(Boolean));
  }

  keyPart(key) {
    return key === null ? null : [el("span", { class: "j-key" }, JSON.stringify(String(key))), ": "];
  }

  line(depth, parts, pointer, last) {
    const node = el("div", { class: "j-line", dataset: pointer === null ? {} : { pointer } },
      "  ".repeat(depth), parts, last ? "" : ",");
    return node;
  }

  node(value, key, pointer, depth, last) {
    this.budget -= 1;
    if (value === null || typeof value !== "object") {
      const line = this.line(depth, [this.keyPart(key), scalar(value)], pointer, last);
      return [line, this.notes(pointer, depth)];
    }
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
    const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
    if (entries.length === 0) {
      return [this.line(depth, [this.keyPart(key), open + close], pointer, last), this.notes(pointer, depth)];
    }
    const block = el("div", { class: "j-block", dataset: { pointer } });
    const toggle = el("button", { type: "button", class: "j-toggle", "aria-expanded": "true",
                                  "aria-label": `collapse ${pointer || "the body"}`, tabindex: "-1" });
    const summary = el("span", { class: "j-summary", hidden: true }, ` … ${entries.length} ${isArray ? "items" : "keys"} `);
    const head = el("div", { class: "j-line j-head", dataset: { pointer } },
      toggle, "  ".repeat(depth), this.keyPart(key), open, summary);
    const children = el("div", { class: "j-children" });
    const tail = this.line(depth, [close], null, last);
    block.append(head, this.notes(pointer, depth), children, tail);
    let built = false;
    const build = () => {
      if (built) return;
      built = true;
      const shown = entries.slice(0, 5000);
      shown.forEach(([childKey, child], index) => {
        children.append(...this.node(child, isArray ? null : childKey, pointerOf(pointer, childKey), depth + 1,
                                     index === entries.length - 1).flat().filter(Boolean));
      });
      if (entries.length > shown.length) {
        children.append(el("div", { class: "j-note" }, `… ${entries.length - shown.length} more not shown; see Raw`));
      }
      for (const missing of this.missingKeys(pointer)) {
        children.prepend(el("div", { class: "j-missing", dataset: { pointer: pointerOf(pointer, missing) } },
          "  ".repeat(depth + 1), `"${missing}": missing (required)`));
      }
    };
    block.setOpen = (wanted) => {
      if (wanted) build();
      children.hidden = !wanted;
      tail.hidden = !wanted;
      summary.hidden = wanted;
      toggle.setAttribute("aria-expanded", String(wanted));
      toggle.setAttribute("aria-label", `${wanted ? "collapse" : "expand"} ${pointer || "the body"}`);
    };
    toggle.addEventListener("click", () => block.setOpen(toggle.getAttribute("aria-expanded") !== "true"));
    const startOpen = this.budget > 0 && (this.openAll || depth < OPEN_DEPTH || this.hasErrorBelow(pointer));
    block.setOpen(startOpen);
    return [block];
  }

  hasErrorBelow(pointer) {
    return this.errors.some((e) => e.path === pointer || e.path.startsWith(`${pointer}/`));
  }

  missingKeys(pointer) {
    const keys = [];
    for (const error of this.errors) {
      const match = /^'(.*)' is a required property$/.exec(error.message);
      if (match && error.path === pointer) keys.push(match[1]);
      // An endpoint's own schema names the missing field's own pointer: "missing required /a/b".
      if (isMissing(error) && error.path.slice(0, error.path.lastIndexOf("/")) === pointer) {
        keys.push(error.path.slice(error.path.lastIndexOf("/") + 1).replace(/~1/g, "/").replace(/~0/g, "~"));
      }
    }
    return keys;
  }

  notes(pointer, depth) {
    const here = this.errors.filter((e) => e.path === pointer && !/is a required property$/.test(e.message) && !isMissing(e));
    return here.map((e) => el("div", { class: "j-error", role: "note", dataset: { pointer } },
      "  ".repeat(depth), el("span", { class: "j-error-text" }, `⚠ ${e.message}`)));
  }
}

// Every JSON block under `root`, opened or closed at once.
function setAll(root, open) {
  // Opening builds children, which may hold more blocks: repeat until nothing new appears.
  let seen = 0;
  for (let round = 0; round < 64; round += 1) {
    const blocks = root.querySelectorAll(".j-block");
    if (!open) { blocks.forEach((b) => b.setOpen(false)); return; }
    blocks.forEach((b) => b.setOpen(true));
    if (blocks.length === seen) return;
    seen = blocks.length;
  }
}

// Open every branch above the node with `pointer`, then show it: scroll and flash.
export function reveal(root, pointer) {
  let target = root.querySelector(`[data-pointer="${CSS.escape(pointer)}"]`);
  if (!target) {
    // Not built yet: open the path down to it, one level at a time.
    const parts = pointer.split("/").slice(1);
    let current = "";
    for (const part of parts) {
      const block = root.querySelector(`.j-block[data-pointer="${CSS.escape(current)}"]`);
      block?.setOpen(true);
      current = `${current}/${part}`;
    }
    target = root.querySelector(`[data-pointer="${CSS.escape(pointer)}"]`)
      || root.querySelector(`[data-pointer="${CSS.escape(parentPointer(pointer))}"]`);
  }
  if (!target) return false;
  for (let up = target.parentElement; up && up !== root; up = up.parentElement) {
    if (up.classList.contains("j-block")) up.setOpen(true);
  }
  const line = target.classList.contains("j-block") ? target.querySelector(".j-head") : target;
  line.scrollIntoView({ block: "center" });
  line.classList.remove("flash");
  void line.offsetWidth;  // restart the animation
  line.classList.add("flash");
  return true;
}

function parentPointer(pointer) {
  return pointer.slice(0, Math.max(0, pointer.lastIndexOf("/")));
}

// XML pretty-printed as XML, with its root element, from the body text.
function xmlView(text) {
  if (text.length > XML_PRETTY_CAP) return null;
  const doc = new DOMParser().parseFromString(text, "application/xml");
  if (doc.querySelector("parsererror")) return null;
  const root = el("div", { class: "xml" });
  const walk = (node, depth) => {
    const pad = "  ".repeat(depth);
    if (node.nodeType === Node.TEXT_NODE || node.nodeType === Node.CDATA_SECTION_NODE) {
      const value = node.nodeValue.trim();
      if (value) root.append(el("div", { class: "x-line" }, pad, el("span", { class: "x-text" }, value)));
      return;
    }
    if (node.nodeType === Node.COMMENT_NODE) {
      root.append(el("div", { class: "x-line" }, pad, el("span", { class: "x-comment" }, `<!--${node.nodeValue}-->`)));
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const attrs = Array.from(node.attributes).map((a) => [" ", el("span", { class: "x-attr" }, a.name),
      "=", el("span", { class: "x-value" }, JSON.stringify(a.value))]);
    const children = Array.from(node.childNodes).filter((c) => c.nodeType !== Node.TEXT_NODE || c.nodeValue.trim());
    const name = node.nodeName;
    if (children.length === 0) {
      root.append(el("div", { class: "x-line" }, pad, "<", el("span", { class: "x-tag" }, name), attrs, "/>"));
    } else if (children.length === 1 && children[0].nodeType === Node.TEXT_NODE) {
      root.append(el("div", { class: "x-line" }, pad, "<", el("span", { class: "x-tag" }, name), attrs, ">",
        el("span", { class: "x-text" }, children[0].nodeValue.trim()), "</", el("span", { class: "x-tag" }, name), ">"));
    } else {
      root.append(el("div", { class: "x-line" }, pad, "<", el("span", { class: "x-tag" }, name), attrs, ">"));
      children.forEach((child) => walk(child, depth + 1));
      root.append(el("div", { class: "x-line" }, pad, "</", el("span", { class: "x-tag" }, name), ">"));
    }
  };
  walk(doc.documentElement, 0);
  return root;
}

export function bytesOf(capture) {
  if (capture.body_base64 !== null) return Uint8Array.from(atob(capture.body_base64), (c) => c.charCodeAt(0));
  return new TextEncoder().encode(capture.body_text || "");
}

function hexdump(bytes) {
  const lines = [];
  for (let offset = 0; offset < Math.min(bytes.length, HEX_CAP); offset += 16) {
    const chunk = bytes.slice(offset, offset + 16);
    const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines.join("\n");
}

function table(rows, head) {
  return el("table", { class: "kv" }, head ? el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))) : null,
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c, i) => el(i === 0 ? "th" : "td", {}, c))))));
}

// Find: every hit of `text` in the view's text marked, the current one scrolled to.
class Finder {
  constructor(view, counter) {
    this.view = view;
    this.counter = counter;
    this.hits = [];
    this.index = -1;
  }

  clear() {
    for (const mark of this.view.querySelectorAll("mark.hit")) mark.replaceWith(...mark.childNodes);
    this.view.normalize();
    this.hits = [];
    this.index = -1;
    this.counter.textContent = "";
  }

  find(text) {
    this.clear();
    if (!text) return;
    if (this.view.querySelector(".j-block")) setAll(this.view, true);
    const needle = text.toLowerCase();
    const walker = document.createTreeWalker(this.view, NodeFilter.SHOW_TEXT);
    const found = [];
    for (let node = walker.nextNode(); node && found.length < 5000; node = walker.nextNode()) {
      if (node.parentElement.closest(".j-toggle, .j-error, .j-missing")) continue;
      const hay = node.nodeValue.toLowerCase();
      let at = hay.indexOf(needle);
      while (at !== -1) { found.push([node, at]); at = hay.indexOf(needle, at + needle.length); }
    }
    // Wrap from the end of each text node backwards, so earlier offsets stay valid.
    for (let i = found.length - 1; i >= 0; i -= 1) {
      const [node, at] = found[i];
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + needle.length);
      const mark = el("mark", { class: "hit" });
      range.surroundContents(mark);
      this.hits.unshift(mark);
    }
    this.counter.textContent = found.length ? "" : "no match";
    if (found.length) this.move(1);
  }

  move(step) {
    if (!this.hits.length) return;
    this.hits[this.index]?.classList.remove("current");
    this.index = (this.index + step + this.hits.length) % this.hits.length;
    const hit = this.hits[this.index];
    hit.classList.add("current");
    hit.scrollIntoView({ block: "center" });
    this.counter.textContent = `${this.index + 1} of ${this.hits.length}`;
  }
}

// The Body tab: its views, its toolbar, and `reveal(pointer)` for the verdict strip's links.
export function bodyPanel(capture) {
  const parsed = capture.parsed;
  const errors = capture.validation.errors || [];
  const views = [];
  if (parsed.kind === "empty") {
    return { node: el("p", { class: "muted body-empty" }, "Empty body."), reveal: () => false };
  }
  if (parsed.value !== null && (parsed.kind === "json" || parsed.kind === "ndjson")) {
    views.push(["Pretty", () => new JsonView(parsed.value, errors).root]);
  }
  if (parsed.kind === "xml" && capture.body_text !== null) {
    const pretty = xmlView(capture.body_text);
    if (pretty) views.push(["Pretty", () => pretty]);
  }
  if (parsed.kind === "form" && parsed.value) {
    views.push(["Form", () => table(parsed.value.map(([k, v]) => [k, v]), ["name", "value"])]);
  }
  if (parsed.kind === "multipart" && parsed.value) {
    views.push(["Parts", () => table(parsed.value.map((part) => [
      part.name || "(unnamed)", part.filename || "", part.content_type, size(part.size),
      part.text !== null ? part.text : ""]), ["name", "file", "type", "size", "text"])]);
  }
  views.push(["Raw", () => {
    if (capture.body_text === null) return el("p", { class: "muted" }, `Binary, ${size(capture.body_size)}: see Hex, or download it.`);
    const text = capture.body_text;
    const shown = text.length > RAW_CAP ? text.slice(0, RAW_CAP) : text;
    return el("div", {}, el("pre", { class: "raw" }, shown),
      text.length > RAW_CAP ? el("p", { class: "muted" }, `Showing the first ${size(RAW_CAP)} of ${size(capture.body_size)}; download the body for all of it.`) : null);
  }]);
  views.push(["Hex", () => {
    const bytes = bytesOf(capture);
    return el("div", {}, el("pre", { class: "raw hex" }, hexdump(bytes)),
      bytes.length > HEX_CAP ? el("p", { class: "muted" }, `Showing the first ${size(HEX_CAP)} of ${size(bytes.length)}.`) : null);
  }]);

  const viewer = el("div", { class: "viewer" });
  const counter = el("span", { class: "find-count muted", "aria-live": "polite" });
  const findBox = el("input", { type: "search", class: "find", placeholder: "Find in body", "aria-label": "Find in body" });
  let finder = null;
  const expand = el("button", { type: "button", class: "small", onclick: () => setAll(viewer, true) }, "Expand all");
  const collapse = el("button", { type: "button", class: "small", onclick: () => setAll(viewer, false) }, "Collapse all");
  const wrap = el("button", { type: "button", class: "small", "aria-pressed": "false", onclick: () => {
    const on = !viewer.classList.contains("wrap");
    viewer.classList.toggle("wrap", on);
    wrap.setAttribute("aria-pressed", String(on));
  } }, "Wrap");
  const copyBody = el("button", { type: "button", class: "small", onclick: () => copy(
    capture.body_text !== null ? capture.body_text : capture.body_base64, capture.body_text !== null ? "Body" : "Body (base64)") }, "Copy body");
  const download = el("a", { class: "button small", href: `/api/captures/${encodeURIComponent(capture.id)}/body?download=1`, download: "" }, "Download");
  const tabs = el("div", { class: "view-tabs", role: "tablist", "aria-label": "Body view" });
  const show = (index) => {
    tabs.querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-selected", String(i === index)));
    viewer.replaceChildren(views[index][1]());
    const tree = viewer.querySelector(".j-block") !== null;
    expand.hidden = !tree;
    collapse.hidden = !tree;
    finder = new Finder(viewer, counter);
    if (findBox.value) finder.find(findBox.value);
  };
  views.forEach(([name], index) => tabs.append(el("button", { type: "button", role: "tab", class: "small", onclick: () => show(index) }, name)));
  findBox.addEventListener("input", () => finder?.find(findBox.value));
  findBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); finder?.move(event.shiftKey ? -1 : 1); }
  });
  const toolbar = el("div", { class: "body-tools" }, tabs,
    el("div", { class: "body-actions" }, findBox, counter, expand, collapse, wrap, copyBody, download));
  const notes = (parsed.notes || []).map((note) => el("p", { class: "muted note" }, note));
  const error = parsed.error ? el("p", { class: "parse-error" }, `Not parsed as ${parsed.kind}: ${parsed.error}`) : null;
  show(capture.body_text === null && !parsed.value ? views.length - 1 : 0);
  return {
    node: el("div", { class: "body-panel" }, toolbar, error, notes, viewer),
    reveal: (pointer) => {
      if (!viewer.querySelector(".json")) show(0);
      return reveal(viewer, pointer);
    },
  };
}
