// dockd status page: renders the station snapshot, follows it live over
// server-sent events and falls back to polling /api/status.
"use strict";
(function () {
  var state = null, receivedAt = Date.now(), pollTimer = null, es = null, sseEvents = 0;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function setMode(m) { var c = $("conn"); c.dataset.mode = m; c.textContent = m; }
  // age of an RFC 3339 time in seconds, measured on the station's clock.
  function ageS(t) {
    if (!t || !state) return null;
    var at = Date.parse(t), now = Date.parse(state.time) + (Date.now() - receivedAt);
    return isNaN(at) ? null : Math.max(0, (now - at) / 1000);
  }
  function ago(s) {
    if (s === null) return "never";
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
    return (s / 86400).toFixed(1) + " d ago";
  }
  function dur(s) {
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function lamp(id, on) {
    var l = $(id);
    l.classList.toggle("on", !!on);
    l.setAttribute("data-on", on ? "true" : "false");
  }

  function render(s) {
    state = s; receivedAt = Date.now();
    document.title = (s.station || "dockd") + " · " + (s.light.showing || "");
    $("station").textContent = s.station || "dockd";
    $("site").textContent = s.site || "";
    $("door").textContent = s.door || "";
    $("direction").textContent = s.direction || "–";
    $("btn-dir").textContent = "Switch to " + (s.direction === "shipping" ? "receiving" : "shipping");
    $("version").textContent = s.version ? "dockd " + s.version : "dockd";

    var L = s.light || {};
    lamp("lamp-red", L.red); lamp("lamp-amber", L.amber); lamp("lamp-green", L.green);
    $("buzzer").dataset.on = L.buzzer ? "true" : "false";
    $("buzzer").textContent = L.buzzer ? "buzzer ON" : "buzzer off";
    $("showing").textContent = L.running === false ? "light not running" : (L.showing || "idle").replace(/_/g, " ");
    $("why").textContent = L.why || "";
    document.body.dataset.showing = L.showing || "";
    var conds = $("conditions"); conds.textContent = "";
    (L.conditions || []).forEach(function (c) { conds.appendChild(el("span", "", c.replace(/_/g, " "))); });

    var rl = $("readers"); rl.textContent = "";
    (s.readers || []).forEach(function (r) {
      var li = el("li", r.up ? "up" : "down");
      li.dataset.reader = r.id; li.dataset.up = r.up ? "true" : "false";
      var left = el("span"); left.appendChild(el("span", "dot")); left.appendChild(el("b", "", r.id));
      left.appendChild(el("span", "s", " " + (r.up ? "up" : "DOWN") + (r.port ? " · " + r.port : "") + (r.error ? " · " + r.error : "")));
      li.appendChild(left);
      li.appendChild(el("span", "s age", "last scan " + ago(ageS(r.last_scan))));
      li.lastElementChild.dataset.t = r.last_scan || "";
      rl.appendChild(li);
    });
    if (!s.readers || !s.readers.length) rl.appendChild(el("li", "s", "no reader has reported yet"));

    var b = s.buffer || {};
    $("buf-depth").textContent = b.depth + " queued";
    $("buf-depth").className = "v" + (b.full || b.alarm ? " bad" : "");
    $("buf-detail").textContent = bytes(b.bytes || 0) + (b.depth ? " · oldest " + dur(b.oldest_age_s || 0) : "") + (b.unconfirmed != null ? " · " + b.unconfirmed + " unconfirmed" + (b.unconfirmed ? " (oldest " + dur(b.unconfirmed_oldest_age_s || 0) + ")" : "") : "") + (b.full ? " · FULL" : b.alarm ? " · ALARM" : "");
    var br = s.broker || {};
    $("broker").textContent = !br.configured ? "none" : br.connected ? "connected" : "OFFLINE";
    $("broker").className = "v" + (br.configured ? (br.connected ? " ok" : " bad") : "");
    $("broker-detail").textContent = (br.url || "") + (br.last_ack ? " · ack " + ago(ageS(br.last_ack)) : "");
    var al = s.allowlist || {};
    $("allowlist").textContent = al.version || "(empty)";
    $("allowlist-detail").textContent = (al.lots || 0) + " lots";

    var counts = s.counts || {}, parts = [];
    ["accept", "warn", "reject"].forEach(function (k) { if (counts[k]) parts.push(counts[k] + " " + k); });
    $("counts").textContent = parts.join(" · ");
    var ol = $("scans"); ol.textContent = "";
    (s.recent || []).forEach(function (sc) {
      var li = el("li"); li.dataset.decision = sc.decision; li.dataset.seq = sc.seq;
      var head = el("div");
      head.appendChild(el("span", "dec", sc.decision));
      head.appendChild(el("span", "", sc.reason.replace(/_/g, " ")));
      var t = el("span", "s age", " · " + ago(ageS(sc.time)) + " · " + sc.reader); t.dataset.t = sc.time;
      head.appendChild(t);
      li.appendChild(head);
      var what = [];
      if (sc.gtin) what.push("GTIN " + sc.gtin);
      if (sc.lot) what.push("lot " + sc.lot);
      if (sc.serial) what.push("serial " + sc.serial);
      if (sc.sscc) what.push("SSCC " + sc.sscc);
      if (sc.epc) what.push(sc.epc);
      li.appendChild(el("div", "what", what.length ? what.join(" · ") : sc.raw));
      if (sc.detail) li.appendChild(el("div", "s", sc.detail));
      ol.appendChild(li);
    });
    if (!s.recent || !s.recent.length) ol.appendChild(el("li", "s", "no scans yet"));
  }

  function poll() {
    fetch("api/status", { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (s) { render(s); if (pollTimer) setMode("polling"); })
      .catch(function () { setMode("offline"); });
  }
  function startPolling() {
    if (pollTimer) return;
    setMode("polling");
    poll();
    pollTimer = setInterval(poll, 3000);
  }
  function stopPolling() { if (pollTimer) { clearInterval(pollTimer); pollTimer = null; } }
  function live() {
    if (!window.EventSource) { startPolling(); return; }
    es = new EventSource("api/events");
    es.addEventListener("status", function (ev) {
      stopPolling(); setMode("live");
      $("conn").dataset.sse = String(++sseEvents);
      try { render(JSON.parse(ev.data)); } catch (e) { /* keep the last state */ }
    });
    // The browser reconnects by itself; poll meanwhile so the page stays fresh.
    es.onerror = function () { startPolling(); };
  }

  // The session's CSRF token, embedded by the server; empty when signed out.
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var who = $("who"), user = who.dataset.user;
  if (user) { who.textContent = "signed in as " + user; }
  else { var a = el("a", "", "sign in"); a.href = "login"; who.appendChild(a); }

  function post(path, body, what) {
    var msg = $("msg");
    if (!csrf) { msg.textContent = "sign in needed"; location.href = "login"; return Promise.resolve(); }
    msg.textContent = what + "…";
    return fetch(path, {
      method: "POST", cache: "no-store", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body || {})
    }).then(function (r) {
      if (r.status === 401) { msg.textContent = "sign in needed"; location.href = "login"; return; }
      return r.json().then(function (j) {
        msg.textContent = r.ok ? what + ": done" : what + " failed: " + (j.error || r.status);
      });
    }).catch(function (e) { msg.textContent = what + " failed: " + e.message; });
  }
  $("btn-test").addEventListener("click", function () {
    var b = this; b.disabled = true;
    post("api/light-test", {}, "Lamp test").then(function () { b.disabled = false; });
  });
  $("btn-dir").addEventListener("click", function () {
    if (!state) return;
    var to = state.direction === "shipping" ? "receiving" : "shipping";
    if (!confirm("Switch this door to " + to + "?")) return;
    post("api/direction", { direction: to }, "Switch to " + to).then(poll);
  });
  // Keep the "… ago" labels moving between updates.
  setInterval(function () {
    var ages = document.querySelectorAll(".age");
    for (var i = 0; i < ages.length; i++) {
      var t = ages[i].dataset.t; if (!t) continue;
      var txt = ages[i].textContent, at = txt.indexOf("ago");
      if (ages[i].parentNode.tagName === "LI") ages[i].textContent = "last scan " + ago(ageS(t));
      else if (at > 0) ages[i].textContent = txt.replace(/ · [^·]* ago/, " · " + ago(ageS(t)));
    }
  }, 5000);

  try { render(JSON.parse($("initial").textContent)); } catch (e) { /* wait for the first update */ }
  live();
})();
