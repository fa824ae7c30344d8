// The run page: live curves, progress and log.
//
// Metric points arrive over /ws/runs/<id>/?after=SEQ: first the stored points
// after SEQ, then live ones, each with a sequence number. The page remembers
// the last seq it drew and reconnects (with backoff) asking for what came
// after it, so a dropped connection leaves no gap and draws no point twice.
// Points are buffered and drawn once per animation frame with
// Plotly.extendTraces instead of redrawing whole charts.
(function () {
  "use strict";

  const live = JSON.parse(document.getElementById("run-live").textContent);
  const labels = live.labels;
  const FINAL = new Set(["succeeded", "failed", "cancelled", "pruned"]);
  const LOG_POLL_MS = 3000;
  // A final state names the last stored seq. When the points up to it have
  // not arrived this long after it, the page reconnects to read them from the database.
  const CATCH_UP_GRACE_MS = 3000;

  // ---- Numbers ------------------------------------------------------------

  const { sig4, clock } = window.StudioFormat;

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, (match, name) => (name in values ? values[name] : match));
  }

  // ---- Charts -------------------------------------------------------------

  const metricTraces = live.task === "regression"
    ? [{key: "val/rmse", markers: true}, {key: "val/r2", markers: true}]
    : [{key: "train/accuracy", markers: false}, {key: "val/accuracy", markers: true}];
  const CHARTS = {
    "chart-loss": [{key: "train/loss", markers: false}, {key: "epoch/train_loss", markers: true},
                   {key: "val/loss", markers: true}],
    "chart-metric": metricTraces,
    "chart-lr": [{key: "lr", markers: false}],
  };
  // metric key -> [chart element id, trace index]
  const traceOf = {};
  for (const [chartId, traces] of Object.entries(CHARTS)) {
    traces.forEach((trace, index) => { traceOf[trace.key] = [chartId, index]; });
  }

  function drawEmptyCharts() {
    for (const [chartId, traces] of Object.entries(CHARTS)) {
      const data = traces.map((trace) => ({
        type: "scatter",
        name: trace.key,
        x: [],
        y: [],
        mode: trace.markers ? "lines+markers" : "lines",
        line: {width: trace.markers ? 2 : 1.2},
        marker: {size: 5},
        // A null value (NaN or infinity in training) is drawn as a gap, not bridged.
        connectgaps: false,
        hovertemplate: `%{y:.4g}<br>${labels.step} %{x}<extra>${trace.key}</extra>`,
      }));
      // The legend sits above the plot: one row for two traces, two rows for three.
      let topMargin = 10;
      if (traces.length === 2) topMargin = 26;
      if (traces.length > 2) topMargin = 44;
      const layout = {
        height: 260,
        margin: {l: 55, r: 10, t: topMargin, b: 40},
        xaxis: {title: {text: labels.step}, zeroline: false},
        yaxis: {hoverformat: ".4g", zeroline: false},
        legend: {orientation: "h", x: 0, y: 1.02, yanchor: "bottom"},
        showlegend: traces.length > 1,
      };
      if (chartId === "chart-lr") {
        // A constant learning rate would otherwise sit in the middle of an arbitrary range around it.
        layout.yaxis.rangemode = "tozero";
        layout.yaxis.exponentformat = "e";
      }
      Plotly.newPlot(chartId, data, layout, {responsive: true, displaylogo: false});
    }
  }

  // chart id -> trace index -> {x: [], y: []}, drawn at the next animation frame.
  let pending = {};
  let frameRequested = false;

  function queuePoint(point) {
    const target = traceOf[point.key];
    if (!target) return;
    const [chartId, index] = target;
    pending[chartId] = pending[chartId] || {};
    const buffer = pending[chartId][index] = pending[chartId][index] || {x: [], y: []};
    buffer.x.push(point.step);
    buffer.y.push(point.value);
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(drawPending);
    }
  }

  function drawPending() {
    frameRequested = false;
    const batches = pending;
    pending = {};
    for (const [chartId, traces] of Object.entries(batches)) {
      const indices = Object.keys(traces).map(Number);
      const update = {x: indices.map((i) => traces[i].x), y: indices.map((i) => traces[i].y)};
      Plotly.extendTraces(chartId, update, indices);
    }
  }

  function drawConfusion() {
    const node = document.getElementById("confusion-data");
    const chart = document.getElementById("chart-confusion");
    if (!node || !chart) return;
    const data = JSON.parse(node.textContent);
    Plotly.newPlot(chart, [{
      type: "heatmap",
      z: data.z,
      x: data.labels,
      y: data.labels,
      colorscale: [[0, "#f5f8ff"], [1, "#1e3a8a"]],
      showscale: false,
      texttemplate: "%{z}",
      hovertemplate: `${chart.dataset.yTitle} %{y}, ${chart.dataset.xTitle} %{x}: %{z}<extra></extra>`,
    }], {
      height: 360,
      margin: {l: 60, r: 10, t: 10, b: 50},
      xaxis: {title: {text: chart.dataset.xTitle}, type: "category"},
      yaxis: {title: {text: chart.dataset.yTitle}, type: "category", autorange: "reversed"},
    }, {responsive: true, displaylogo: false});
  }

  // ---- Points -------------------------------------------------------------

  let lastSeq = 0;
  const nonfiniteNote = document.getElementById("nonfinite-note");

  function receivePoints(points) {
    for (const point of points) {
      // The server never repeats a seq on one connection; this also guards a reconnect race.
      if (point.seq <= lastSeq) continue;
      lastSeq = point.seq;
      queuePoint(point);
      if (point.value === null) noteNonfinite(point);
    }
  }

  function noteNonfinite(point) {
    const shown = {nan: "NaN", inf: "inf", "-inf": "-inf"}[point.nonfinite] || "NaN";
    nonfiniteNote.textContent = fill(labels.nonfinite, {key: point.key, value: shown, step: point.step});
    nonfiniteNote.hidden = false;
  }

  // ---- State --------------------------------------------------------------

  let state = live.state;
  let stateReceivedAt = Date.now();
  const initiallyActive = !FINAL.has(state.status);

  function setText(id, text, title) {
    const node = document.getElementById(id);
    if (!node) return;
    node.textContent = text;
    if (title !== undefined) node.title = title;
  }

  function showState(run) {
    const wasActive = !FINAL.has(state.status);
    state = run;
    stateReceivedAt = Date.now();

    const badge = document.getElementById("run-status");
    badge.textContent = labels.statuses[run.status] || run.status_display;
    badge.className = `badge status-${run.status}`;
    const percent = Math.round(run.progress * 100);
    document.getElementById("run-progress").style.width = `${percent}%`;
    document.getElementById("run-progress").parentElement.setAttribute("aria-valuenow", String(percent));
    setText("run-epoch", `${run.epoch}/${run.total_epochs}`);
    setText("run-step", run.total_steps ? `${run.step}/${run.total_steps}` : String(run.step));
    setText("run-eta", clock(run.eta_seconds));
    setText("run-duration", clock(run.duration_seconds));
    setText("run-main-metric", sig4(run.main_metric), run.main_metric === null ? "" : String(run.main_metric));
    if (run.device) setText("run-device", run.device);
    if (run.diverged) document.getElementById("diverged-warning").hidden = false;

    if (FINAL.has(run.status)) {
      const cancelForm = document.getElementById("cancel-form");
      if (cancelForm) cancelForm.hidden = true;
      if (wasActive) refreshResult();
    }
  }

  function tickDuration() {
    if (state.status === "running" && state.duration_seconds !== null) {
      setText("run-duration", clock(state.duration_seconds + (Date.now() - stateReceivedAt) / 1000));
    }
  }

  function refreshResult() {
    fetch(live.result_url, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        // The fragment's top-level elements replace the page's elements with the same id.
        const fragment = document.createElement("template");
        fragment.innerHTML = html;
        for (const part of Array.from(fragment.content.children)) {
          const current = part.id && document.getElementById(part.id);
          if (current) current.replaceWith(part);
        }
        drawConfusion();
      })
      .catch((error) => console.warn("loading the run's results failed:", error));
  }

  // ---- Log ----------------------------------------------------------------

  let logOffset = live.log_offset;
  const logNode = document.getElementById("run-log");

  function pollLog() {
    fetch(`${live.log_url}?offset=${logOffset}`, {credentials: "same-origin"})
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((body) => {
        const atBottom = logNode.scrollTop + logNode.clientHeight >= logNode.scrollHeight - 4;
        if (body.reset) logNode.textContent = body.text;
        else if (body.text) logNode.textContent += body.text;
        logOffset = body.offset;
        if (atBottom) logNode.scrollTop = logNode.scrollHeight;
        if (!body.active && !FINAL.has(state.status)) resync();
        if (body.active || !FINAL.has(state.status)) setTimeout(pollLog, LOG_POLL_MS);
      })
      .catch(() => setTimeout(pollLog, LOG_POLL_MS * 3));
  }

  // ---- Websocket ----------------------------------------------------------

  let stream = null;
  let finished = false;
  let catchUpTimer = null;

  function setIndicator(text) {
    setText("live-indicator", text);
  }

  function connect() {
    stream = StudioLive.connect(() => `${live.ws_path}?after=${lastSeq}`, {
      onOpen: () => setIndicator(labels.live),
      onMessage: (message) => {
        if (message.type === "run.metrics") receivePoints(message.points);
        else if (message.type === "run.state") showState(message.run);
        checkFinished();
      },
      onRefused: (code) => setIndicator(code === StudioLive.CLOSE_FORBIDDEN ? labels.forbidden : labels.notFound),
      shouldRetry: () => {
        if (finished) setIndicator("");
        return !finished;
      },
      onRetry: () => setIndicator(labels.reconnecting),
    });
  }

  // The database shows the run finished but no final state arrived, e.g. because Redis lost the
  // socket's group membership. A new connection starts with the current state, so reconnect.
  function resync() {
    stream.reopen(4000);
  }

  function checkFinished() {
    if (!FINAL.has(state.status) || finished) return;
    if (lastSeq >= state.last_seq) {
      // Everything the run will ever report has arrived: nothing left to listen for.
      finished = true;
      clearTimeout(catchUpTimer);
      stream.reopen(1000);
      return;
    }
    if (catchUpTimer === null) {
      catchUpTimer = setTimeout(() => {
        catchUpTimer = null;
        if (!finished) resync();
      }, CATCH_UP_GRACE_MS);
    }
  }

  // What the page has received, for tests and for debugging in the browser console.
  window.runPage = {
    get lastSeq() { return lastSeq; },
    get status() { return state.status; },
    get connected() { return stream !== null && stream.connected; },
  };

  // ---- Start --------------------------------------------------------------

  drawEmptyCharts();
  drawConfusion();
  connect();
  if (initiallyActive) {
    setTimeout(pollLog, LOG_POLL_MS);
    setInterval(tickDuration, 1000);
  }
})();
