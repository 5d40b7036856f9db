// The gallery: sign in, generate, and watch one's videos live. A client of the public
// GraphQL API only (HTTP for queries and mutations, graphql-transport-ws for videoUpdates).
//
// Live updates never miss a change: the first page is loaded, then `videoUpdates` is
// subscribed with `after` = the newest eventCursor seen so far, so whatever changed in
// between is replayed; every later event moves that cursor on, and each reconnect
// subscribes again from it. A card only ever takes a newer version of its video.

import { ApiError, GRAPHQL_PATH, getToken, gql, setToken } from "./api.js";
import { Card } from "./cards.js";
import * as documents from "./documents.js";
import { GenerateForm } from "./generate.js";
import { LiveConnection } from "./live.js";

const PAGE_SIZE = 12;
const SEARCH_DELAY_MS = 300;
const RESUBSCRIBE_MS = 1500;
const LIVE_LABELS = {
  connecting: "Connecting…",
  live: "● Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

const $ = (id) => document.getElementById(id);

const state = {
  cards: new Map(), // global id -> Card, in page order in #cards
  filter: {},
  endCursor: null,
  hasNext: false,
  loading: false,
  generation: 0, // bumped by every reset, so an older page answer is dropped
  cursor: null, // the newest eventCursor seen: where a (re)subscription resumes
  live: null,
  unsubscribe: null,
  wasLive: false,
  moreVisible: false, // the "Load more" button is on (or near) the screen
};

// --- messages --------------------------------------------------------------------------

function showError(error) {
  const text = error instanceof ApiError ? error.display : String(error && error.message ? error.message : error);
  $("alert-text").textContent = text;
  $("alert").hidden = false;
}

function clearError() {
  $("alert").hidden = true;
  $("alert-text").textContent = "";
}

$("alert-close").addEventListener("click", clearError);
window.addEventListener("unhandledrejection", (event) => showError(event.reason));
window.addEventListener("error", (event) => showError(event.error || event.message));

function setPageState(name) {
  document.body.dataset.state = name;
  $("loading").hidden = name !== "loading";
  $("auth").hidden = name !== "signed-out";
  $("studio").hidden = name !== "signed-in";
  $("sign-out").hidden = name !== "signed-in";
}

// --- signing in and out ----------------------------------------------------------------

function showSignIn(message) {
  stopLive();
  state.cursor = null; // the next user's feed starts from their own first page
  clearCards();
  $("viewer-email").textContent = "";
  setPageState("signed-out");
  $("register").hidden = document.body.dataset.signupEnabled !== "true";
  if (message) showError(message);
  $("auth-email").focus();
}

$("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const register = event.submitter && event.submitter.value === "register";
  const input = { email: form.elements.email.value.trim(), password: form.elements.password.value };
  if (!input.email || !input.password) {
    showError(new Error("Enter your email and password."));
    (input.email ? form.elements.password : form.elements.email).focus();
    return;
  }
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const data = await gql(register ? documents.REGISTER : documents.LOGIN, { input });
    const payload = register ? data.register : data.login;
    setToken(payload.token);
    form.elements.password.value = "";
    clearError();
    await start();
  } catch (error) {
    showError(error);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
});

$("sign-out").addEventListener("click", async () => {
  try {
    await gql(documents.LOGOUT);
  } catch {
    // The token is dropped from this tab either way.
  }
  setToken(null);
  clearError();
  showSignIn();
});

// --- start -------------------------------------------------------------------------------

const generateForm = new GenerateForm($("generate-form"), {
  onCreated: (video) => {
    clearError();
    if (!place(video)) showError(new Error("Your video was created; the filters hide it."));
  },
  onError: showError,
});

async function start() {
  setPageState("loading");
  let data;
  try {
    data = await gql(documents.START);
  } catch (error) {
    if (error.code === "UNAUTHENTICATED") {
      setToken(null);
      showSignIn(error);
      return;
    }
    throw error;
  }
  if (!data.viewer) {
    setToken(null);
    showSignIn(new ApiError("Your session has ended: sign in again.", "UNAUTHENTICATED"));
    return;
  }
  $("viewer-email").textContent = data.viewer.email;
  const projects = data.projects.edges.map((e) => e.node);
  const stories = data.stories.edges.map((e) => e.node);
  generateForm.setChoices({ providers: data.providers, projects, stories });
  fillFilterChoices(projects, data.tags);
  setPageState("signed-in");
  await loadVideos({ reset: true });
  startLive();
}

// --- the list ----------------------------------------------------------------------------

function fillFilterChoices(projects, tags) {
  const project = $("filter-project");
  project.replaceChildren(new Option("All", ""), ...projects.map((p) => new Option(p.name, p.id)));
  const tag = $("filter-tag");
  tag.replaceChildren(new Option("All", ""), ...tags.map((t) => new Option(t.name, t.name)));
}

function knowTags(video) {
  const select = $("filter-tag");
  const known = new Set([...select.options].map((o) => o.value.toLowerCase()));
  for (const t of video.tags) {
    if (!known.has(t.name.toLowerCase())) select.append(new Option(t.name, t.name));
  }
}

function readFilter() {
  const form = $("filters").elements;
  const filter = {};
  if (form.status.value) filter.status = [form.status.value];
  if (form.projectId.value) filter.projectId = form.projectId.value;
  if (form.tag.value) filter.tag = form.tag.value;
  if (form.search.value.trim()) filter.search = form.search.value.trim();
  if (form.includeDeleted.checked) filter.includeDeleted = true;
  return filter;
}

/** The server's filter, for a video that arrived live. */
function matches(video) {
  const f = state.filter;
  if (video.deletedAt && !f.includeDeleted) return false;
  if (f.status && !f.status.includes(video.status)) return false;
  if (f.projectId && !(video.project && video.project.id === f.projectId)) return false;
  if (f.tag && !video.tags.some((t) => t.name.toLowerCase() === f.tag.toLowerCase())) return false;
  if (f.search) {
    const needle = f.search.toLowerCase();
    const hay = `${video.prompt}\n${video.caption || ""}`.toLowerCase();
    if (!hay.includes(needle)) return false;
  }
  return true;
}

function seen(video) {
  if (video.eventCursor && (state.cursor === null || Number(video.eventCursor) > Number(state.cursor))) {
    state.cursor = video.eventCursor;
  }
}

function clearCards() {
  state.cards.clear();
  $("cards").replaceChildren();
  updateCount();
}

function updateCount() {
  const n = state.cards.size;
  $("empty").hidden = n > 0 || state.loading;
  $("more").hidden = !state.hasNext;
  $("count").textContent = n ? `${n} shown${state.hasNext ? " · scroll for more" : ""}` : "";
}

const newer = (a, b) => Date.parse(a.createdAt) > Date.parse(b.createdAt);

/** Show a video's latest state: update its card, add one where it belongs (newest first),
 * or remove one that the filters no longer match. True when the video is shown. */
function place(video) {
  seen(video);
  knowTags(video);
  const card = state.cards.get(video.id);
  if (card) {
    if (!card.update(video)) return true;
    if (!matches(card.video)) {
      card.root.remove();
      state.cards.delete(video.id);
      updateCount();
      return false;
    }
    return true;
  }
  if (!matches(video)) return false;
  const before = firstOlder(video);
  if (!before && state.hasNext) return false; // it belongs to a page not loaded yet
  addCard(video, before);
  updateCount();
  return true;
}

/** The card that a card for ``video`` goes before: the newest of those older than it (the
 * cards are shown newest first; the map's order is the order they were added in). */
function firstOlder(video) {
  let found = null;
  for (const c of state.cards.values()) {
    if (newer(video, c.video) && (!found || newer(c.video, found.video))) found = c;
  }
  return found;
}

function addCard(video, before) {
  const fresh = new Card(video, { onAction: act, onOpen: openPlayer });
  state.cards.set(video.id, fresh);
  $("cards").insertBefore(fresh.root, before ? before.root : null);
}

async function loadVideos({ reset }) {
  if (state.loading && !reset) return;
  const generation = reset ? ++state.generation : state.generation;
  if (reset) {
    state.filter = readFilter();
    state.endCursor = null;
    state.hasNext = false;
    clearCards();
  }
  state.loading = true;
  try {
    const data = await gql(documents.VIDEOS, {
      first: PAGE_SIZE,
      after: state.endCursor,
      filter: state.filter,
    });
    if (generation !== state.generation) return;
    const page = data.videos;
    state.endCursor = page.pageInfo.endCursor;
    state.hasNext = page.pageInfo.hasNextPage;
    for (const { node } of page.edges) {
      const card = state.cards.get(node.id);
      if (card) card.update(node);
      else {
        seen(node);
        knowTags(node);
        // Not always at the end: a video that arrived live while this page was loading
        // already has its card, and may be older than some of the page's videos.
        addCard(node, firstOlder(node));
      }
    }
  } catch (error) {
    showError(error);
  } finally {
    if (generation === state.generation) state.loading = false;
    updateCount();
  }
  // A tall screen may show the whole page with room to spare: keep loading.
  if (generation === state.generation && state.hasNext && state.moreVisible) loadVideos({ reset: false });
}

let searchTimer = null;
$("filters").addEventListener("submit", (event) => event.preventDefault());
$("filters").addEventListener("change", (event) => {
  if (event.target.name !== "search") loadVideos({ reset: true });
});
$("filter-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadVideos({ reset: true }), SEARCH_DELAY_MS);
});

$("more").addEventListener("click", () => loadVideos({ reset: false }));
new IntersectionObserver((entries) => {
  state.moreVisible = entries.some((e) => e.isIntersecting);
  if (state.moreVisible && state.hasNext && !state.loading) loadVideos({ reset: false });
}, { rootMargin: "300px" }).observe($("more"));

// --- card actions and the player ---------------------------------------------------------

async function act(name, card) {
  card.setBusy(true);
  try {
    const data = await gql(documents.ACTIONS[name], { id: card.id });
    clearError();
    const video = Object.values(data)[0];
    const next = card.root.nextElementSibling || card.root.previousElementSibling;
    if (!place(video) && next) next.querySelector("button:not([hidden])")?.focus();
  } catch (error) {
    showError(error);
  } finally {
    card.setBusy(false);
  }
}

function openPlayer(card) {
  const v = card.video;
  const dialog = $("player");
  const video = $("player-video");
  $("player-title").textContent = v.prompt;
  video.src = v.videoUrl;
  if (v.thumbnailUrl) video.poster = v.thumbnailUrl;
  const download = $("player-download");
  download.href = v.videoUrl;
  download.setAttribute("download", `vidgen-${v.id}.${(v.outputFormat || "mp4").toLowerCase()}`);
  dialog.showModal();
  video.play().catch(() => {}); // autoplay may be refused: the controls are there
}

$("player-close").addEventListener("click", () => $("player").close());
$("player").addEventListener("close", () => {
  const video = $("player-video");
  video.pause();
  video.removeAttribute("src");
  video.removeAttribute("poster");
  video.load();
});

// --- live updates ------------------------------------------------------------------------

function setLiveState(name) {
  const label = $("live-state");
  label.dataset.live = name;
  label.textContent = LIVE_LABELS[name] || name;
  if (name === "live" && state.wasLive && state.cursor === null) {
    // Nothing to resume from (no video had an event yet): read the list again instead.
    loadVideos({ reset: true });
  }
  if (name === "live") state.wasLive = true;
}

function subscribeLive() {
  state.unsubscribe = state.live.subscribe(
    documents.LIVE,
    () => (state.cursor === null ? {} : { after: state.cursor }),
    {
      next: (payload) => {
        if (payload.errors && payload.errors.length) showError(ApiError.fromGraphQL(payload.errors[0]));
        if (payload.data && payload.data.videoUpdates) place(payload.data.videoUpdates);
      },
      error: (errors) => {
        const error = ApiError.fromGraphQL(errors && errors[0]);
        if (error.code === "UNAUTHENTICATED") {
          setToken(null);
          showSignIn(error);
          return;
        }
        showError(error);
        setTimeout(() => state.live && subscribeLive(), RESUBSCRIBE_MS);
      },
      complete: () => setTimeout(() => state.live && subscribeLive(), RESUBSCRIBE_MS),
    },
  );
}

function startLive() {
  stopLive();
  const url = new URL(GRAPHQL_PATH, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  state.wasLive = false;
  state.live = new LiveConnection(url.href, getToken, {
    onState: setLiveState,
    onAuthFailure: () => {
      setToken(null);
      showSignIn(new ApiError("Your session has ended: sign in again.", "UNAUTHENTICATED"));
    },
  });
  subscribeLive();
}

function stopLive() {
  if (state.live) state.live.close();
  state.live = null;
}

// --- boot --------------------------------------------------------------------------------

if (getToken()) {
  start().catch((error) => {
    setPageState("signed-out");
    showError(error);
  });
} else {
  showSignIn();
}
