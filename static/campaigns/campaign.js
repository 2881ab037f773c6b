// The campaign page: keeps progress, counts, results and the calls' statuses
// current over /ws/campaigns/<id>/ (campaign.update and call.update messages).
(function () {
  "use strict";
  const root = document.getElementById("campaign-root");
  if (!root) return;
  const indicator = document.getElementById("live-indicator");
  const labels = {scheduled: "Scheduled", queued: "Queued", starting: "Starting", ringing: "Ringing",
    waiting: "Waiting for caller", in_progress: "In progress", completed: "Completed", failed: "Failed",
    no_answer: "No answer", busy: "Busy", canceled: "Canceled"};
  let delay = 500;

  function setIndicator(state, text) {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.textContent = text;
  }

  function field(name) { return root.querySelector('[data-field="' + name + '"]'); }

  // The bar's width is set here, not in the page: the CSP allows no inline styles.
  field("bar").style.width = field("bar").parentElement.getAttribute("aria-valuenow") + "%";

  function applyCampaign(c) {
    const status = field("campaign-status");
    status.textContent = c.status_display;
    status.className = "status-badge campaign-status-" + c.status;
    root.dataset.status = c.status;
    field("bar").style.width = c.percent + "%";
    field("bar").parentElement.setAttribute("aria-valuenow", c.percent);
    field("done").textContent = c.done;
    field("total").textContent = c.total;
    field("percent").textContent = c.percent;
    Object.keys(c.counts).forEach(function (key) {
      const cell = root.querySelector('[data-count="' + key + '"]');
      if (cell) cell.textContent = c.counts[key];
    });
    const list = field("results");
    list.textContent = "";
    const names = Object.keys(c.results);
    if (!names.length) {
      const li = document.createElement("li"); li.className = "empty"; li.textContent = "None yet."; list.appendChild(li);
    }
    names.sort().forEach(function (name) {
      const li = document.createElement("li");
      li.dataset.result = name;
      li.textContent = name + ": " + c.results[name];
      list.appendChild(li);
    });
    // Buttons that no longer apply are hidden (the server refuses them anyway).
    const allowed = {draft: ["start", "cancel"], running: ["pause", "cancel"], paused: ["resume", "cancel"]}[c.status] || [];
    root.querySelectorAll("[data-action]").forEach(function (button) {
      button.closest("form").hidden = allowed.indexOf(button.dataset.action) < 0;
    });
  }

  function applyCall(call) {
    const row = root.querySelector('tr[data-session-id="' + call.session_id + '"]');
    if (!row) return;
    const badge = row.querySelector('[data-field="status"]');
    badge.textContent = labels[call.status] || call.status;
    badge.className = "status-badge status-" + call.status;
    const started = row.querySelector('[data-field="started_at"]');
    if (started && call.started_at) {
      started.setAttribute("datetime", call.started_at);
      started.textContent = window.MyRobotTime.show(call.started_at, root.dataset.tz);
    }
    const outcome = row.querySelector('[data-field="outcome"]');
    if (outcome && call.outcome && call.outcome.result) outcome.textContent = call.outcome.result;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.wsPath);
    socket.onopen = function () { delay = 500; root.dataset.ws = "open"; setIndicator("live", "Live"); };
    socket.onmessage = function (e) {
      let msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === "campaign.update") applyCampaign(msg.campaign);
      else if (msg.type === "call.update") applyCall(msg.call);
    };
    socket.onclose = function () {
      root.dataset.ws = "closed";
      setIndicator("offline", "Reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
