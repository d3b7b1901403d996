// reflowpy live page: draws the running graph and follows it over Server-Sent Events.
// No dependencies, no CDN. The token (if the server has one) comes from the URL fragment
// (#token=...) and is sent as a bearer header, also for the event stream.
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") || sessionStorage.getItem("reflowpy-token") || "";
  if (params.get("token")) sessionStorage.setItem("reflowpy-token", token);
  const headers = token ? { authorization: "Bearer " + token } : {};
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let current = params.get("network") || "";
  let selected = null;
  let lastView = null;
  let abort = null;
  // what the packet timeline follows: {node: id} or {edge: "src.port->tgt.port"}
  let tap = null;

  function el(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function h(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n); }

  async function getJSON(url) {
    const r = await fetch(url, { headers });
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }

  // Server-Sent Events read with fetch (EventSource cannot send an Authorization header).
  async function follow(url, onEvent) {
    if (abort) abort.abort();
    abort = new AbortController();
    const signal = abort.signal;
    try {
      const r = await fetch(url, { headers, signal });
      if (!r.ok) throw new Error("HTTP " + r.status);
      $("conn").textContent = "live"; $("conn").className = "conn live";
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const rec = buf.slice(0, i); buf = buf.slice(i + 2);
          let type = "message", data = "";
          for (const line of rec.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onEvent(type, JSON.parse(data));
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    $("conn").textContent = "reconnecting…"; $("conn").className = "conn";
    setTimeout(() => { if (!signal.aborted) start(); }, 1000);
  }

  function drawGraph(view) {
    const svg = $("graph");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const W = 150, H = 58;
    const pos = {};
    let maxX = 0, maxY = 0;
    for (const n of view.nodes) { pos[n.id] = n; maxX = Math.max(maxX, n.x); maxY = Math.max(maxY, n.y); }
    // never zoom in past 1:1 on small graphs: a minimum extent keeps text at its size
    svg.setAttribute("viewBox", `-20 -20 ${Math.max(maxX + W + 40, 860)} ${Math.max(maxY + H + 60, 480)}`);
    const defs = el("defs", {});
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" });
    marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#99a" }));
    defs.appendChild(marker); svg.appendChild(defs);
    for (const e of view.edges) {
      const a = pos[e.from], b = pos[e.to];
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      svg.appendChild(el("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
        class: "edge" + (e.fill >= 1 ? " full" : ""), "marker-end": "url(#arrow)" }));
      const label = el("text", { x: mx, y: (y1 + y2) / 2 - 8, class: "edge-label", "text-anchor": "middle" },
        `${e.queued}/${e.capacity}` + (e.rate ? ` · ${fmt(Math.round(e.rate))}/s` : ""));
      const edgeId = `${e.from}.${e.fromPort}->${e.to}.${e.toPort}`;
      label.setAttribute("data-edge", edgeId);
      if (tap && tap.edge === edgeId) label.setAttribute("class", "edge-label tapped");
      label.addEventListener("click", () => follow_tap({ edge: edgeId }));
      svg.appendChild(label);
    }
    for (const n of view.nodes) {
      const g = el("g", { class: `node ${n.state}` + (view.rootCause === n.id ? " root" : "") +
        (tap && tap.node === n.id ? " tapped" : ""),
        transform: `translate(${n.x},${n.y})`, "data-node": n.id });
      g.appendChild(el("rect", { width: W, height: H }));
      g.appendChild(el("text", { x: 8, y: 17, "font-weight": "bold" }, n.id));
      g.appendChild(el("text", { x: 8, y: 32 }, n.component));
      const counts = el("text", { x: 8, y: 47, class: "counts" }, `in ${fmt(n.in)} · out ${fmt(n.out)}`);
      counts.setAttribute("data-counter", n.id);
      g.appendChild(counts);
      if (n.status) g.appendChild(el("text", { x: 8, y: H + 14, class: "status" }, n.status));
      g.addEventListener("click", () => { selected = n.id; render(lastView); showDetail(n.id); follow_tap({ node: n.id }); });
      svg.appendChild(g);
    }
  }

  function render(view) {
    lastView = view;
    if (!view) return;
    drawGraph(view);
    const hint = $("hint");
    if (view.rootCause) {
      hint.hidden = false;
      hint.textContent = `Backpressure root cause: node “${view.rootCause}” is busy and not backpressured while its upstream waits for it.`;
    } else hint.hidden = true;
    const tbody = $("nodes").querySelector("tbody");
    tbody.textContent = "";
    for (const n of view.nodes) {
      const tr = h("tr");
      if (n.id === selected) tr.className = "selected";
      tr.appendChild(h("td", n.id));
      tr.appendChild(h("td", n.state));
      tr.appendChild(h("td", fmt(n.in), "num"));
      tr.appendChild(h("td", fmt(n.out), "num"));
      tr.appendChild(h("td", fmt(Math.round(n.rateIn)), "num"));
      tr.appendChild(h("td", String(n.failures), "num"));
      tr.addEventListener("click", () => { selected = n.id; render(lastView); showDetail(n.id); follow_tap({ node: n.id }); });
      tbody.appendChild(tr);
    }
    const ul = $("errors");
    ul.textContent = "";
    const errs = view.errors.filter((e) => !selected || e.node === selected);
    if (!errs.length) ul.appendChild(h("li", "none", "none"));
    for (const e of errs.slice(0, 20)) {
      const li = h("li", `#${e.id} ${e.node}.${e.port}: ${e.errorType}: ${e.error} — ${e.value} `);
      const b = h("button", "re-send", "resend");
      b.dataset.letter = String(e.id);
      b.addEventListener("click", () => resend(e.id, b));
      li.appendChild(b);
      ul.appendChild(li);
    }
    renderPeers(view.peers || []);
  }

  // Bridge peers of this server (its /bridge host), shown only when there are any.
  function renderPeers(peers) {
    const box = $("peers");
    box.hidden = peers.length === 0;
    const tbody = box.querySelector("tbody");
    tbody.textContent = "";
    for (const p of peers) {
      const tr = h("tr");
      tr.dataset.peer = p.peer;
      tr.appendChild(h("td", p.peer));
      tr.appendChild(h("td", p.location));
      tr.appendChild(h("td", p.state, p.state));
      tr.appendChild(h("td", p.rttMs == null ? "–" : String(p.rttMs), "num"));
      tr.appendChild(h("td", fmt(p.msgsIn), "num"));
      tr.appendChild(h("td", fmt(p.msgsOut), "num"));
      tr.appendChild(h("td", String(p.credits), "num"));
      tbody.appendChild(tr);
    }
  }

  // The packet timeline (noflo-ui's edge inspector): the server taps the node or edge
  // in short bursts and sends its recent packets, numbered as seen, with each view.
  function renderPackets(data) {
    const target = data.node ? `node ${data.node}` : `edge ${data.edge[0]}.${data.edge[1]} → ${data.edge[2]}.${data.edge[3]}`;
    $("timeline-title").textContent = `Packet timeline — ${target}`;
    const table = $("timeline");
    $("timeline-hint").hidden = data.packets.length > 0;
    $("timeline-hint").textContent = data.packets.length ? "" : "waiting for packets…";
    table.hidden = data.packets.length === 0;
    const tbody = table.querySelector("tbody");
    tbody.textContent = "";
    for (const p of data.packets.slice().reverse()) {
      const tr = h("tr");
      tr.dataset.seq = String(p.seq);
      tr.appendChild(h("td", String(p.seq), "num"));
      tr.appendChild(h("td", new Date(p.time).toISOString().slice(11, 23)));
      tr.appendChild(h("td", `${p.from}.${p.fromPort} → ${p.to ? p.to + "." : ""}${p.toPort}`));
      tr.appendChild(h("td", p.value, "value"));
      tbody.appendChild(tr);
    }
  }

  function follow_tap(t) {
    tap = t;
    render(lastView);
    start();
  }

  // Dead letters go back to their node and port (the server's REST endpoint).
  async function resend(id, button) {
    button.disabled = true;
    const r = await fetch(`/executions/${encodeURIComponent(current)}/dead-letters/${id}/resend`,
      { method: "POST", headers });
    button.textContent = r.ok ? "re-sent" : `failed (${r.status})`;
  }

  async function showDetail(node) {
    const box = $("detail");
    box.textContent = "";
    const n = lastView && lastView.nodes.find((x) => x.id === node);
    if (!n) return;
    box.appendChild(h("h2", `Node ${n.id}`));
    box.appendChild(h("pre", `component ${n.component}\nstate ${n.state}\nactivations ${n.activations}\n` +
      `busy ${n.busyS}s · backpressured ${n.backpressuredS}s · idle ${n.idleS}s` + (n.status ? `\nstatus: ${n.status}` : "")));
    try {
      const rows = await getJSON(`/traces/${encodeURIComponent(current)}/events?node=${encodeURIComponent(node)}&limit=20`);
      const pre = h("pre", rows.map((r) => `${r[3]} ${r[4]}.${r[5]} #${r[8] ?? ""} ${JSON.stringify(r[10])}`).join("\n") || "no traced messages");
      box.appendChild(h("h2", "Recent messages")); box.appendChild(pre);
    } catch (e) {
      box.appendChild(h("p", "recent messages: this execution is not traced"));
    }
  }

  async function start() {
    const nets = await getJSON("/ui/api/networks").catch(() => []);
    const sel = $("network");
    sel.textContent = "";
    for (const n of nets) {
      const o = h("option", `${n.graph || "(unnamed)"} — ${n.name}`); o.value = n.name; sel.appendChild(o);
    }
    if (!current && nets.length) current = nets[0].name;
    sel.value = current;
    if (!current) {
      follow("/ui/events", (type, data) => { if (type === "networks" && data.length) { current = data[0].name; start(); } });
      return;
    }
    let url = `/ui/events?network=${encodeURIComponent(current)}`;
    if (tap && tap.node) url += `&tapNode=${encodeURIComponent(tap.node)}`;
    else if (tap && tap.edge) url += `&tapEdge=${encodeURIComponent(tap.edge)}`;
    follow(url, (type, data) => {
      if (type === "view") render(data);
      else if (type === "packets") renderPackets(data);
    });
  }
  $("network").addEventListener("change", (ev) => { current = ev.target.value; selected = null; tap = null; start(); });
  start();
})();
