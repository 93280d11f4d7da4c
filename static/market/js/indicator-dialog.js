// The dialog that adds an indicator from the catalogue or edits one's parameters: a select of the
// catalogue's indicators and one field per parameter (a number with its bounds, or a choice),
// prefilled with the defaults or the current values, checked as the API checks them.

import { defaultParams, resolveParams } from "cryptostock/indicator-specs";

export class IndicatorDialog {
  /**
   * @param {HTMLDialogElement} dialog the template's <dialog data-indicator-dialog>
   * @param {{onSubmit: Function}} handlers onSubmit(definition, params) with valid parameters
   */
  constructor(dialog, { onSubmit }) {
    this.dialog = dialog;
    this.onSubmit = onSubmit;
    this.form = dialog.querySelector("form");
    this.nameSelect = this.form.elements.namedItem("indicator");
    this.fields = dialog.querySelector("[data-indicator-params]");
    this.formError = dialog.querySelector("[data-indicator-error]");
    this.catalogue = new Map();
    this.definition = null;
    this.nameSelect.addEventListener("change", () => {
      this.definition = this.catalogue.get(this.nameSelect.value);
      this.renderFields(defaultParams(this.definition));
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    dialog.querySelector("[data-dialog-cancel]").addEventListener("click", () => dialog.close());
  }

  setCatalogue(catalogue) {
    this.catalogue = catalogue;
    const groups = { overlay: "Over the price", pane: "In a pane" };
    this.nameSelect.replaceChildren(
      ...Object.entries(groups).map(([placement, title]) => {
        const group = document.createElement("optgroup");
        group.label = title;
        for (const definition of catalogue.values()) {
          if (definition.placement === placement) {
            group.append(new Option(`${definition.title} (${definition.name.toUpperCase()})`, definition.name));
          }
        }
        return group;
      }),
    );
  }

  /**
   * Open for a new indicator (definition null: the one last picked) or to edit `definition` with
   * `params`; the indicator cannot be changed while editing.
   */
  open({ definition, params, editing }) {
    this.definition = definition ?? this.catalogue.get(this.nameSelect.value);
    this.nameSelect.value = this.definition.name;
    this.nameSelect.disabled = editing;
    this.dialog.querySelector("[data-indicator-title]").textContent = editing ? "Edit indicator" : "Add indicator";
    this.form.querySelector("[type=submit]").textContent = editing ? "Save" : "Add";
    this.renderFields(params ?? defaultParams(this.definition));
    this.showError(null);
    this.dialog.showModal();
    (editing ? this.fields.querySelector("input, select") : this.nameSelect)?.focus();
  }

  renderFields(values) {
    this.dialog.querySelector("[data-indicator-description]").textContent = this.definition.description;
    this.fields.replaceChildren(...this.definition.params.map((param) => paramField(param, values[param.name])));
  }

  submit() {
    const definition = this.definition;
    const raw = Object.fromEntries(
      definition.params.map((param) => [param.name, this.form.elements.namedItem(`param-${param.name}`).value]),
    );
    const { params, errors } = resolveParams(definition, raw);
    const messages = Object.values(errors);
    if (messages.length > 0) {
      this.showError(`${messages.join("; ")}.`);
      return;
    }
    this.dialog.close();
    this.onSubmit(definition, params);
  }

  showError(message) {
    this.formError.hidden = message === null;
    this.formError.textContent = message ?? "";
  }
}

/** A labelled input for one catalogue parameter, with its description as the hint. */
function paramField(param, value) {
  const row = document.createElement("div");
  row.className = "dialog-field";
  const id = `indicator-param-${param.name}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = param.name.replaceAll("_", " ");
  let input;
  if (param.type === "choice") {
    input = document.createElement("select");
    input.append(...param.choices.map((choice) => new Option(choice, choice)));
  } else {
    input = document.createElement("input");
    input.type = "number";
    input.inputMode = param.type === "int" ? "numeric" : "decimal";
    input.step = param.type === "int" ? "1" : "any";
    if (param.min !== undefined && param.min !== null) {
      input.min = String(param.min);
    }
    if (param.max !== undefined && param.max !== null) {
      input.max = String(param.max);
    }
    input.required = true;
  }
  input.id = id;
  input.name = `param-${param.name}`;
  input.value = String(value);
  const hint = document.createElement("small");
  hint.id = `${id}-hint`;
  hint.textContent = param.description;
  input.setAttribute("aria-describedby", hint.id);
  row.append(label, input, hint);
  return row;
}
