// The t2i page: submit a job, follow its Server-Sent Events (a preview per step), keep the results.
// Plain JavaScript, no dependencies, nothing loaded from elsewhere. The event stream is read with fetch()
// rather than EventSource so that it can carry the access token and be aborted.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, job: null, abort: null, previews: [] };

function token() { return sessionStorage.getItem("t2i-token"); }

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = "Bearer " + token();
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) showTokenBox();
  return response;
}

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch { return `HTTP ${response.status}`; }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(text, fraction) {
  $("status").textContent = text;
  if (fraction !== undefined) $("progress").value = fraction;
}

function showTokenBox() { $("token-box").hidden = false; $("token").focus(); }

// -- the model and its limits -----------------------------------------------------------------------

function option(value, label, selected) {
  const o = document.createElement("option");
  o.value = value; o.textContent = label; o.selected = selected;
  return o;
}

async function loadInfo() {
  const response = await api("/api/info");
  if (!response.ok) {
    $("model").textContent = "";
    if (response.status !== 401) showError(await errorText(response));
    return;
  }
  const info = state.info = await response.json();
  const d = info.defaults, lim = info.limits;
  $("model").textContent = `${info.variant} model · trained at ${info.image_size}×${info.image_size} px · t2i ${info.t2i_version}`;
  $("steps").placeholder = d.steps; $("steps").max = lim.max_steps;
  $("guidance").placeholder = d.guidance; $("guidance").max = lim.max_guidance;
  $("num-images").max = lim.max_images;
  $("sampler").replaceChildren(...info.samplers.map((s) => option(s, s, s === d.sampler)));
  for (const id of ["width", "height"]) {
    $(id).replaceChildren(...info.sizes.map((s) => option(s, `${s} px`, s === info.image_size)));
  }
  $("token-box").hidden = true;
}

// -- one generation ---------------------------------------------------------------------------------

function numberOrNull(id) {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

function request() {
  return {
    prompt: $("prompt").value.trim(),
    negative_prompt: $("negative").value.trim(),
    steps: numberOrNull("steps"),
    guidance: numberOrNull("guidance"),
    seed: numberOrNull("seed"),
    sampler: $("sampler").value || null,
    width: numberOrNull("width"),
    height: numberOrNull("height"),
    num_images: numberOrNull("num-images") ?? 1,
  };
}

function setRunning(running) {
  $("generate").disabled = running;
  $("generate").textContent = running ? "Generating…" : "Generate";
  $("cancel").hidden = !running;
}

async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;  // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

function showPreviews(urls, width, height) {
  const box = $("preview");
  if (state.previews.length !== urls.length) {
    // Enlarge tiny images by a whole factor (crisp pixels), to fill the stage.
    const cols = Math.ceil(Math.sqrt(urls.length));
    const room = Math.min(box.clientWidth - 40, 560) / cols;
    const scale = Math.max(1, Math.floor(room / Math.max(width, height)));
    state.previews = urls.map(() => {
      const img = document.createElement("img");
      img.width = width * scale; img.height = height * scale; img.alt = "preview";
      return img;
    });
    box.replaceChildren(...state.previews);
  }
  urls.forEach((url, k) => { state.previews[k].src = url; });
}

async function generate() {
  if (state.job) return;
  const body = request();
  if (!body.prompt) { showError("Type a prompt first."); $("prompt").focus(); return; }
  showError("");
  setRunning(true);
  setStatus("Submitting…", 0);
  state.previews = [];
  const started = performance.now();
  try {
    const submitted = await api("/api/jobs", { method: "POST", json: body });
    if (!submitted.ok) throw new Error(await errorText(submitted));
    const job = state.job = await submitted.json();
    state.abort = new AbortController();
    const stream = await api(job.urls.events, { signal: state.abort.signal });
    if (!stream.ok) throw new Error(await errorText(stream));
    const { width, height } = job.settings;
    for await (const { event, data } of serverSentEvents(stream)) {
      if (event === "queued") {
        setStatus(data.position === 0 ? "Starting…" : `Queued: ${data.position} ahead`, 0);
      } else if (event === "progress") {
        showPreviews(data.previews, width, height);
        setStatus(`Step ${data.step} / ${data.total}`, data.step / data.total);
      } else if (event === "done") {
        await addToGallery(data);
        setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s`, 1);
        break;
      } else if (event === "failed" || event === "cancelled") {
        if (event === "failed") showError(data.error);
        setStatus(event === "cancelled" ? "Cancelled" : "Failed", 0);
        break;
      }
    }
  } catch (e) {
    if (e.name === "AbortError") setStatus("Cancelled", 0);
    else { showError(e.message || String(e)); setStatus("Failed", 0); }
  } finally {
    state.job = null; state.abort = null;
    setRunning(false);
  }
}

async function cancel() {
  const job = state.job;
  if (!job) return;
  setStatus("Cancelling…");
  await api(job.urls.cancel, { method: "POST" }).catch(() => {});
  if (state.abort) state.abort.abort();  // closing the stream cancels it too
}

// -- the gallery ------------------------------------------------------------------------------------

async function addToGallery(job) {
  const { settings } = job;
  const cards = [];
  for (const image of job.images) {
    const response = await api(image.url);
    if (!response.ok) throw new Error(await errorText(response));
    const url = URL.createObjectURL(await response.blob());
    const figure = document.createElement("figure");
    figure.className = "card";
    const img = document.createElement("img");
    img.src = url; img.alt = settings.prompt; img.title = image.parameters;
    img.width = settings.width; img.height = settings.height;
    const caption = document.createElement("figcaption");
    const prompt = document.createElement("div");
    prompt.className = "prompt"; prompt.textContent = settings.prompt; prompt.title = image.parameters;
    const row = document.createElement("div");
    row.className = "row";
    const seed = document.createElement("span");
    seed.textContent = `seed ${image.seed}`;
    const reuse = document.createElement("button");
    reuse.type = "button"; reuse.textContent = "Reuse"; reuse.title = "put this image's settings back in the form";
    reuse.addEventListener("click", () => reuseSettings(settings, image.seed));
    const download = document.createElement("a");
    download.href = url; download.download = `t2i-${image.seed}.png`; download.textContent = "PNG";
    download.title = "download, with its parameters embedded";
    row.append(seed, reuse, download);
    caption.append(prompt, row);
    figure.append(img, caption);
    cards.push(figure);
  }
  $("gallery").prepend(...cards);
  $("gallery-empty").hidden = true;
  $("clear").hidden = false;
}

function reuseSettings(s, seed) {
  $("prompt").value = s.prompt; $("negative").value = s.negative_prompt;
  $("steps").value = s.steps; $("guidance").value = s.guidance; $("seed").value = seed;
  $("sampler").value = s.sampler; $("width").value = s.width; $("height").value = s.height;
  $("num-images").value = 1;
  $("prompt").focus();
}

function clearGallery() {
  for (const a of $("gallery").querySelectorAll("a[download]")) URL.revokeObjectURL(a.href);
  $("gallery").replaceChildren();
  $("gallery-empty").hidden = false;
  $("clear").hidden = true;
}

// -- wiring -----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  $("cancel").addEventListener("click", cancel);
  $("random-seed").addEventListener("click", () => { $("seed").value = ""; });
  $("clear").addEventListener("click", clearGallery);
  $("token-save").addEventListener("click", () => {
    sessionStorage.setItem("t2i-token", $("token").value.trim());
    showError("");
    loadInfo();
  });
  for (const id of ["prompt", "negative"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); generate(); }
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.job) cancel();
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
  });
  loadInfo().catch((e) => showError("The server did not answer: " + e.message));
});
