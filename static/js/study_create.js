// The study form: per-dataset defaults, and the search space kept in step
// between the parameter table and its JSON text.
//
// Editing a row rewrites the JSON, and editing the JSON rebuilds the rows
// when it parses. The hidden space_source field records which of the two
// the user edited last, and the server reads that one.
(function () {
  "use strict";

  const form = document.getElementById("study-form");
  const infoNode = document.getElementById("dataset-info");
  if (!form || !infoNode) return;
  const datasetInfo = JSON.parse(infoNode.textContent);
  const labels = JSON.parse(document.getElementById("study-create-labels").textContent);
  const field = (name) => form.elements[name];
  const prefix = "space";
  const rowsBody = document.getElementById("space-rows");
  const rowTemplate = document.getElementById("space-row-template");
  const totalForms = field(`${prefix}-TOTAL_FORMS`);
  const initialForms = field(`${prefix}-INITIAL_FORMS`);
  const jsonArea = field("space_json");
  const jsonNote = document.getElementById("space-json-note");
  const source = field("space_source");
  const baseConfig = field("base_config");
  const OBJECTIVE_ROWS = 3;

  // The base config and the space are filled in again on a dataset change only until the user edits them.
  let baseEdited = form.querySelector("#field-base_config.has-error") !== null;
  let spaceEdited = source.value === "json" || form.querySelector(".space-row.has-error") !== null;

  // ---- Values of a row ----------------------------------------------------

  // Read a number as typed. Text that is not a number is kept, so that the server names it in its error.
  function numberFrom(text) {
    const trimmed = text.trim();
    if (trimmed === "") return undefined;
    const value = Number(trimmed);
    return Number.isFinite(value) ? value : trimmed;
  }

  // Split "32, 64, \"a,b\"" at the commas outside double quotes.
  function splitChoices(text) {
    const parts = [];
    let current = "";
    let quoted = false;
    for (const char of text) {
      if (char === '"') quoted = !quoted;
      if (char === "," && !quoted) {
        parts.push(current);
        current = "";
      } else {
        current += char;
      }
    }
    parts.push(current);
    return parts.map((part) => part.trim()).filter(Boolean);
  }

  // One choice: JSON where it parses (32, 0.5, true, null, "32"), else the text itself.
  function choiceFrom(text) {
    try {
      const value = JSON.parse(text);
      if (value === null || ["number", "string", "boolean"].includes(typeof value)) return value;
    } catch (error) {
      // Plain words such as adam are not JSON.
    }
    return text;
  }

  function choicesText(choices) {
    return choices.map((choice) => {
      if (typeof choice === "string" && choiceFrom(choice) === choice && !choice.includes(",")
          && choice.trim() === choice) {
        return choice;
      }
      return JSON.stringify(choice);
    }).join(", ");
  }

  function input(row, name) {
    return row.querySelector(`[name$="-${name}"]`);
  }

  function rowDeleted(row) {
    const box = input(row, "DELETE");
    return Boolean(box && box.checked);
  }

  function specOf(row) {
    const type = input(row, "type").value;
    if (type === "categorical") return {type, choices: splitChoices(input(row, "choices").value).map(choiceFrom)};
    const spec = {type};
    for (const key of ["low", "high", "step"]) {
      const value = numberFrom(input(row, key).value);
      if (value !== undefined) spec[key] = value;
    }
    if (input(row, "log").checked) spec.log = true;
    return spec;
  }

  function spaceFromRows() {
    const space = {};
    for (const row of rowsBody.querySelectorAll("tr[data-space-row]")) {
      const name = input(row, "name").value.trim();
      if (!name || rowDeleted(row)) continue;
      space[name] = specOf(row);
    }
    return space;
  }

  // ---- Rows ---------------------------------------------------------------

  function showKind(row) {
    const categorical = input(row, "type").value === "categorical";
    for (const cell of row.querySelectorAll('[data-kind="numeric"]')) cell.classList.toggle("irrelevant", categorical);
    for (const cell of row.querySelectorAll('[data-kind="categorical"]')) {
      cell.classList.toggle("irrelevant", !categorical);
    }
  }

  function errorRowOf(row) {
    const next = row.nextElementSibling;
    return next && next.hasAttribute("data-errors-of-row") ? next : null;
  }

  // The DELETE checkbox becomes a button that marks the row deleted and hides it.
  function setUpRemove(row) {
    const box = input(row, "DELETE");
    if (!box) return;
    const label = box.closest("label");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button secondary small-button";
    button.textContent = label.textContent.trim();
    button.addEventListener("click", () => {
      box.checked = true;
      row.hidden = true;
      const errors = errorRowOf(row);
      if (errors) errors.hidden = true;
      rowsChanged();
    });
    label.hidden = true;
    label.after(button);
    if (box.checked) row.hidden = true;
  }

  function setUpRow(row) {
    showKind(row);
    setUpRemove(row);
    input(row, "type").addEventListener("change", () => showKind(row));
  }

  function newRow() {
    const index = Number(totalForms.value);
    const html = rowTemplate.innerHTML.replace(/__prefix__/g, String(index));
    rowsBody.insertAdjacentHTML("beforeend", html);
    totalForms.value = String(index + 1);
    const rows = rowsBody.querySelectorAll("tr[data-space-row]");
    const row = rows[rows.length - 1];
    setUpRow(row);
    return row;
  }

  function fillRow(row, name, spec) {
    input(row, "name").value = name;
    const kind = spec && ["float", "int", "categorical"].includes(spec.type) ? spec.type : "float";
    input(row, "type").value = kind;
    const text = (value) => (value === undefined || value === null ? "" : String(value));
    input(row, "low").value = text(spec && spec.low);
    input(row, "high").value = text(spec && spec.high);
    input(row, "step").value = text(spec && spec.step);
    input(row, "log").checked = Boolean(spec && spec.log);
    input(row, "choices").value = spec && Array.isArray(spec.choices) ? choicesText(spec.choices) : "";
    showKind(row);
  }

  function rebuildRows(space) {
    rowsBody.textContent = "";
    totalForms.value = "0";
    initialForms.value = "0";
    for (const [name, spec] of Object.entries(space)) fillRow(newRow(), name, spec);
  }

  // ---- Keeping the table and the JSON in step -----------------------------

  function rowsChanged() {
    spaceEdited = true;
    source.value = "rows";
    jsonArea.value = JSON.stringify(spaceFromRows(), null, 2);
    jsonNote.hidden = true;
  }

  function jsonChanged() {
    spaceEdited = true;
    source.value = "json";
    let space;
    try {
      space = JSON.parse(jsonArea.value);
    } catch (error) {
      jsonNote.textContent = labels.invalidJson.replace("%(error)s", error.message);
      jsonNote.hidden = false;
      return;
    }
    if (space === null || typeof space !== "object" || Array.isArray(space)) {
      jsonNote.textContent = labels.notObject;
      jsonNote.hidden = false;
      return;
    }
    jsonNote.hidden = true;
    rebuildRows(space);
  }

  rowsBody.addEventListener("input", rowsChanged);
  rowsBody.addEventListener("change", rowsChanged);
  jsonArea.addEventListener("input", jsonChanged);
  document.getElementById("add-parameter").addEventListener("click", () => {
    const row = newRow();
    input(row, "name").focus();
  });

  // ---- Dataset and objectives ---------------------------------------------

  function objectiveField(index) {
    return field(`objective_${index}_metric`);
  }

  // Offer the metrics of the dataset's task, and reset a metric of the other task.
  function showMetrics(info) {
    const allowed = new Set(info.metrics);
    for (let index = 0; index < OBJECTIVE_ROWS; index += 1) {
      const select = objectiveField(index);
      for (const option of select.options) {
        if (option.value) option.disabled = !allowed.has(option.value);
      }
      if (select.value && !allowed.has(select.value)) select.value = index === 0 ? info.objective : "";
    }
  }

  // Pruning needs one objective with per-epoch values: switch the pruner off for
  // several objectives or a model/ metric, and back on when that changes.
  let prunerBefore = null;
  function adjustPruner() {
    const chosen = [];
    for (let index = 0; index < OBJECTIVE_ROWS; index += 1) {
      if (objectiveField(index).value) chosen.push(objectiveField(index).value);
    }
    const pruner = field("pruner");
    const cannotPrune = chosen.length > 1 || (chosen.length === 1 && chosen[0].startsWith("model/"));
    if (cannotPrune && pruner.value !== "none") {
      prunerBefore = pruner.value;
      pruner.value = "none";
    } else if (!cannotPrune && prunerBefore !== null) {
      pruner.value = prunerBefore;
      prunerBefore = null;
    }
  }

  field("dataset").addEventListener("change", () => {
    const info = datasetInfo[field("dataset").value];
    if (!info) return;
    if (!baseEdited) baseConfig.value = info.base_config;
    if (!spaceEdited) {
      jsonArea.value = info.space;
      rebuildRows(JSON.parse(info.space));
    }
    showMetrics(info);
    adjustPruner();
  });
  baseConfig.addEventListener("input", () => { baseEdited = true; });
  for (let index = 0; index < OBJECTIVE_ROWS; index += 1) {
    objectiveField(index).addEventListener("change", adjustPruner);
  }
  field("pruner").addEventListener("change", () => { prunerBefore = null; });

  // ---- Start --------------------------------------------------------------

  for (const row of rowsBody.querySelectorAll("tr[data-space-row]")) setUpRow(row);
  const info = datasetInfo[field("dataset").value];
  if (info) showMetrics(info);
})();
