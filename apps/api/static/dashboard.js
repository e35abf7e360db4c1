// The status page's live part: polls /dashboard/data every 2 s, updates the figures in place and
// draws a sparkline of the last few minutes per series. No framework, no build, nothing inline
// (the page's CSP allows only this file).
"use strict";

(() => {
  const POLL_MS = 2000;
  const HISTORY = 90; // points per sparkline: three minutes at one every 2 s
  const root = document.getElementById("destinations");
  if (!root) return;
  const history = new Map(); // "crm/queue" -> [numbers or null]

  const number = (value, unit = "") => (value === null || value === undefined ? "unknown" : `${value}${unit}`);

  function setText(section, selector, text) {
    const node = section.querySelector(selector);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function renderDepth(cell, queue) {
    cell.replaceChildren();
    if (queue.error) {
      cell.textContent = "unknown";
      return;
    }
    const small = document.createElement("small");
    small.textContent = `+${queue.in_flight} in flight`;
    cell.append(`${queue.visible} `, small);
    cell.classList.toggle("alert", cell.dataset.queue === "dlq" && queue.visible > 0);
  }

  function renderFailures(tbody, failures) {
    const rows = failures.items.map((f) => {
      const tr = document.createElement("tr");
      for (const [key, cls] of [["failed_at"], ["failure_stage"], ["failure_reason", "reason"], ["event_id"], ["correlation_id"]]) {
        const td = document.createElement("td");
        td.textContent = f[key] || ""; // text only: attribute values never become markup
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = "none";
      tr.append(td);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function renderProblems(list, d) {
    const sources = [["metrics", d.consumer.error], ["buffer queue", d.queues.buffer_queue.error],
      ["queue", d.queues.queue.error], ["DLQ", d.queues.dlq.error], ["DLQ messages", d.failures.error]];
    list.replaceChildren(...sources.filter(([, error]) => error).map(([source, error]) => {
      const li = document.createElement("li");
      li.textContent = `${source}: ${error}`;
      return li;
    }));
  }

  function remember(name, series, value) {
    const key = `${name}/${series}`;
    const points = history.get(key) || [];
    points.push(value === undefined ? null : value);
    if (points.length > HISTORY) points.shift();
    history.set(key, points);
    return points;
  }

  function drawSparkline(canvas, points) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== width * ratio) {
      canvas.width = width * ratio;
      canvas.height = height * ratio;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const known = points.filter((p) => p !== null);
    if (known.length === 0) return;
    const max = Math.max(...known, 1e-9);
    const step = width / (HISTORY - 1);
    const offset = HISTORY - points.length;
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = getComputedStyle(canvas).color;
    ctx.beginPath();
    let drawing = false;
    points.forEach((p, i) => {
      if (p === null) {
        drawing = false;
        return;
      }
      const x = (offset + i) * step;
      const y = height - 2 - (p / max) * (height - 4);
      if (drawing) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
  }

  function renderIntake(intake) {
    const section = document.getElementById("intake");
    if (!section || !intake) return;
    for (const cell of section.querySelectorAll("[data-queue]")) renderDepth(cell, intake.queues[cell.dataset.queue]);
    const list = section.querySelector('[data-field="problems"]');
    list.replaceChildren(...Object.entries(intake.queues).filter(([, q]) => q.error).map(([kind, q]) => {
      const li = document.createElement("li");
      li.textContent = `intake ${kind}: ${q.error}`;
      return li;
    }));
  }

  function render(status) {
    document.getElementById("generated-at").textContent = status.generated_at;
    renderIntake(status.intake);
    for (const d of status.destinations) {
      const section = document.getElementById(`destination-${d.name}`);
      if (!section) continue;
      setText(section, '[data-field="applied_per_second"]', number(d.consumer.applied_per_second));
      setText(section, '[data-field="applied_total"]', number(d.consumer.applied_total));
      setText(section, '[data-field="lag_p50_seconds"]', number(d.consumer.lag_p50_seconds, " s"));
      setText(section, '[data-field="lag_p95_seconds"]', number(d.consumer.lag_p95_seconds, " s"));
      for (const cell of section.querySelectorAll("[data-queue]")) renderDepth(cell, d.queues[cell.dataset.queue]);
      renderFailures(section.querySelector('[data-field="failures"]'), d.failures);
      renderProblems(section.querySelector('[data-field="problems"]'), d);
      const values = {
        applied_per_second: d.consumer.applied_per_second,
        lag_p95_seconds: d.consumer.lag_p95_seconds,
        queue: d.queues.queue.error ? null : d.queues.queue.visible + d.queues.queue.in_flight,
        dlq: d.queues.dlq.error ? null : d.queues.dlq.visible + d.queues.dlq.in_flight,
      };
      for (const canvas of section.querySelectorAll("canvas[data-series]")) {
        drawSparkline(canvas, remember(d.name, canvas.dataset.series, values[canvas.dataset.series]));
      }
    }
  }

  const state = document.getElementById("live-state");
  async function poll() {
    try {
      const response = await fetch(root.dataset.source, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        state.textContent = "session ended: reload to log in";
        return; // stop polling: the login form is one reload away
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      state.textContent = "live";
    } catch (error) {
      state.textContent = `not updating (${error.message}); retrying`;
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
