"use strict";
(() => {
  const { el, api, ago, fillOptions } = HS;
  const form = document.getElementById("new-endpoint");
  const list = document.getElementById("endpoint-list");
  const empty = document.getElementById("endpoints-empty");
  const error = document.getElementById("new-endpoint-error");

  fillOptions(document.getElementById("scheme-select"), "/api/schemes", "schemes", (s) => s.title);
  fillOptions(document.getElementById("format-select"), "/api/formats", "formats", (f) => f.title);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    const body = {};
    if (data.get("name")) body.name = data.get("name");
    if (data.get("alias")) body.alias = data.get("alias");
    if (data.get("format")) body.format = data.get("format");
    if (data.get("scheme")) {
      body.verify = { scheme: data.get("scheme"), secrets: data.get("secret") ? [data.get("secret")] : [] };
    }
    try {
      const created = await api("POST", "/api/endpoints", body);
      location.assign(`/e/${encodeURIComponent(created.token)}`);
    } catch (e) {
      error.textContent = e.message;
    }
  });

  async function remove(endpoint) {
    const name = endpoint.name || endpoint.alias || endpoint.token;
    if (!confirm(`Delete the endpoint "${name}" and all its captures? Its URL stops working.`)) return;
    try {
      await api("DELETE", `/api/endpoints/${encodeURIComponent(endpoint.token)}`);
      HS.toast("Endpoint deleted");
      await load();
    } catch (e) { HS.toast(e.message); }
  }

  async function load() {
    const data = await api("GET", "/api/endpoints");
    list.replaceChildren(...data.endpoints.map((endpoint) => el("li", { class: "endpoint-item" },
      el("button", { type: "button", class: "ghost small danger delete-endpoint", "aria-label": `Delete ${endpoint.name || endpoint.alias || endpoint.token}`,
                     onclick: () => remove(endpoint) }, "Delete"),
      el("a", { class: "endpoint-card", href: `/e/${encodeURIComponent(endpoint.token)}` },
        el("div", { class: "title" }, endpoint.name || endpoint.alias || "Unnamed endpoint"),
        el("div", { class: "url" }, endpoint.alias_url || endpoint.url),
        el("div", { class: "stats" },
          el("span", {}, `${endpoint.capture_count} captured`),
          el("span", {}, `last ${ago(endpoint.last_capture_at)}`),
          endpoint.verify ? el("span", {}, `signed: ${endpoint.verify.scheme}`) : null,
          el("span", {}, `format: ${endpoint.format}`))))));
    empty.hidden = data.endpoints.length > 0;
  }

  load().catch((e) => { empty.hidden = false; empty.textContent = `Could not load endpoints: ${e.message}`; });
})();
