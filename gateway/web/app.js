// Browser client: WebSocket bridge to the gateway (see gateway/web.py for the protocol).
// Microphone audio is captured with an AudioWorklet and sent as AUDIO_ENCODING_PCM16LE at the
// AudioContext's own rate; the gateway resamples to 16 kHz at the edge. The page asks for
// interim results (live text of the open segment) and draws the session as a timeline.
const $ = (id) => document.getElementById(id);
let socket = null, context = null, stream = null, node = null;
let sentSamples = 0, sampleRate = 0;  // audio sent so far: the timeline's live end
const openSegments = new Map();        // segmentId -> startMs of segments not yet ended
window.analysis = { segments: [], summary: null, events: [], closed: false, problem: null };

// One colour per emotion; SpeechBrain's codes (neu, ang, hap, sad) and emotion2vec+'s
// nine classes share colours for the same emotion. Display names come from the server.
const COLOURS = {
  neu: "#8c8c8c", neutral: "#8c8c8c", ang: "#d33", angry: "#d33", hap: "#2a2", happy: "#2a2",
  sad: "#36c", fearful: "#839", disgusted: "#7a5", surprised: "#e90", other: "#bbb", unknown: "#bbb",
};
const colour = (label) => COLOURS[label] || "#999";
const seconds = (ms) => ((+ms || 0) / 1000).toFixed(1);

function setStatus(text) { const s = $("status"); s.textContent = text; s.classList.remove("problem"); }
function showProblem(text) {
  window.analysis.problem = text;
  const s = $("status"); s.textContent = text; s.classList.add("problem");
}
function logEvent(text) {
  const line = document.createElement("div");
  line.textContent = text;
  $("events").prepend(line);
}

// ---- timeline ------------------------------------------------------------------------------
function timelineEndMs() {
  const summary = window.analysis.summary;
  if (summary) return +summary.audioDurationMs || 0;
  const sentMs = sampleRate ? (1000 * sentSamples) / sampleRate : 0;
  const lastEnd = Math.max(0, ...window.analysis.segments.map((r) => +r.endMs || 0));
  return Math.max(sentMs, lastEnd, 1000);
}

function drawTimeline() {
  const line = $("timeline"), end = timelineEndMs();
  line.innerHTML = "";
  const place = (block, startMs, endMs) => {
    block.style.left = `${(100 * startMs) / end}%`;
    block.style.width = `${(100 * Math.max(0, endMs - startMs)) / end}%`;
    line.appendChild(block);
  };
  const labels = new Map();
  for (const r of window.analysis.segments) {
    const emotion = (r.emotions || [])[0], block = document.createElement("div");
    block.className = "block";
    block.dataset.segmentId = r.segmentId || 0;
    if (emotion) {
      block.style.setProperty("--emotion", colour(emotion.label));
      labels.set(emotion.label, emotion.displayName || emotion.label);
    }
    block.title = `${seconds(r.startMs)}–${seconds(r.endMs)} s · ${emotion ? emotion.displayName || emotion.label : "—"}\n${r.text || ""}`;
    place(block, +r.startMs || 0, +r.endMs || 0);
  }
  for (const [id, startMs] of openSegments) {
    const block = document.createElement("div");
    block.className = "block open";
    block.title = `segment ${id}: speaking…`;
    place(block, startMs, timelineEndMs());
  }
  $("axis-end").textContent = `${seconds(end)} s`;
  const legend = $("legend");
  legend.innerHTML = "";
  for (const [label, name] of labels) {
    const item = document.createElement("span");
    item.style.setProperty("--emotion", colour(label));
    item.textContent = name;
    legend.appendChild(item);
  }
}

// ---- segments and summary -------------------------------------------------------------------
function showSegment(result) {
  const emotion = (result.emotions || [])[0];
  const div = document.createElement("div");
  div.className = "segment";
  if (emotion) div.style.setProperty("--emotion", colour(emotion.label));
  div.dataset.segmentId = result.segmentId || 0;
  const start = ((+result.startMs || 0) / 1000).toFixed(2), end = ((+result.endMs || 0) / 1000).toFixed(2);
  const emo = emotion ? `${emotion.displayName || emotion.label} ${(100 * (emotion.confidence || 0)).toFixed(0)}%` : "—";
  div.innerHTML = `<div class="meta"></div><div class="text"></div>`;
  const who = +result.speaker ? ` · 说话人 ${result.speaker}` : "";
  div.querySelector(".meta").textContent = `#${result.segmentId || 0} ${start}–${end}s${who} · 情绪 ${emo}`;
  div.querySelector(".text").textContent = result.text || "(no text)";
  if (result.errors && result.errors.length) {
    const err = document.createElement("div");
    err.className = "errors";
    err.textContent = result.errors.join("; ");
    div.appendChild(err);
  }
  if (result.randomWeights) {
    const warn = document.createElement("div");
    warn.className = "warning";
    warn.textContent = "demo models with random weights: not a real analysis";
    div.appendChild(warn);
  }
  $("segments").appendChild(div);
}

function showSummary(summary) {
  const box = $("summary");
  box.innerHTML = "";
  const count = +summary.segmentCount || 0;
  const head = document.createElement("p");
  head.textContent = `${count} ${count === 1 ? "segment" : "segments"} · speech ${seconds(summary.speechDurationMs)} s of ` +
    `${seconds(summary.audioDurationMs)} s · dominant emotion: ` +
    `${summary.dominantEmotionDisplayName || summary.dominantEmotion || "—"}`;
  box.appendChild(head);
  // share: fraction of speech time this emotion dominates (durationMs of it);
  // meanProbability: the model's probability for it, averaged over the speech.
  const chart = document.createElement("div");
  chart.className = "chart";
  for (const share of summary.emotionDistribution || []) {
    const label = document.createElement("span"), track = document.createElement("span");
    const fill = document.createElement("span"), figures = document.createElement("span");
    label.className = "label"; track.className = "track"; fill.className = "fill"; figures.className = "figures";
    label.textContent = share.displayName || share.label;
    fill.style.display = "block";
    fill.style.width = `${(100 * (share.share || 0)).toFixed(1)}%`;
    fill.style.setProperty("--emotion", colour(share.label));
    figures.textContent = `${(100 * (share.share || 0)).toFixed(0)}% · ${seconds(share.durationMs)} s · ` +
      `mean p ${(100 * (share.meanProbability || 0)).toFixed(0)}%`;
    track.appendChild(fill);
    chart.append(label, track, figures);
  }
  box.appendChild(chart);
  const transcript = document.createElement("p");
  transcript.textContent = summary.transcript || "";
  box.appendChild(transcript);
  // Speaker labels: one line per speaker (talk time, share, dominant emotion, what they said).
  for (const speaker of summary.speakers || []) {
    const line = document.createElement("p");
    line.className = "speaker";
    line.textContent = `说话人 ${speaker.speaker}: ${seconds(speaker.talkTimeMs)} s ` +
      `(${(100 * (speaker.talkTimeShare || 0)).toFixed(0)}%) · ` +
      `${speaker.dominantEmotionDisplayName || speaker.dominantEmotion || "—"} · ${speaker.transcript || ""}`;
    box.appendChild(line);
  }
}

function onMessage(message) {
  const event = JSON.parse(message.data);
  window.analysis.events.push(event);
  if (event.type === "closed") { window.analysis.closed = true; setStatus("session finished"); return; }
  if (event.type === "error") { showProblem(`error: ${event.code}: ${event.message}`); window.analysis.closed = true; return; }
  if (event.speechStarted) {
    const s = event.speechStarted;
    openSegments.set(s.segmentId || 0, +s.startMs || 0);
    logEvent(`speech started #${s.segmentId || 0} at ${s.startMs || 0} ms`);
  }
  if (event.speechEnded) logEvent(`speech ended #${event.speechEnded.segmentId || 0} at ${event.speechEnded.endMs} ms`);
  if (event.interimResult) $("live").textContent = event.interimResult.text || "";
  if (event.segmentResult) {
    openSegments.delete(event.segmentResult.segmentId || 0);
    $("live").textContent = "";
    window.analysis.segments.push(event.segmentResult);
    showSegment(event.segmentResult);
  }
  if (event.error) logEvent(`error: ${event.error.code}: ${event.error.message}`);
  if (event.summary) { openSegments.clear(); window.analysis.summary = event.summary; showSummary(event.summary); }
  drawTimeline();
}

// ---- connection and microphone --------------------------------------------------------------
$("connect").onclick = () => {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { setStatus("connected"); $("start").disabled = false; $("connect").disabled = true; };
  socket.onmessage = onMessage;
  socket.onerror = () => showProblem(`could not connect to ${url}: is the gateway's web port running, ` +
    "and is this page's address allowed (WEB_ALLOWED_ORIGINS)?");
  socket.onclose = () => {
    if (!window.analysis.problem) setStatus(window.analysis.closed ? "session finished; disconnected" : "disconnected");
    $("start").disabled = true; $("stop").disabled = true; $("connect").disabled = false;
  };
};

// Why the microphone cannot be opened, in words a user can act on.
function microphoneProblem(error) {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "The microphone only works on a secure page. Open this page as https://… (start the gateway " +
      "with TLS_CERT and TLS_KEY) or as http://localhost on the machine running the gateway.";
  }
  if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
    return "Microphone access was denied. Allow the microphone for this site (the icon in the address " +
      "bar or the browser's site settings), then press Start recording again.";
  }
  if (error && error.name === "NotFoundError") return "No microphone was found. Connect one and press Start recording again.";
  return `The microphone could not be opened: ${error ? error.message || error.name : "unknown error"}.`;
}

$("start").onclick = async () => {
  $("start").disabled = true;
  window.analysis.problem = null;
  if (!window.isSecureContext || !navigator.mediaDevices) {
    showProblem(microphoneProblem(null));
    $("start").disabled = false;
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    context = new AudioContext();
    await context.audioWorklet.addModule("recorder-worklet.js");
  } catch (error) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    showProblem(microphoneProblem(error));
    $("start").disabled = false;
    return;
  }
  const source = context.createMediaStreamSource(stream);
  node = new AudioWorkletNode(context, "recorder");
  sampleRate = context.sampleRate;
  sentSamples = 0;
  const config = { sampleRateHz: sampleRate, encoding: "AUDIO_ENCODING_PCM16LE", channels: 1, mode: $("mode").value,
                   interimResults: true };
  if ($("speakers").checked) config.speakerLabels = { enabled: true };
  if ($("token").value) config.token = $("token").value;
  socket.send(JSON.stringify(config));
  node.port.onmessage = (msg) => {
    const floats = msg.data, pcm = new Int16Array(floats.length);
    for (let i = 0; i < floats.length; i++) pcm[i] = Math.max(-1, Math.min(1, floats[i])) * 32767;
    if (socket.readyState === WebSocket.OPEN) { socket.send(pcm.buffer); sentSamples += pcm.length; }
  };
  source.connect(node);
  setStatus("recording");
  $("stop").disabled = false;
  const tick = setInterval(() => (window.analysis.closed ? clearInterval(tick) : drawTimeline()), 500);
};

$("stop").onclick = async () => {
  if (node) node.disconnect();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (context) await context.close();
  socket.send(JSON.stringify({ type: "stop" }));
  setStatus("stopped; waiting for the summary");
  $("stop").disabled = true;
};
