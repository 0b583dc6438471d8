// The settings sheet: every endpoint field the API has, saved with one PATCH; the API's 422
// details are shown at the fields they name.
import { ContractPin } from "./contract.js";

const { el, api, toast } = HS;

function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function optionalNumber(text) {
  return text === "" || Number(text) === 0 ? null : Number(text);
}

function row(list, fields, onRemove) {
  const item = el("li", { class: "row" }, fields,
    el("button", { type: "button", class: "ghost small", "aria-label": "Remove", onclick: () => { item.remove(); onRemove?.(); } }, "Remove"));
  list.append(item);
  return item;
}

export class Settings {
  constructor(app) {
    this.app = app;
    this.dialog = document.getElementById("settings-dialog");
    this.form = document.getElementById("settings");
    this.schemes = [];
    const $ = (id) => document.getElementById(id);
    $("settings-button").addEventListener("click", () => this.open());
    $("settings-close").addEventListener("click", () => this.dialog.close());
    $("add-secret").addEventListener("click", () => this.secretRow("", true).querySelector("input").focus());
    $("add-header").addEventListener("click", () => this.headerRow("", "").querySelector("input").focus());
    $("settings-scheme").addEventListener("change", () => this.showSchemeOptions({}));
    $("delete-endpoint").addEventListener("click", () => this.deleteEndpoint());
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
    this.contract = new ContractPin(this);
  }

  setSchemes(schemes) {
    this.schemes = schemes.filter((s) => s.id !== "auto").concat(schemes.filter((s) => s.id === "auto"));
  }

  open() {
    this.fill(this.app.endpoint);
    this.dialog.showModal();
    this.form.elements.name.focus();
  }

  secretRow(value, fresh) {
    const input = el("input", { type: fresh ? "password" : "text", value, "aria-label": "Secret",
                                placeholder: fresh ? "the new secret" : "", autocomplete: "off", spellcheck: "false" });
    if (!fresh) input.readOnly = true;  // masked: kept as it is unless removed
    return row(document.getElementById("secret-rows"), [input, fresh ? null : el("span", { class: "muted small" }, "kept")]);
  }

  headerRow(name, value) {
    return row(document.getElementById("header-rows"), [
      el("input", { class: "header-name", value: name, "aria-label": "Header name", placeholder: "X-Name", spellcheck: "false" }),
      el("input", { class: "header-value", value, "aria-label": "Header value", placeholder: "value", spellcheck: "false" })]);
  }

  showSchemeOptions(values) {
    const id = this.form.elements.scheme.value;
    const scheme = this.schemes.find((s) => s.id === id);
    document.getElementById("scheme-help").textContent = scheme ? scheme.description : "No signature is checked.";
    const holder = document.getElementById("scheme-options");
    holder.replaceChildren(...(scheme?.options || []).map((option) => {
      const current = values[option.name] ?? option.default ?? "";
      const input = option.choices
        ? el("select", { name: `option-${option.name}`, "data-field": `verify.${option.name}` },
          option.choices.map((choice) => el("option", { value: choice, selected: String(current) === choice }, choice)))
        : el("input", { name: `option-${option.name}`, value: current === null ? "" : String(current),
                        "data-field": `verify.${option.name}`, spellcheck: "false" });
      return el("label", {}, `${option.name} `, el("span", { class: "muted" }, option.help), input);
    }));
    const signed = Boolean(scheme);
    for (const name of ["tolerance_seconds", "bad_signature"]) this.form.elements[name].disabled = !signed;
    document.getElementById("add-secret").disabled = !signed;
  }

  fill(endpoint) {
    const f = this.form.elements;
    this.clearErrors();
    f.name.value = endpoint.name || "";
    f.alias.value = endpoint.alias || "";
    f.expires_at.value = localInput(endpoint.expires_at);
    f.scheme.value = endpoint.verify ? endpoint.verify.scheme : "";
    this.showSchemeOptions(endpoint.verify || {});
    document.getElementById("secret-rows").replaceChildren();
    for (const secret of endpoint.verify?.secrets || []) this.secretRow(secret, false);
    f.tolerance_seconds.value = endpoint.verify ? endpoint.verify.tolerance_seconds : 300;
    f.bad_signature.checked = endpoint.reject.bad_signature;
    f.format.value = endpoint.format;
    f.schema.value = endpoint.schema ? JSON.stringify(endpoint.schema, null, 2) : "";
    f.invalid_payload.checked = endpoint.reject.invalid_payload;
    f.status.value = endpoint.response.status;
    document.getElementById("header-rows").replaceChildren();
    let contentType = "";
    for (const [name, value] of Object.entries(endpoint.response.headers || {})) {
      if (name.toLowerCase() === "content-type") contentType = value;
      else this.headerRow(name, value);
    }
    f.content_type.value = contentType;
    f.body.value = endpoint.response.body ?? "";
    f.delay_ms.value = endpoint.response.delay_ms;
    f.max_captures.value = endpoint.max_captures;
    f.max_bytes.value = endpoint.max_bytes ?? "";
    f.rate_limit.value = endpoint.rate_limit ?? "";
    f.forward_url.value = endpoint.forward?.url ?? "";
    f.forward_timeout.value = endpoint.forward?.timeout ?? 10;
    f.forward_retries.value = endpoint.forward?.retries ?? 3;
  }

  clearErrors() {
    document.getElementById("settings-error").textContent = "";
    for (const node of this.form.querySelectorAll(".field-error")) node.remove();
    for (const node of this.form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  showErrors(details) {
    const unplaced = [];
    for (const { field, message } of details) {
      // The most specific element that names the field, or one of its parents (verify.secrets.2).
      let target = null;
      for (let name = field; name && !target; name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "") {
        target = this.form.querySelector(`[data-field="${CSS.escape(name)}"]`);
      }
      if (!target) { unplaced.push(message); continue; }
      target.setAttribute("aria-invalid", "true");
      const note = el("p", { class: "field-error", role: "alert" }, message);
      (target.closest("label") || target).after(note);
    }
    const first = this.form.querySelector(".field-error");
    first?.scrollIntoView({ block: "center" });
    return unplaced;
  }

  body() {
    const f = this.form.elements;
    const problems = [];
    const scheme = f.scheme.value;
    let verify = null;
    if (scheme) {
      const secrets = [...document.querySelectorAll("#secret-rows input")].map((i) => i.value.trim()).filter(Boolean);
      verify = { scheme, secrets, tolerance_seconds: Number(f.tolerance_seconds.value || 300) };
      for (const option of this.schemes.find((s) => s.id === scheme)?.options || []) {
        const value = f[`option-${option.name}`].value.trim();
        if (value !== "") verify[option.name] = value;
      }
    }
    let schema = null;
    if (f.schema.value.trim()) {
      try { schema = JSON.parse(f.schema.value); } catch (e) {
        problems.push({ field: "schema", message: `not JSON: ${e.message}` });
      }
    }
    const headers = {};
    for (const item of document.querySelectorAll("#header-rows li")) {
      const name = item.querySelector(".header-name").value.trim();
      if (name) headers[name] = item.querySelector(".header-value").value;
    }
    if (f.content_type.value.trim()) headers["Content-Type"] = f.content_type.value.trim();
    const body = {
      name: f.name.value.trim() || null,
      alias: f.alias.value.trim() || null,
      expires_at: f.expires_at.value ? new Date(f.expires_at.value).toISOString() : null,
      verify,
      format: f.format.value,
      schema,
      reject: { bad_signature: f.bad_signature.checked, invalid_payload: f.invalid_payload.checked },
      response: { status: Number(f.status.value || 200), headers, delay_ms: Number(f.delay_ms.value || 0),
                  body: f.body.value === "" ? null : f.body.value },
      max_captures: Number(f.max_captures.value || 10000),
      max_bytes: optionalNumber(f.max_bytes.value),
      rate_limit: optionalNumber(f.rate_limit.value),
      forward: this.forward(),
    };
    return { body, problems };
  }

  // No URL: forwarding off. An empty number is left out: the API keeps the current value, or
  // takes its default.
  forward() {
    const f = this.form.elements;
    const url = f.forward_url.value.trim();
    if (!url) return null;
    const forward = { url };
    if (f.forward_timeout.value !== "") forward.timeout = Number(f.forward_timeout.value);
    if (f.forward_retries.value !== "") forward.retries = Number(f.forward_retries.value);
    return forward;
  }

  async save() {
    this.clearErrors();
    const { body, problems } = this.body();
    if (problems.length) { this.showErrors(problems); return; }
    try {
      const endpoint = await api("PATCH", `/api/endpoints/${this.app.token}`, body);
      this.app.setEndpoint(endpoint);
      this.dialog.close();
      toast("Settings saved");
    } catch (e) {
      const unplaced = this.showErrors(e.details || []);
      document.getElementById("settings-error").textContent = unplaced.length || !(e.details || []).length
        ? e.message : "Fix the fields marked above.";
    }
  }

  async deleteEndpoint() {
    const name = this.app.endpoint.name || this.app.endpoint.alias || this.app.token;
    if (!confirm(`Delete the endpoint "${name}" and all its captures? Its URL stops working.`)) return;
    try {
      this.app.source?.close();  // its reconnect would only find the endpoint gone
      await api("DELETE", `/api/endpoints/${this.app.token}`);
      location.assign("/");
    } catch (e) {
      document.getElementById("settings-error").textContent = e.message;
    }
  }
}
