// The live neighbourhood page: joins the room as an ordinary occupant over the server's
// websocket (an anonymous login unless the query string gives an account), reads the bot's
// <summary xmlns='urn:gridmuc:summary:0'/> and <alert xmlns='urn:gridmuc:alert:0'/> elements,
// never the human bodies, and draws them with uPlot.
//
// Query string: room (the room's bare JID, required), domain (the XMPP host to log in to;
// default: this page's host name), service (websocket URL; default: this page's server at
// /xmpp-websocket), nick (default: a random one), username and password (an account instead
// of an anonymous login).
"use strict";

(function () {
  const NS_SUMMARY = "urn:gridmuc:summary:0";
  const NS_ALERT = "urn:gridmuc:alert:0";
  const NS_MUC = "http://jabber.org/protocol/muc";
  const { client, xml } = window.XMPP;

  const params = new URLSearchParams(location.search);
  const room = params.get("room");
  const wsScheme = location.protocol === "https:" ? "wss" : "ws";
  const options = {
    service: params.get("service") || `${wsScheme}://${location.host}/xmpp-websocket`,
    domain: params.get("domain") || location.hostname,
    username: params.get("username") || undefined,
    password: params.get("password") || undefined,
  };
  const randomNick = () => "watcher-" + Math.random().toString(36).slice(2, 8);
  let nick = params.get("nick") || randomNick();

  // What the page holds, for people and for tests (window.gridmuc): intervals by start (ms),
  // alerts in arrival order, and every stanza received (the privacy audit reads them).
  const page = {
    intervals: new Map(),
    alerts: [],
    lastSummaryAt: null,
    drawn: 0,
    stanzas: [],
    status: "connecting",
  };
  window.gridmuc = page;

  const $ = (id) => document.getElementById(id);
  const kw = (w) => (w / 1000).toFixed(2);
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19);

  function setConnection(state, text) {
    page.status = state;
    $("connection").dataset.state = state;
    $("connection").textContent = text || state;
  }

  // ---- charts ----------------------------------------------------------------------------
  function width(id) {
    return Math.max(300, $(id).clientWidth);
  }

  function drawAlertMarks(u) {
    const ctx = u.ctx;
    const ratio = window.devicePixelRatio || 1;
    ctx.save();
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    for (const a of page.alerts) {
      const x = u.valToPos(a.at / 1000, "x", true);
      if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) continue;
      ctx.strokeStyle = ctx.fillStyle = a.state === "raised" ? "#d33" : "#3a3";
      ctx.lineWidth = 2 * ratio;
      ctx.setLineDash([6 * ratio, 4 * ratio]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillText(`${a.kind} ${a.state}`, x + 4 * ratio, u.bbox.top + 12 * ratio);
    }
    ctx.restore();
  }

  const loadPlot = new uPlot(
    {
      width: width("load-chart"),
      height: 260,
      scales: { x: { time: true } },
      series: [
        {},
        { label: "total kW", stroke: "#2563eb", width: 2, value: (u, v) => (v == null ? "–" : v.toFixed(2)) },
        { label: "rating kW", stroke: "#d33", dash: [8, 4], width: 1.5, value: (u, v) => (v == null ? "–" : v.toFixed(1)) },
      ],
      axes: [{}, { label: "kW" }],
      hooks: { draw: [drawAlertMarks] },
    },
    [[], [], []],
    $("load-chart"),
  );

  const metersPlot = new uPlot(
    {
      width: width("meters-chart"),
      height: 220,
      scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [
        {},
        { label: "meters", scale: "n", stroke: "#555", width: 2, paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "median kW", scale: "kW", stroke: "#0a8", width: 1.5 },
        { label: "p95 kW", scale: "kW", stroke: "#e80", width: 1.5 },
      ],
      axes: [{}, { scale: "n", label: "meters" }, { scale: "kW", side: 1, label: "kW", grid: { show: false } }],
    },
    [[], [], [], []],
    $("meters-chart"),
  );

  function redraw() {
    const rows = [...page.intervals.values()].sort((a, b) => a.start - b.start);
    const x = rows.map((s) => s.start / 1000);
    loadPlot.setData([x, rows.map((s) => s.total / 1000), rows.map((s) => s.rating / 1000)]);
    metersPlot.setData([x, rows.map((s) => s.meters), rows.map((s) => s.median / 1000), rows.map((s) => s.p95 / 1000)]);
    page.drawn = loadPlot.data[0].length;
  }

  window.addEventListener("resize", () => {
    loadPlot.setSize({ width: width("load-chart"), height: 260 });
    metersPlot.setSize({ width: width("meters-chart"), height: 220 });
  });

  // ---- what the bot publishes -----------------------------------------------------------
  function number(el, name) {
    const v = Number(el.attrs[name]);
    return Number.isFinite(v) ? v : null;
  }

  function onSummary(el) {
    const start = Date.parse(el.attrs.start);
    if (!Number.isFinite(start) || el.attrs.unit !== "W") return;
    const s = {
      startText: el.attrs.start,
      start,
      mode: el.attrs.mode,
      length: number(el, "length"),
      meters: number(el, "meters"),
      total: number(el, "total"),
      mean: number(el, "mean"),
      median: number(el, "median"),
      p95: number(el, "p95"),
      rating: number(el, "rating"),
      revision: number(el, "revision") || 0,
      spikes: el.attrs.spikes === undefined ? null : number(el, "spikes"),
      spikeThreshold: number(el, "spike_threshold"),
    };
    if (s.meters === null || s.total === null) return;
    page.intervals.set(start, s); // a revision replaces its interval
    page.lastSummaryAt = Date.now();
    $("mode").textContent = s.mode;
    $("estimated").textContent = s.mode === "private" ? "(private mode: estimated from the histogram)" : "";
    $("meters").textContent = String(s.meters);
    $("count").textContent = String(page.intervals.size);
    renderIntervals();
    redraw();
    tick();
  }

  function renderIntervals() {
    const body = $("intervals").tBodies[0];
    body.replaceChildren(
      ...[...page.intervals.values()]
        .sort((a, b) => b.start - a.start)
        .map((s) => {
          const tr = document.createElement("tr");
          Object.assign(tr.dataset, {
            start: s.startText,
            meters: s.meters,
            total: s.total,
            median: s.median,
            p95: s.p95,
            rating: s.rating,
            mode: s.mode,
          });
          const spikes = s.spikes === null ? "–" : `${s.spikes} ≥ ${(s.spikeThreshold / 1000).toFixed(1)}`;
          const cells = [clock(s.start), s.meters, kw(s.total), kw(s.median), kw(s.p95), kw(s.rating), spikes];
          for (const c of cells) {
            const td = document.createElement("td");
            td.textContent = String(c);
            tr.append(td);
          }
          return tr;
        }),
    );
  }

  function onAlert(el) {
    const at = Date.parse(el.attrs.at);
    if (!Number.isFinite(at) || el.attrs.unit !== "W") return;
    const a = {
      kind: el.attrs.kind,
      severity: el.attrs.severity,
      state: el.attrs.state,
      at,
      value: number(el, "value"),
      threshold: number(el, "threshold"),
    };
    page.alerts.push(a);
    const list = $("alerts");
    list.querySelector(".empty")?.remove();
    const li = document.createElement("li");
    Object.assign(li.dataset, { kind: a.kind, severity: a.severity, state: a.state, at: el.attrs.at });
    li.textContent = `${clock(at)} ${a.kind} ${a.severity} ${a.state}: ${kw(a.value)} kW (threshold ${kw(a.threshold)} kW)`;
    list.prepend(li);
    $("raised").textContent = String(page.alerts.filter((x) => x.state === "raised").length);
    loadPlot.redraw(false);
  }

  function tick() {
    if (page.lastSummaryAt === null) return;
    const age = Math.round((Date.now() - page.lastSummaryAt) / 1000);
    $("age").textContent = `${age} s ago`;
  }
  setInterval(tick, 1000);

  // ---- the room -------------------------------------------------------------------------
  if (!room) {
    setConnection("error", "no room given (?room=…)");
    return;
  }
  $("room").textContent = room;
  const xmpp = client(options);

  function join() {
    return xmpp.send(
      xml("presence", { to: `${room}/${nick}` }, xml("x", { xmlns: NS_MUC }, xml("history", { maxstanzas: "0" }))),
    );
  }

  xmpp.on("stanza", (stanza) => {
    if (page.stanzas.length < 2000) page.stanzas.push(stanza.toString());
    const from = stanza.attrs.from || "";
    if (from !== room && !from.startsWith(room + "/")) return;
    if (stanza.is("presence") && stanza.attrs.type === "error" && from === `${room}/${nick}`) {
      if (stanza.getChild("error")?.getChild("conflict")) {
        nick = randomNick();
        join().catch(() => {});
      } else {
        setConnection("error", "the room refused us");
      }
      return;
    }
    if (!stanza.is("message") || stanza.attrs.type !== "groupchat") return;
    const summary = stanza.getChild("summary", NS_SUMMARY);
    if (summary) onSummary(summary);
    const alert = stanza.getChild("alert", NS_ALERT);
    if (alert) onAlert(alert);
  });
  xmpp.on("status", (status) => {
    if (status === "online") return;
    if (["disconnect", "offline"].includes(status)) setConnection("offline");
    else setConnection("connecting", status);
  });
  xmpp.on("online", () => {
    setConnection("online", `online as ${nick}`);
    join().catch((e) => setConnection("error", String(e)));
  });
  xmpp.on("error", (e) => setConnection("error", String(e.message || e)));
  xmpp.start().catch((e) => setConnection("error", String(e.message || e)));
})();
