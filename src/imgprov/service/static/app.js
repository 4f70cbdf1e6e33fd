// The imgprov page: send an image to /v1/search, show the originals found and, for the chosen
// one, the comparison (verdict, heatmap, changed regions, aligned original) and its metadata.
// The comparison is asked of /v1/compare when a match is shown, naming the query by the
// `query_token` the search returned (the file is sent again only when the server no longer keeps it).
// Everything server-given is inserted as text, never as HTML.
"use strict";

const VERDICT_LABELS = {
  benign: "Benign copy",
  manipulated: "Manipulated",
  distinct: "Distinct image",
};
const SVG = "http://www.w3.org/2000/svg";

const page = {
  file: null,
  result: null,
  request: 0,
  comparisons: new Map(),
  thumbnails: new Map(),
};

const byId = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function percent(value) {
  return `${(100 * value).toFixed(value >= 0.995 || value <= 0.005 ? 0 : 1)} %`;
}

function bytes(size) {
  if (size >= 1 << 20) return `${(size / (1 << 20)).toFixed(1)} MiB`;
  if (size >= 1 << 10) return `${(size / (1 << 10)).toFixed(0)} KiB`;
  return `${size} bytes`;
}

function authHeaders() {
  const token = byId("token-input").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if ((response.headers.get("content-type") || "").includes("json")) {
      message = (await response.json()).error || message;
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

function setStatus(text, kind) {
  const status = byId("status");
  status.textContent = text;
  status.dataset.kind = kind;
}

async function showCollection() {
  try {
    const health = await (await api("/v1/health")).json();
    const count = health.images === undefined
      ? "Searching this collection needs the token"
      : `${health.images} original${health.images === 1 ? "" : "s"} in the collection`;
    byId("collection-status").textContent = count;
    byId("token-box").hidden = health.open_search;
  } catch (error) {
    byId("collection-status").textContent = `The service is not reachable: ${error.message}`;
  }
}

async function checkImage(file) {
  if (!file) return;
  const request = ++page.request;
  page.file = file;
  page.result = null;
  page.comparisons.clear();
  for (const id of ["results", "detail", "votes"]) byId(id).hidden = true;
  setStatus(`Looking for the originals of ${file.name || "the pasted image"}…`, "busy");
  const form = new FormData();
  form.append("file", file, file.name || "pasted-image");
  try {
    const response = await api("/v1/search?pictures=true", { method: "POST", body: form });
    const result = await response.json();
    if (request !== page.request) return;
    page.result = result;
    showResults(result);
  } catch (error) {
    if (request === page.request) setStatus(error.message, "error");
  }
}

function showResults(result) {
  const count = result.matches.length;
  const seconds = Object.values(result.timings).reduce((sum, value) => sum + value, 0);
  byId("results-title").textContent = count
    ? `${count} original${count === 1 ? "" : "s"} found in ${result.query}`
    : `No original of ${result.query} in the collection`;
  setStatus(
    count
      ? `Searched in ${seconds.toFixed(1)} s. Choose an original to see what was changed.`
      : "None of the originals in this collection appears in the image.",
    count ? "done" : "empty",
  );
  const grid = byId("match-grid");
  grid.replaceChildren(...result.matches.map(matchCard));
  byId("results").hidden = false;
  byId("vote-map").src = result.pictures.vote_map;
  byId("votes").hidden = false;
  if (count) chooseMatch(result.matches[0].id);
}

function matchCard(match) {
  const item = element("li");
  const button = element("button", null, "match");
  button.type = "button";
  button.dataset.id = match.id;
  button.dataset.testid = "match";
  button.setAttribute("aria-pressed", "false");
  const thumb = element("img", null, "thumb");
  thumb.alt = "";
  showThumbnail(thumb, match.id);
  const role = element("span", match.role, `role role-${match.role}`);
  role.dataset.testid = "role";
  const name = element("span", match.name, "name");
  name.dataset.testid = "match-name";
  const facts = element("dl", null, "facts-inline");
  for (const [label, value] of [
    ["match", percent(match.score)],
    ["inliers", match.inliers],
    ["covers", percent(match.coverage)],
  ]) {
    const pair = element("div");
    pair.append(element("dt", label), element("dd", value));
    facts.append(pair);
  }
  button.append(thumb, element("span", `#${match.rank}`, "rank"), name, role, facts);
  button.addEventListener("click", () => chooseMatch(match.id));
  item.append(button);
  return item;
}

async function showThumbnail(image, id) {
  try {
    if (!page.thumbnails.has(id)) {
      const blob = await (await api(`/v1/images/${id}/thumbnail`)).blob();
      page.thumbnails.set(id, URL.createObjectURL(blob));
    }
    image.src = page.thumbnails.get(id);
  } catch (error) {
    image.alt = "no thumbnail";
  }
}

async function chooseMatch(id) {
  const result = page.result;
  const match = result.matches.find((candidate) => candidate.id === id);
  for (const button of document.querySelectorAll("button.match")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.id) === id));
  }
  try {
    const comparison = await comparisonWith(id);
    if (page.result !== result) return;
    showDetail(match, comparison);
  } catch (error) {
    if (page.result === result) setStatus(`Comparison with ${match.name} failed: ${error.message}`, "error");
  }
}

async function comparisonWith(id) {
  if (!page.comparisons.has(id)) {
    setStatus("Comparing with this original…", "busy");
    page.comparisons.set(id, await compareWith(id, page.result.query_token));
    setStatus("", "done");
  }
  return page.comparisons.get(id);
}

async function compareWith(id, token) {
  const form = new FormData();
  if (token) form.append("query_token", token);
  else form.append("query", page.file, page.file.name || "pasted-image");
  form.append("original_id", String(id));
  try {
    const response = await api("/v1/compare?pictures=true", { method: "POST", body: form });
    return await response.json();
  } catch (error) {
    if (token && error.status === 404 && /query_token/.test(error.message)) return compareWith(id, null);
    throw error;
  }
}

function showDetail(match, comparison) {
  byId("detail-title").textContent = `${match.name}: the ${match.role} of this image`;
  showVerdict(comparison);
  byId("query-picture").src = comparison.pictures.query;
  byId("heatmap-picture").src = comparison.pictures.heatmap;
  byId("aligned-picture").src = comparison.pictures.aligned_original;
  applyOpacity();
  drawOutline(comparison);
  showMetadata(match);
  showProvenance(match.provenance);
  showRegions(match.regions);
  byId("detail").hidden = false;
}

function showVerdict(comparison) {
  const verdict = byId("verdict");
  verdict.replaceChildren(
    element("strong", VERDICT_LABELS[comparison.verdict] || comparison.verdict),
    element("span", ` · probability ${percent(comparison.probability)}`),
    element("span", ` · ${comparison.regions.length} changed region${comparison.regions.length === 1 ? "" : "s"}`),
  );
  verdict.dataset.verdict = comparison.verdict;
  const bars = byId("probabilities");
  bars.replaceChildren();
  for (const [name, value] of Object.entries(comparison.probabilities)) {
    const meter = element("meter");
    meter.min = 0;
    meter.max = 1;
    meter.value = value;
    const row = element("label", null, "bar");
    row.append(element("span", name), meter, element("span", percent(value)));
    bars.append(row);
  }
}

function drawOutline(comparison) {
  const svg = byId("outline");
  svg.setAttribute("viewBox", `0 0 ${comparison.width || page.result.width} ${comparison.height || page.result.height}`);
  svg.replaceChildren();
  for (const polygon of comparison.outline) {
    const shape = document.createElementNS(SVG, "polygon");
    shape.setAttribute("points", polygon.map(([x, y]) => `${x},${y}`).join(" "));
    shape.setAttribute("class", "changed");
    svg.append(shape);
  }
  comparison.regions.forEach((region, index) => {
    const [x0, y0, x1, y1] = region.box;
    const box = document.createElementNS(SVG, "rect");
    for (const [name, value] of [["x", x0], ["y", y0], ["width", x1 - x0], ["height", y1 - y0]]) {
      box.setAttribute(name, value);
    }
    box.setAttribute("class", "region");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `changed region ${index + 1}: score ${region.score.toFixed(2)}`;
    box.append(title);
    svg.append(box);
  });
}

function applyOpacity() {
  byId("heatmap-picture").style.opacity = String(byId("opacity").value / 100);
}

function showMetadata(match) {
  const original = match.original;
  const list = byId("original-metadata");
  list.replaceChildren();
  if (!original) {
    list.append(element("dd", "This original is no longer in the collection."));
    return;
  }
  showThumbnail(byId("original-thumbnail"), original.id);
  const rows = [
    ["file", original.name],
    ["size", `${original.width} × ${original.height} px, ${original.format}, ${bytes(original.size_bytes)}`],
    ["sha256", original.sha256],
    ["modified", new Date(original.mtime * 1000).toLocaleString()],
    ["indexed", new Date(original.indexed_at * 1000).toLocaleString()],
    ["image id", original.id],
  ];
  for (const [label, value] of rows) list.append(element("dt", label), element("dd", value));
}

function showProvenance(provenance) {
  const box = byId("provenance");
  box.replaceChildren();
  if (provenance === undefined || provenance === null) {
    box.append(element("p", "No provenance information (C2PA) for this original.", "muted"));
    return;
  }
  box.append(describe(provenance));
}

function describe(value) {
  if (Array.isArray(value)) {
    const list = element("ol");
    for (const item of value) {
      const entry = element("li");
      entry.append(describe(item));
      list.append(entry);
    }
    return list;
  }
  if (value !== null && typeof value === "object") {
    const list = element("dl");
    for (const [key, item] of Object.entries(value)) {
      const definition = element("dd");
      definition.append(describe(item));
      list.append(element("dt", key), definition);
    }
    return list;
  }
  return document.createTextNode(String(value));
}

function showRegions(regions) {
  const list = byId("regions");
  list.replaceChildren(
    ...regions.map((region) => {
      const [x0, y0, x1, y1] = region.query_box.map(Math.round);
      return element("li", `x ${x0}–${x1}, y ${y0}–${y1} of the image · ${region.inliers} keypoints · ${percent(region.score)}`);
    }),
  );
}

function firstImage(items) {
  for (const item of items || []) {
    if (item.kind === "file" && item.type.startsWith("image/")) return item.getAsFile();
  }
  return null;
}

function listen() {
  const zone = byId("drop-zone");
  const input = byId("file-input");
  input.addEventListener("change", () => checkImage(input.files[0]));
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  document.addEventListener("dragleave", () => zone.classList.remove("over"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    checkImage(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.items);
    if (file) checkImage(file);
  });
  byId("opacity").addEventListener("input", applyOpacity);
  const token = byId("token-input");
  token.value = sessionStorage.getItem("imgprov-token") || "";
  token.addEventListener("change", () => {
    sessionStorage.setItem("imgprov-token", token.value.trim());
    showCollection();
  });
}

listen();
showCollection();
