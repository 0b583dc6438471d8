// "Pin as contract", in the settings' schema editor: the contract inferred from the endpoint's
// captures (GET /api/endpoints/{key}/schema) is put in the editor to be read (and edited), and
// pinned as the endpoint's schema on confirm, by itself (docs/contracts.md).
const { api, toast } = HS;

export class ContractPin {
  constructor(settings) {
    this.settings = settings;
    this.inferButton = document.getElementById("infer-contract");
    this.pinButton = document.getElementById("pin-contract");
    this.status = document.getElementById("contract-status");
    this.inferButton.addEventListener("click", () => this.infer());
    this.pinButton.addEventListener("click", () => this.pin());
    settings.dialog.addEventListener("close", () => this.reset());
  }

  get editor() {
    return this.settings.form.elements.schema;
  }

  reset() {
    this.pinButton.hidden = true;
    this.status.textContent = "";
  }

  async infer() {
    this.reset();
    this.inferButton.disabled = true;
    this.status.textContent = "Inferring a contract from the captures…";
    try {
      const reply = await api("GET", `/api/endpoints/${this.settings.app.token}/schema`);
      if (!reply.samples) {
        this.status.textContent = "No capture has a JSON body yet: send some, then infer.";
        return;
      }
      this.editor.value = JSON.stringify(reply.schema, null, 2);
      this.editor.rows = 16;  // room to read it before pinning
      const groups = reply.group_by === "none" ? ""
        : `, one schema per ${reply.group_by} (${reply.groups.map((g) => `${g.key} ${g.samples}`).join(", ")})`;
      this.status.textContent = `Inferred from ${reply.samples} samples in the newest ${reply.captures} captures${groups}. ` +
        "Read it above (edit it if need be), then pin it: every capture from then on is checked against it.";
      this.pinButton.hidden = false;
    } catch (e) {
      this.status.textContent = e.message;
    } finally {
      this.inferButton.disabled = false;
    }
  }

  async pin() {
    this.settings.clearErrors();
    let schema;
    try { schema = JSON.parse(this.editor.value); } catch (e) {
      this.settings.showErrors([{ field: "schema", message: `not JSON: ${e.message}` }]);
      return;
    }
    try {
      const endpoint = await api("PATCH", `/api/endpoints/${this.settings.app.token}`, { schema });
      this.settings.app.setEndpoint(endpoint);
      this.pinButton.hidden = true;
      this.status.textContent = "Pinned: every capture from now on is validated against this contract.";
      toast("Contract pinned");
    } catch (e) {
      const unplaced = this.settings.showErrors(e.details || []);
      this.status.textContent = unplaced.length || !(e.details || []).length ? e.message : "";
    }
  }
}
