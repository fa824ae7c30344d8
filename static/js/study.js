// The study page: live state, trials table and charts.
//
// /ws/studies/<id>/ sends the study's state and every trial on connect, then
// each change: study.state, trial.state, and run.state of the trials' runs
// (their epochs). A reconnect gets the whole picture again, so nothing is
// missed. The charts come as Plotly figures from the charts endpoint and are
// drawn again with Plotly.react when a trial finishes, at most every 2 s.
(function () {
  "use strict";

  const live = JSON.parse(document.getElementById("study-live").textContent);
  const labels = live.labels;
  const FINAL_STUDY = new Set(["finished", "stopped", "failed"]);
  const FINAL_TRIAL = new Set(["complete", "pruned", "failed"]);
  const ACTIVE_RUN = new Set(["queued", "running"]);
  const CHARTS_MIN_INTERVAL_MS = 2000;

  const { sig4, clock } = window.StudioFormat;

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, (match, name) => (name in values ? values[name] : match));
  }

  function setText(id, text, title) {
    const node = document.getElementById(id);
    if (!node) return;
    node.textContent = text;
    if (title !== undefined) node.title = title;
  }

  function valueCell(cell, value) {
    cell.textContent = value === null || value === undefined ? "–" : sig4(value);
    cell.title = value === null || value === undefined ? "" : String(value);
  }

  // ---- Study --------------------------------------------------------------

  let study = live.state;
  let studyReceivedAt = Date.now();

  function showStudy(state) {
    const wasFinal = FINAL_STUDY.has(study.state);
    study = state;
    studyReceivedAt = Date.now();

    const badge = document.getElementById("study-state");
    badge.textContent = labels.studyStates[state.state] || state.state_display;
    badge.className = `badge status-${state.state}`;
    const percent = Math.round(state.progress * 100);
    const bar = document.getElementById("study-progress");
    bar.style.width = `${percent}%`;
    bar.parentElement.setAttribute("aria-valuenow", String(percent));
    setText("study-trials", `${state.trials_finished}/${state.n_trials}`);
    setText("study-running", String(Math.max(0, state.trials_started - state.trials_finished)));
    setText("study-eta", clock(state.eta_seconds));
    setText("study-duration", clock(state.duration_seconds));
    const best = state.best_values.length ? state.best_values[0] : null;
    setText("study-best", sig4(best), best === null ? "" : String(best));
    setText("study-best-trial", state.best_trial === null ? "–" : String(state.best_trial));
    const error = document.getElementById("study-error");
    error.textContent = state.error;
    error.hidden = !state.error;

    for (const row of tbody.querySelectorAll("tr[data-trial-number]")) {
      row.classList.toggle("best", Number(row.dataset.trialNumber) === state.best_trial);
    }
    if (!live.multi) setPromotable(state.best_trial !== null);
    if (state.state !== "running") {
      const stopForm = document.getElementById("stop-form");
      if (stopForm) stopForm.hidden = true;
    }
    if (FINAL_STUDY.has(state.state)) setText("study-finished", finishedAt(state.duration_seconds));
    if (FINAL_STUDY.has(state.state) && !wasFinal) scheduleCharts();
  }

  // The finish time as "YYYY-MM-DD HH:MM:SS" in the server's time zone: the creation time plus the duration.
  function finishedAt(durationSeconds) {
    const offset = /([+-])(\d\d):(\d\d)$/.exec(live.created_at);
    let offsetMinutes = 0;
    if (offset) {
      const sign = offset[1] === "-" ? -1 : 1;
      offsetMinutes = sign * (Number(offset[2]) * 60 + Number(offset[3]));
    }
    const wallClock = Date.parse(live.created_at) + durationSeconds * 1000 + offsetMinutes * 60000;
    return new Date(wallClock).toISOString().slice(0, 19).replace("T", " ");
  }

  function setPromotable(enabled) {
    const button = document.getElementById("promote-button");
    if (button) button.disabled = !enabled;
  }

  // ---- Trials -------------------------------------------------------------

  const tbody = document.querySelector("#trials tbody");
  const emptyRow = tbody.querySelector(".empty-row");
  // trial number -> {duration, receivedAt} of running trials, so their duration ticks between messages.
  const runningTrials = new Map();

  function rowOf(number) {
    return tbody.querySelector(`tr[data-trial-number="${number}"]`);
  }

  // A row with the cells of templates/tuning/_trial_row.html, filled in by updateRow.
  function buildRow(trial) {
    const row = document.createElement("tr");
    row.dataset.trialNumber = String(trial.number);

    const numberCell = document.createElement("td");
    numberCell.className = "num";
    numberCell.append(`${trial.number} `);
    const pareto = document.createElement("span");
    pareto.className = "badge pareto-badge";
    pareto.dataset.field = "pareto";
    pareto.textContent = labels.pareto;
    pareto.hidden = true;
    numberCell.append(pareto);
    row.append(numberCell);

    const stateCell = document.createElement("td");
    const badge = document.createElement("span");
    badge.dataset.field = "state";
    const reason = document.createElement("div");
    reason.className = "muted small trial-reason";
    reason.dataset.field = "reason";
    stateCell.append(badge, reason);
    row.append(stateCell);

    for (let i = 0; i < live.params.length; i += 1) {
      const cell = document.createElement("td");
      cell.className = "num mono";
      cell.dataset.param = live.params[i];
      row.append(cell);
    }
    for (let i = 0; i < live.objectives.length; i += 1) {
      const cell = document.createElement("td");
      cell.className = "num";
      cell.dataset.field = "value";
      row.append(cell);
    }
    const duration = document.createElement("td");
    duration.className = "num";
    duration.dataset.field = "duration";
    const run = document.createElement("td");
    run.dataset.field = "run";
    row.append(duration, run);
    return row;
  }

  function insertRow(row, number) {
    const later = Array.from(tbody.querySelectorAll("tr[data-trial-number]"))
      .find((other) => Number(other.dataset.trialNumber) > number);
    tbody.insertBefore(row, later || emptyRow);
    emptyRow.hidden = true;
  }

  function runCell(cell, trial) {
    cell.textContent = "";
    if (trial.run === null) {
      cell.textContent = "–";
      return;
    }
    const link = document.createElement("a");
    link.href = live.run_url.replace("/0/", `/${trial.run}/`);
    link.textContent = fill(labels.run, {id: trial.run});
    cell.append(link);
    if (ACTIVE_RUN.has(trial.run_status)) {
      const epoch = document.createElement("span");
      epoch.className = "muted small";
      epoch.dataset.field = "epoch";
      cell.append(" ", epoch);
      showEpoch(epoch, trial.run_status, trial.epoch, trial.total_epochs);
    }
  }

  function showEpoch(node, status, epoch, total) {
    node.textContent = status === "queued"
      ? labels.runStatuses.queued
      : fill(labels.epoch, {epoch, total});
  }

  function updateRow(row, trial) {
    row.dataset.state = trial.state;
    if (trial.run !== null) row.dataset.runId = String(trial.run);
    row.classList.toggle("best", trial.number === study.best_trial);

    const badge = row.querySelector('[data-field="state"]');
    badge.textContent = labels.trialStates[trial.state] || trial.state_display;
    badge.className = `badge status-${trial.state}`;
    const reason = row.querySelector('[data-field="reason"]');
    reason.textContent = trial.reason.length > 90 ? `${trial.reason.slice(0, 89)}…` : trial.reason;
    reason.title = trial.reason;

    const paramCells = row.querySelectorAll("td.mono");
    live.params.forEach((name, index) => {
      if (paramCells[index]) valueCell(paramCells[index], name in trial.params ? trial.params[name] : null);
    });
    row.querySelectorAll('[data-field="value"]').forEach((cell, index) => {
      valueCell(cell, index < trial.values.length ? trial.values[index] : null);
    });
    row.querySelector('[data-field="duration"]').textContent = clock(trial.duration_seconds);
    runCell(row.querySelector('[data-field="run"]'), trial);

    if (FINAL_TRIAL.has(trial.state)) {
      runningTrials.delete(trial.number);
    } else {
      runningTrials.set(trial.number, {duration: trial.duration_seconds, receivedAt: Date.now()});
    }
  }

  function receiveTrial(trial) {
    let row = rowOf(trial.number);
    const wasFinal = row !== null && FINAL_TRIAL.has(row.dataset.state);
    if (row === null) {
      row = buildRow(trial);
      insertRow(row, trial.number);
    }
    updateRow(row, trial);
    if (FINAL_TRIAL.has(trial.state) && !wasFinal) scheduleCharts();
  }

  function receiveRun(run) {
    const row = tbody.querySelector(`tr[data-run-id="${run.id}"]`);
    if (!row) return;
    const epoch = row.querySelector('[data-field="epoch"]');
    if (epoch && ACTIVE_RUN.has(run.status)) showEpoch(epoch, run.status, run.epoch, run.total_epochs);
    else if (epoch) epoch.remove();
  }

  function tick() {
    if (FINAL_STUDY.has(study.state)) return;
    const elapsed = (Date.now() - studyReceivedAt) / 1000;
    setText("study-duration", clock(study.duration_seconds + elapsed));
    if (study.eta_seconds !== null) setText("study-eta", clock(Math.max(0, study.eta_seconds - elapsed)));
    for (const [number, known] of runningTrials) {
      const row = rowOf(number);
      if (!row) continue;
      row.querySelector('[data-field="duration"]').textContent =
        clock(known.duration + (Date.now() - known.receivedAt) / 1000);
    }
  }

  // ---- Charts -------------------------------------------------------------

  const objectiveChoice = document.getElementById("chart-objective");
  const chartsError = document.getElementById("charts-error");
  let chartsInFlight = false;
  let chartsRequestedAgain = false;
  let chartsTimer = null;
  let lastChartsAt = 0;
  let chartsDrawn = 0;
  let paretoClickBound = false;

  // Load the charts now, or as soon as 2 s have passed since the last load.
  function scheduleCharts() {
    if (chartsTimer !== null) return;
    const wait = Math.max(0, lastChartsAt + CHARTS_MIN_INTERVAL_MS - Date.now());
    chartsTimer = setTimeout(() => {
      chartsTimer = null;
      loadCharts();
    }, wait);
  }

  function loadCharts() {
    if (chartsInFlight) {
      chartsRequestedAgain = true;
      return;
    }
    chartsInFlight = true;
    lastChartsAt = Date.now();
    const objective = objectiveChoice ? objectiveChoice.value : "0";
    fetch(`${live.charts_url}?objective=${encodeURIComponent(objective)}`, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((payload) => {
        chartsError.hidden = true;
        drawCharts(payload);
      })
      .catch((error) => {
        console.warn("loading the study's charts failed:", error);
        chartsError.textContent = labels.chartsFailed;
        chartsError.hidden = false;
      })
      .finally(() => {
        chartsInFlight = false;
        if (chartsRequestedAgain) {
          chartsRequestedAgain = false;
          scheduleCharts();
        }
      });
  }

  function drawCharts(payload) {
    for (const chart of payload.charts) {
      const node = document.getElementById(`chart-${chart.key}`);
      const reason = document.getElementById(`chart-${chart.key}-reason`);
      if (!node) continue;
      if (chart.figure) {
        // Shown before drawing, so that Plotly measures the card's real width.
        node.hidden = false;
        reason.hidden = true;
        const layout = Object.assign({autosize: true}, chart.figure.layout);
        Plotly.react(node, chart.figure.data, layout, {responsive: true, displaylogo: false});
        if (chart.key === "pareto") bindParetoClick(node);
      } else {
        reason.textContent = chart.reason;
        reason.hidden = false;
        if (node.data) Plotly.purge(node);
        node.hidden = true;
      }
    }
    if (live.multi) showPareto(payload.pareto);
    chartsDrawn += 1;
  }

  // A click on a point of the Pareto front chooses its trial in the promote form.
  function bindParetoClick(node) {
    const select = document.getElementById("promote-trial");
    if (paretoClickBound || !select) return;
    paretoClickBound = true;
    node.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      const match = point && /"number": (\d+)/.exec(String(point.text));
      if (match && select.querySelector(`option[value="${match[1]}"]`)) select.value = match[1];
    });
  }

  function showPareto(front) {
    const numbers = new Set(front.map((trial) => trial.number));
    for (const row of tbody.querySelectorAll("tr[data-trial-number]")) {
      row.querySelector('[data-field="pareto"]').hidden = !numbers.has(Number(row.dataset.trialNumber));
    }
    const select = document.getElementById("promote-trial");
    if (!select) return;
    const chosen = select.value;
    select.textContent = "";
    for (const trial of front) {
      const option = document.createElement("option");
      option.value = String(trial.number);
      option.textContent = fill(labels.trialOption, {
        number: trial.number, values: trial.values.map((value) => sig4(value)).join(", ")});
      select.append(option);
    }
    if (numbers.has(Number(chosen))) select.value = chosen;
    setPromotable(front.length > 0);
  }

  if (objectiveChoice) objectiveChoice.addEventListener("change", loadCharts);

  // ---- Websocket ----------------------------------------------------------

  let stream = null;

  function connect() {
    stream = StudioLive.connect(() => live.ws_path, {
      onOpen: () => setText("live-indicator", labels.live),
      onMessage: (message) => {
        if (message.type === "study.state") showStudy(message.study);
        else if (message.type === "trial.state") receiveTrial(message.trial);
        else if (message.type === "run.state") receiveRun(message.run);
      },
      onRefused: (code) => setText("live-indicator",
        code === StudioLive.CLOSE_FORBIDDEN ? labels.forbidden : labels.notFound),
      onRetry: () => setText("live-indicator", labels.reconnecting),
    });
  }

  // What the page has received, for tests and for debugging in the browser console.
  window.studyPage = {
    get state() { return study.state; },
    get trialsFinished() { return study.trials_finished; },
    get chartsDrawn() { return chartsDrawn; },
    get connected() { return stream !== null && stream.connected; },
  };

  // ---- Start --------------------------------------------------------------

  loadCharts();
  connect();
  setInterval(tick, 1000);
})();
