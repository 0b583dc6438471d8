// Shared by every page. Payload data only ever enters the page as text (el() children and
// textContent), never as markup: a hostile capture stays inert, and the CSP forbids inline code.
"use strict";

const HS = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error("Hookscope is not answering: is the server running, and is this machine online?");
    }
    const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
    if (!response.ok) {
      const error = new Error(data?.error?.message || `${response.status} ${response.statusText}`);
      error.details = data?.error?.details || [];
      throw error;
    }
    return data;
  }

  let toastTimer = null;
  function toast(message) {
    const node = document.getElementById("toast");
    node.textContent = message;
    node.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => node.classList.remove("show"), 1800);
  }

  async function copy(text, what) {
    try {
      await navigator.clipboard.writeText(text);
      toast(`${what} copied`);
    } catch (e) {
      // Clipboard access needs a secure context: fall back to selecting the text.
      const area = el("textarea", { class: "offscreen" }, text);
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
      toast(`${what} copied`);
    }
  }

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${Math.floor(seconds)} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return new Date(iso).toLocaleString();
  }

  function size(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  function setupTheme() {
    const button = document.getElementById("theme-toggle");
    button?.addEventListener("click", () => {
      const root = document.documentElement;
      const dark = root.dataset.theme
        ? root.dataset.theme === "dark"
        : matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      try { localStorage.setItem("hookscope-theme", root.dataset.theme); } catch (e) { /* ignore */ }
    });
  }

  async function fillOptions(select, path, key, label) {
    try {
      const data = await api("GET", path);
      for (const item of data[key]) select.append(el("option", { value: item.id }, label(item)));
    } catch (e) { /* the form still works without the list */ }
  }

  setupTheme();
  return { el, api, toast, copy, ago, size, fillOptions };
})();
