/* facesieve report / review app. Renders the page from the JSON embedded in it; in the app it also
   talks to the local server (same origin only). No network access, no libraries. */
(function () {
  "use strict";
  let D = JSON.parse(document.getElementById("facesieve-data").textContent);
  const APP = !!D.app;
  const TOKEN = D.token || "";  // the app's session token, only in the page it served (D is replaced later)
  const PAGE = 10, PAIR_PAGE = 24;
  const COLORS = { keep: "#1f8a4c", remove: "#c73a3a", review: "#d98a00", error: "#7c8591" };
  const REASON_LABEL = {
    kept: "kept", selected: "selected", too_few: "kept (≤ K)", not_selected: "not selected",
    near_duplicate: "same photo", near_identical_shot: "same moment", exact_duplicate: "exact dup", cross_identity_duplicate: "cross-id",
    outlier: "outlier", no_face: "no face", manual: "manual",
  };
  const ui = { q: "", filter: "all", sort: "name", page: 0, crossPage: 0, closed: new Set() };
  let byPath = new Map();
  let cards = new Map();

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  const $ = (id) => document.getElementById(id);
  const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const base = (p) => p.split("/").pop();
  const action = (f) => D.actions[f[1]];
  const reason = (f) => D.reasons[f[2]];
  const label = (r) => REASON_LABEL[r] || r.replace(/_/g, " ");
  const thumbUrl = (k) => "report_files/t/" + k.slice(0, 1) + "/" + k + ".jpg";
  const fileUrl = (p) => D.files_href + p.split("/").map(encodeURIComponent).join("/");
  const previewUrl = (p) => (APP ? "preview/" + p.split("/").map(encodeURIComponent).join("/") : fileUrl(p));
  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }
  function identName(n) { return n === "" ? "(no identity)" : n; }

  function prepare() {
    byPath = new Map();
    for (const id of D.identities) {
      id.counts = { keep: 0, remove: 0, review: 0, error: 0, manual: 0, pending: 0 };
      id.lname = id.name.toLowerCase();
      id.nCross = 0;
      for (const f of id.faces) {
        byPath.set(f[0], { id, f });
        id.counts[action(f)]++;
        if (reason(f) === D.manual) id.counts.manual++;
        if (f[9]) id.counts.pending++;
      }
    }
    for (const c of D.cross) for (const p of [c[0], c[1]]) { const h = byPath.get(p); if (h) h.id.nCross++; }
  }

  function toast(msg, ms = 3500) {
    const t = $("toast");
    t.textContent = msg; t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, ms);
  }

  // ------------------------------------------------------------------ faces
  function faceTile(f, opts = {}) {
    const a = action(f), r = reason(f), pend = f[9];
    const cls = ["face", "a-" + a];
    if (r === D.manual) cls.push("is-manual");
    if (pend) cls.push("pending");
    const tip = [f[0], a + " / " + r, f[8], f[5] ? "duplicate of " + f[5] : ""].filter(Boolean).join("\n");
    const img = f[4]
      ? el("img", { src: thumbUrl(f[4]), loading: "lazy", alt: base(f[0]), width: 100, height: 100, onclick: () => openViewer(f) })
      : el("div", { class: "noimg", text: "no image" });
    const bits = ["q " + fmt(f[3])];
    if (opts.pair) { /* the pair shows its own similarity */ }
    else if (f[6] !== null && (r === "near_duplicate" || r === "near_identical_shot" || r === "exact_duplicate" || r === "cross_identity_duplicate")) bits.push("sim " + fmt(f[6]));
    else if (f[6] !== null && r === "not_selected") bits.push("≈ kept " + fmt(f[6]));
    if (r === "outlier" && f[7] !== null) bits.push("score " + fmt(f[7]));
    let badge = label(r);
    if (pend) badge = "→ " + pend;
    const fig = el("figure", { class: cls.join(" "), title: tip, "data-path": f[0], "data-action": a, "data-reason": r },
      img,
      el("span", { class: "badge", text: badge }),
      opts.kept ? el("span", { class: "star", title: "kept: best quality in its group", text: "★" }) : null,
      el("figcaption", {}, opts.ident ? el("span", { class: "name", text: identName(opts.ident) }) : null,
        el("span", { class: "name", text: base(f[0]) }), el("small", { text: bits.join(" · ") })));
    if (APP && a !== "error") fig.append(actionButtons(f));
    return fig;
  }

  function actionButtons(f) {
    const now = f[9] === "keep" || f[9] === "remove" ? f[9] : f[9] === "auto" ? null : action(f);
    const manual = reason(f) === D.manual || f[9] === "keep" || f[9] === "remove";
    const box = el("div", { class: "acts" });
    for (const act of ["keep", "remove"]) {
      box.append(el("button", { class: now === act ? "on-" + act : "", "data-act": act, title: act + " this face",
        onclick: (ev) => { ev.stopPropagation(); setOverride(f[0], act); }, text: act }));
    }
    if (manual && f[9] !== "auto") {
      box.append(el("button", { "data-act": "auto", title: "back to facesieve's decision",
        onclick: (ev) => { ev.stopPropagation(); setOverride(f[0], "auto"); }, text: "undo" }));
    }
    return box;
  }

  function openViewer(f) {
    const v = $("viewer");
    v.replaceChildren();
    const big = el("img", { src: previewUrl(f[0]), alt: f[0] });
    big.addEventListener("error", () => { if (f[4]) big.src = thumbUrl(f[4]); }, { once: true });
    const rows = [["file", f[0]], ["action", action(f)], ["reason", reason(f)], ["quality", fmt(f[3], 4)],
      ["duplicate of", f[5]], ["similarity", f[6] === null ? "" : fmt(f[6], 4)],
      ["outlier score", f[7] === null ? "" : fmt(f[7], 3)], ["detail", f[8]], ["pending", f[9]]].filter((r) => r[1]);
    const table = el("table", {}, rows.map(([k, val]) => el("tr", {}, el("td", { text: k }), el("td", { text: val }))));
    const link = el("a", { href: APP ? "files/" + f[0].split("/").map(encodeURIComponent).join("/") : fileUrl(f[0]), target: "_blank", rel: "noopener", text: "open the original file" });
    v.append(el("div", { class: "box", onclick: (e) => e.stopPropagation() }, big, el("div", {}, table, el("p", {}, link),
      el("button", { text: "Close", onclick: () => { v.hidden = true; } }))));
    v.hidden = false;
  }

  // ------------------------------------------------------------------ summary
  function renderSummary() {
    const s = D.summary || {};
    const sec = $("summary");
    sec.replaceChildren();
    const stat = (n, k, cls) => el("div", { class: "stat " + (cls || "") }, el("b", { text: n === undefined ? "–" : n }), el("span", { text: k }));
    sec.append(el("div", { class: "stats" },
      stat(s.files, "files"), stat(s.images, "images"), stat(s.identities, "identities"), stat(s.faces, "faces"),
      stat(s.kept, "kept", "keep"), stat(s.removed, "removed", "remove"), stat(s.review, "to review", "review"),
      stat(s.errors, "errors", "error"), stat(s.no_face, "no face"), stat(s.ignored || 0, "ignored"), stat(s.manual || 0, "manual")));

    const reasons = Object.entries(s.by_reason || {}).sort((a, b) => b[1] - a[1]);
    const maxR = Math.max(1, ...reasons.map((r) => r[1]));
    const rTable = el("table", {}, el("tr", {}, el("th", { text: "decision" }), el("th", { text: "reason" }), el("th", { text: "files" }), el("th", { text: "" })),
      reasons.map(([k, n]) => {
        const [a, r] = k.split("/");
        return el("tr", {}, el("td", {}, el("span", { class: "dot " + a }), a), el("td", { text: label(r) }), el("td", { class: "num", text: n }),
          el("td", { style: "width:40%" }, el("div", { class: "bar " + a, style: "width:" + (100 * n / maxR) + "%" })));
      }));
    const stages = Object.entries(s.stage_seconds || {});
    const maxS = Math.max(1e-9, ...stages.map((r) => r[1]));
    const sTable = el("table", {}, el("tr", {}, el("th", { text: "stage" }), el("th", { text: "seconds" }), el("th", { text: "" })),
      stages.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { class: "num", text: fmt(v, 1) }),
        el("td", { style: "width:55%" }, el("div", { class: "bar", style: "width:" + (100 * v / maxS) + "%" })))),
      el("tr", {}, el("td", {}, el("b", { text: "total" })), el("td", { class: "num" }, el("b", { text: fmt(s.seconds, 1) })), el("td")));
    const m = s.models || {};
    const info = el("table", {}, [
      ["dataset", s.dataset || D.dataset], ["output", s.output || D.output],
      ["detector", m.detector], ["embedder", m.embedder], ["quality", m.quality], ["metric", m.metric],
      ["ran on", s.devices ? "detector " + s.devices.detector + " · embedder " + s.devices.embedder : undefined],
      ["keep K", s.keep_k === null || s.keep_k === undefined ? "all that pass" : s.keep_k],
      ["selection", Object.entries(s.selection_methods || {}).map(([k, v]) => k + " " + v).join(", ")],
      ["identities emptied", s.identities_emptied],
      ["more than half not kept", (s.identities_lost_over_half || []).map((x) => x.identity + " (" + x.not_kept + "/" + x.files + ")").join(", ")],
      ["written", D.generated + " · facesieve " + D.version],
    ].filter((r) => r[1] !== undefined && r[1] !== "").map(([k, v]) => el("tr", {}, el("td", { class: "muted", text: k }), el("td", { text: v }))));
    sec.append(el("div", { class: "cols" },
      el("div", { class: "card" }, el("h3", { text: "Decisions by reason" }), rTable),
      el("div", { class: "card" }, el("h3", { text: "Time per stage" }), sTable),
      el("div", { class: "card" }, el("h3", { text: "Run" }), info)));
  }

  // ------------------------------------------------------------------ identities
  function filtered() {
    const q = ui.q.trim().toLowerCase();
    let list = D.identities.filter((id) => !q || id.lname.includes(q));
    const f = ui.filter;
    if (f === "removed") list = list.filter((id) => id.counts.remove > 0);
    else if (f === "review") list = list.filter((id) => id.counts.review > 0);
    else if (f === "groups") list = list.filter((id) => id.groups.length > 0);
    else if (f === "cross") list = list.filter((id) => id.nCross > 0);
    else if (f === "manual") list = list.filter((id) => id.counts.manual > 0 || id.counts.pending > 0);
    const key = { removed: (id) => -id.counts.remove, review: (id) => -id.counts.review, faces: (id) => -id.faces.length }[ui.sort];
    if (key) list = list.slice().sort((a, b) => key(a) - key(b) || a.lname.localeCompare(b.lname));
    if (q) {
      // an exact name match first
      const i = list.findIndex((id) => id.lname === q);
      if (i > 0) list = [list[i], ...list.slice(0, i), ...list.slice(i + 1)];
    }
    return list;
  }

  function renderIdentities() {
    const list = filtered();
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    ui.page = Math.min(ui.page, pages - 1);
    const shown = list.slice(ui.page * PAGE, ui.page * PAGE + PAGE);
    $("id-count").textContent = list.length === D.identities.length
      ? D.identities.length + " identities" : list.length + " of " + D.identities.length + " identities";
    const box = $("id-list");
    box.replaceChildren();
    cards = new Map();
    if (!shown.length) box.append(el("div", { class: "card empty", text: "No identity matches." }));
    for (const id of shown) { const c = identCard(id); cards.set(id.name, c); box.append(c); }
    renderPager($("pager"), ui.page, pages, (p) => { ui.page = p; renderIdentities(); $("identities").scrollIntoView(); });
  }

  function renderPager(box, page, pages, go) {
    box.replaceChildren();
    if (pages <= 1) return;
    box.append(el("button", { text: "‹ prev", disabled: page === 0, onclick: () => go(page - 1) }));
    const want = new Set([0, pages - 1]);
    for (let p = page - 2; p <= page + 2; p++) if (p >= 0 && p < pages) want.add(p);
    let last = -1;
    for (const p of [...want].sort((a, b) => a - b)) {
      if (p - last > 1) box.append(el("span", { class: "muted", text: "…" }));
      box.append(el("button", { class: p === page ? "cur" : "", text: p + 1, onclick: () => go(p) }));
      last = p;
    }
    box.append(el("button", { text: "next ›", disabled: page === pages - 1, onclick: () => go(page + 1) }));
  }

  function identCard(id) {
    const closed = ui.closed.has(id.name);
    const c = id.counts;
    const chips = [el("span", { class: "chip", text: id.faces.length + " files" })];
    if (c.keep) chips.push(el("span", { class: "chip keep", text: c.keep + " kept" }));
    if (c.remove) chips.push(el("span", { class: "chip remove", text: c.remove + " removed" }));
    if (c.review) chips.push(el("span", { class: "chip review", text: c.review + " to review" }));
    if (c.error) chips.push(el("span", { class: "chip error", text: c.error + " errors" }));
    if (c.manual) chips.push(el("span", { class: "chip manual", text: c.manual + " manual" }));
    if (c.pending) chips.push(el("span", { class: "chip manual", text: c.pending + " not applied" }));
    let sel = "";
    if (id.sel && id.sel.method === "all") sel = "K = " + id.sel.k + ": all " + id.sel.n + " remaining kept";
    else if (id.sel) sel = "K = " + id.sel.k + " of " + id.sel.n + " · " + id.sel.method + " search" + (id.sel.score !== null ? " · objective " + fmt(id.sel.score, 4) : "");
    const card = el("article", { class: "ident" + (closed ? " closed" : ""), "data-identity": id.name });
    const head = el("header", { onclick: () => {
      if (ui.closed.has(id.name)) ui.closed.delete(id.name); else ui.closed.add(id.name);
      card.replaceWith(replaceCard(id));
    } }, el("span", { class: "caret", text: closed ? "▸" : "▾" }), el("h3", { text: identName(id.name) }), chips, el("span", { class: "sel", text: sel }));
    card.append(head);
    if (!closed) card.append(identBody(id));
    return card;
  }

  function replaceCard(id) { const c = identCard(id); cards.set(id.name, c); return c; }

  function section(title, count, ...content) {
    return [el("h4", { text: title + (count !== undefined ? " (" + count + ")" : "") }), ...content];
  }

  function identBody(id) {
    const body = el("div", { class: "body" });
    const F = id.faces;
    const shown = new Set();
    const byQ = (a, b) => (b[3] ?? -1e9) - (a[3] ?? -1e9);
    const kept = F.filter((f) => action(f) === "keep").sort(byQ);
    kept.forEach((f) => shown.add(f));
    const keptLabel = id.sel && id.sel.method !== "all" ? "Kept: the selected K" : "Kept";
    body.append(...section(keptLabel, kept.length, kept.length ? el("div", { class: "faces" }, kept.map((f) => faceTile(f))) : el("div", { class: "muted", text: "none" })));

    if (id.groups.length) {
      const groups = id.groups.map((g, n) => {
        const members = g.map((i) => F[i]);
        members.forEach((f) => shown.add(f));
        return el("div", { class: "group" }, el("div", { class: "glabel", text: "group " + (n + 1) + " · " + members.length + " faces · ★ kept, the rest matched it" }),
          members.map((f, j) => faceTile(f, { kept: j === 0 })));
      });
      body.append(...section("Near-duplicate groups", id.groups.length, el("div", {}, groups)));
    }
    const exact = F.filter((f) => reason(f) === "exact_duplicate");
    if (exact.length) {
      exact.forEach((f) => shown.add(f));
      body.append(...section("Exact duplicates", exact.length, el("div", { class: "pairs" }, exact.map((f) => pairView(f, f[5], 1.0)))));
    }
    const notSel = F.filter((f) => reason(f) === "not_selected").sort(byQ);
    if (notSel.length) {
      notSel.forEach((f) => shown.add(f));
      body.append(...section("Not selected (beyond K)", notSel.length, el("div", { class: "faces" }, notSel.map((f) => faceTile(f))),
        el("ul", { class: "why" }, notSel.filter((f) => f[8]).map((f) => el("li", { text: base(f[0]) + ": " + f[8] })))));
    }
    const outl = F.filter((f) => reason(f) === "outlier").sort((a, b) => (b[7] ?? 0) - (a[7] ?? 0));
    if (outl.length) {
      outl.forEach((f) => shown.add(f));
      body.append(...section("Outliers: far from this identity, near others", outl.length, el("div", { class: "faces" }, outl.map((f) => faceTile(f)))));
    }
    const cross = D.cross.filter((c) => c[2] === id.name || c[3] === id.name);
    if (cross.length) {
      F.filter((f) => reason(f) === "cross_identity_duplicate").forEach((f) => shown.add(f));
      body.append(...section("Same face under another identity", cross.length, el("div", { class: "pairs" },
        cross.slice(0, 60).map((c) => (c[2] === id.name ? pairView(byPath.get(c[0])?.f, c[1], c[4]) : pairView(byPath.get(c[1])?.f, c[0], c[4]))))));
    }
    const manual = F.filter((f) => reason(f) === D.manual && !shown.has(f));
    if (manual.length) {
      manual.forEach((f) => shown.add(f));
      body.append(...section("Removed by hand", manual.length, el("div", { class: "faces" }, manual.map((f) => faceTile(f)))));
    }
    const rest = F.filter((f) => !shown.has(f));
    if (rest.length) body.append(...section("No face, unreadable and other", rest.length, el("div", { class: "faces" }, rest.map((f) => faceTile(f)))));
    return body;
  }

  function pairView(f, otherPath, sim) {
    const other = byPath.get(otherPath);
    const tile = (g, path) => (g ? faceTile(g.f || g, { ident: g.id ? g.id.name : undefined, pair: true }) : el("div", { class: "face" }, el("div", { class: "noimg", text: base(path || "?") })));
    const left = f ? faceTile(f, { ident: byPath.get(f[0])?.id.name, pair: true }) : tile(null, "");
    return el("div", { class: "pair" }, left, el("div", { class: "sim" }, el("b", { text: fmt(sim, 3) }), "cosine"), tile(other, otherPath));
  }

  // ------------------------------------------------------------------ cross identity
  function renderCross() {
    const sec = $("cross");
    sec.replaceChildren(el("h2", { text: "Across identities" }));
    const pages = Math.max(1, Math.ceil(D.cross.length / PAIR_PAGE));
    ui.crossPage = Math.min(ui.crossPage, pages - 1);
    const card = el("div", { class: "card" });
    card.append(el("h3", { text: "The same face filed under two identities (" + D.cross.length + " pairs; faces still kept were sent to review)" }));
    if (!D.cross.length) card.append(el("p", { class: "muted", text: "None found." }));
    else {
      const shown = D.cross.slice(ui.crossPage * PAIR_PAGE, (ui.crossPage + 1) * PAIR_PAGE);
      card.append(el("div", { class: "pairs", style: "margin-top:10px" }, shown.map((c) => pairView(byPath.get(c[0])?.f, c[1], c[4]))));
      const pager = el("div", { class: "pager" });
      renderPager(pager, ui.crossPage, pages, (p) => { ui.crossPage = p; renderCross(); });
      card.append(pager);
    }
    sec.append(card);
    const ov = el("div", { class: "card", style: "margin-top:14px" }, el("h3", { text: "Identities whose mean faces are alike (" + D.overlaps.length + ")" }));
    if (!D.overlaps.length) ov.append(el("p", { class: "muted", text: "None above the overlap threshold." }));
    else ov.append(el("table", {}, el("tr", {}, ["identity", "faces", "identity", "faces", "cosine"].map((t) => el("th", { text: t }))),
      D.overlaps.slice(0, 200).map((o) => el("tr", {}, el("td", {}, el("a", { href: "#identities", onclick: () => jump(o[0]), text: o[0] })), el("td", { class: "num", text: o[2] }),
        el("td", {}, el("a", { href: "#identities", onclick: () => jump(o[1]), text: o[1] })), el("td", { class: "num", text: o[3] }), el("td", { class: "num", text: fmt(o[4], 3) })))));
    sec.append(ov);
  }

  function jump(name) { ui.q = name; $("search").value = name; ui.page = 0; renderIdentities(); }

  // ------------------------------------------------------------------ plots
  function histogram(title, series, opts = {}) {
    const all = series.flatMap((s) => s.values);
    const W = 560, H = 220, L = 44, R = 12, T = 28, B = 34;
    const svg = (tag, attrs) => { const e = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": title });
    const t = svg("text", { x: L, y: 16, style: "font-weight:600;fill:#1d2330;font-size:12px" }); t.textContent = title; root.append(t);
    if (!all.length) { const n = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }); n.textContent = "no values"; root.append(n); return root; }
    const [amin, amax] = extent(all);
    let lo = opts.lo ?? amin, hi = opts.hi ?? amax;
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const nb = opts.bins || 30, w = (hi - lo) / nb;
    const counts = series.map((s) => { const c = new Array(nb).fill(0); for (const v of s.values) c[Math.min(nb - 1, Math.max(0, Math.floor((v - lo) / w)))]++; return c; });
    const tot = new Array(nb).fill(0); counts.forEach((c) => c.forEach((v, i) => { tot[i] += v; }));
    const ymax = Math.max(1, ...tot);
    const x = (v) => L + (W - L - R) * (v - lo) / (hi - lo), y = (v) => H - B - (H - B - T) * v / ymax;
    root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#c8cdd6" }));
    for (let k = 0; k <= 4; k++) {
      const v = lo + (hi - lo) * k / 4, tx = svg("text", { x: x(v), y: H - B + 14, "text-anchor": "middle" }); tx.textContent = fmt(v, 2); root.append(tx);
      const yv = Math.round(ymax * k / 4), ty = svg("text", { x: L - 6, y: y(yv) + 4, "text-anchor": "end" }); ty.textContent = yv; root.append(ty);
      root.append(svg("line", { x1: L, y1: y(yv), x2: W - R, y2: y(yv), stroke: "#eef0f3" }));
    }
    const acc = new Array(nb).fill(0);
    series.forEach((s, si) => counts[si].forEach((cnt, i) => {
      if (!cnt) return;
      const r = svg("rect", { x: x(lo + i * w) + 0.5, width: Math.max(1, x(lo + w) - x(lo) - 1), y: y(acc[i] + cnt), height: y(acc[i]) - y(acc[i] + cnt), fill: s.color });
      const tt = svg("title", {}); tt.textContent = `${s.name}: ${cnt} in [${fmt(lo + i * w)}, ${fmt(lo + (i + 1) * w)})`; r.append(tt);
      root.append(r); acc[i] += cnt;
    }));
    let lx = L + 8 + 6.6 * title.length + 14;
    for (const s of series) {
      if (!s.values.length) continue;
      root.append(svg("rect", { x: lx, y: 7, width: 9, height: 9, rx: 2, fill: s.color }));
      const tx = svg("text", { x: lx + 13, y: 16 }); tx.textContent = s.name + " " + s.values.length; root.append(tx);
      lx += 13 + 6.4 * (s.name.length + String(s.values.length).length + 1) + 12;
    }
    if (opts.xlabel) { const xl = svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }); xl.textContent = opts.xlabel; root.append(xl); }
    return root;
  }

  function renderPlots() {
    const sec = $("plots");
    sec.replaceChildren(el("h2", { text: "Plots" }));
    const faces = D.identities.flatMap((id) => id.faces);
    const bySeries = (get, filter) => D.actions.map((a) => ({ name: a, color: COLORS[a],
      values: faces.filter((f) => action(f) === a && (!filter || filter(f))).map(get).filter((v) => v !== null && v !== undefined) }));
    const q = histogram("Face quality by decision", bySeries((f) => f[3]), { xlabel: "quality score (" + ((D.summary.models || {}).quality || "") + ")" });
    const sims = histogram("Similarity to the kept face of its near-duplicate group", bySeries((f) => f[6], (f) => reason(f) === "near_duplicate" || reason(f) === "near_identical_shot" || (reason(f) === D.manual && f[6] !== null)), { xlabel: "cosine" });
    const scores = faces.map((f) => f[7]).filter((v) => v !== null);
    const [smin, smax] = extent(scores);
    const varied = scores.length && smax > smin;
    const grid = el("div", { class: "plotgrid" }, el("div", { class: "card" }, q), el("div", { class: "card" }, sims));
    if (varied) grid.append(el("div", { class: "card" }, histogram("Outlier score by decision", bySeries((f) => f[7]), { xlabel: "higher: further from its own identity, nearer others" })));
    sec.append(grid);
    if (!varied) sec.append(el("p", { class: "muted", text: scores.length ? "Outlier scores: every face scored " + fmt(scores[0]) + " (no outliers)." : "No outlier scores (the pass was skipped)." }));
    if (D.plots.similarity) sec.append(heatmapCard(D.plots.similarity));
  }

  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
    [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  function viridis(t) {
    const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
    return VIRIDIS[i].map((c, k) => Math.round(c + (VIRIDIS[i + 1][k] - c) * f));
  }

  function heatmapCard(sim) {
    const K = sim.labels.length;
    const codes = Uint8Array.from(atob(sim.codes), (c) => c.charCodeAt(0));
    const cell = Math.max(1, Math.min(26, Math.floor(760 / K)));
    const labelled = K <= 80;
    let longest = 0;
    for (const l of sim.labels) longest = Math.max(longest, l.length);
    const M = labelled ? Math.min(150, 14 + 6.5 * longest) : 0;
    const size = Math.ceil(M + K * cell);
    const canvas = el("canvas", { width: size, height: size, class: "heat", "aria-label": "identity similarity heat map" });
    const ctx = canvas.getContext("2d");
    const lut = [];
    for (let i = 0; i < 255; i++) lut.push(viridis(i / 254));
    lut.push([214, 218, 224]);
    const img = ctx.createImageData(K * cell, K * cell);
    const W = K * cell;
    for (let r = 0; r < K; r++) for (let c = 0; c < K; c++) {
      const col = lut[codes[r * K + c]];
      for (let dy = 0; dy < cell; dy++) {
        let o = ((r * cell + dy) * W + c * cell) * 4;
        for (let dx = 0; dx < cell; dx++, o += 4) { img.data[o] = col[0]; img.data[o + 1] = col[1]; img.data[o + 2] = col[2]; img.data[o + 3] = 255; }
      }
    }
    ctx.putImageData(img, Math.ceil(M), Math.ceil(M));
    if (labelled) {
      const m0 = Math.ceil(M);
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = "#4b5563";
      ctx.textBaseline = "middle";
      sim.labels.forEach((l, i) => {
        ctx.textAlign = "right";
        ctx.fillText(l, m0 - 5, m0 + i * cell + cell / 2);
        ctx.save();
        ctx.translate(m0 + i * cell + cell / 2, m0 - 5);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(l, 0, 0);
        ctx.restore();
      });
    }
    const tip = el("div", { class: "heat-tip", hidden: true });
    const cellAt = (e) => {
      const rect = canvas.getBoundingClientRect(), k = canvas.width / rect.width;
      const x = (e.clientX - rect.left) * k - Math.ceil(M), y = (e.clientY - rect.top) * k - Math.ceil(M);
      const c = Math.floor(x / cell), r = Math.floor(y / cell);
      return r >= 0 && c >= 0 && r < K && c < K ? [r, c] : null;
    };
    canvas.addEventListener("mousemove", (e) => {
      const hit = cellAt(e);
      if (!hit) { tip.hidden = true; return; }
      const code = codes[hit[0] * K + hit[1]];
      const v = code === 255 ? "no value (one face)" : fmt(sim.lo + code * (sim.hi - sim.lo) / 254, 3);
      tip.textContent = (hit[0] === hit[1] ? sim.labels[hit[0]] + " (within)" : sim.labels[hit[0]] + " × " + sim.labels[hit[1]]) + ": " + v;
      tip.style.left = e.offsetX + 14 + "px";
      tip.style.top = e.offsetY + 10 + "px";
      tip.hidden = false;
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
    canvas.addEventListener("click", (e) => { const hit = cellAt(e); if (hit) { jump(sim.labels[hit[0]]); $("identities").scrollIntoView(); } });
    const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => "rgb(" + viridis(t).join(",") + ") " + t * 100 + "%").join(",");
    const legend = el("div", { class: "heat-legend" }, el("span", { text: fmt(sim.lo, 2) }),
      el("div", { class: "heat-scale", style: "background:linear-gradient(to right," + stops + ")" }), el("span", { text: fmt(sim.hi, 2) }),
      el("span", { class: "muted", text: "mean cosine · point at a cell for the pair, click to open the identity" }));
    return el("div", { class: "card heatmap", style: "margin-top:14px" },
      el("h3", { text: "Identity similarity (" + K + " identities, clustered so confusable ones sit together)" }),
      legend, el("div", { class: "heat-wrap" }, canvas, tip));
  }

  function renderAll() {
    const empty = APP && !D.output;  // the app before any run: only the run form
    for (const id of ["summary", "identities", "cross", "plots"]) $(id).hidden = empty;
    prepare();
    renderSummary();
    renderIdentities();
    renderCross();
    renderPlots();
    renderAppBar();
  }

  // ------------------------------------------------------------------ app (review mode)
  async function api(method, url, body) {
    const post = method !== "GET";
    const headers = post ? { "Content-Type": "application/json", "X-Facesieve-Token": TOKEN } : {};
    const r = await fetch(url, { method, headers, body: post ? JSON.stringify(body || {}) : undefined });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.error) || r.status + " " + r.statusText);
    return data;
  }

  function renderAppBar() {
    if (!APP) return;
    $("appbar").hidden = false;
    $("mode-label").textContent = "review";
    const n = D.n_pending || 0;
    $("pending-label").textContent = n ? n + (n === 1 ? " change" : " changes") + " not applied" : "no pending changes";
    $("apply-btn").disabled = !n || !D.output;
  }

  async function setOverride(path, act) {
    try {
      const res = await api("POST", "api/override", { path, action: act });
      for (const id of D.identities) for (const f of id.faces) f[9] = res.pending[f[0]] || "";
      D.n_pending = res.n_pending;
      const hit = byPath.get(path);
      prepare();
      if (hit && cards.has(hit.id.name)) cards.get(hit.id.name).replaceWith(replaceCard(hit.id));
      renderAppBar();
    } catch (e) { toast("Could not change " + path + ": " + e.message, 6000); }
  }

  async function applyChanges() {
    $("apply-btn").disabled = true;
    $("apply-btn").textContent = "Applying…";
    try {
      const res = await api("POST", "api/apply");
      D = res.data;
      renderAll();
      const r = res.result;
      toast(`Applied: ${r.manual} manual decisions; ${r.written} files written, ${r.removed_stale} removed from the output.`);
    } catch (e) { toast("Apply failed: " + e.message, 8000); }
    $("apply-btn").textContent = "Apply changes";
    renderAppBar();
  }

  function renderProgress(st) {
    const box = $("run-progress");
    box.replaceChildren();
    if (!st || st.state === "idle") return;
    const wrap = el("div", { class: "progress", "data-state": st.state });
    const head = st.state === "running" ? "Running" + (st.stage ? ": " + st.stage : "") + "…"
      : st.state === "done" ? "Finished in " + fmt(st.elapsed, 1) + " s: " + st.out
      : st.state === "failed" ? "Failed: " + st.error : st.state;
    wrap.append(el("div", { class: "state " + st.state, text: head }));
    for (const s of st.stages || []) {
      const pct = s.finished ? 100 : s.total ? Math.min(100, 100 * s.done / s.total) : 0;
      const txt = (s.total ? s.done + " / " + s.total + " · " : "") + fmt(s.seconds, 1) + " s";
      wrap.append(el("div", { class: "stage", "data-stage": s.name }, el("span", { text: s.name }),
        el("div", { class: "track" }, el("div", { class: "fill" + (s.finished ? " done" : ""), style: "width:" + pct + "%" })), el("span", { class: "muted", text: txt })));
    }
    box.append(wrap);
  }

  async function pollRun() {
    let st;
    try { st = await api("GET", "api/run"); } catch (e) { setTimeout(pollRun, 1500); return; }
    renderProgress(st);
    if (st.state === "running") { setTimeout(pollRun, 500); return; }
    $("run-start").disabled = false;
    if (st.state === "done") {
      D = await api("GET", "api/data");
      renderAll();
      toast("Run finished: now showing " + st.out);
    }
  }

  async function startRun(ev) {
    ev.preventDefault();
    const form = ev.target;
    const body = {};
    for (const [k, v] of new FormData(form).entries()) if (v !== "") body[k] = v;
    body.outliers = form.elements.outliers.checked;
    for (const k of ["keep", "jobs"]) if (body[k] !== undefined) body[k] = parseInt(body[k], 10);
    for (const k of ["near_dup_threshold", "cross_id_threshold", "overlap_threshold"]) if (body[k] !== undefined) body[k] = parseFloat(body[k]);
    $("run-start").disabled = true;
    try { await api("POST", "api/run", body); pollRun(); } catch (e) { $("run-start").disabled = false; toast("Could not start: " + e.message, 8000); }
  }

  function setupApp() {
    if (!APP) return;
    $("apply-btn").addEventListener("click", applyChanges);
    $("run-btn").addEventListener("click", () => { $("run-panel").hidden = !$("run-panel").hidden; });
    $("run-close").addEventListener("click", () => { $("run-panel").hidden = true; });
    $("run-form").addEventListener("submit", startRun);
    const f = $("run-form").elements;
    if (D.dataset) f.dataset.value = D.dataset;
    if (D.output) f.out.value = D.output;
    if (D.summary && D.summary.keep_k) f.keep.value = D.summary.keep_k;
    const models = (D.summary && D.summary.models) || {};
    for (const k of ["detector", "embedder", "quality"]) if (models[k] && [...(f[k].options || [{ value: models[k] }])].some((o) => o.value === models[k])) f[k].value = models[k];
    if (!D.output) $("run-panel").hidden = false;
    api("GET", "api/run").then((st) => { renderProgress(st); if (st.state === "running") { $("run-start").disabled = true; pollRun(); } }).catch(() => {});
  }

  // ------------------------------------------------------------------ wiring
  let timer = null;
  $("search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { ui.q = e.target.value; ui.page = 0; renderIdentities(); }, 120);
  });
  $("filter").addEventListener("change", (e) => { ui.filter = e.target.value; ui.page = 0; renderIdentities(); });
  $("sort").addEventListener("change", (e) => { ui.sort = e.target.value; ui.page = 0; renderIdentities(); });
  $("viewer").addEventListener("click", () => { $("viewer").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("viewer").hidden = true; });
  renderAll();
  setupApp();
  document.body.setAttribute("data-ready", "1");
})();
