// The project's run table, kept live from /ws/projects/<id>/runs/.
//
// Each run.state message updates its row (status, duration, main metric); a
// run the table does not show yet gets its row from the server and goes on
// top. After a dropped connection the table body is reloaded, because state
// messages sent meanwhile are not replayed.
(function () {
  "use strict";

  const section = document.getElementById("project-runs");
  if (!section) return;
  const tbody = section.querySelector("tbody");
  const projectId = section.dataset.projectId;
  const rowUrlTemplate = section.dataset.rowUrl;
  const rowsUrl = section.dataset.rowsUrl;
  // Status labels in the page's language; run.state messages carry the sender's language.
  const labelsNode = document.getElementById("run-status-labels");
  const statusLabels = labelsNode ? JSON.parse(labelsNode.textContent) : {};
  // run id -> {duration, receivedAt} of running runs, so their duration ticks between messages.
  const running = new Map();

  const { sig4, clock } = window.StudioFormat;

  function rowOf(runId) {
    return tbody.querySelector(`tr[data-run-id="${runId}"]`);
  }

  function updateRow(row, run) {
    row.dataset.status = run.status;
    const badge = row.querySelector('[data-field="status"]');
    badge.textContent = statusLabels[run.status] || run.status_display;
    badge.className = `badge status-${run.status}`;
    row.querySelector('[data-field="duration"]').textContent = clock(run.duration_seconds);
    const metricCell = row.querySelector('[data-field="main-metric"]');
    if (run.main_metric !== null && run.main_metric !== undefined) {
      metricCell.textContent = `${sig4(run.main_metric)} `;
      const key = document.createElement("span");
      key.className = "muted";
      key.textContent = run.main_metric_key;
      metricCell.appendChild(key);
      metricCell.title = `${run.main_metric_key} = ${run.main_metric}`;
    }
    if (run.status === "running" && run.duration_seconds !== null) {
      running.set(String(run.id), {duration: run.duration_seconds, receivedAt: Date.now()});
    } else {
      running.delete(String(run.id));
    }
  }

  function insertRow(runId) {
    const url = rowUrlTemplate.replace("/0/", `/${runId}/`);
    return fetch(url, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        if (rowOf(runId)) return;
        tbody.insertAdjacentHTML("afterbegin", html.trim());
        const empty = tbody.querySelector(".empty-row");
        if (empty) empty.hidden = true;
      });
  }

  function reloadRows() {
    return fetch(rowsUrl, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        tbody.innerHTML = html;
        running.clear();
      });
  }

  function receiveState(run) {
    const row = rowOf(run.id);
    if (row) {
      updateRow(row, run);
      return;
    }
    insertRow(run.id)
      .then(() => {
        const inserted = rowOf(run.id);
        if (inserted) updateRow(inserted, run);
      })
      .catch((error) => console.warn(`loading the row of run ${run.id} failed:`, error));
  }

  function tick() {
    for (const [runId, known] of running) {
      const row = rowOf(runId);
      if (!row) continue;
      const seconds = known.duration + (Date.now() - known.receivedAt) / 1000;
      row.querySelector('[data-field="duration"]').textContent = clock(seconds);
    }
  }

  function connect() {
    StudioLive.connect(() => `/ws/projects/${projectId}/runs/`, {
      // After a drop, what changed meanwhile is read again from the page's table.
      onOpen: (reconnected) => {
        if (reconnected) reloadRows().catch((error) => console.warn("reloading the runs failed:", error));
      },
      onMessage: (message) => {
        if (message.type === "run.state") receiveState(message.run);
      },
    });
  }

  connect();
  setInterval(tick, 1000);
})();
