// The facestream console: the identity API's own client. The token lives in this tab's sessionStorage and travels
// only in the Authorization header: never in a link, so pictures are fetched with it and shown from blob: URLs.
"use strict";

const PAGE = 48;
const SEEN_PAGE = 20;
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
const state = {
  offset: 0, total: 0, name: "", selected: new Set(), faces: new Set(), shown: "", pictures: new Map(), seen: SEEN_PAGE,
};

const token = () => sessionStorage.getItem("facestream.token") || "";
const space = () => sessionStorage.getItem("facestream.space") || "default";
const base = () => `/v1/spaces/${encodeURIComponent(space())}`;

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, body) {
  const init = { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(base() + path, init);
  if (response.status === 401) { signOut("The token was refused."); throw new ApiError(401, "signed out"); }
  const data = await response.json();
  if (!response.ok) throw new ApiError(response.status, data.error || response.statusText);
  return data;
}

function say(text) {
  $("status").textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { $("status").textContent = ""; }, 6000);
}

// A face's picture as a blob: URL (fetched once with the token); null when the face has none.
async function picture(faceId) {
  if (!state.pictures.has(faceId)) {
    state.pictures.set(faceId, (async () => {
      const response = await fetch(`${base()}/faces/${encodeURIComponent(faceId)}/thumbnail`, {
        headers: { Authorization: `Bearer ${token()}` }, cache: "no-store",
      });
      return response.ok ? URL.createObjectURL(await response.blob()) : null;
    })());
  }
  return state.pictures.get(faceId);
}

function faceImage(faceId, alt) {
  const holder = document.createElement("div");
  holder.className = "blank";
  holder.setAttribute("role", "img");
  holder.setAttribute("aria-label", `${alt} (no picture)`);
  if (!faceId) return holder;
  picture(faceId).then((url) => {
    if (!url) return;
    const img = document.createElement("img");
    img.src = url;
    img.alt = alt;
    img.dataset.face = faceId;
    holder.replaceWith(img);
  });
  return holder;
}

// Capture times are Unix seconds; a recording's are positions in the file, shown as minutes and seconds.
const when = (seconds) => (seconds >= 1e9
  ? new Date(seconds * 1000).toLocaleString()
  : `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, "0")} into the recording`);
const titleOf = (identity) => identity.name || `Identity ${identity.id}`;

function card(identity, selectable) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.id = identity.id;
  const link = document.createElement("a");
  link.href = `#/identity/${identity.id}`;
  link.className = "title";
  link.textContent = titleOf(identity);
  const facts = document.createElement("span");
  facts.className = "facts";
  facts.textContent = `${identity.size} face${identity.size === 1 ? "" : "s"} · ${identity.cameras.join(", ") || "no camera"}`
    + ` · last seen ${when(identity.last_seen)}`;
  item.append(faceImage(identity.representatives[0], titleOf(identity)), link, facts);
  if (selectable) {
    const pick = document.createElement("label");
    pick.className = "pick";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = state.selected.has(identity.id);
    box.setAttribute("aria-label", `Select ${titleOf(identity)} to merge`);
    box.addEventListener("change", () => {
      if (box.checked) state.selected.add(identity.id); else state.selected.delete(identity.id);
      item.classList.toggle("selected", box.checked);
      $("merge").disabled = state.selected.size < 2;
    });
    item.classList.toggle("selected", box.checked);
    pick.append(box, "Select");
    item.append(pick);
  }
  return item;
}

async function showIdentities(quiet) {
  const query = `?limit=${PAGE}&offset=${state.offset}` + (state.name ? `&name=${encodeURIComponent(state.name)}` : "");
  const data = await api(`/identities${query}`);
  const seen = JSON.stringify(data);
  if (quiet && seen === state.shown) return;
  state.shown = seen;
  state.total = data.total;
  $("identities-title").textContent = state.name ? `Identities named like “${state.name}”` : "Identities";
  $("identities-count").textContent = `${data.total} in space ${data.space}`;
  $("grid").replaceChildren(...data.identities.map((identity) => card(identity, true)));
  const pages = Math.max(1, Math.ceil(data.total / PAGE));
  $("page-label").textContent = `Page ${Math.floor(state.offset / PAGE) + 1} of ${pages}`;
  $("previous").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= data.total;
  $("merge").disabled = state.selected.size < 2;
}

async function showIdentity(id, quiet) {
  const data = await api(`/identities/${id}`);
  const identity = data.identity;
  const camera = $("seen-camera").value;
  const where = camera ? `&camera=${encodeURIComponent(camera)}` : "";
  const timeline = await api(`/identities/${identity.id}/appearances?limit=${state.seen}${where}`);
  const seen = JSON.stringify([data, timeline]);
  if (quiet && seen === state.shown) return;
  state.shown = seen;
  if (String(identity.id) !== String(id)) { location.hash = `#/identity/${identity.id}`; return; }  // merged away
  $("identity-title").textContent = titleOf(identity);
  $("identity-facts").textContent = `${identity.size} faces · cameras: ${identity.cameras.join(", ") || "none"}`
    + ` · first seen ${when(identity.first_seen)} · last seen ${when(identity.last_seen)}`;
  if (document.activeElement !== $("label")) $("label").value = identity.name || "";
  state.faces = new Set([...state.faces].filter((face) => identity.representatives.includes(face)));
  $("faces").replaceChildren(...identity.representatives.map((face) => faceCard(identity, face)));
  $("split").disabled = state.faces.size === 0;
  showCameras(identity.cameras, camera);
  showTimeline(timeline);
}

function showCameras(cameras, chosen) {
  if (document.activeElement === $("seen-camera")) return;  // not under the hand of someone choosing
  const options = [new Option("All cameras", ""), ...cameras.map((camera) => new Option(camera, camera))];
  $("seen-camera").replaceChildren(...options);
  $("seen-camera").value = cameras.includes(chosen) ? chosen : "";
}

// Where and when the person was seen: one line per appearance, newest first.
function showTimeline(timeline) {
  $("seen-count").textContent = `${timeline.total} appearance${timeline.total === 1 ? "" : "s"}`;
  $("seen").replaceChildren(...timeline.appearances.map((appearance) => {
    const item = document.createElement("li");
    item.dataset.track = appearance.track;
    const text = document.createElement("span");
    const still = appearance.ended ? "" : " (still in view)";
    text.textContent = `${appearance.camera}: ${when(appearance.first_seen)} – ${when(appearance.last_seen)}`
      + ` · ${appearance.faces} face${appearance.faces === 1 ? "" : "s"}${still}`;
    item.append(faceImage(appearance.best_face, `Best face at ${appearance.camera}`), text);
    return item;
  }));
  $("seen-more").hidden = timeline.appearances.length >= timeline.total;
}

function faceCard(identity, face) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.face = face;
  const pick = document.createElement("label");
  pick.className = "pick";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = state.faces.has(face);
  box.setAttribute("aria-label", `Select face ${face}`);
  box.addEventListener("change", () => {
    if (box.checked) state.faces.add(face); else state.faces.delete(face);
    item.classList.toggle("selected", box.checked);
    $("split").disabled = state.faces.size === 0;
  });
  pick.append(box, "Select");
  const reject = document.createElement("button");
  reject.type = "button";
  reject.textContent = "Not this person";
  reject.addEventListener("click", () => send({ type: "reject", face, cluster: identity.id }, "Face rejected"));
  const facts = document.createElement("span");
  facts.className = "facts";
  facts.textContent = face;
  item.append(faceImage(face, `Face ${face}`), facts, pick, reject);
  item.classList.toggle("selected", box.checked);
  return item;
}

async function send(command, done) {
  try {
    const answer = await api("/commands", command);
    say(`${done}: sent as ${answer.command_id}`);
    state.shown = "";
    setTimeout(() => refresh(true), 1500);
    return true;
  } catch (error) {
    if (error.status !== 401) say(`Not sent: ${error.message}`);
    return false;
  }
}

function currentId() {
  const match = location.hash.match(/^#\/identity\/(\d+)$/);
  return match ? Number(match[1]) : null;
}

function show(section) {
  for (const name of ["login", "identities", "identity", "matches"]) $(name).hidden = name !== section;
  $("find").hidden = section === "login";
}

async function refresh(quiet) {
  if (!token()) { show("login"); return; }
  const id = currentId();
  try {
    if (location.hash === "#/matches") { show("matches"); return; }
    if (id !== null) { show("identity"); await showIdentity(id, quiet); return; }
    show("identities");
    await showIdentities(quiet);
  } catch (error) {
    if (error.status === 404 && id !== null) { say("That identity is gone."); location.hash = "#/"; return; }
    if (error.status !== 401 && !quiet) say(`Could not load: ${error.message}`);
  }
}

function signOut(message) {
  sessionStorage.removeItem("facestream.token");
  for (const url of state.pictures.values()) url.then((u) => u && URL.revokeObjectURL(u));
  state.pictures.clear();
  state.shown = "";
  $("login-error").textContent = message || "";
  show("login");
}

async function searchByPhoto(file) {
  $("match-list").replaceChildren();
  say("Searching…");
  const image = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  try {
    const data = await api("/search", { image, k: 12 });
    location.hash = "#/matches";
    show("matches");
    $("match-list").replaceChildren(...data.matches.map((match) => {
      const item = card(match.identity, false);
      const score = document.createElement("span");
      score.className = "facts";
      score.textContent = `similarity ${match.similarity.toFixed(3)}`;
      item.append(score);
      return item;
    }));
    say(`${data.matches.length} identities found`);
  } catch (error) {
    if (error.status !== 401) say(`Search failed: ${error.message}`);
  }
}

function wire() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem("facestream.token", $("token").value.trim());
    $("token").value = "";
    $("login-error").textContent = "";
    state.shown = "";
    if (!location.hash) location.hash = "#/";
    await refresh(false);
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("find").addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = $("space").value.trim() || "default";
    if (wanted !== space()) { state.pictures.clear(); state.selected.clear(); }
    sessionStorage.setItem("facestream.space", wanted);
    state.name = $("name-query").value.trim();
    state.offset = 0;
    state.shown = "";
    if (location.hash !== "#/") location.hash = "#/"; else refresh(false);
  });
  $("photo").addEventListener("change", () => {
    const file = $("photo").files[0];
    $("photo").value = "";  // so that choosing the same photo again searches again
    if (file) searchByPhoto(file);
  });
  $("previous").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(false); });
  $("next").addEventListener("click", () => { state.offset += PAGE; refresh(false); });
  $("merge").addEventListener("click", async () => {
    if (await send({ type: "merge", clusters: [...state.selected] }, "Merge")) state.selected.clear();
  });
  $("label-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("label").value.trim();
    if (name) send({ type: "label", cluster: currentId(), name }, "Name saved");
  });
  $("clear-label").addEventListener("click", () => send({ type: "label", cluster: currentId(), name: null }, "Name cleared"));
  $("split").addEventListener("click", async () => {
    if (await send({ type: "split", faces: [...state.faces] }, "Split")) state.faces.clear();
  });
  $("forget").addEventListener("click", () => {
    const id = currentId();
    $("confirm-text").textContent = `Forget identity ${id}? Every face of it, its pictures and its embeddings are `
      + "erased for good, and it can no longer be found by search.";
    $("confirm").returnValue = "";
    $("confirm").showModal();
  });
  $("confirm").addEventListener("close", async () => {
    if ($("confirm").returnValue !== "ok") return;
    if (await send({ type: "forget", cluster: currentId() }, "Forget")) location.hash = "#/";
  });
  $("seen-camera").addEventListener("change", () => { state.seen = SEEN_PAGE; state.shown = ""; refresh(false); });
  $("seen-more").addEventListener("click", () => { state.seen += SEEN_PAGE; state.shown = ""; refresh(false); });
  window.addEventListener("hashchange", () => { state.seen = SEEN_PAGE; state.shown = ""; refresh(false); });
  $("space").value = space();
  setInterval(() => { if (!document.hidden) refresh(true); }, REFRESH_MS);
  refresh(false);
}

wire();
