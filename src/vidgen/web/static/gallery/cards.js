// One card per video: built once, then updated in place on every change, so a playing
// video, a focused button or a half-read error message survive live updates.
//
// Test hooks: every card is an element with data-video-id (the global id) and data-status
// (the VideoStatus); a completed card holds a <video> that plays its videoUrl.

const ACTIVE = new Set(["QUEUED", "PROCESSING"]);
const STATUS_LABELS = {
  QUEUED: "Queued",
  PROCESSING: "Processing",
  COMPLETED: "Completed",
  FAILED: "Failed",
  CANCELED: "Canceled",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/** The URL without its signature: signed URLs change on every response while the file
 * stays the same, and reloading a playing <video> for that would stop it. */
function samePath(a, b) {
  if (!a || !b) return a === b;
  const strip = (url) => url.split("?")[0];
  return strip(a) === strip(b);
}

export function formatDuration(seconds) {
  if (seconds == null) return "";
  return seconds >= 10 ? `${Math.round(seconds)} s` : `${Number(seconds.toFixed(1))} s`;
}

export function extensionOf(video) {
  return (video.outputFormat || "MP4").toLowerCase();
}

export class Card {
  /**
   * @param {object} video the Card fragment
   * @param {{onAction: (name: string, card: Card) => void, onOpen: (card: Card) => void}} hooks
   */
  constructor(video, hooks) {
    this.video = video;
    this.hooks = hooks;
    const promptId = `prompt-${CSS.escape(video.id)}`;
    this.root = el("article", { class: "card", "data-video-id": video.id });
    this.media = el("div", { class: "media" });
    this.prompt = el("p", { class: "prompt", id: promptId });
    this.badge = el("span", { class: "badge" });
    this.meta = el("span", { class: "meta" });
    this.progress = el("progress", { max: "1", "aria-label": "Progress" });
    this.note = el("p", { class: "note" });
    this.error = el("p", { class: "error" });
    this.tags = el("ul", { class: "tags", "aria-label": "Tags" });
    this.created = el("p", { class: "created" });
    this.buttons = {};
    const actions = el("div", { class: "actions" });
    const button = (name, label) => {
      const b = el("button", { type: "button", class: `action-${name}`, "aria-describedby": promptId, text: label });
      b.addEventListener("click", () =>
        name === "open" ? this.hooks.onOpen(this) : this.hooks.onAction(name, this),
      );
      this.buttons[name] = b;
      actions.append(b);
    };
    button("open", "Open");
    this.download = el("a", { class: "download button", "aria-describedby": promptId, text: "Download" });
    actions.append(this.download);
    button("cancel", "Cancel");
    button("retry", "Retry");
    button("delete", "Delete");
    button("restore", "Restore");
    this.root.append(
      this.media,
      el(
        "div",
        { class: "body" },
        this.prompt,
        el("p", { class: "status-line" }, this.badge, this.meta),
        this.progress,
        this.note,
        this.error,
        this.tags,
        this.created,
        actions,
      ),
    );
    this.render();
  }

  get id() {
    return this.video.id;
  }

  /** Apply a newer state of the video; older ones (a late event) are ignored. */
  update(video) {
    if (video.version < this.video.version) return false;
    this.video = video;
    this.render();
    return true;
  }

  render() {
    const v = this.video;
    this.root.dataset.status = v.status;
    this.root.classList.toggle("deleted", Boolean(v.deletedAt));
    this.prompt.textContent = v.prompt;
    this.prompt.title = v.prompt;
    this.badge.textContent = STATUS_LABELS[v.status] || v.status;
    this.badge.className = `badge status-${v.status.toLowerCase()}`;
    const bits = [v.provider, formatDuration(v.durationSeconds), v.resolution, v.outputFormat];
    if (v.deletedAt) bits.push("deleted");
    this.meta.textContent = bits.filter(Boolean).join(" · ");

    const active = ACTIVE.has(v.status);
    this.progress.hidden = !active;
    this.progress.value = v.progress || 0;
    this.progress.setAttribute("aria-valuetext", `${Math.round((v.progress || 0) * 100)}%`);
    this.note.hidden = !(active && v.statusMessage);
    this.note.textContent = v.statusMessage || "";
    this.error.hidden = !v.errorMessage || v.status !== "FAILED";
    this.error.textContent = v.errorMessage || "";

    this.tags.replaceChildren(...v.tags.map((t) => el("li", { text: t.name })));
    this.tags.hidden = v.tags.length === 0;
    this.created.textContent = new Date(v.createdAt).toLocaleString();

    const completed = v.status === "COMPLETED" && v.videoUrl;
    this.buttons.open.hidden = !completed;
    this.download.hidden = !completed;
    if (completed) {
      this.download.href = v.videoUrl;
      this.download.setAttribute("download", `vidgen-${v.id}.${extensionOf(v)}`);
    }
    this.buttons.cancel.hidden = !active || Boolean(v.deletedAt);
    this.buttons.retry.hidden = !["FAILED", "CANCELED"].includes(v.status) || Boolean(v.deletedAt);
    this.buttons.delete.hidden = Boolean(v.deletedAt);
    this.buttons.restore.hidden = !v.deletedAt;
    this.renderMedia(completed);
  }

  renderMedia(completed) {
    const v = this.video;
    const current = this.media.firstElementChild;
    if (completed) {
      if (current && current.tagName === "VIDEO" && samePath(current.getAttribute("src"), v.videoUrl)) {
        return;
      }
      const video = el("video", {
        controls: "",
        preload: "none",
        playsinline: "",
        src: v.videoUrl,
        "aria-describedby": this.prompt.id,
      });
      if (v.thumbnailUrl) video.setAttribute("poster", v.thumbnailUrl);
      this.media.replaceChildren(video);
      return;
    }
    if (v.thumbnailUrl) {
      if (current && current.tagName === "IMG" && samePath(current.getAttribute("src"), v.thumbnailUrl)) {
        return;
      }
      this.media.replaceChildren(el("img", { src: v.thumbnailUrl, alt: "", loading: "lazy" }));
      return;
    }
    if (!current || !current.classList.contains("placeholder")) {
      this.media.replaceChildren(el("div", { class: "placeholder", "aria-hidden": "true" }));
    }
    this.media.firstElementChild.textContent = STATUS_LABELS[v.status] || v.status;
  }

  setBusy(busy) {
    for (const b of Object.values(this.buttons)) b.disabled = busy;
  }
}
