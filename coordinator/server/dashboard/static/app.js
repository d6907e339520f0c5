// paxline dashboard: polls the coordinator's JSON API once a second and renders the cluster,
// workers, jobs, partition assignments and two live charts per job. Plain DOM + inline SVG,
// no dependencies, no build step. Every request may fail (a 503 during an election, the node
// serving this page going away): the page keeps the last data on screen, says it is
// reconnecting, and carries on polling.
"use strict";

(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 3000;
  const WINDOW_S = 120; // chart history
  const SPANS_S = [30, 60, 90, WINDOW_S]; // the x axis grows in these steps until it is full
  const GAP_S = 3.5; // a hole in the samples longer than this breaks the line
  const RATE_WINDOW_S = 10; // input rate is measured over this many seconds
  const CHART_HEIGHT = 132;
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];

  const $ = (id) => document.getElementById(id);

  /** Element builder: h("td", {class: "num", dataset: {testid: "x"}}, "text", child). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, text) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function setText(el, text) {
    text = String(text);
    if (el.textContent !== text) el.textContent = text;
  }

  function setClass(el, cls) {
    if (el.className !== cls) el.className = cls;
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const DASH = "—";
  const grouped = new Intl.NumberFormat("en-US");

  function fmtGrouped(n) {
    return isNum(n) ? grouped.format(n) : DASH;
  }

  function fmtCompact(n) {
    if (!isNum(n)) return DASH;
    const a = Math.abs(n);
    const trim = (x) => x.toFixed(x < 10 ? 1 : 0).replace(/\.0$/, "");
    if (a >= 1e9) return (n < 0 ? "-" : "") + trim(a / 1e9) + "G";
    if (a >= 1e6) return (n < 0 ? "-" : "") + trim(a / 1e6) + "M";
    if (a >= 1e3) return (n < 0 ? "-" : "") + trim(a / 1e3) + "k";
    return String(Math.round(n * 100) / 100);
  }

  /** Axis label: one unit (k, M, G) for the whole axis and just enough decimals for `step`. */
  function fmtAxis(v, step, max) {
    if (v === 0) return "0";
    const [unit, suffix] = max >= 1e9 ? [1e9, "G"] : max >= 1e6 ? [1e6, "M"] : max >= 1e4 ? [1e3, "k"] : [1, ""];
    const frac = String(Number((step / unit).toPrecision(6))).split(".")[1] || "";
    return `${Number((v / unit).toFixed(Math.min(frac.length, 3)))}${suffix}`;
  }

  function fmtSpan(sec) {
    return sec >= 60 && sec % 60 === 0 ? `${sec / 60}m` : `${sec}s`;
  }

  function fmtRate(r) {
    if (r >= 1000) return fmtCompact(r);
    return r >= 10 || r === 0 ? String(Math.round(r)) : r.toFixed(1);
  }

  function fmtUptime(sec) {
    if (!isNum(sec)) return DASH;
    sec = Math.floor(sec);
    if (sec < 60) return `${sec}s`;
    if (sec < 3600) return `${Math.floor(sec / 60)}m ${String(sec % 60).padStart(2, "0")}s`;
    if (sec < 86400) return `${Math.floor(sec / 3600)}h ${String(Math.floor(sec / 60) % 60).padStart(2, "0")}m`;
    return `${Math.floor(sec / 86400)}d ${Math.floor(sec / 3600) % 24}h`;
  }

  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  }

  /** "stalled: Redis unreachable since 12:03:04", as `paxline status` says it (paxline/cli/stalls.py). */
  function stallText(reason, sinceSec) {
    return isNum(sinceSec) ? `stalled: ${reason} since ${fmtClock(sinceSec * 1000)}` : `stalled: ${reason}`;
  }

  /** worker -> "2 partitions stalled: Redis unreachable since 12:03:04", from every job's offsets. */
  function stallsByWorker(offsetResults) {
    const byWorker = new Map();
    for (const r of offsetResults) {
      if (r.status !== "fulfilled" || !r.value || !Array.isArray(r.value.partitions)) continue;
      for (const p of r.value.partitions) {
        if (!p.stalled || p.owner == null) continue;
        const w = byWorker.get(p.owner) || { n: 0, reason: p.stalled, since: p.stalled_since };
        w.n++;
        if (isNum(p.stalled_since) && (!isNum(w.since) || p.stalled_since < w.since)) w.since = p.stalled_since;
        byWorker.set(p.owner, w);
      }
    }
    const out = new Map();
    for (const [worker, w] of byWorker) out.set(worker, `${w.n} partition${w.n === 1 ? "" : "s"} ${stallText(w.reason, w.since)}`);
    return out;
  }

  /** "3.1" -> [3, 1]; anything else sorts first. */
  function ballotKey(b) {
    const m = /^(\d+)\.(\d+)$/.exec(String(b || ""));
    return m ? [Number(m[1]), Number(m[2])] : [-1, -1];
  }

  function ballotLess(a, b) {
    const x = ballotKey(a), y = ballotKey(b);
    return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1]);
  }

  // ------------------------------------------------------------------ fetching

  class HttpError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status || 0;
    }
  }

  async function getJSON(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const resp = await fetch(path, { signal: ctl.signal, cache: "no-store", headers: { Accept: "application/json" } });
      let body = null;
      try {
        body = await resp.json();
      } catch (_) {
        body = null;
      }
      if (!resp.ok) {
        const why = body && body.error ? body.error : resp.statusText;
        throw new HttpError(`${resp.status} ${why}`.trim(), resp.status);
      }
      if (body === null || typeof body !== "object") throw new HttpError(`${path}: not JSON`);
      return body;
    } catch (e) {
      if (e instanceof HttpError) throw e;
      if (e && e.name === "AbortError") throw new HttpError(`${path} timed out`);
      throw new HttpError(`coordinator at ${location.host} unreachable`);
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------ keyed tables

  /**
   * Reconcile `tbody` with `items`: rows are reused by key so cells are updated in place
   * (no flicker, selection survives) and moved/removed as needed.
   * `cols` = [{cls, testid(item), render(td, item)}].
   */
  function syncRows(tbody, items, key, cols, rowUpdate) {
    const existing = new Map();
    for (const tr of tbody.children) existing.set(tr.dataset.key, tr);
    let prev = null;
    for (const item of items) {
      const k = String(key(item));
      let tr = existing.get(k);
      if (tr) {
        existing.delete(k);
      } else {
        tr = h("tr");
        tr.dataset.key = k;
        tr._cells = cols.map((c) => {
          const td = h("td", { class: c.cls || null });
          if (c.testid) td.dataset.testid = c.testid(item);
          tr.appendChild(td);
          return td;
        });
      }
      cols.forEach((c, i) => c.render(tr._cells[i], item));
      if (rowUpdate) rowUpdate(tr, item);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (tr !== want) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of existing.values()) tr.remove();
  }

  /** A numeric cell: raw digits (offsets are identifiers), value in data-value, "—" if null. */
  function numCell(td, value, extraCls) {
    const text = isNum(value) ? String(value) : DASH;
    const old = td.dataset.value;
    td.dataset.value = isNum(value) ? String(value) : "";
    setText(td, text);
    const cls = ["num", isNum(value) ? "" : "muted", extraCls || ""].filter(Boolean).join(" ");
    // Flash a cell whose number just moved, so progress is visible at a glance.
    if (old !== undefined && old !== "" && isNum(value) && String(value) !== old) {
      td.className = cls;
      void td.offsetWidth; // restart the animation
      td.className = cls + " bump";
    } else {
      setClass(td, td.classList.contains("bump") ? cls + " bump" : cls);
    }
  }

  function pill(td, text, cls, title) {
    let span = td.firstElementChild;
    if (!span) {
      span = h("span");
      td.replaceChildren(span);
    }
    setClass(span, `pill ${cls}`);
    setText(span, text);
    if (title) span.title = title;
    else span.removeAttribute("title");
  }

  // ------------------------------------------------------------------ connection state

  let lastOk = null;

  function setConnection(errors) {
    const el = $("connection");
    const label = el.querySelector(".label");
    const detail = $("connection-detail");
    if (errors.length === 0) {
      lastOk = Date.now();
      el.dataset.state = "live";
      setText(label, "live");
      setText(detail, `updated ${fmtClock(lastOk)}`);
      el.title = "";
      document.body.classList.remove("stale");
    } else {
      el.dataset.state = "reconnecting";
      setText(label, "reconnecting");
      const since = lastOk ? ` · last update ${fmtClock(lastOk)}` : "";
      setText(detail, `${errors[0]}${since}`);
      el.title = errors.join("\n");
      document.body.classList.add("stale");
    }
  }

  // ------------------------------------------------------------------ nodes

  const NODE_ROLE_CLASS = {
    leader: "pill-leader",
    follower: "pill-follower",
    candidate: "pill-candidate",
    unreachable: "pill-down",
    unknown: "pill-down",
  };

  function renderNodes(nodes) {
    nodes = [...nodes].sort((a, b) => a.node_id - b.node_id);
    const up = nodes.filter((n) => n.role !== "unreachable" && n.role !== "unknown");
    const maxCommit = Math.max(-Infinity, ...up.map((n) => n.commit_index).filter(isNum));
    // During a partition two nodes may both believe they lead; the higher ballot is the one
    // that can still commit, so that is the leader shown.
    let leader = null;
    for (const n of nodes) {
      if (n.role === "leader" && (!leader || ballotLess(leader.ballot, n.ballot))) leader = n;
    }

    setText($("leader"), leader ? String(leader.node_id) : DASH);
    $("leader").closest(".leader-badge").classList.toggle("none", !leader);
    setText($("leader-ballot"), leader && leader.ballot ? leader.ballot : DASH);
    setText($("commit-index"), isNum(maxCommit) ? fmtGrouped(maxCommit) : DASH);
    setText($("nodes-up"), `${up.length} / ${nodes.length}`);
    $("nodes-up").classList.toggle("warn", up.length < nodes.length);

    const self = nodes.find((n) => n.api && n.api.replace(/\/$/, "") === location.origin);
    setText($("served-by"), self ? `via node ${self.node_id} · ${location.host}` : `via ${location.host}`);

    const down = (n) => n.role === "unreachable" || n.role === "unknown";
    syncRows(
      $("nodes-body"),
      nodes,
      (n) => n.node_id,
      [
        {
          cls: "node-id",
          testid: (n) => `node-id-${n.node_id}`,
          render: (td, n) => {
            if (!td.firstChild) td.append(h("span", { class: "node-num" }), h("span", { class: "node-api" }));
            setText(td.firstChild, String(n.node_id));
            setText(td.lastChild, n.api ? n.api.replace(/^https?:\/\//, "") : "");
          },
        },
        {
          testid: (n) => `node-role-${n.node_id}`,
          render: (td, n) => pill(td, n.role || "unknown", NODE_ROLE_CLASS[n.role] || "pill-down", n.error || ""),
        },
        {
          cls: "mono",
          testid: (n) => `node-ballot-${n.node_id}`,
          render: (td, n) => {
            if (down(n)) {
              setText(td, DASH);
              setClass(td, "mono muted");
            } else if (n.ballot) {
              setText(td, n.ballot);
              setClass(td, "mono");
              td.title = "ballot this node leads with (round.node)";
            } else {
              setText(td, n.promised || DASH);
              setClass(td, "mono muted");
              td.title = "highest ballot this node has promised (round.node)";
            }
          },
        },
        { testid: (n) => `node-commit-${n.node_id}`, render: (td, n) => numCell(td, down(n) ? null : n.commit_index) },
        { testid: (n) => `node-applied-${n.node_id}`, render: (td, n) => numCell(td, down(n) ? null : n.applied_index) },
        {
          testid: (n) => `node-lag-${n.node_id}`,
          render: (td, n) => {
            const lag = !down(n) && isNum(n.applied_index) && isNum(maxCommit) ? Math.max(0, maxCommit - n.applied_index) : null;
            numCell(td, lag, lag > 0 ? "warn" : "");
          },
        },
        { testid: (n) => `node-snapshot-${n.node_id}`, render: (td, n) => numCell(td, down(n) ? null : n.snapshot_index) },
        {
          cls: "num",
          render: (td, n) => {
            setText(td, down(n) ? DASH : fmtUptime(n.uptime_seconds));
            const dropped = Object.entries(n.frames_dropped || {}).map(([k, v]) => `${k}: ${v}`);
            const notes = dropped.length ? [`frames dropped — ${dropped.join(", ")}`] : [];
            const late = n.loop_late || {};
            if (late.ticks_dropped) {
              // the node's event loop woke late (starved of CPU or blocked): explains slow elections
              notes.push(`event loop late: ${late.ticks_dropped} ticks dropped, longest ${late.max_seconds} s`);
            }
            td.title = notes.join("; ");
          },
        },
      ],
      (tr, n) => {
        tr.dataset.testid = `node-${n.node_id}`;
        tr.classList.toggle("is-leader", leader !== null && n.node_id === leader.node_id);
        tr.classList.toggle("is-down", down(n));
      },
    );
    $("nodes-empty").hidden = nodes.length > 0;
  }

  // ------------------------------------------------------------------ workers

  function renderWorkers(workers, stalls) {
    workers = [...workers].sort((a, b) => String(a.worker_id).localeCompare(String(b.worker_id), "en", { numeric: true }));
    setText($("worker-count"), String(workers.length));
    syncRows(
      $("workers-body"),
      workers,
      (w) => w.worker_id,
      [
        { cls: "mono", render: (td, w) => setText(td, w.worker_id) },
        { testid: (w) => `worker-assigned-${w.worker_id}`, render: (td, w) => numCell(td, w.assigned) },
        { render: (td, w) => numCell(td, w.capacity) },
        { render: (td, w) => numCell(td, w.registered_at) },
        {
          testid: (w) => `worker-stalled-${w.worker_id}`,
          render: (td, w) => {
            const text = stalls.get(w.worker_id) || "";
            setText(td, text || "\u2014");
            setClass(td, text ? "warn" : "muted");
          },
        },
      ],
      (tr, w) => {
        tr.dataset.testid = `worker-${w.worker_id}`;
      },
    );
    $("workers-empty").hidden = workers.length > 0;
  }

  // ------------------------------------------------------------------ jobs

  /** name -> {card, submittedAt, history: [{t, topics: {topic: {offset, lag}}}], colors, ...} */
  const jobs = new Map();

  function shortTopic(job, topic) {
    const prefix = `paxline.${job}.`;
    return topic.startsWith(prefix) ? topic.slice(prefix.length) : topic;
  }

  function opName(op) {
    return String(op).replace(/#\d+$/, "");
  }

  function buildFlow(spec) {
    const flow = h("div", { class: "flow", dataset: { testid: `job-sources-${spec.name}` } });
    const arrow = () => h("span", { class: "flow-arrow", "aria-hidden": "true" }, "→");
    const topicChip = (topic, partitions, kind) =>
      h(
        "span",
        { class: `chip chip-${kind}`, title: `${kind} topic ${topic}, ${partitions} partition${partitions === 1 ? "" : "s"}` },
        h("span", { class: "chip-kind" }, kind === "source" ? "topic" : "repartition"),
        h("span", { class: "chip-topic", dataset: { topic } }, topic),
        h("span", { class: "chip-parts" }, `×${partitions}`),
      );
    const streamChip = (src, partitions) =>
      h(
        "span",
        { class: "chip chip-source", title: `RabbitMQ stream ${src.stream} on ${src.server}, ${partitions} partition${partitions === 1 ? "" : "s"}` },
        h("span", { class: "chip-kind" }, "rabbitmq stream"),
        h("span", { class: "chip-topic", dataset: { stream: src.stream } }, src.stream),
        h("span", { class: "chip-parts" }, `×${partitions}`),
      );
    // issue 19: a RabbitMQ queue source (at-least-once; one virtual partition per queue)
    const queueChip = (src, partitions) =>
      h(
        "span",
        { class: "chip chip-source", title: `RabbitMQ queue ${src.queue} on ${src.server}, ${partitions} partition${partitions === 1 ? "" : "s"}` },
        h("span", { class: "chip-kind" }, "rabbitmq queue"),
        h("span", { class: "chip-topic", dataset: { queue: src.queue } }, src.queue),
        h("span", { class: "chip-parts" }, `×${partitions}`),
      );
    const opChip = (op) => h("span", { class: "chip chip-op", title: op }, opName(op));
    const sinkChip = (out) => {
      let label = out.kind;
      let target = "";
      if (out.kind === "redis") target = `view ${out.view}`;
      else if (out.kind === "kafka") target = `topic ${out.topic}`;
      else if (out.kind === "files") target = `${out.format} ${out.url} (by ${out.roll})`;
      else if (out.kind === "rabbitmq") target = `queue ${out.queue} on ${out.server}`; // issue 19
      else if (out.view || out.topic) target = out.view || out.topic;
      return h("span", { class: "chip chip-sink" }, h("span", { class: "chip-kind" }, label), target);
    };

    const stages = spec.settings && Array.isArray(spec.settings.stages) ? spec.settings.stages : null;
    if (stages && stages.length) {
      stages.forEach((st, i) => {
        if (i > 0) flow.append(arrow());
        // issue 19: a RabbitMQ stream source shows the stream, not its Kafka anchor topic
        if (i === 0 && st.source && st.source.kind === "rabbitmq-stream") flow.append(streamChip(st.source, st.partitions));
        else if (i === 0 && st.source && st.source.kind === "rabbitmq-queue") flow.append(queueChip(st.source, st.partitions));
        else flow.append(topicChip(st.topic, st.partitions, i === 0 ? "source" : "repartition"));
        // issue 18: a window chip names its kind, e.g. "session(gap=30s)" (spec.py describe_window)
        const windows = st.windows || {};
        for (const op of st.operators || []) {
          flow.append(arrow(), windows[op] ? h("span", { class: "chip chip-op", title: op }, windows[op]) : opChip(op));
        }
        if (st.output && st.output.operator) flow.append(arrow(), opChip(st.output.operator));
        if (st.output && st.output.kind !== "repartition") flow.append(arrow(), sinkChip(st.output));
      });
    } else {
      (spec.sources || []).forEach((src, i) => {
        if (i > 0) flow.append(h("span", { class: "flow-sep" }, "·"));
        flow.append(topicChip(src.topic, src.partitions, i === 0 ? "source" : "repartition"));
      });
      if (spec.sink && spec.sink.kind) flow.append(arrow(), sinkChip(spec.sink));
    }
    return flow;
  }

  /** Topics of a job in pipeline order, with a colour each (shared by table swatches and charts). */
  function topicColors(spec) {
    const colors = new Map();
    (spec.sources || []).forEach((src, i) => colors.set(src.topic, PALETTE[i % PALETTE.length]));
    return colors;
  }

  function inputTopics(spec) {
    const ts = spec.settings && spec.settings.topic_stage;
    if (ts && typeof ts === "object") {
      const first = Object.entries(ts).filter(([, st]) => st === 0).map(([t]) => t);
      if (first.length) return new Set(first);
    }
    return new Set((spec.sources || []).slice(0, 1).map((s) => s.topic));
  }

  function stat(label, testid, title) {
    const value = h("div", { class: "stat-value", dataset: { testid } });
    return { el: h("div", { class: "stat small", title: title || null }, h("div", { class: "stat-label" }, label), value), value };
  }

  function createJob(entry) {
    const spec = entry.spec;
    const name = spec.name;
    const guarantee = spec.guarantee || "at-least-once";
    const card = h("article", { class: "panel job", id: `job-${name}`, dataset: { testid: `job-${name}`, job: name } });

    const paused = h("span", { class: "badge badge-paused", dataset: { testid: `job-paused-${name}` }, hidden: true }, "paused");
    card.append(
      h(
        "header",
        { class: "job-head" },
        h("h3", { class: "job-name" }, name),
        h(
          "span",
          { class: `badge ${guarantee === "exactly-once" ? "badge-eo" : "badge-alo"}`, dataset: { testid: `job-guarantee-${name}` } },
          guarantee,
        ),
        paused,
        h("span", { class: "job-entry mono", title: "entrypoint" }, spec.entrypoint || ""),
      ),
      buildFlow(spec),
    );

    const stats = {
      offset: stat("Agreed offset (total)", `job-total-offset-${name}`, "sum of the agreed next offsets over every source partition"),
      rate: stat("Input rate", `job-rate-${name}`, `records/s agreed on the input topic over the last ${RATE_WINDOW_S}s`),
      lag: stat("Lag (total)", `job-total-lag-${name}`, "sum over partitions of the records left to read after the agreed offset (transaction markers are not records), as reported by workers"),
      owned: stat("Partitions owned", `job-owned-${name}`),
    };
    card.append(h("div", { class: "job-stats" }, ...Object.values(stats).map((x) => x.el)));

    const tbody = h("tbody");
    const table = h(
      "table",
      { class: "table", dataset: { testid: `assignments-${name}` } },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "Topic"),
          h("th", { class: "num" }, "Part."),
          h("th", {}, "Owner"),
          h("th", { class: "num" }, "Epoch"),
          h("th", { class: "num", title: "next offset agreed through Paxos" }, "Agreed offset"),
          h("th", { class: "num", title: "Kafka end offset reported by the owning worker" }, "End offset"),
          h("th", { class: "num" }, "Lag"),
          h("th", { title: "why a partition is not processed now, as its worker reports it" }, "Status"),
        ),
      ),
      tbody,
    );

    const colors = topicColors(spec);
    const legend = h("div", { class: "legend" });
    for (const [topic, color] of colors) {
      legend.append(
        h("span", { class: "legend-item", title: topic }, h("span", { class: "swatch", style: `background:${color}` }), shortTopic(name, topic)),
      );
    }
    const offsetChart = makeChart("Agreed offset", `chart-offset-${name}`);
    const lagChart = makeChart("Lag", `chart-lag-${name}`);

    card.append(
      h(
        "div",
        { class: "job-body" },
        h("div", { class: "job-table" }, table, h("p", { class: "empty small-empty", hidden: true }, "No partitions.")),
        h("div", { class: "job-charts" }, legend, offsetChart.el, lagChart.el),
      ),
    );

    const job = {
      name,
      card,
      paused,
      tbody,
      stats,
      colors,
      inputs: inputTopics(spec),
      submittedAt: entry.submitted_at,
      history: [],
      offsetChart,
      lagChart,
      emptyNote: card.querySelector(".small-empty"),
    };
    offsetChart.job = job;
    lagChart.job = job;
    return job;
  }

  function renderJobs(list, offsetResults, now) {
    const container = $("jobs");
    list = [...list].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    setText($("job-count"), String(list.length));
    $("jobs-empty").hidden = list.length > 0;

    const seen = new Set();
    let prev = null;
    list.forEach((entry, i) => {
      const name = entry.spec.name;
      seen.add(name);
      let job = jobs.get(name);
      if (job && job.submittedAt !== entry.submitted_at) {
        // Cancelled and submitted again: a new job that happens to share the name.
        job.card.remove();
        job = null;
      }
      if (!job) {
        job = createJob(entry);
        jobs.set(name, job);
      }
      const want = prev ? prev.nextSibling : container.firstChild;
      if (job.card !== want) container.insertBefore(job.card, want);
      prev = job.card;

      job.paused.hidden = !entry.paused;
      job.card.classList.toggle("is-paused", !!entry.paused);
      const res = offsetResults[i];
      if (res.status === "fulfilled") updateJob(job, res.value.partitions || [], now);
      drawJobCharts(job, now);
    });
    for (const [name, job] of jobs) {
      if (!seen.has(name)) {
        job.card.remove();
        jobs.delete(name);
      }
    }
  }

  function updateJob(job, partitions, now) {
    const parts = [...partitions].sort((a, b) => {
      const ta = job.colors.has(a.topic) ? [...job.colors.keys()].indexOf(a.topic) : 1e9;
      const tb = job.colors.has(b.topic) ? [...job.colors.keys()].indexOf(b.topic) : 1e9;
      return ta - tb || a.topic.localeCompare(b.topic) || a.partition - b.partition;
    });
    for (const p of parts) {
      if (!job.colors.has(p.topic)) job.colors.set(p.topic, PALETTE[job.colors.size % PALETTE.length]);
    }
    const id = (p) => `${job.name}-${p.topic}-${p.partition}`;
    // End offsets come from worker heartbeats and can be a beat older than the agreed offset,
    // which makes the API's lag negative; the partition is then caught up, so lag is 0.
    const lagOf = (p) => (isNum(p.lag) ? Math.max(0, p.lag) : null);
    const staleEnd = (p) => isNum(p.end_offset) && isNum(p.offset) && p.end_offset < p.offset;
    syncRows(
      job.tbody,
      parts,
      (p) => `${p.topic}\u0000${p.partition}`,
      [
        {
          cls: "topic",
          render: (td, p) => {
            if (!td.firstChild) {
              td.append(h("span", { class: "swatch", style: `background:${job.colors.get(p.topic)}` }), h("span", { class: "mono" }));
              td.title = p.topic;
            }
            setText(td.lastChild, p.topic);
          },
        },
        { testid: (p) => `partition-${id(p)}`, render: (td, p) => numCell(td, p.partition) },
        {
          testid: (p) => `owner-${id(p)}`,
          render: (td, p) => {
            setText(td, p.owner == null ? "unassigned" : p.owner);
            setClass(td, p.owner == null ? "mono warn" : "mono");
          },
        },
        { testid: (p) => `epoch-${id(p)}`, render: (td, p) => numCell(td, p.epoch) },
        { testid: (p) => `offset-${id(p)}`, render: (td, p) => numCell(td, p.offset, "strong") },
        {
          testid: (p) => `end-${id(p)}`,
          render: (td, p) => {
            numCell(td, p.end_offset, staleEnd(p) ? "muted" : "");
            td.title = staleEnd(p) ? "reported by the worker before its latest commit" : "";
          },
        },
        { testid: (p) => `lag-${id(p)}`, render: (td, p) => numCell(td, lagOf(p), lagOf(p) > 0 ? "warn" : "") },
        {
          testid: (p) => `status-${id(p)}`,
          render: (td, p) => {
            setText(td, p.stalled ? stallText(p.stalled, p.stalled_since) : p.owner == null ? "unassigned" : "running");
            setClass(td, p.stalled || p.owner == null ? "warn" : "muted");
          },
        },
      ],
      (tr, p) => {
        tr.dataset.testid = `partition-row-${id(p)}`;
      },
    );
    job.emptyNote.hidden = parts.length > 0;

    // Totals and history sample.
    const topics = {};
    let total = 0, lag = 0, lagKnown = 0, owned = 0;
    for (const p of parts) {
      const t = (topics[p.topic] = topics[p.topic] || { offset: 0, lag: null });
      if (isNum(p.offset)) {
        t.offset += p.offset;
        total += p.offset;
      }
      if (isNum(p.lag)) {
        t.lag = (t.lag || 0) + lagOf(p);
        lag += lagOf(p);
        lagKnown++;
      }
      if (p.owner != null) owned++;
    }
    job.history.push({ t: now / 1000, topics, total, lag: lagKnown ? lag : null });
    const cutoff = now / 1000 - WINDOW_S - 5;
    while (job.history.length && job.history[0].t < cutoff) job.history.shift();

    setNumStat(job.stats.offset.value, total, fmtGrouped(total));
    setNumStat(job.stats.lag.value, lagKnown ? lag : null, lagKnown ? fmtGrouped(lag) : DASH);
    job.stats.lag.value.classList.toggle("warn", lagKnown > 0 && lag > 0);
    setText(job.stats.owned.value, `${owned} / ${parts.length}`);
    job.stats.owned.value.classList.toggle("warn", owned < parts.length);

    const rate = inputRate(job);
    setText(job.stats.rate.value, rate === null ? DASH : `${fmtRate(rate)} rec/s`);
  }

  function setNumStat(el, value, text) {
    el.dataset.value = isNum(value) ? String(value) : "";
    setText(el, text);
  }

  function inputRate(job) {
    const hist = job.history;
    if (hist.length < 2) return null;
    const last = hist[hist.length - 1];
    let first = null;
    for (const sample of hist) {
      if (sample.t >= last.t - RATE_WINDOW_S - 0.5) {
        first = sample;
        break;
      }
    }
    if (!first || first === last || last.t - first.t < 0.5) return null;
    const sum = (sample) => [...job.inputs].reduce((acc, t) => acc + (sample.topics[t] ? sample.topics[t].offset : 0), 0);
    return Math.max(0, (sum(last) - sum(first)) / (last.t - first.t));
  }

  // ------------------------------------------------------------------ charts

  function makeChart(title, testid) {
    const svg = s("svg", { class: "chart-svg", role: "img", "aria-label": title, "data-testid": testid });
    const value = h("span", { class: "chart-value" });
    const el = h("figure", { class: "chart" }, h("figcaption", {}, h("span", { class: "chart-title" }, title), value), svg);
    const chart = { el, svg, value, title, hoverT: null, job: null, draw: null };
    svg.addEventListener("mousemove", (ev) => {
      const r = svg.getBoundingClientRect();
      chart.hoverX = ev.clientX - r.left;
      if (chart.draw) chart.draw();
    });
    svg.addEventListener("mouseleave", () => {
      chart.hoverX = null;
      if (chart.draw) chart.draw();
    });
    return chart;
  }

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  function drawJobCharts(job, now) {
    const series = (field) =>
      [...job.colors].map(([topic, color]) => ({
        name: shortTopic(job.name, topic),
        color,
        points: job.history
          .filter((h_) => h_.topics[topic] && isNum(h_.topics[topic][field]))
          .map((h_) => [h_.t, h_.topics[topic][field]]),
      }));
    const last = job.history[job.history.length - 1];
    setText(job.offsetChart.value, last ? fmtGrouped(last.total) : DASH);
    setText(job.lagChart.value, last && isNum(last.lag) ? fmtGrouped(last.lag) : DASH);
    const since = job.history.length ? job.history[0].t : now / 1000;
    job.offsetChart.draw = () => drawChart(job.offsetChart, series("offset"), now / 1000, false, since);
    job.lagChart.draw = () => drawChart(job.lagChart, series("lag"), now / 1000, true, since);
    job.offsetChart.draw();
    job.lagChart.draw();
  }

  /**
   * A small line chart of the last WINDOW_S seconds ending at `t1`. `zeroBased` charts start
   * their y axis at 0 (lag); the others fit the visible range (offsets only ever grow, so a
   * zero-based axis would flatten recent progress into a horizontal line).
   */
  function drawChart(chart, series, t1, zeroBased, since) {
    const svg = chart.svg;
    // A fresh page would show a sliver at the right edge of a two-minute axis; instead the
    // axis spans the history it has, in steps, until it holds the whole window.
    const span = SPANS_S.find((sp) => t1 - since <= sp) || WINDOW_S;
    const W = Math.max(200, Math.round(svg.getBoundingClientRect().width || svg.parentNode.clientWidth || 400));
    const H = CHART_HEIGHT;
    const pad = { l: 46, r: 10, t: 10, b: 20 };
    const t0 = t1 - span;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("height", String(H));

    const visible = series.map((se) => ({ ...se, points: se.points.filter(([t]) => t >= t0 - GAP_S) }));
    const values = visible.flatMap((se) => se.points.map(([, v]) => v));
    let lo = zeroBased ? 0 : Math.min(...values);
    let hi = Math.max(...values);
    if (!values.length) {
      lo = 0;
      hi = 1;
    }
    // Offsets and lag are counts: at least 1 per grid step, and some headroom when flat.
    if (hi - lo < 3) {
      if (!zeroBased && lo > 0) lo = Math.max(0, lo - 1);
      hi = lo + 3;
    }
    const step = Math.max(1, niceStep((hi - lo) / 3));
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    if (hi === lo) hi = lo + step;

    const x = (t) => pad.l + ((t - t0) / span) * (W - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (H - pad.t - pad.b);

    const frag = document.createDocumentFragment();
    // Grid and y labels.
    for (let v = lo; v <= hi + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      frag.append(s("line", { class: "grid", x1: pad.l, x2: W - pad.r, y1: yy, y2: yy }));
      frag.append(s("text", { class: "axis", x: pad.l - 6, y: yy + 3.5, "text-anchor": "end" }, fmtAxis(v, step, hi)));
    }
    // Time labels.
    for (const [dt, label] of [[span, `−${fmtSpan(span)}`], [span / 2, `−${fmtSpan(span / 2)}`], [0, "now"]]) {
      const anchor = dt === span ? "start" : dt === 0 ? "end" : "middle";
      frag.append(s("text", { class: "axis", x: x(t1 - dt), y: H - 5, "text-anchor": anchor }, label));
    }
    // Lines, broken where samples are missing (the page could not reach the API).
    let drawn = 0;
    const times = new Set();
    for (const se of visible) {
      let d = "";
      let prevT = null;
      for (const [t, v] of se.points) {
        const tt = Math.max(t, t0);
        const cmd = prevT === null || t - prevT > GAP_S ? "M" : "L";
        d += `${cmd}${x(tt).toFixed(1)} ${y(v).toFixed(1)}`;
        prevT = t;
      }
      if (!d) continue;
      drawn += se.points.length;
      for (const [t] of se.points) if (t >= t0) times.add(t);
      frag.append(s("path", { class: "line", d, stroke: se.color }));
      const [lt, lv] = se.points[se.points.length - 1];
      if (t1 - lt <= GAP_S) frag.append(s("circle", { class: "dot", cx: x(lt).toFixed(1), cy: y(lv).toFixed(1), r: 2.6, fill: se.color }));
    }
    if (drawn < 2) {
      frag.append(s("text", { class: "placeholder", x: (pad.l + W - pad.r) / 2, y: (H - pad.b + pad.t) / 2 + 4, "text-anchor": "middle" }, "collecting samples…"));
    }
    // Hover readout: a guide line and each series' value at the nearest sample.
    if (chart.hoverX != null && chart.hoverX >= pad.l && chart.hoverX <= W - pad.r && drawn) {
      const th = t0 + ((chart.hoverX - pad.l) / (W - pad.l - pad.r)) * span;
      const rows = [];
      let guideT = null;
      for (const se of visible) {
        let best = null;
        for (const p of se.points) if (!best || Math.abs(p[0] - th) < Math.abs(best[0] - th)) best = p;
        if (best && Math.abs(best[0] - th) <= GAP_S) {
          rows.push([se, best[1]]);
          guideT = best[0];
          frag.append(s("circle", { class: "dot hover", cx: x(best[0]).toFixed(1), cy: y(best[1]).toFixed(1), r: 3.5, fill: se.color }));
        }
      }
      if (guideT !== null) {
        const gx = Math.round(x(guideT)) + 0.5;
        frag.prepend(s("line", { class: "guide", x1: gx, x2: gx, y1: pad.t, y2: H - pad.b }));
        const lines = [fmtClock(guideT * 1000), ...rows.map(([se, v]) => `${se.name}: ${fmtGrouped(v)}`)];
        const boxW = Math.max(...lines.map((l) => l.length)) * 6.4 + 14;
        const boxH = lines.length * 14 + 8;
        const bx = gx + 8 + boxW > W - pad.r ? gx - 8 - boxW : gx + 8;
        const g = s("g", { class: "tip" });
        g.append(s("rect", { x: bx, y: pad.t, width: boxW, height: boxH, rx: 4 }));
        lines.forEach((l, i) => g.append(s("text", { x: bx + 7, y: pad.t + 15 + i * 14 }, l)));
        frag.append(g);
      }
    }
    svg.dataset.samples = String(times.size); // seconds with a sample on screen (for tests)
    svg.replaceChildren(frag);
  }

  // ------------------------------------------------------------------ poll loop

  async function poll() {
    const started = performance.now();
    const errors = [];
    const note = (what) => (r) => {
      if (r.status === "rejected") errors.push(`${what}: ${r.reason && r.reason.message ? r.reason.message : r.reason}`);
      return r.status === "fulfilled" ? r.value : null;
    };
    try {
      const [nodesR, jobsR, workersR] = await Promise.allSettled([getJSON("/v1/cluster/nodes"), getJSON("/v1/jobs"), getJSON("/v1/workers")]);
      const nodes = note("cluster")(nodesR);
      const jobList = note("jobs")(jobsR);
      const workers = note("workers")(workersR);
      let offsets = [];
      if (jobList && Array.isArray(jobList.jobs)) {
        offsets = await Promise.allSettled(
          jobList.jobs.map((j) => getJSON(`/v1/jobs/${encodeURIComponent(j.spec.name)}/offsets`)),
        );
        offsets.forEach((r, i) => {
          // 404: the job was cancelled between the two requests; the next poll drops it.
          if (!(r.status === "rejected" && r.reason instanceof HttpError && r.reason.status === 404)) {
            note(`offsets of ${jobList.jobs[i].spec.name}`)(r);
          }
        });
      }
      const now = Date.now();
      if (nodes && Array.isArray(nodes.nodes)) renderNodes(nodes.nodes);
      if (workers && Array.isArray(workers.workers)) renderWorkers(workers.workers, stallsByWorker(offsets));
      if (jobList && Array.isArray(jobList.jobs)) renderJobs(jobList.jobs, offsets, now);
    } catch (e) {
      // A rendering bug must not stop the loop; say so instead.
      console.error("dashboard update failed", e);
      errors.push(`dashboard error: ${e && e.message ? e.message : e}`);
    }
    setConnection(errors);
    setTimeout(poll, Math.max(50, POLL_MS - (performance.now() - started)));
  }

  // Redraw charts at the new width when the window is resized.
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const job of jobs.values()) {
        if (job.offsetChart.draw) job.offsetChart.draw();
        if (job.lagChart.draw) job.lagChart.draw();
      }
    }, 100);
  });

  setText($("served-by"), `via ${location.host}`);
  poll();
})();
