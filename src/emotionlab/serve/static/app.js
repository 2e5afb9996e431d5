// emotionlab demo page: live webcam over a WebSocket, image upload, text and fused results.
// No external assets: everything here talks to the server that served this page.
"use strict";

const COLORS = {
  angry: "#ef5350", disgust: "#8bc34a", fear: "#ab47bc", happy: "#ffca28", sad: "#42a5f5",
  surprise: "#ff7043", neutral: "#b0bec5", contempt: "#8d6e63",
};
const color = (label) => COLORS[label] || "#4fc3f7";
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Probability bars, highest first; `limit` keeps only the top ones.
function bars(scores, limit) {
  const box = el("div", "bars");
  const rows = Object.entries(scores).sort((a, b) => b[1] - a[1]).slice(0, limit || 99);
  for (const [name, p] of rows) {
    box.append(el("span", "name", name));
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    fill.style.background = color(name);
    track.append(fill);
    box.append(track, el("span", "val", `${(100 * p).toFixed(0)}%`));
  }
  return box;
}

function showError(target, body) {
  target.replaceChildren(el("p", "error", body && body.detail ? `${body.error}: ${body.detail}` : String(body)));
}

// Boxes on the canvas, label + top-3 bars as DOM tags over each face (DOM so that it is readable and testable).
function drawFaces(canvas, overlay, faces, srcW, srcH) {
  const rect = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(rect.width));
  canvas.height = Math.max(1, Math.round(rect.height));
  const sx = canvas.width / srcW, sy = canvas.height / srcH;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  overlay.replaceChildren();
  for (const f of faces) {
    const [x, y, w, h] = f.box;
    ctx.lineWidth = 3;
    ctx.strokeStyle = color(f.label);
    ctx.strokeRect(x * sx, y * sy, w * sx, h * sy);
    const tag = el("div", "face-tag");
    tag.style.left = `${Math.max(0, x * sx)}px`;
    tag.style.top = `${Math.max(0, y * sy)}px`;
    tag.style.borderLeftColor = color(f.label);
    tag.append(el("div", "face-label", f.label), bars(f.scores, 3));
    overlay.append(tag);
  }
}

function renderDebug(faces) {
  const box = $("debug-faces");
  box.replaceChildren();
  faces.forEach((f, i) => {
    const card = el("div", "debug-face");
    if (f.crop) {
      const img = el("img");
      img.src = `data:image/png;base64,${f.crop}`;
      img.alt = `face ${f.face_id ?? i + 1} as the model sees it`;
      card.append(img);
    }
    const col = el("div");
    col.append(el("div", "face-label", `#${f.face_id ?? i + 1} ${f.label}`), bars(f.scores));
    card.append(col);
    box.append(card);
  });
  if (!faces.length) box.append(el("p", "muted", "no face in this frame"));
}

// ------------------------------------------------------------------ live webcam
const live = { stream: null, ws: null, busy: false, last: 0, fps: 0, running: false };
const grab = document.createElement("canvas");

function sendFrame() {
  const video = $("video");
  if (!live.running || live.busy || !live.ws || live.ws.readyState !== 1 || !video.videoWidth) return;
  const scale = Math.min(1, 640 / video.videoWidth);
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  live.busy = true;
  live.sentAt = performance.now();
  grab.toBlob((blob) => {
    if (blob && live.ws && live.ws.readyState === 1) live.ws.send(blob);
    else live.busy = false;
  }, "image/jpeg", 0.75);
}

function openStream() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/stream?smoothing=0.4`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(JSON.stringify({ debug: $("debug-toggle").checked, min_confidence: minConfidence() }));
    sendFrame();
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.frame === undefined) return; // control acknowledgement
    live.busy = false;
    const now = performance.now();
    if (live.last) live.fps = 0.8 * live.fps + 0.2 * (1000 / (now - live.last));
    live.last = now;
    $("fps").textContent = `${live.fps.toFixed(1)} fps`;
    if (msg.error) {
      $("live-hint").textContent = `${msg.error}: ${msg.detail}`;
    } else {
      $("live-hint").textContent = "";
      drawFaces($("live-canvas"), $("live-overlay"), msg.faces, msg.image.width, msg.image.height);
      if ($("debug-toggle").checked) renderDebug(msg.faces);
    }
    requestAnimationFrame(sendFrame);
  };
  ws.onclose = () => {
    live.busy = false;
    if (live.running) setTimeout(() => { if (live.running) live.ws = openStream(); }, 1000);
  };
  return ws;
}

async function startCamera() {
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    $("live-hint").textContent = `camera unavailable: ${e.message}`;
    return;
  }
  const video = $("video");
  video.srcObject = live.stream;
  await video.play().catch(() => {});
  live.running = true;
  live.last = 0;
  $("live-hint").textContent = "";
  $("cam-toggle").textContent = "Stop camera";
  live.ws = openStream();
}

function stopCamera() {
  live.running = false;
  if (live.ws) live.ws.close();
  live.ws = null;
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  live.stream = null;
  $("video").srcObject = null;
  $("live-overlay").replaceChildren();
  $("live-canvas").getContext("2d").clearRect(0, 0, $("live-canvas").width, $("live-canvas").height);
  $("cam-toggle").textContent = "Start camera";
  $("fps").textContent = "– fps";
}

$("cam-toggle").addEventListener("click", () => (live.running ? stopCamera() : startCamera()));
// faces whose top calibrated score is below this are shown as "uncertain" (0 = always the top class)
function minConfidence() {
  const v = Number($("min-confidence").value);
  return Number.isFinite(v) && v >= 0 && v < 1 ? v : 0;
}
$("min-confidence").addEventListener("change", () => {
  if (live.ws && live.ws.readyState === 1) live.ws.send(JSON.stringify({ min_confidence: minConfidence() }));
});

$("debug-toggle").addEventListener("change", () => {
  const on = $("debug-toggle").checked;
  $("debug-panel").hidden = !on;
  if (live.ws && live.ws.readyState === 1) live.ws.send(JSON.stringify({ debug: on }));
});

// ------------------------------------------------------------------ image upload
let uploaded = null;

async function postImage(file) {
  const form = new FormData();
  form.append("image", file);
  const r = await fetch(`/v1/faces?debug=1&min_confidence=${minConfidence()}`, { method: "POST", body: form });
  return [r.ok, await r.json()];
}

$("image-input").addEventListener("change", async () => {
  const file = $("image-input").files[0];
  if (!file) return;
  uploaded = file;
  const img = $("image-preview");
  img.src = URL.createObjectURL(file);
  $("image-stage").hidden = false;
  await img.decode().catch(() => {});
  const [ok, body] = await postImage(file);
  const out = $("image-result");
  if (!ok) return showError(out, body);
  drawFaces($("image-canvas"), $("image-overlay"), body.faces, body.image.width, body.image.height);
  out.replaceChildren(el("p", "muted", `${body.faces.length} face(s), model ${body.model}, ${body.took_ms} ms`));
  if ($("debug-toggle").checked) renderDebug(body.faces);
});

// ------------------------------------------------------------------ text
async function loadHealth() {
  try {
    const h = await (await fetch("/health")).json();
    $("health").textContent = `v${h.version} · face model ${h.face_model} · text model ${h.text_model}`;
    const sel = $("text-model");
    for (const name of h.text_models) sel.append(new Option(name, name));
  } catch (e) {
    $("health").textContent = "server unreachable";
  }
}

$("text-go").addEventListener("click", async () => {
  const out = $("text-result");
  const text = $("text-input").value;
  const r = await fetch("/v1/text", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ texts: [text], model: $("text-model").value || null }),
  });
  const body = await r.json();
  if (!r.ok) return showError(out, body);
  const preds = body.predictions[0];
  const scores = Object.fromEntries(preds.map((p) => [p.label, p.score]));
  out.replaceChildren(el("div", "big", preds[0].label), bars(scores),
    el("p", "muted", `model ${body.model}${body.multi_label ? " (multi-label)" : ""}, ${body.took_ms} ms`));
});

// ------------------------------------------------------------------ fusion
function currentFrameBlob() {
  const video = $("video");
  if (!live.running || !video.videoWidth) return Promise.resolve(null);
  const c = document.createElement("canvas");
  c.width = video.videoWidth;
  c.height = video.videoHeight;
  c.getContext("2d").drawImage(video, 0, 0);
  return new Promise((res) => c.toBlob(res, "image/jpeg", 0.9));
}

$("fuse-go").addEventListener("click", async () => {
  const out = $("fused-result");
  const form = new FormData();
  const image = uploaded || (await currentFrameBlob());
  if (image) form.append("image", image, "image.jpg");
  const text = $("text-input").value;
  if (text.trim()) form.append("text", text);
  form.append("face_weight", $("face-weight").value);
  form.append("text_weight", $("text-weight").value);
  if ($("text-model").value) form.append("text_model", $("text-model").value);
  const r = await fetch("/v1/analyze", { method: "POST", body: form });
  const body = await r.json();
  if (!r.ok) return showError(out, body);
  const f = body.fused;
  if (!f.scores) return out.replaceChildren(el("p", "error", f.error));
  const w = Object.entries(f.weights).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(", ");
  out.replaceChildren(el("div", "big", f.label), bars(f.scores),
    el("p", "muted", `weights ${w}; ${body.faces.length} face(s); ${body.took_ms} ms`));
  if (body.text && body.text.error) out.append(el("p", "error", `text left out: ${body.text.detail}`));
});

loadHealth();
