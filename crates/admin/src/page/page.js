"use strict";
// Polls /v1/network as often as each answer's refresh_ms says and redraws; the layout puts
// nodes on a circle in node ID order, this node first, so that a node keeps its place
// between polls. Only this node's own links have figures: it measures nothing of a link
// between two others, and says so rather than leave a blank.
const SVG = "http://www.w3.org/2000/svg";
const short = id => id.slice(0, 8);
const $ = sel => document.querySelector(sel);
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
const rtt = l => l.rtt_us !== null ? (l.rtt_us / 1000).toFixed(2) + " ms" : (l.ping_failed ? "no answer" : "–");
// Why a link that is not a session of this node has no figures.
const unmeasured = (v, l) => l.a === v.node_id || l.b === v.node_id
  ? "no session now: known from routing, not measured"
  : "not measured from here: known from routing";
function cells(tr, values) {
  for (const v of values) {
    const td = document.createElement("td");
    if (v && v.n) { td.className = "n"; td.textContent = v.n; } else td.textContent = v === null || v === undefined ? "–" : v;
    tr.appendChild(td);
  }
}
function draw(v) {
  const svg = $("#graph");
  svg.replaceChildren();
  const n = v.nodes.length, cx = 320, cy = 215, r = n > 1 ? 160 : 0;
  const pos = {};
  v.nodes.forEach((node, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    pos[node.node_id] = [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  for (const l of v.links) {
    const p = pos[l.a], q = pos[l.b];
    if (!p || !q) continue;
    const line = el("line", { x1: p[0], y1: p[1], x2: q[0], y2: q[1], class: l.kind });
    line.appendChild(el("title", {}, short(l.a) + " – " + short(l.b) + (l.kind === "direct" ? "" : ": " + unmeasured(v, l))));
    svg.appendChild(line);
    if (l.kind === "direct") {
      const label = "↓" + bytes(l.in_per_s) + "/s ↑" + bytes(l.out_per_s) + "/s · " + rtt(l);
      svg.appendChild(el("text", { x: (p[0] + q[0]) / 2, y: (p[1] + q[1]) / 2 - 4, class: "lbl" }, label));
    }
  }
  for (const node of v.nodes) {
    const [x, y] = pos[node.node_id];
    const g = el("g", { class: "node " + node.state, "data-node": node.node_id, "data-state": node.state });
    g.appendChild(el("title", {}, node.node_id));
    g.appendChild(el("circle", { cx: x, cy: y, r: 16 }));
    g.appendChild(el("text", { x: x, y: y + 32 }, short(node.node_id)));
    const seq = node.status ? " · seq " + node.status.seq : "";
    g.appendChild(el("text", { x: x, y: y + 46, class: "sub" }, node.state + seq));
    svg.appendChild(g);
  }
}
function tables(v) {
  const nodes = $("#nodes tbody");
  nodes.replaceChildren();
  for (const node of v.nodes) {
    const tr = document.createElement("tr");
    tr.className = node.state;
    tr.dataset.node = node.node_id;
    tr.dataset.state = node.state;
    const s = node.status;
    cells(tr, [short(node.node_id), node.state, node.distance, node.next_hop && short(node.next_hop), node.address,
      s && s.seq, node.status_age_ms !== null ? (node.status_age_ms / 1000).toFixed(1) + " s" : null,
      s && s.groups.join(", "), s && s.app_text, node.last_error]);
    tr.firstChild.title = node.node_id;
    nodes.appendChild(tr);
  }
  const links = $("#links tbody");
  links.replaceChildren();
  // This node's links first, then the others, each by its ends.
  const own = l => l.a === v.node_id || l.b === v.node_id ? 0 : 1;
  for (const l of [...v.links].sort((x, y) => own(x) - own(y))) {
    const tr = document.createElement("tr");
    tr.className = l.kind;
    const ends = own(l) ? short(l.a) + " – " + short(l.b) : "this node – " + short(l.a === v.node_id ? l.b : l.a);
    if (l.kind === "direct") {
      cells(tr, [ends, { n: bytes(l.bytes_in) }, { n: bytes(l.bytes_out) }, { n: bytes(l.in_per_s) + "/s" },
        { n: bytes(l.out_per_s) + "/s" }, { n: rtt(l) }]);
    } else {
      cells(tr, [ends]);
      const td = document.createElement("td");
      td.colSpan = 5;
      td.className = "unmeasured";
      td.textContent = unmeasured(v, l);
      tr.appendChild(td);
    }
    links.appendChild(tr);
  }
  const events = $("#events tbody");
  events.replaceChildren();
  for (const e of v.events) {
    const tr = document.createElement("tr");
    tr.dataset.event = e.event;
    if (e.node) tr.dataset.node = e.node;
    cells(tr, [new Date(e.at_ms).toLocaleTimeString(), e.event, e.node && short(e.node), e.detail]);
    events.appendChild(tr);
  }
}
let polls = 0, refresh = 1000;
async function poll() {
  try {
    const res = await fetch("/v1/network", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const v = await res.json();
    polls++;
    document.body.dataset.polls = polls;
    if (v.refresh_ms > 0) refresh = v.refresh_ms;
    $("#me").textContent = short(v.node_id) + " · " + v.listen + " · v" + v.version + " · " + v.nodes.length + " nodes";
    draw(v);
    tables(v);
    const live = $("#live");
    live.className = "";
    live.textContent = "live · " + new Date(v.now_ms).toLocaleTimeString();
  } catch (err) {
    const live = $("#live");
    live.className = "stale";
    live.textContent = "no answer: " + err.message;
  }
  setTimeout(poll, refresh);
}
poll();
