// digitlab serve: draw a digit, see the model's guess as you draw. No external assets.
//
// The pad is sent as a PNG to POST /api/predict, the same path an uploaded photo takes
// (ink.prepare), so a drawing and a photo are read the same way. At most one request is in
// flight; strokes drawn meanwhile are sent as soon as the answer comes back. In "a number"
// mode the pad is wide and goes to POST /api/predict/number (ink.segment); each digit read
// is boxed on the pad.
"use strict";

const pad = document.getElementById("pad");
const padWrap = document.getElementById("pad-wrap");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const result = document.getElementById("result");
const upload = document.getElementById("upload");
const marks = document.getElementById("marks");
const $ = (id) => document.getElementById(id);
const SIZES = { digit: [320, 320], number: [960, 320] };

// MNIST's strokes are about 2.5 px wide on a digit 20 px tall; a digit drawn to fill the
// dashed box (20/28 of the pad) gets the same proportion with this brush.
const BRUSH = Math.round(pad.width * 0.085);
const INK = "#111318";

let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
let version = 0; // bumped on every change of the pad
let dirty = false; // the pad changed since it was last sent
let inFlight = false;
let last = null; // the previous point of the stroke being drawn
let photo = null; // an uploaded file shown on the pad, sent as it is
let placed = { scale: 1, x: 0, y: 0 }; // where the photo's pixels are on the pad
let mode = "digit"; // or "number"

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  marks.getContext("2d").clearRect(0, 0, marks.width, marks.height);
  marks.dataset.boxes = "0";
  placed = { scale: 1, x: 0, y: 0 };
  padWrap.classList.remove("inked");
}

function setMode(next) {
  mode = next;
  document.body.classList.toggle("number-mode", mode === "number");
  [pad.width, pad.height] = SIZES[mode];
  [marks.width, marks.height] = SIZES[mode];
  $("draw-title").textContent = mode === "number" ? "Write a number" : "Draw a digit";
  $("pad-hint").textContent =
    mode === "number"
      ? "Write a row of digits (a number, a date, an amount) across the pad"
      : "Draw one digit, about as tall as the dashed box";
  $("bars").hidden = mode === "number";
  reset();
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function strokeTo(p) {
  ctx.strokeStyle = INK;
  ctx.fillStyle = INK;
  ctx.lineWidth = BRUSH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (last) {
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
  } else {
    ctx.beginPath();
    ctx.arc(p.x, p.y, BRUSH / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  last = p;
}

function changed() {
  version += 1;
  pad.dataset.version = String(version);
  padWrap.classList.add("inked");
  dirty = true;
  kick(40); // gather a few pointer moves into one request
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  if (photo) {
    photo = null;
    blank();
  }
  last = null;
  strokeTo(point(event));
  changed();
});

pad.addEventListener("pointermove", (event) => {
  if (!pad.hasPointerCapture(event.pointerId)) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) strokeTo(point(e));
  changed();
});

function endStroke(event) {
  if (pad.hasPointerCapture(event.pointerId)) pad.releasePointerCapture(event.pointerId);
  last = null;
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// ---- asking the server ----

function kick(delay) {
  if (inFlight) return; // send() looks at `dirty` again when its answer arrives
  inFlight = true;
  window.setTimeout(send, delay);
}

async function send() {
  if (!dirty) {
    inFlight = false;
    return;
  }
  dirty = false;
  const sending = version;
  let body;
  if (photo) {
    body = new FormData();
    body.append("file", photo, photo.name || "photo");
  } else {
    body = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  }
  const started = performance.now();
  const path = mode === "number" ? "/api/predict/number?top=3" : "/api/predict?top=3";
  try {
    const response = await fetch(path, { method: "POST", body });
    const answer = await response.json();
    if (version === sending) show(answer, response.ok, performance.now() - started);
  } catch (error) {
    if (version === sending) showError(`The server did not answer (${error.message}).`);
  }
  if (version === sending) result.dataset.answered = String(sending);
  if (dirty) {
    window.setTimeout(send, 0);
  } else {
    inFlight = false;
  }
}

// ---- showing the answer ----

function buildBars() {
  const list = $("bars");
  list.replaceChildren();
  for (const name of classes) {
    const item = document.createElement("li");
    item.dataset.label = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = "–";
    item.append(label, track, pct);
    list.append(item);
  }
}

function setBars(probabilities, best) {
  const items = $("bars").children;
  for (let i = 0; i < items.length; i += 1) {
    const p = probabilities.length ? probabilities[i] : 0;
    const item = items[i];
    item.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    item.querySelector(".pct").textContent = probabilities.length ? percent(p) : "–";
    item.classList.toggle("best", classes[i] === best);
    item.setAttribute("aria-label", `${classes[i]}: ${probabilities.length ? percent(p) : "none"}`);
  }
}

function percent(p) {
  return p >= 0.995 ? "100%" : p < 0.001 ? "0%" : `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
}

function showSeen(input) {
  const seenCtx = seen.getContext("2d");
  const image = seenCtx.createImageData(28, 28);
  for (let r = 0; r < 28; r += 1) {
    for (let c = 0; c < 28; c += 1) {
      const v = input ? input[r][c] : 0;
      const k = 4 * (r * 28 + c);
      image.data[k] = v;
      image.data[k + 1] = v;
      image.data[k + 2] = v;
      image.data[k + 3] = 255;
    }
  }
  seenCtx.putImageData(image, 0, 0);
}

function show(answer, ok, roundTripMs) {
  if (!ok) {
    showError(answer.error || "The server refused the image.");
    return;
  }
  $("error").hidden = true;
  if ("number" in answer) {
    showNumber(answer);
    showTiming(answer.timing, roundTripMs);
    return;
  }
  const found = answer.label !== null;
  $("label").textContent = found ? answer.label : "–";
  $("confidence").textContent = found
    ? `${percent(answer.confidence)} sure`
    : "No digit found";
  const status = $("status");
  status.className = `status ${answer.status === "ok" ? "ok" : "unsure"}`;
  status.textContent =
    answer.status === "ok"
      ? `Next guesses: ${answer.top.slice(1).map((g) => `${g.label} (${percent(g.p)})`).join(", ")}`
      : answer.status === "unsure"
        ? answer.note
          ? `Unsure: ${answer.note}${/[.?!]$/.test(answer.note) ? "" : "."}`
          : "Unsure: the model's top guess is below its confidence threshold."
        : "Draw a digit, or upload a photo of one.";
  setBars(answer.probabilities, found ? answer.label : null);
  showSeen(answer.input);
  showTiming(answer.timing, roundTripMs);
  result.dataset.label = found ? answer.label : "";
}

function showTiming(t, roundTripMs) {
  $("timing").textContent =
    `Server: ${t.total_ms.toFixed(1)} ms (preparing ${t.prepare_ms.toFixed(1)} ms, ` +
    `model ${t.model_ms.toFixed(2)} ms) · round trip ${roundTripMs.toFixed(0)} ms`;
}

// ---- a number: the string, each digit, and its box on the pad ----

function showNumber(answer) {
  const found = answer.number !== null;
  $("label").textContent = found ? answer.number : "–";
  $("confidence").textContent = found
    ? `${percent(answer.confidence)} sure of every digit`
    : "No digit found";
  const status = $("status");
  status.className = `status ${answer.status === "ok" ? "ok" : "unsure"}`;
  status.textContent =
    answer.status === "ok"
      ? `${answer.digits.length} digits read`
      : answer.status === "unsure"
        ? "Unsure: at least one digit is below the model's confidence threshold."
        : "Write a few digits in a row, or upload a photo of a number.";
  $("explain").hidden = !found;
  const list = $("digits");
  list.replaceChildren();
  for (const d of answer.digits) {
    const item = document.createElement("li");
    item.className = d.status;
    const big = document.createElement("strong");
    big.textContent = d.label;
    item.append(big, percent(d.confidence));
    list.append(item);
  }
  list.hidden = !found;
  showDigits(answer.digits.map((d) => d.input));
  drawBoxes(answer.digits, answer.separators);
  result.dataset.label = found ? answer.number : "";
}

function showDigits(inputs) {
  // the 28x28 images the model saw, side by side
  seen.width = 28 * Math.max(1, inputs.length);
  const seenCtx = seen.getContext("2d");
  seenCtx.fillStyle = "#000";
  seenCtx.fillRect(0, 0, seen.width, 28);
  inputs.forEach((input, i) => {
    const image = seenCtx.createImageData(28, 28);
    for (let k = 0; k < 28 * 28; k += 1) {
      const v = input[Math.floor(k / 28)][k % 28];
      image.data.set([v, v, v, 255], 4 * k);
    }
    seenCtx.putImageData(image, 28 * i, 0);
  });
}

function drawBoxes(digits, separators) {
  const g = marks.getContext("2d");
  g.clearRect(0, 0, marks.width, marks.height);
  g.lineWidth = 3;
  g.font = "bold 22px system-ui, sans-serif";
  const on = ([x0, y0, x1, y1]) => [
    placed.x + x0 * placed.scale,
    placed.y + y0 * placed.scale,
    (x1 - x0) * placed.scale,
    (y1 - y0) * placed.scale,
  ];
  for (const d of digits) {
    const [x, y, w, h] = on(d.box);
    g.strokeStyle = g.fillStyle = d.status === "ok" ? "#16a34a" : "#d97706";
    g.strokeRect(x, y, w, h);
    g.fillText(d.label, x + 2, Math.max(20, y - 4));
  }
  for (const s of separators) {
    const [x, y, w, h] = on(s.box);
    g.strokeStyle = "#4f46e5";
    g.strokeRect(x, y, w, h);
  }
  marks.dataset.boxes = String(digits.length);
}

function showError(message) {
  const error = $("error");
  error.textContent = message;
  error.hidden = false;
  $("label").textContent = "!";
  $("confidence").textContent = "Could not read that";
  $("status").textContent = "";
  setBars([], null);
  showSeen(null);
  $("digits").hidden = true;
  $("explain").hidden = true;
  result.dataset.label = "";
}

function reset() {
  photo = null;
  blank();
  version += 1;
  dirty = false;
  pad.dataset.version = String(version);
  result.dataset.answered = String(version);
  $("label").textContent = "?";
  $("confidence").textContent = "Draw something to see its guess.";
  $("status").textContent = "";
  $("timing").textContent = "";
  $("error").hidden = true;
  $("digits").hidden = true;
  $("explain").hidden = true;
  setBars([], null);
  seen.width = 28;
  showSeen(null);
  result.dataset.label = "";
}

// ---- photos: the upload button, drag and drop ----

function usePhoto(file) {
  if (!file) return;
  photo = file;
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    blank();
    const scale = Math.min(pad.width / image.width, pad.height / image.height);
    const w = image.width * scale;
    const h = image.height * scale;
    ctx.drawImage(image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    placed = { scale, x: (pad.width - w) / 2, y: (pad.height - h) / 2 }; // for the boxes
    padWrap.classList.add("inked");
    URL.revokeObjectURL(url);
  };
  image.onerror = () => URL.revokeObjectURL(url); // the server will say what is wrong
  image.src = url;
  version += 1;
  pad.dataset.version = String(version);
  dirty = true;
  kick(0);
}

upload.addEventListener("change", () => {
  usePhoto(upload.files[0]);
  upload.value = "";
});
$("upload-button").addEventListener("click", () => upload.click());
$("clear").addEventListener("click", reset);
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => radio.checked && setMode(radio.value));
}

padWrap.addEventListener("dragover", (event) => {
  event.preventDefault();
  padWrap.classList.add("dragging");
});
padWrap.addEventListener("dragleave", () => padWrap.classList.remove("dragging"));
padWrap.addEventListener("drop", (event) => {
  event.preventDefault();
  padWrap.classList.remove("dragging");
  usePhoto(event.dataTransfer.files[0]);
});

document.addEventListener("keydown", (event) => {
  const typing = event.target instanceof HTMLInputElement;
  if (event.key === "Escape" || (event.target === pad && event.key === "Delete")) {
    reset();
  } else if ((event.key === "u" || event.key === "U") && !typing && !event.ctrlKey && !event.metaKey) {
    upload.click();
  }
});

// ---- start ----

async function describeModel() {
  try {
    const response = await fetch("/api/model");
    const model = await response.json();
    classes = model.classes;
    const accuracy =
      model.accuracy === null ? "" : ` · ${(model.accuracy * 100).toFixed(2)}% test accuracy`;
    $("model").textContent = `${model.name} · trained on ${model.dataset}${accuracy}`;
  } catch (error) {
    $("model").textContent = "Could not reach the model.";
  }
  buildBars();
  setBars([], null);
}

blank();
showSeen(null);
buildBars();
describeModel();
