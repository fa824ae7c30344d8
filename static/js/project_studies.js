// The project's study table, kept live from /ws/projects/<id>/studies/.
//
// Each study.state message updates its row (state, best value, progress). A
// study the table does not show yet gets its row from the server and goes on
// top. After a dropped connection the table body is reloaded, because state
// messages sent meanwhile are not replayed.
(function () {
  "use strict";

  const section = document.getElementById("project-studies");
  if (!section) return;
  const tbody = section.querySelector("tbody");
  const projectId = section.dataset.projectId;
  const rowUrlTemplate = section.dataset.rowUrl;
  const rowsUrl = section.dataset.rowsUrl;
  // State labels in the page's language, because study.state messages carry the sender's language.
  const labelsNode = document.getElementById("study-state-labels");
  const stateLabels = labelsNode ? JSON.parse(labelsNode.textContent) : {};

  const { sig4 } = window.StudioFormat;

  function rowOf(studyId) {
    return tbody.querySelector(`tr[data-study-id="${studyId}"]`);
  }

  function updateRow(row, study) {
    row.dataset.state = study.state;
    const badge = row.querySelector('[data-field="state"]');
    badge.textContent = stateLabels[study.state] || study.state_display;
    badge.className = `badge status-${study.state}`;

    const bestCell = row.querySelector('[data-field="best"]');
    const best = study.best_values.length ? study.best_values[0] : null;
    if (best !== null) {
      const metric = row.dataset.metric;
      bestCell.textContent = `${sig4(best)} `;
      const key = document.createElement("span");
      key.className = "muted";
      key.textContent = metric;
      bestCell.appendChild(key);
      bestCell.title = `${metric} = ${best}`;
    }

    const bar = row.querySelector('[data-field="progress"] .progress > div');
    bar.style.width = `${Math.round(study.progress * 100)}%`;
    row.querySelector('[data-field="trials"]').textContent = `${study.trials_finished}/${study.n_trials}`;
  }

  function insertRow(studyId) {
    const url = rowUrlTemplate.replace("/0/", `/${studyId}/`);
    return fetch(url, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        if (rowOf(studyId)) return;
        tbody.insertAdjacentHTML("afterbegin", html.trim());
        const empty = tbody.querySelector(".empty-row");
        if (empty) empty.hidden = true;
      });
  }

  function reloadRows() {
    return fetch(rowsUrl, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => { tbody.innerHTML = html; });
  }

  function receiveState(study) {
    const row = rowOf(study.id);
    if (row) {
      updateRow(row, study);
      return;
    }
    insertRow(study.id)
      .then(() => {
        const inserted = rowOf(study.id);
        if (inserted) updateRow(inserted, study);
      })
      .catch((error) => console.warn(`loading the row of study ${study.id} failed:`, error));
  }

  function connect() {
    StudioLive.connect(() => `/ws/projects/${projectId}/studies/`, {
      // After a drop, what changed meanwhile is read again from the page's table.
      onOpen: (reconnected) => {
        if (reconnected) reloadRows().catch((error) => console.warn("reloading the studies failed:", error));
      },
      onMessage: (message) => {
        if (message.type === "study.state") receiveState(message.study);
      },
    });
  }

  connect();
})();
