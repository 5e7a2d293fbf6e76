// Ferry's send page: files and folders chosen or dropped, a delivery made
// by the appliance, then each file uploaded with tus (tus-js-client, served
// by the appliance itself), resumable. Every piece carries its SHA-256
// (tus's checksum extension, WebCrypto), which the appliance checks before
// it keeps the piece. A delivery not finished when the tab closed is
// remembered here; choosing the same files again continues it where each
// upload stopped. Everything written goes through textContent.
"use strict";

(function () {
  const root = document.getElementById("send");
  if (!root || typeof tus === "undefined") return;
  const csrf = root.dataset.csrf;
  const startsHigh = (root.dataset.high || "").split(" ").filter(Boolean);
  // [label, value], High first and Normal second, as the page gives them.
  const PRIORITIES = (root.dataset.priorities || "").split(" ").filter(Boolean)
    .map((p) => { const [label, value] = p.split("="); return [label, Number(value)]; });
  const [HIGH, NORMAL] = [PRIORITIES[0][1], PRIORITIES[1][1]];
  const PENDING = "ferry-send-pending";
  const chosen = new Map(); // path in the delivery -> {file, select, bar}
  const table = document.getElementById("chosen");
  const tbody = table.querySelector("tbody");
  const status = document.getElementById("status");
  const button = document.getElementById("transmit");

  function say(text) {
    status.textContent = text;
  }

  function sizeText(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let u = 0;
    while (n >= 1000 && u < units.length - 1) { n /= 1000; u++; }
    return (u === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + " " + units[u];
  }

  function add(file, path) {
    path = path.replace(/^\/+/, "");
    if (!path || chosen.has(path)) return;
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = path;
    const size = document.createElement("td");
    size.className = "num";
    size.textContent = sizeText(file.size);
    const prio = document.createElement("td");
    const select = document.createElement("select");
    select.name = "priority";
    const high = startsHigh.some((ext) => path.toLowerCase().endsWith("." + ext));
    for (const [label, value] of PRIORITIES) {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = label;
      o.selected = high ? value === HIGH : value === NORMAL;
      select.appendChild(o);
    }
    prio.appendChild(select);
    const up = document.createElement("td");
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    up.appendChild(bar);
    tr.append(name, size, prio, up);
    tr.dataset.path = path;
    tbody.appendChild(tr);
    table.hidden = false;
    chosen.set(path, { file, select, bar });
  }

  // The list reads in path order, whatever order the browser lists in.
  function sortRows() {
    [...tbody.children]
      .sort((a, b) => a.dataset.path.localeCompare(b.dataset.path))
      .forEach((tr) => tbody.appendChild(tr));
  }
  document.getElementById("files").addEventListener("change", (e) => {
    for (const f of e.target.files) add(f, f.name);
    sortRows();
  });
  document.getElementById("folder").addEventListener("change", (e) => {
    for (const f of e.target.files) add(f, f.webkitRelativePath || f.name);
    sortRows();
  });

  // Dropped folders are walked with the entries API.
  function walk(entry) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((f) => { add(f, entry.fullPath); resolve(); }, () => resolve());
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const more = () => reader.readEntries((batch) => {
          if (batch.length === 0) {
            Promise.all(all.map(walk)).then(() => resolve());
          } else {
            all.push(...batch);
            more();
          }
        }, () => resolve());
        more();
      } else {
        resolve();
      }
    });
  }
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const entries = [...e.dataTransfer.items]
      .map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry())
      .filter(Boolean);
    Promise.all(entries.map(walk)).then(sortRows);
  });

  // Each PATCH's body gets its SHA-256 before it leaves.
  function base64(buffer) {
    let s = "";
    for (const b of new Uint8Array(buffer)) s += String.fromCharCode(b);
    return btoa(s);
  }
  class Checksummed {
    constructor(inner) { this.inner = inner; }
    getName() { return "ferry-checksummed"; }
    createRequest(method, url) {
      const req = this.inner.createRequest(method, url);
      if (method === "PATCH") {
        const send = req.send.bind(req);
        req.send = async (body) => {
          if (body && body.arrayBuffer) {
            const digest = await crypto.subtle.digest("SHA-256", await body.arrayBuffer());
            req.setHeader("Upload-Checksum", "sha256 " + base64(digest));
          }
          return send(body);
        };
      }
      return req;
    }
  }
  const httpStack = new Checksummed(new tus.DefaultHttpStack());

  function uploadOne(job, path, entry) {
    return new Promise((resolve, reject) => {
      const upload = new tus.Upload(entry.file, {
        endpoint: "/api/v1/uploads",
        metadata: { job: String(job), path: path },
        headers: { "X-CSRF-Token": csrf },
        chunkSize: 8 * 1024 * 1024,
        // A restarting appliance or a dropped network: keep trying.
        retryDelays: [0, 1000, 2000, 3000, 5000, 10000, 10000, 20000, 30000, 60000],
        httpStack: httpStack,
        removeFingerprintOnSuccess: true,
        // Resumable across a closed tab: the same job and file find their
        // upload again.
        fingerprint: () => Promise.resolve(["ferry", job, path, entry.file.size, entry.file.lastModified].join("|")),
        onProgress: (sent, total) => {
          entry.bar.value = total ? Math.floor((sent * 100) / total) : 100;
        },
        onSuccess: () => { entry.bar.value = 100; resolve(); },
        onError: (err) => reject(err),
      });
      upload.findPreviousUploads().then((previous) => {
        if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      });
    });
  }

  async function uploadAll(pending) {
    const paths = pending.files.map((f) => f.path);
    let done = 0;
    say("Uploading " + paths.length + " files…");
    // Two at a time: large files keep the link busy, small ones do not
    // queue behind them for long.
    const queue = paths.slice();
    const worker = async () => {
      while (queue.length > 0) {
        const path = queue.shift();
        await uploadOne(pending.job, path, chosen.get(path));
        done++;
        say("Uploaded " + done + " of " + paths.length + " files.");
      }
    };
    await Promise.all([worker(), worker()]);
    localStorage.removeItem(PENDING);
    document.getElementById("resume").hidden = true;
    say("Transmitted: delivery “" + pending.name + "” is on the appliance; its recipients were told.");
    root.dataset.done = "true";
  }

  function lines(text) {
    return text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  }

  // What the form asks for besides the files: a remembered delivery is
  // continued only when this is the same too.
  function asked() {
    return [
      lines(document.getElementById("recipients").value).join(","),
      document.getElementById("dest").value.trim(),
      document.getElementById("name").value.trim(),
    ].join("|");
  }

  async function make() {
    const files = [...chosen.entries()].map(([path, e]) => ({
      path: path,
      size: e.file.size,
      mtime_ns: e.file.lastModified * 1000000,
      priority: Number(e.select.value),
    }));
    const response = await fetch("/send/deliveries", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({
        name: document.getElementById("name").value.trim() || null,
        recipients: lines(document.getElementById("recipients").value),
        dest: document.getElementById("dest").value.trim(),
        files: files,
      }),
    });
    const reply = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(reply.error || response.status + " " + response.statusText);
    const job = reply.jobs.find((j) => j.kind === "upload");
    return {
      job: job.id,
      name: document.getElementById("name").value.trim() || job.name,
      asked: asked(),
      files: files.map((f) => ({ path: f.path, size: f.size })),
    };
  }

  // A delivery the last visit did not finish.
  const saved = JSON.parse(localStorage.getItem(PENDING) || "null");
  if (saved) {
    const note = document.getElementById("resume");
    note.textContent = "Delivery “" + saved.name + "” was interrupted. Choose the same files or folder again and click Transmit: it continues where it stopped.";
    note.hidden = false;
  }

  document.getElementById("send-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (chosen.size === 0) { say("Choose files or a folder first."); return; }
    button.disabled = true;
    try {
      let pending = JSON.parse(localStorage.getItem(PENDING) || "null");
      const same = pending && pending.asked === asked() && pending.files.length === chosen.size &&
        pending.files.every((f) => chosen.has(f.path) && chosen.get(f.path).file.size === f.size);
      if (!same) {
        say("Making the delivery…");
        pending = await make();
        localStorage.setItem(PENDING, JSON.stringify(pending));
      }
      root.dataset.job = pending.job;
      await uploadAll(pending);
    } catch (err) {
      say("Not sent: " + (err && err.message ? err.message : err));
      button.disabled = false;
    }
  });
})();
