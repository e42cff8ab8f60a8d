// recfit web page: search movies, see similar ones, rate a few, get recommendations.
// Plain DOM, no dependencies; talks only to this server's JSON API.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    ratings: new Map(), // item id (as string) -> {id, title, rating}
    stars: [1, 2, 3, 4, 5],
    searchTimer: null,
    searchAbort: null,
  };

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function label(item) {
    return item.title || `Item ${item.id}`;
  }

  async function api(path, options) {
    let resp;
    try {
      resp = await fetch(path, options);
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new Error("the server cannot be reached");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      const msg = body && body.error ? body.error : `request failed (${resp.status})`;
      const e = new Error(msg);
      e.status = resp.status;
      throw e;
    }
    return body;
  }

  function setStatus(id, text, isError) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  // ---------------------------------------------------------------- rows
  function starGroup(item) {
    const current = state.ratings.get(String(item.id));
    const group = el("div", { class: "stars", role: "group", "aria-label": `Rate ${label(item)}` });
    for (const k of state.stars) {
      const on = current && current.rating >= k;
      group.append(
        el("button", {
          type: "button",
          class: on ? "star on" : "star",
          "aria-label": `${k} star${k === 1 ? "" : "s"}`,
          "aria-pressed": current && current.rating === k ? "true" : "false",
          title: `${k} star${k === 1 ? "" : "s"}`,
          text: "★",
          onclick: () => setRating(item, k),
        })
      );
    }
    return group;
  }

  function movieRow(item, extra) {
    const li = el("li", { class: "movie", dataset: { id: String(item.id) } });
    li._item = item;
    const name = el("button", {
      type: "button",
      class: "title",
      text: label(item),
      "aria-label": `Show movies similar to ${label(item)}`,
      onclick: () => showSimilar(item),
    });
    li.append(name);
    if (extra) li.append(el("span", { class: "score", text: extra }));
    li.append(starGroup(item));
    return li;
  }

  function rerenderStars() {
    // Refresh every star group so that a movie shows the same rating in every list.
    for (const li of document.querySelectorAll("li.movie")) {
      const old = li.querySelector(".stars");
      if (old && li._item) old.replaceWith(starGroup(li._item));
    }
  }

  // ---------------------------------------------------------------- search
  function onSearchInput() {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(runSearch, 250);
  }

  async function runSearch() {
    const query = $("search").value.trim();
    const list = $("search-results");
    if (state.searchAbort) state.searchAbort.abort();
    if (!query) {
      list.replaceChildren();
      setStatus("search-status", "");
      return;
    }
    const ctrl = new AbortController();
    state.searchAbort = ctrl;
    setStatus("search-status", "Searching…");
    try {
      const body = await api(`/items?query=${encodeURIComponent(query)}&n=10`, {
        signal: ctrl.signal,
      });
      if (ctrl.signal.aborted) return;
      list.replaceChildren(
        ...body.items.map((m) => movieRow(m))
      );
      const count = body.items.length;
      setStatus(
        "search-status",
        count ? `${count} movie${count === 1 ? "" : "s"} found` : `No movie matches “${query}”`
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      list.replaceChildren();
      setStatus("search-status", `Search failed: ${err.message}`, true);
    }
  }

  // ---------------------------------------------------------------- similar
  async function showSimilar(item) {
    const list = $("similar");
    setStatus("similar-status", `Finding movies similar to ${label(item)}…`);
    try {
      const body = await api(`/similar?item=${encodeURIComponent(item.id)}&n=10`);
      list.replaceChildren(
        ...body.neighbours.map((s) =>
          movieRow(s, `similarity ${s.score === null ? "–" : s.score.toFixed(2)}`)
        )
      );
      setStatus(
        "similar-status",
        body.neighbours.length
          ? `Movies similar to ${body.title || label(item)}`
          : `No similar movies for ${body.title || label(item)}`
      );
    } catch (err) {
      list.replaceChildren();
      setStatus("similar-status", `Could not load similar movies: ${err.message}`, true);
    }
  }

  // ---------------------------------------------------------------- ratings
  function setRating(item, k) {
    const key = String(item.id);
    const current = state.ratings.get(key);
    if (current && current.rating === k) state.ratings.delete(key); // click again: unrate
    else state.ratings.set(key, { id: item.id, title: item.title || null, rating: k });
    renderRatings();
    rerenderStars();
  }

  function renderRatings() {
    const list = $("ratings");
    const rows = [];
    for (const r of state.ratings.values()) {
      const li = el("li", { class: "movie rated", dataset: { id: String(r.id) } });
      li._item = r;
      li.append(el("span", { class: "rated-title", text: label(r) }));
      li.append(el("span", { class: "score", text: `${r.rating} ★` }));
      li.append(starGroup(r));
      li.append(
        el("button", {
          type: "button",
          class: "remove secondary",
          text: "Remove",
          "aria-label": `Remove rating of ${label(r)}`,
          onclick: () => {
            state.ratings.delete(String(r.id));
            renderRatings();
            rerenderStars();
          },
        })
      );
      rows.push(li);
    }
    list.replaceChildren(...rows);
    const n = state.ratings.size;
    $("ratings-empty").hidden = n > 0;
    $("recommend").disabled = n === 0;
    $("clear").disabled = n === 0;
  }

  // ---------------------------------------------------------------- recommend
  async function recommend() {
    const list = $("recommendations");
    const n = Math.min(100, Math.max(1, parseInt($("rec-n").value, 10) || 10));
    $("rec-n").value = String(n);
    const ratings = [...state.ratings.values()].map((r) => ({ item: r.id, rating: r.rating }));
    setStatus("recs-status", "Computing recommendations…");
    $("recommend").disabled = true;
    try {
      const body = await api("/recommend", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ratings, n }),
      });
      list.replaceChildren(
        ...body.items.map((s) => {
          const extra =
            body.path === "popular"
              ? `${Math.round(s.score)} ratings`
              : body.kind === "score" // a retrieval model's score is not a rating
                ? `score ${s.score === null ? "–" : s.score.toFixed(3)}`
                : `predicted ${s.score === null ? "–" : s.score.toFixed(1)} ★`;
          return movieRow(s, extra);
        })
      );
      const count = ratings.length;
      setStatus(
        "recs-status",
        body.path === "popular"
          ? `Popular movies (${body.reason || "no personal model"})`
          : `Based on your ${count} rating${count === 1 ? "" : "s"}`
      );
    } catch (err) {
      list.replaceChildren();
      setStatus("recs-status", `Could not get recommendations: ${err.message}`, true);
    } finally {
      $("recommend").disabled = state.ratings.size === 0;
    }
  }

  // ---------------------------------------------------------------- start
  async function start() {
    $("search").addEventListener("input", onSearchInput);
    $("search").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        clearTimeout(state.searchTimer);
        runSearch();
      }
    });
    $("recommend").addEventListener("click", recommend);
    $("clear").addEventListener("click", () => {
      state.ratings.clear();
      renderRatings();
      rerenderStars();
    });
    renderRatings();
    try {
      const h = await api("/health");
      if (h.rating_scale) {
        const lo = Math.max(1, Math.ceil(h.rating_scale[0]));
        const hi = Math.min(10, Math.floor(h.rating_scale[1]));
        if (hi >= lo) state.stars = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
      }
      $("model-info").textContent =
        `Model ${h.model} · ${h.n_users.toLocaleString()} users · ` +
        `${h.n_items.toLocaleString()} movies`;
      $("report-link").hidden = !h.report;
    } catch (err) {
      $("model-info").textContent = `Model unavailable: ${err.message}`;
    }
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
