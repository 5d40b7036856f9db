// The generate form: offers only what the chosen provider can do (from the `providers`
// query) and sends `generateVideo`, as a multipart request when an image is attached.

import { gql, gqlUpload } from "./api.js";
import { GENERATE } from "./documents.js";

const DEFAULT_DURATION = 2;

function options(select, values, { selected = null, blank = null } = {}) {
  const nodes = [];
  if (blank !== null) nodes.push(new Option(blank, ""));
  for (const value of values) {
    const [val, label] = Array.isArray(value) ? value : [value, value];
    nodes.push(new Option(label, val, false, val === selected));
  }
  select.replaceChildren(...nodes);
}

export class GenerateForm {
  /**
   * @param {HTMLFormElement} form
   * @param {{onCreated: (video: object) => void, onError: (error: Error) => void}} hooks
   */
  constructor(form, hooks) {
    this.form = form;
    this.hooks = hooks;
    this.providers = [];
    this.stories = [];
    this.field = (name) => form.elements.namedItem(name);
    this.field("provider").addEventListener("change", () => this.applyProvider());
    this.field("model").addEventListener("change", () => this.applyModel());
    this.field("projectId").addEventListener("change", () => this.applyProject());
    this.field("inputImage").addEventListener("change", () => this.previewImage());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  /** Fill the choices from the Start query's answer. */
  setChoices({ providers, projects, stories }) {
    this.providers = providers;
    this.stories = stories;
    const usable = providers.filter((p) => p.available);
    const current = this.field("provider").value || (usable[0] && usable[0].name) || "local";
    options(
      this.field("provider"),
      providers.map((p) => [p.name, p.available ? p.name : `${p.name} (not configured)`]),
      { selected: current },
    );
    for (const option of this.field("provider").options) {
      const info = providers.find((p) => p.name === option.value);
      option.disabled = !info.available;
    }
    options(this.field("projectId"), projects.map((p) => [p.id, p.name]), { blank: "None" });
    this.applyProvider();
    this.applyProject();
  }

  provider() {
    return this.providers.find((p) => p.name === this.field("provider").value);
  }

  /** The chosen model's catalog entry (its presets and durations), else the provider's. */
  limits() {
    const p = this.provider();
    const model = p.models.find((m) => m.name === this.field("model").value);
    return model || p;
  }

  applyProvider() {
    const p = this.provider();
    if (!p) return;
    const modelField = this.form.querySelector("#gen-model-field");
    options(this.field("model"), p.models.map((m) => m.name), { selected: p.defaultModel });
    modelField.hidden = p.models.length < 2;
    options(this.field("outputFormat"), p.outputFormats, { selected: p.outputFormats[0] });
    this.applyModel();
  }

  applyModel() {
    const p = this.provider();
    if (!p) return;
    const limits = this.limits();
    const resolutions = limits.resolutions.length ? limits.resolutions : p.resolutions;
    const resolution = resolutions.includes("512x512")
      ? "512x512"
      : resolutions.includes(p.defaultResolution) ? p.defaultResolution : resolutions[0];
    options(this.field("resolution"), resolutions, { selected: resolution });

    const duration = this.field("durationSeconds");
    const low = limits.minDurationSeconds;
    const high = limits.maxDurationSeconds;
    duration.min = String(low);
    duration.max = String(high);
    const fixed = limits.durations && limits.durations.length ? limits.durations : null;
    const wanted = fixed ? fixed[0] : Math.min(Math.max(DEFAULT_DURATION, low), high);
    const current = Number(duration.value);
    if (!duration.value || current > high || current < low || (fixed && !fixed.includes(current))) {
      duration.value = String(wanted);
    }
    this.applyHints(fixed, low, high);
  }

  applyHints(fixed, low, high) {
    const p = this.provider();
    const image = this.field("inputImage");
    this.form.querySelector("#gen-image-field").hidden = !p.imageToVideo;
    image.disabled = !p.imageToVideo;
    image.required = p.imageToVideo && !p.textToVideo;
    this.form.querySelector('label[for="gen-image"]').textContent =
      image.required ? "Image (required)" : "Image (optional)";
    this.field("prompt").maxLength = p.maxPromptLength;

    const hints = [fixed ? `Durations: ${fixed.join(", ")} s.` : `Duration ${low}–${high} s.`];
    if (p.imageToVideo) hints.push(p.textToVideo ? "Text or image to video." : "Image to video only.");
    this.form.querySelector("#gen-hint").textContent = hints.join(" ");
  }

  applyProject() {
    const project = this.field("projectId").value;
    const stories = this.stories.filter((s) => !project || (s.project && s.project.id === project));
    options(this.field("storyId"), stories.map((s) => [s.id, s.title]), { blank: "None" });
  }

  previewImage() {
    const preview = this.form.querySelector("#gen-image-preview");
    const old = preview.getAttribute("src");
    if (old) URL.revokeObjectURL(old);
    const file = this.field("inputImage").files[0];
    preview.hidden = !file;
    if (file) preview.src = URL.createObjectURL(file);
    else preview.removeAttribute("src");
  }

  input() {
    const value = (name) => this.field(name).value.trim();
    const input = {
      prompt: value("prompt"),
      provider: value("provider"),
      resolution: value("resolution"),
      outputFormat: value("outputFormat"),
    };
    const p = this.provider();
    if (p && p.models.length > 1 && value("model")) input.model = value("model");
    if (value("durationSeconds")) input.durationSeconds = Number(value("durationSeconds"));
    if (value("projectId")) input.projectId = value("projectId");
    if (value("storyId")) input.storyId = value("storyId");
    const tags = value("tags")
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);
    if (tags.length) input.tags = tags;
    return input;
  }

  async submit() {
    const button = this.form.querySelector('button[type="submit"]');
    const prompt = this.field("prompt");
    if (!prompt.value.trim()) {
      prompt.setAttribute("aria-invalid", "true");
      prompt.focus();
      this.hooks.onError(new Error("Write a prompt first."));
      return;
    }
    prompt.removeAttribute("aria-invalid");
    button.disabled = true;
    button.textContent = "Generating…";
    try {
      const input = this.input();
      const image = this.field("inputImage");
      const file = !image.disabled && image.files[0];
      const data = file
        ? await gqlUpload(GENERATE, { input: { ...input, inputImage: null } }, "input.inputImage", file)
        : await gql(GENERATE, { input });
      this.hooks.onCreated(data.generateVideo);
      prompt.value = "";
      image.value = "";
      this.previewImage();
    } catch (error) {
      if (error.field) this.markField(error.field);
      this.hooks.onError(error);
    } finally {
      button.disabled = false;
      button.textContent = "Generate";
    }
  }

  markField(field) {
    const name = field.split(".").pop();
    const control = this.field(name);
    if (control && control.focus) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
      control.addEventListener("input", () => control.removeAttribute("aria-invalid"), { once: true });
    }
  }
}
