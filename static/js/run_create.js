// The run form: per-dataset defaults, the CNN only for image datasets, and the
// JSON editor kept in step with the fields until the user edits it.
(function () {
  "use strict";

  const form = document.getElementById("run-form");
  const infoNode = document.getElementById("dataset-info");
  if (!form || !infoNode) return;
  const datasetInfo = JSON.parse(infoNode.textContent);
  const field = (name) => form.elements[name];
  const sizeFields = ["hidden_sizes", "conv_channels"];
  const numberFields = ["dropout", "lr", "momentum", "weight_decay", "batch_size", "epochs", "seed",
                        "val_split", "early_stopping_patience"];
  const choiceFields = ["model", "optimizer", "schedule", "precision"];
  const jsonArea = field("config_json");
  const details = document.getElementById("json-config");
  // After a JSON submission the textarea contains what the user typed, so it is never overwritten.
  let jsonEdited = details.open;

  function currentInfo() {
    return datasetInfo[field("dataset").value] || null;
  }

  function allowCnn(info) {
    const cnnOption = field("model").querySelector('option[value="cnn"]');
    const image = Boolean(info && info.image);
    cnnOption.disabled = !image;
    if (!image && field("model").value === "cnn") field("model").value = "mlp";
  }

  function fillDefaults(info) {
    const defaults = info.defaults;
    for (const name of sizeFields) field(name).value = defaults[name].join(",");
    for (const name of numberFields.concat(choiceFields)) field(name).value = defaults[name];
    field("gradient_checkpointing").checked = Boolean(defaults.gradient_checkpointing);
    if (!jsonEdited) jsonArea.value = info.defaults_json;
  }

  function markRelevant() {
    const cnn = field("model").value === "cnn";
    document.getElementById("field-conv_channels").classList.toggle("irrelevant", !cnn);
    const sgd = field("optimizer").value === "sgd";
    document.getElementById("field-momentum").classList.toggle("irrelevant", !sgd);
  }

  function sizesFrom(text) {
    return text.split(",").map((part) => part.trim()).filter(Boolean).map(Number);
  }

  function configFromFields() {
    const info = currentInfo();
    const config = Object.assign({}, info ? info.defaults : {});
    delete config.task;
    for (const name of sizeFields) {
      if (field(name).value.trim()) config[name] = sizesFrom(field(name).value);
    }
    for (const name of numberFields) {
      const value = field(name).value.trim();
      if (value !== "") config[name] = Number(value);
    }
    for (const name of choiceFields) config[name] = field(name).value;
    config.gradient_checkpointing = field("gradient_checkpointing").checked;
    return config;
  }

  field("dataset").addEventListener("change", () => {
    const info = currentInfo();
    allowCnn(info);
    if (info) fillDefaults(info);
    markRelevant();
  });
  field("model").addEventListener("change", markRelevant);
  field("optimizer").addEventListener("change", markRelevant);
  jsonArea.addEventListener("input", () => { jsonEdited = true; });
  details.addEventListener("toggle", () => {
    if (details.open && !jsonEdited) jsonArea.value = JSON.stringify(configFromFields(), null, 2);
  });

  allowCnn(currentInfo());
  markRelevant();
})();
