// Ferry web admin: live progress from server-sent events. Served as a file
// (the CSP forbids inline script); everything it writes goes through
// textContent, never innerHTML, so names cannot become markup.
"use strict";

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function liveRow(t) {
  const tr = document.createElement("tr");
  tr.dataset.job = t.job;
  const name = document.createElement("td");
  const a = document.createElement("a");
  a.href = "/transfers/" + t.job;
  a.textContent = t.name;
  name.appendChild(a);
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = t.kind;
  name.append(" ", kind);
  tr.appendChild(name);
  cell(tr, t.user + " " + t.client);
  const p = cell(tr, "");
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = t.percent;
  const hint = document.createElement("span");
  hint.className = "hint";
  hint.textContent = t.done + " of " + t.total + " (" + t.percent + " %)";
  p.append(bar, " ", hint);
  cell(tr, t.rate, "num");
  cell(tr, t.eta, "num");
  cell(tr, t.pace, "hint");
  return tr;
}

function onTransfers(data) {
  onLeases(data.leases);
  const live = document.getElementById("live");
  if (live) {
    const body = live.tBodies[0];
    body.replaceChildren(...data.transfers.map(liveRow));
    const empty = document.getElementById("live-empty");
    if (empty) empty.hidden = data.transfers.length > 0;
    const tp = document.getElementById("throughput");
    if (tp) tp.textContent = data.throughput;
    const running = document.getElementById("running");
    if (running) running.textContent = data.transfers.length;
  }
  // On the Transfers page, running jobs' rows follow along.
  for (const t of data.transfers) {
    const row = document.querySelector("#jobs tr[data-job='" + Number(t.job) + "']");
    if (!row) continue;
    const bar = row.querySelector("td.progress progress");
    const hint = row.querySelector("td.progress .hint");
    if (bar) bar.value = t.percent;
    if (hint) hint.textContent = t.done + " of " + t.total + " (" + t.percent + " %)";
    const rate = row.querySelector("td.num:nth-of-type(6)");
    if (rate) rate.textContent = t.rate;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("live") && !document.getElementById("jobs")) return;
  const source = new EventSource("/live");
  source.addEventListener("transfers", (e) => onTransfers(JSON.parse(e.data)));
});

// A secret shown once (an invitation link, a new API key) has a Copy
// button beside it.
document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button[data-copy]")) {
    b.hidden = false;
    b.addEventListener("click", async () => {
      const text = document.getElementById(b.dataset.copy);
      if (!text) return;
      try {
        await navigator.clipboard.writeText(text.textContent);
        b.textContent = "Copied";
      } catch (e) {
        // No clipboard (a plain-HTTP origin, a refusal): select it instead.
        const range = document.createRange();
        range.selectNodeContents(text);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        b.textContent = "Selected: press Ctrl+C";
      }
    });
  }
});

// The dashboard's port leases, for admins: they open and close with
// sessions.
function onLeases(leases) {
  const table = document.getElementById("leases");
  if (!table || !leases) return;
  table.tBodies[0].replaceChildren(...leases.map((l) => {
    const tr = document.createElement("tr");
    cell(tr, String(l.port), "num");
    cell(tr, l.client);
    cell(tr, l.user);
    return tr;
  }));
  table.hidden = leases.length === 0;
  const empty = document.getElementById("leases-empty");
  if (empty) empty.hidden = leases.length > 0;
  const count = document.getElementById("lease-count");
  if (count) count.textContent = leases.length;
}
