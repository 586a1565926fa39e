"use strict";
(function () {
  // Rows are data: every text goes through textContent, never innerHTML.
  const ROWS = JSON.parse(document.getElementById("rows-data").textContent);
  const PAGE = 25;
  const state = { status: "", q: "", problems: false, page: 0 };
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  function words(s) { return (s || "").split(/(\s+)/).filter((w) => w.length > 0); }

  // Word-level diff (LCS); falls back to no highlighting for very long texts.
  function diff(a, b) {
    const x = words(a), y = words(b), n = x.length, m = y.length;
    if (n * m > 4000000) return { left: [[0, a]], right: [[0, b]] };
    const dp = new Array(n + 1);
    for (let i = 0; i <= n; i++) dp[i] = new Uint32Array(m + 1);
    for (let i = n - 1; i >= 0; i--)
      for (let j = m - 1; j >= 0; j--)
        dp[i][j] = x[i] === y[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    const left = [], right = [];
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { left.push([0, x[i]]); right.push([0, y[j]]); i++; j++; }
      else if (j < m && (i >= n || dp[i][j + 1] >= dp[i + 1][j])) { right.push([1, y[j]]); j++; }
      else { left.push([-1, x[i]]); i++; }
    }
    return { left, right };
  }

  function textBox(parts) {
    const box = el("div", "txt");
    for (const [op, w] of parts) {
      if (op === 0) box.appendChild(document.createTextNode(w));
      else box.appendChild(el("span", op < 0 ? "del" : "ins", w));
    }
    return box;
  }

  function scoresTable(r) {
    const keys = Array.from(new Set(Object.keys(r.sb).concat(Object.keys(r.sa))));
    if (!keys.length) return null;
    const t = el("table", "scores");
    const h = el("tr"); ["score", "original", "rewritten / selected"].forEach((k) => h.appendChild(el("th", null, k)));
    t.appendChild(h);
    for (const k of keys) {
      const tr = el("tr");
      tr.appendChild(el("td", null, k));
      tr.appendChild(el("td", null, k in r.sb ? r.sb[k] : ""));
      tr.appendChild(el("td", null, k in r.sa ? r.sa[k] : ""));
      t.appendChild(tr);
    }
    return t;
  }

  function card(r) {
    const c = el("div", "row-card" + (r.pr ? " problem" : ""));
    c.dataset.id = r.id;
    const head = el("div", "row-head");
    head.appendChild(el("b", null, "#" + (r.n + 1) + " "));
    head.appendChild(el("span", "mono", r.id + " "));
    head.appendChild(el("span", "badge status st-" + r.st, r.st));
    for (const t of r.tags) head.appendChild(el("span", "badge tag-" + t.split(":")[0], t));
    if (r.rs) head.appendChild(el("span", "reason", r.rs));
    c.appendChild(head);
    const oi = r.on ? r.oi + "\n" + r.on : r.oi, ni = r.nn ? r.ni + "\n" + r.nn : r.ni;
    const di = diff(oi, ni), dr = diff(r.oo, r.no);
    const pair = el("div", "pair");
    const left = el("div"), right = el("div");
    left.appendChild(el("h4", null, "original instruction")); left.appendChild(textBox(di.left));
    left.appendChild(el("h4", null, "original response")); left.appendChild(textBox(dr.left));
    right.appendChild(el("h4", null, "rewritten instruction")); right.appendChild(textBox(di.right));
    right.appendChild(el("h4", null, "rewritten response")); right.appendChild(textBox(dr.right));
    pair.appendChild(left); pair.appendChild(right);
    c.appendChild(pair);
    if (r.cr) { c.appendChild(el("h4", null, "oracle critique")); c.appendChild(el("div", "critique", r.cr)); }
    const st = scoresTable(r);
    if (st) c.appendChild(st);
    return c;
  }

  let hay = null;
  function matches(r, q) {
    if (!q) return true;
    if (!hay) hay = ROWS.map((x) => [x.id, x.st, x.rs, x.oi, x.on, x.oo, x.ni, x.nn, x.no, x.cr, x.tags.join(" ")].join("\n").toLowerCase());
    return hay[r.n_idx].indexOf(q) >= 0;
  }
  ROWS.forEach((r, i) => { r.n_idx = i; });

  function filtered() {
    const q = state.q.trim().toLowerCase();
    let out = ROWS.filter((r) => (!state.status || r.st === state.status || r.tags.indexOf(state.status) >= 0) && matches(r, q));
    if (state.problems) out = out.filter((r) => r.pr).concat(out.filter((r) => !r.pr));
    return out;
  }

  function render() {
    const rows = filtered();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * PAGE, slice = rows.slice(start, start + PAGE);
    const box = $("rows");
    box.replaceChildren();
    const frag = document.createDocumentFragment();
    slice.forEach((r) => frag.appendChild(card(r)));
    box.appendChild(frag);
    $("row-count").textContent = rows.length
      ? "showing " + (start + 1) + "-" + (start + slice.length) + " of " + rows.length + " rows (" + ROWS.length + " in total)"
      : "no rows match (" + ROWS.length + " in total)";
    $("page-info").textContent = "page " + (state.page + 1) + " / " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  const sel = $("status-filter");
  const values = new Set();
  ROWS.forEach((r) => { values.add(r.st); r.tags.forEach((t) => values.add(t)); });
  Array.from(values).sort().forEach((v) => { const o = el("option", null, v); o.value = v; sel.appendChild(o); });
  sel.addEventListener("change", () => { state.status = sel.value; state.page = 0; render(); });
  let timer = null;
  $("search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = e.target.value; state.page = 0; render(); }, 120);
  });
  $("problems-first").addEventListener("change", (e) => { state.problems = e.target.checked; state.page = 0; render(); });
  $("prev").addEventListener("click", () => { state.page--; render(); });
  $("next").addEventListener("click", () => { state.page++; render(); });
  render();
  document.body.dataset.ready = "1";
})();
