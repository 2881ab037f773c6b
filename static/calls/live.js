/* Live call pages: keep /calls/live/ and /calls/<id>/ current over their WebSocket.
 *
 * The server renders the state of the moment; this script applies the
 * `call.update` / `call.event` messages (docs/architecture.md) as they arrive. Right after
 * it connects (and after each reconnect) the socket sends the current state once,
 * so nothing is lost between the render and the connection; what a page already
 * shows is recognised by key and not shown twice. Text is only ever set with
 * textContent. No build step, no dependencies.
 */
(function () {
  "use strict";

  var STATUS_LABELS = {
    scheduled: "Scheduled", queued: "Queued", starting: "Starting", ringing: "Ringing", waiting: "Waiting for caller",
    in_progress: "In progress", completed: "Completed", failed: "Failed", no_answer: "No answer",
    busy: "Busy", canceled: "Canceled"
  };
  var FINAL = { completed: 1, failed: 1, no_answer: 1, busy: 1, canceled: 1 };
  // The state machine only moves forward: an update ranked below what a page shows is stale.
  // A call deferred by the bot runner (429) goes from starting back to queued: its
  // `start_deferrals` grows, which makes that one step back not stale.
  var RANK = { scheduled: -1, queued: 0, starting: 1, ringing: 2, waiting: 2, in_progress: 3,
               completed: 4, failed: 4, no_answer: 4, busy: 4, canceled: 4 };
  var DIRECTION_LABELS = { dial_in: "Dial-in", dial_out: "Dial-out" };
  // Keep in step with calls/views.py EVENT_LABELS / describe_event.
  var EVENT_LABELS = {
    bot_started: "Bot started", joined: "Bot joined the room", dialin_ready: "Ready for the caller",
    dialin_connected: "Caller connected", dialin_stopped: "Dial-in stopped", dialin_warning: "Dial-in warning",
    dialin_error: "Dial-in error", dialout_attempt: "Dialing", dialout_answered: "Answered",
    dialout_connected: "Call connected", dialout_stopped: "Dial-out stopped", dialout_warning: "Dial-out warning",
    dialout_error: "Dial-out error", participant_left: "Participant left", outcome: "Outcome",
    ended: "Bot ended the call", error: "Error", bot_start_requested: "Bot start requested",
    bot_start_unconfirmed: "Bot start unconfirmed", start_retry: "Start retried",
    room_delete_failed: "Room not deleted", start_deferred: "Start deferred (bot runner at capacity)",
    start_redispatched: "Start handed to a worker again", next_attempt: "Next attempt scheduled", scheduled: "Scheduled as a new attempt",
    opt_out: "Patient asked not to be called", opted_out: "Opted out: do-not-call set",
    identity_verified: "Identity confirmed", identity_failed: "Identity not confirmed", tool: "Bot used a server tool"
  };
  var ATTEMPT_EVENTS = { dialout_attempt: 1, dialout_error: 1, dialout_answered: 1, dialout_stopped: 1 };

  var root = document.getElementById("live-root");
  if (!root) return;
  var indicator = document.getElementById("live-indicator");
  var serverSkewMs = 0;
  if (root.dataset.serverNow) {
    var serverNow = Date.parse(root.dataset.serverNow);
    if (!isNaN(serverNow)) serverSkewMs = serverNow - Date.now();
  }

  // --- helpers ---------------------------------------------------------------------

  function statusLabel(s) { return STATUS_LABELS[s] || String(s || "").replace(/_/g, " "); }
  function capitalize(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }

  // Times read as on the server's pages (organizations/timefmt.py): 24-hour clock,
  // in the organisation's zone (data-tz on the row or the page), not the browser's.
  function fmtTime(iso, withDate, tz) {
    return window.MyRobotTime.show(iso, tz, { date: !!withDate, seconds: true });
  }

  function zoneOf(el) {
    var holder = el && el.closest ? el.closest("[data-tz]") : null;
    return (holder && holder.dataset.tz) || root.dataset.tz || "";
  }

  function fmtDuration(sec) {
    if (sec === null || sec === undefined || isNaN(sec)) return "—";
    sec = Math.max(0, Math.floor(sec));
    var h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function describe(ev) {
    var kind = ev.event || "", data = ev.data || {};
    if (kind === "status") {
      return [statusLabel(data.from) + " → " + statusLabel(data.to), String(data.error || data.reason || "")];
    }
    var label = EVENT_LABELS[kind] || capitalize(kind.replace(/_/g, " "));
    var detail = "";
    if (kind === "dialout_attempt") {
      if (data.attempt && data.max_attempts) detail = "attempt " + data.attempt + " of " + data.max_attempts;
      else if (data.attempt) detail = "attempt " + data.attempt;
    } else if (kind === "dialout_error" || kind === "dialin_error" || kind === "start_retry") {
      detail = data.error || "";
    } else if (kind === "error") {
      detail = (data.message || "") + (data.fatal ? " (fatal)" : "");
    } else if (kind === "ended" || kind === "participant_left") {
      detail = data.reason || "";
    } else if (kind === "outcome") {
      detail = data.result || "";
    } else if (kind === "dtmf") {
      detail = data.digits || "";
    }
    return [label, String(detail)];
  }

  // Same keys as calls/shaping.py event_key.
  function eventKey(ev) {
    if (ev.seq !== null && ev.seq !== undefined) return "s" + ev.seq;
    var data = ev.data || {};
    if (ev.event === "status") return "st" + (data.to || "");
    return "t" + ev.at + "|" + ev.event;
  }

  function byKey(container, key) {
    if (!container) return null;
    var items = container.children;
    for (var i = 0; i < items.length; i++) {
      if (items[i].dataset.key === key) return items[i];
    }
    return null;
  }

  function field(scope, name) { return scope.querySelector('[data-field="' + name + '"]'); }

  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  function setTime(el, iso, withDate) {
    if (!el) return;
    el.setAttribute("datetime", iso || "");
    setText(el, fmtTime(iso, withDate, zoneOf(el)));
  }

  function flash(el) {
    if (!el) return;
    el.classList.remove("flash");
    void el.offsetWidth; // restart the animation
    el.classList.add("flash");
  }

  function setStatusBadge(el, status) {
    if (!el) return;
    el.className = el.className.replace(/\bstatus-(?!badge\b|large\b)\S+/g, "").trim() + " status-" + status;
    setText(el, statusLabel(status));
  }

  function durationStart(call) { return call.answered_at || call.started_at || ""; }

  function setDuration(el, call) {
    if (!el) return;
    el.dataset.start = durationStart(call);
    el.dataset.end = call.ended_at || "";
    tickOne(el);
  }

  function tickOne(el) {
    var start = el.dataset.start;
    if (!start) { setText(el, "—"); return; }
    var end = el.dataset.end ? Date.parse(el.dataset.end) : Date.now() + serverSkewMs;
    setText(el, fmtDuration((end - Date.parse(start)) / 1000));
  }

  function tickAll() {
    var els = document.querySelectorAll('[data-field="duration"]');
    for (var i = 0; i < els.length; i++) tickOne(els[i]);
  }

  function formatTimes(scope) {
    var els = scope.querySelectorAll("time[datetime]");
    for (var i = 0; i < els.length; i++) {
      var iso = els[i].getAttribute("datetime");
      if (iso) els[i].textContent = fmtTime(iso, els[i].dataset.field === "created_at" && root.dataset.page === "detail", zoneOf(els[i]));
    }
  }

  // --- the socket --------------------------------------------------------------------

  function connect(path, onMessage) {
    var delay = 500;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    function setState(state, text) {
      root.dataset.ws = state;
      if (indicator) { indicator.dataset.state = state; indicator.textContent = text; }
    }
    function open() {
      var ws = new WebSocket(scheme + window.location.host + path);
      ws.onopen = function () { delay = 500; setState("open", "Live"); };
      ws.onmessage = function (e) {
        var msg;
        try { msg = JSON.parse(e.data); } catch (err) { return; }
        try { onMessage(msg); } catch (err) { if (window.console) console.error(err); }
      };
      ws.onclose = function (e) {
        if (e.code === 4403) {  // access removed while the page was open (calls/consumers.py)
          setState("closed", "Access changed: reload the page");
          return;
        }
        setState("closed", "Reconnecting…");
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
  }

  // --- /calls/live/ ------------------------------------------------------------------

  function listPage() {
    var template = document.getElementById("row-template");
    var bodies = {
      unfinished: root.querySelector('tbody[data-section="unfinished"]'),
      scheduled: root.querySelector('tbody[data-section="scheduled"]'),
      finished: root.querySelector('tbody[data-section="finished"]')
    };
    var orgNames = {};
    var orgNode = document.getElementById("org-names");
    if (orgNode) { try { orgNames = JSON.parse(orgNode.textContent) || {}; } catch (e) { orgNames = {}; } }
    var orgZones = {};
    var zoneNode = document.getElementById("org-zones");
    if (zoneNode) { try { orgZones = JSON.parse(zoneNode.textContent) || {}; } catch (e) { orgZones = {}; } }
    var wantWorkflow = root.dataset.filterWorkflow || "";
    var wantDirection = root.dataset.filterDirection || "";
    var wantIds = null;
    if (root.dataset.filterIdsActive) {
      wantIds = {};
      (root.dataset.filterIds || "").split(",").forEach(function (id) { if (id) wantIds[id] = 1; });
    }

    function matches(call) {
      if (wantWorkflow && String(call.workflow && call.workflow.id) !== wantWorkflow) return false;
      if (wantDirection && call.direction !== wantDirection) return false;
      if (wantIds && !wantIds[call.session_id]) return false;
      return true;
    }

    function findRow(id) {
      var rows = root.querySelectorAll("tr.live-row");
      for (var i = 0; i < rows.length; i++) if (rows[i].dataset.sessionId === id) return rows[i];
      return null;
    }

    function newRow() {
      var tr = template.content.querySelector("tr").cloneNode(true);
      return tr;
    }

    function place(row, section) {
      var body = bodies[section] || bodies.unfinished;
      if (row.parentNode === body) return;
      var before = null;
      if (section === "scheduled") {
        // soonest first
        var when = row.dataset.scheduledFor || "";
        for (var j = 0; j < body.children.length; j++) {
          if ((body.children[j].dataset.scheduledFor || "") > when) { before = body.children[j]; break; }
        }
      } else {
        var created = row.dataset.created || "";
        for (var i = 0; i < body.children.length; i++) {
          if ((body.children[i].dataset.created || "") < created) { before = body.children[i]; break; }
        }
      }
      body.insertBefore(row, before);
    }

    function refreshEmpty() {
      ["unfinished", "scheduled", "finished"].forEach(function (section) {
        var note = root.querySelector('[data-empty-for="' + section + '"]');
        if (note && bodies[section]) note.hidden = bodies[section].children.length > 0;
      });
      // The counts above the tables: what this page shows (its filters apply).
      var waiting = root.querySelectorAll('tr.live-row[data-waiting="1"]').length;
      var scheduled = bodies.scheduled ? bodies.scheduled.children.length : 0;
      var w = root.querySelector('[data-count="waiting"]');
      var sc = root.querySelector('[data-count="scheduled"]');
      if (w) w.textContent = String(waiting);
      if (sc) sc.textContent = String(scheduled);
    }

    function ringText(call) {
      var parts = [];
      if (call.direction === "dial_out" && call.attempt) parts.push(call.attempt + " of " + (call.max_attempts || call.attempt));
      if (call.ring_times) parts.push(call.ring_times.text);
      else if (call.waiting_for_slot) parts.push("waiting for a slot");
      return parts.join(" · ");
    }

    function fill(row, call) {
      row.dataset.sessionId = call.session_id;
      row.dataset.status = call.status;
      row.dataset.workflow = call.workflow ? call.workflow.id : "";
      row.dataset.direction = call.direction;
      row.dataset.created = call.created_at || "";
      row.dataset.tz = orgZones[String(call.organization_id)] || root.dataset.tz || "";
      row.dataset.waiting = call.waiting_for_slot ? "1" : "";
      row.dataset.deferrals = String(call.start_deferrals || 0);
      row.dataset.scheduledFor = call.scheduled_for || "";
      var link = field(row, "link");
      link.setAttribute("href", call.url);
      setText(link, call.session_id.slice(0, 8));
      setStatusBadge(field(row, "status"), call.status);
      setText(field(row, "patient"), (call.patient && call.patient.name) || "");
      setText(field(row, "organization"), orgNames[String(call.organization_id)] || "");
      setText(field(row, "workflow"), (call.workflow && call.workflow.name) || "");
      setText(field(row, "direction"), DIRECTION_LABELS[call.direction] || call.direction);
      setTime(field(row, "created_at"), call.created_at);
      setDuration(field(row, "duration"), call);
      // The outcome (what the conversation achieved) and the end reason (how the call ended) apart.
      setText(field(row, "outcome-result"), (call.outcome && call.outcome.result) || "");
      setText(field(row, "end-reason"), call.end_reason_label || "");
      setText(field(row, "ring"), ringText(call));
    }

    function applyUpdate(call) {
      var row = findRow(call.session_id);
      var isNew = !row;
      if (isNew) {
        if (!matches(call)) return;
        row = newRow();
      } else if ((RANK[call.status] || 0) < (RANK[row.dataset.status] || 0) &&
                 (call.start_deferrals || 0) <= (parseInt(row.dataset.deferrals || "0", 10) || 0)) {
        return; // stale: the row already shows a later state
      }
      var changed = isNew || row.dataset.status !== call.status;
      fill(row, call);
      place(row, FINAL[call.status] ? "finished" : (call.status === "scheduled" ? "scheduled" : "unfinished"));
      if (changed) flash(row);
      refreshEmpty();
    }

    connect(root.dataset.wsPath, function (msg) {
      if (msg.type === "call.update" && msg.call) applyUpdate(msg.call);
    });
  }

  // --- /calls/<id>/ ------------------------------------------------------------------

  function detailPage() {
    var sessionId = root.dataset.sessionId;
    var timeline = document.getElementById("timeline");
    var attempts = document.getElementById("attempts");
    var steps = document.getElementById("status-steps");
    var transcript = document.getElementById("transcript");
    var cancelForm = document.getElementById("cancel-form");

    if (cancelForm) {
      cancelForm.addEventListener("submit", function (e) {
        var hangup = root.dataset.status === "in_progress";
        if (!window.confirm(hangup ? "Hang up this call?" : "Cancel this call?")) e.preventDefault();
      });
    }

    function eventItem(ev) {
      var d = describe(ev);
      var li = document.createElement("li");
      li.dataset.key = eventKey(ev);
      li.className = "event event-" + ev.event + (ev.event === "status" ? " event-status" : "");
      var t = document.createElement("time");
      setTime(t, ev.at);
      var label = document.createElement("span");
      label.className = "event-label";
      label.textContent = d[0];
      li.appendChild(t);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(label);
      if (d[1]) {
        var detail = document.createElement("span");
        detail.className = "event-detail";
        detail.textContent = d[1];
        li.appendChild(document.createTextNode(" "));
        li.appendChild(detail);
      }
      return li;
    }

    function insertByTime(list, li, at) {
      // Keep the list in time order (a replayed snapshot may bring older items).
      var before = null;
      for (var i = list.children.length - 1; i >= 0; i--) {
        var t = list.children[i].querySelector("time");
        var other = t ? t.getAttribute("datetime") : "";
        if (!other || !at || Date.parse(other) <= Date.parse(at)) break;
        before = list.children[i];
      }
      list.insertBefore(li, before);
    }

    function addStep(status, at) {
      if (!steps || byKey(steps, "st" + status)) return;
      var li = document.createElement("li");
      li.className = "status-step";
      li.dataset.key = "st" + status;
      var badge = document.createElement("span");
      badge.className = "status-badge";
      setStatusBadge(badge, status);
      var t = document.createElement("time");
      setTime(t, at);
      li.appendChild(badge);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(t);
      insertByTime(steps, li, at);
      flash(li);
    }

    function addLine(ev) {
      if (!transcript) return;
      var key = eventKey(ev);
      if (byKey(transcript, key)) return;
      var data = ev.data || {};
      if (!data.text) return;
      var p = document.createElement("p");
      p.className = "line role-" + (data.role === "assistant" ? "assistant" : "user");
      p.dataset.key = key;
      var who = document.createElement("span");
      who.className = "who";
      who.textContent = data.role === "assistant" ? "Bot" : "Patient";
      var text = document.createElement("span");
      text.className = "text";
      text.textContent = data.text;
      p.appendChild(who);
      p.appendChild(document.createTextNode(" "));
      p.appendChild(text);
      // Lines are ordered by seq.
      var before = null;
      for (var i = transcript.children.length - 1; i >= 0; i--) {
        var k = transcript.children[i].dataset.key || "";
        if (k.charAt(0) !== "s" || Number(k.slice(1)) < ev.seq) break;
        before = transcript.children[i];
      }
      transcript.insertBefore(p, before);
      flash(p);
      var empty = root.querySelector('[data-empty-for="transcript"]');
      if (empty) empty.hidden = true;
      transcript.scrollTop = transcript.scrollHeight;
    }

    function renderOutcome(outcome) {
      var box = field(root, "outcome");
      if (!box || !outcome) return;
      box.textContent = "";
      var p = document.createElement("p");
      var strong = document.createElement("strong");
      strong.dataset.field = "outcome-result";
      strong.textContent = outcome.result || "—";
      p.appendChild(strong);
      box.appendChild(p);
      if (outcome.notes) {
        var notes = document.createElement("p");
        notes.dataset.field = "outcome-notes";
        notes.textContent = outcome.notes;
        box.appendChild(notes);
      }
      var data = outcome.data;
      if (data && typeof data === "object" && Object.keys(data).length) {
        var dl = document.createElement("dl");
        dl.className = "outcome-data";
        Object.keys(data).forEach(function (k) {
          var dt = document.createElement("dt"), dd = document.createElement("dd");
          dt.textContent = k;
          dd.textContent = typeof data[k] === "object" ? JSON.stringify(data[k]) : String(data[k]);
          dl.appendChild(dt);
          dl.appendChild(dd);
        });
        box.appendChild(dl);
      }
    }

    function stepTime(call) {
      if (call.status === "starting") return call.started_at;
      if (call.status === "in_progress") return call.answered_at;
      if (FINAL[call.status]) return call.ended_at;
      return new Date(Date.now() + serverSkewMs).toISOString();
    }

    function applyUpdate(call) {
      if (call.session_id !== sessionId) return;
      if ((RANK[call.status] || 0) < (RANK[root.dataset.status] || 0) &&
          (call.start_deferrals || 0) <= (parseInt(root.dataset.deferrals || "0", 10) || 0)) return; // stale
      root.dataset.deferrals = String(call.start_deferrals || 0);
      var previous = root.dataset.status;
      var changed = previous !== call.status;
      root.dataset.status = call.status;
      var badge = field(root, "status");
      // Every badge of this call on the page (the head, the attempts panel): one source.
      root.querySelectorAll('[data-status-of="' + sessionId + '"]').forEach(function (el) { setStatusBadge(el, call.status); });
      if (changed) flash(badge);
      if (call.patient) {
        setText(field(root, "patient"), call.patient.name || "");
        setText(field(root, "phone"), call.patient.phone || "");
      }
      setText(field(root, "workflow"), (call.workflow && call.workflow.name) || "");
      setText(field(root, "direction"), DIRECTION_LABELS[call.direction] || call.direction);
      setTime(field(root, "started_at"), call.started_at);
      setTime(field(root, "answered_at"), call.answered_at);
      setTime(field(root, "ended_at"), call.ended_at);
      setDuration(field(root, "duration"), call);
      setText(field(root, "end_reason"), call.end_reason_label || "—");
      var err = field(root, "error");
      if (err) {
        setText(err, call.error || "");
        err.parentNode.hidden = !call.error;
      }
      setText(field(root, "dialout_attempts"), String(call.dialout_attempts || 0));
      if (call.outcome) renderOutcome(call.outcome);
      else if (FINAL[call.status]) {
        setText(field(root, "no-outcome"), "No outcome was recorded: the call ended — " +
          (call.end_reason_label || statusLabel(call.status)).toLowerCase() + ".");
      }
      if (changed) {
        // The bot's socket broadcasts its own event and the call, not the status
        // move it caused: show the move as the page saw it (a reload shows the stored one,
        // which has the same key).
        applyEvent(sessionId, {
          seq: null, event: "status", at: stepTime(call),
          data: { from: previous, to: call.status, reason: FINAL[call.status] ? call.end_reason : "",
                  error: call.status === "failed" ? call.error : "" }
        });
      }
      addStep(call.status, stepTime(call));
      if (cancelForm) {
        cancelForm.hidden = !!FINAL[call.status];
        setText(field(cancelForm, "cancel-label"), call.status === "in_progress" ? "Hang up" : "Cancel call");
      }
    }

    function addTurn(ev) {
      // One "metrics" event per turn: its latency joins the list and the median is recomputed.
      var list = document.getElementById("turns");
      var data = ev.data || {};
      if (!list || typeof data.turn_ms !== "number" || byKey(list, eventKey(ev))) return;
      var li = document.createElement("li");
      li.dataset.key = eventKey(ev);
      li.dataset.ms = String(Math.round(data.turn_ms));
      li.textContent = li.dataset.ms + " ms";
      if (typeof data.llm_ttfb_ms === "number") {
        var parts = "LLM " + data.llm_ttfb_ms + " ms" + (typeof data.tts_ttfb_ms === "number" ? ", TTS " + data.tts_ttfb_ms + " ms" : "");
        var span = document.createElement("span");
        span.className = "muted";
        span.textContent = "(" + parts + ")";
        li.appendChild(document.createTextNode(" "));
        li.appendChild(span);
      }
      list.appendChild(li);
      var values = Array.prototype.map.call(list.children, function (x) { return Number(x.dataset.ms); })
        .sort(function (a, b) { return a - b; });
      var mid = Math.floor(values.length / 2);
      var median = values.length % 2 ? values[mid] : Math.round((values[mid - 1] + values[mid]) / 2);
      setText(field(root, "median-turn"), median + " ms");
    }

    function applyEvent(sid, ev) {
      if (sid !== sessionId || !ev) return;
      if (ev.event === "transcript") { addLine(ev); return; }
      if (ev.event === "metrics") { addTurn(ev); return; }
      if (ev.event === "status" && ev.data && ev.data.to) addStep(ev.data.to, ev.at);
      var key = eventKey(ev);
      if (timeline && !byKey(timeline, key)) {
        var li = eventItem(ev);
        insertByTime(timeline, li, ev.at);
        flash(li);
      }
      if (attempts && ATTEMPT_EVENTS[ev.event] && !byKey(attempts, key)) {
        insertByTime(attempts, eventItem(ev), ev.at);
      }
    }

    connect(root.dataset.wsPath, function (msg) {
      if (msg.type === "call.update" && msg.call) applyUpdate(msg.call);
      else if (msg.type === "call.event") applyEvent(msg.session_id, msg.event);
    });
  }

  formatTimes(document);
  tickAll();
  setInterval(tickAll, 1000);
  if (root.dataset.page === "list") listPage();
  else if (root.dataset.page === "detail") detailPage();
})();
