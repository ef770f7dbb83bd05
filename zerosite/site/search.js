// Client-side search of the published reports: every word must appear in a project's id or address, or in
// a module's name or title (then only those modules are listed). The index is window.zerositeSearchIndex, set
// by the script before this one. Text from the index is only ever set with textContent, and links are built
// from encoded parts under reports/: nothing from data becomes markup.
"use strict";

(function () {
  const MAX_SHOWN = 100;
  const input = document.getElementById("q");
  const status = document.getElementById("status");
  const results = document.getElementById("results");
  let modules = {};
  let projects = [];

  const normal = (text) => String(text).normalize("NFKC").toLowerCase();
  // Control and bidirectional-override characters are shown as \uXXXX, never obeyed (no reordered text).
  const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  const visible = (text) => text.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  const words = (query) => normal(query).split(/[\s,]+/).filter(Boolean);
  const hashQuery = () => new URLSearchParams(location.hash.slice(1)).get("q") || "";

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The modules of `project` to list for `query`, or null when it does not match.
  function match(project, query) {
    let shown = project.reports.map((_, i) => i);
    for (const word of query) {
      if (project.text.includes(word)) continue;
      shown = shown.filter((i) => project.moduleText[i].includes(word));
      if (shown.length === 0) return null;
    }
    return shown;
  }

  function item(project, shown) {
    const li = element("li");
    li.append(element("h2", "", visible(project.address || project.id)), element("span", "id", project.id));
    const links = element("ul");
    for (const i of shown) {
      const name = project.reports[i];
      const link = element("a", "", visible(`${name} ${modules[name] || ""}`.trim()));
      link.href = `reports/${encodeURIComponent(project.id)}/${encodeURIComponent(name)}.html`;
      const entry = element("li");
      entry.append(link);
      links.append(entry);
    }
    li.append(links);
    return li;
  }

  function render() {
    const query = words(input.value);
    const found = [];
    let total = 0;
    for (const project of projects) {
      const shown = match(project, query);
      if (shown === null) continue;
      total += 1;
      if (found.length < MAX_SHOWN) found.push(item(project, shown));
    }
    results.replaceChildren(...found);
    status.textContent =
      total === 0 ? "찾은 사업이 없습니다." : total > found.length ? `${total}개 사업 중 ${found.length}개 표시` : `${total}개 사업`;
    const hash = input.value ? `#q=${encodeURIComponent(input.value)}` : "";
    if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  }

  function load(data) {
    modules = data.modules && typeof data.modules === "object" ? data.modules : {};
    projects = (Array.isArray(data.projects) ? data.projects : []).map((p) => ({
      id: String(p.id),
      address: String(p.address || ""),
      reports: (Array.isArray(p.reports) ? p.reports : []).map(String),
    }));
    for (const project of projects) {
      project.text = normal(`${project.id} ${project.address}`);
      project.moduleText = project.reports.map((name) => normal(`${name} ${modules[name] || ""}`));
    }
    const initial = hashQuery();
    if (initial) input.value = initial;
    input.disabled = false;
    input.focus();
    render();
    // A #q= link followed, the address bar edited, Back or Forward: the search follows the URL (render's own
    // replaceState fires no hashchange).
    window.addEventListener("hashchange", () => {
      input.value = hashQuery();
      render();
    });
  }

  let timer = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(render, 60);
  });
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    render();
  });

  // The index is a script of its own (assets/index.HASH.js, run just before this one), not fetched: a page opened
  // from disk (file://) may run scripts beside it but not fetch them.
  const data = window.zerositeSearchIndex;
  if (data && typeof data === "object") {
    load(data);
  } else {
    status.textContent = `검색 색인을 불러오지 못했습니다: ${document.getElementById("search-index").getAttribute("src")}`;
  }
})();
