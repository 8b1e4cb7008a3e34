// Browser client: WebSocket bridge to the gateway (see gateway/web.py for the protocol).
// Microphone audio is captured with an AudioWorklet and sent as AUDIO_ENCODING_PCM16LE at the
// AudioContext's own rate; the gateway resamples to 16 kHz at the edge.
const $ = (id) => document.getElementById(id);
let socket = null, context = null, stream = null, node = null;
window.analysis = { segments: [], summary: null, events: [], closed: false };

function setStatus(text) { $("status").textContent = text; }
function logEvent(text) {
  const line = document.createElement("div");
  line.textContent = text;
  $("events").prepend(line);
}

function showSegment(result) {
  const emotion = (result.emotions || [])[0];
  const div = document.createElement("div");
  div.className = "segment " + (emotion ? emotion.label : "");
  div.dataset.segmentId = result.segmentId || 0;
  const start = ((+result.startMs || 0) / 1000).toFixed(2), end = ((+result.endMs || 0) / 1000).toFixed(2);
  const emo = emotion ? `${emotion.displayName || emotion.label} ${(100 * (emotion.confidence || 0)).toFixed(0)}%` : "—";
  div.innerHTML = `<div class="meta">#${result.segmentId || 0} ${start}–${end}s · 情绪 ${emo}</div>
    <div class="text"></div>`;
  div.querySelector(".text").textContent = result.text || "(no text)";
  if (result.errors) {
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
  const head = document.createElement("p");
  head.textContent = `${summary.segmentCount || 0} segments · speech ${((+summary.speechDurationMs || 0) / 1000).toFixed(1)} s of ` +
    `${((+summary.audioDurationMs || 0) / 1000).toFixed(1)} s · dominant emotion: ` +
    `${summary.dominantEmotionDisplayName || summary.dominantEmotion || "—"}`;
  box.appendChild(head);
  for (const share of summary.emotionDistribution || []) {
    const bar = document.createElement("div");
    bar.className = "bar";
    const seconds = ((+share.durationMs || 0) / 1000).toFixed(1);
    // share: fraction of speech time this emotion dominates (duration_ms of it);
    // meanProbability: the model's probability for it, averaged over the speech.
    const percent = (100 * (share.share || 0)).toFixed(0);
    const mean = (100 * (share.meanProbability || 0)).toFixed(0);
    bar.innerHTML = `<span class="label"></span><span class="fill" style="width:${Math.round(300 * (share.share || 0))}px"></span>` +
      `<span>${percent}% of speech time · ${seconds} s · mean probability ${mean}%</span>`;
    bar.querySelector(".label").textContent = share.displayName || share.label;
    box.appendChild(bar);
  }
  const transcript = document.createElement("p");
  transcript.textContent = summary.transcript || "";
  box.appendChild(transcript);
}

function onMessage(message) {
  const event = JSON.parse(message.data);
  window.analysis.events.push(event);
  if (event.type === "closed") { window.analysis.closed = true; setStatus("session finished"); return; }
  if (event.type === "error") { setStatus(`error: ${event.code}: ${event.message}`); window.analysis.closed = true; return; }
  if (event.speechStarted) logEvent(`speech started #${event.speechStarted.segmentId || 0} at ${event.speechStarted.startMs || 0} ms`);
  if (event.speechEnded) logEvent(`speech ended #${event.speechEnded.segmentId || 0} at ${event.speechEnded.endMs} ms`);
  if (event.segmentResult) { window.analysis.segments.push(event.segmentResult); showSegment(event.segmentResult); }
  if (event.summary) { window.analysis.summary = event.summary; showSummary(event.summary); }
}

$("connect").onclick = () => {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { setStatus("connected"); $("start").disabled = false; $("connect").disabled = true; };
  socket.onmessage = onMessage;
  socket.onclose = () => { setStatus(window.analysis.closed ? "session finished; disconnected" : "disconnected"); $("start").disabled = true; $("stop").disabled = true; $("connect").disabled = false; };
};

$("start").onclick = async () => {
  stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  context = new AudioContext();
  await context.audioWorklet.addModule("recorder-worklet.js");
  const source = context.createMediaStreamSource(stream);
  node = new AudioWorkletNode(context, "recorder");
  const config = { sampleRateHz: context.sampleRate, encoding: "AUDIO_ENCODING_PCM16LE", channels: 1, mode: $("mode").value };
  if ($("token").value) config.token = $("token").value;
  socket.send(JSON.stringify(config));
  node.port.onmessage = (msg) => {
    const floats = msg.data, pcm = new Int16Array(floats.length);
    for (let i = 0; i < floats.length; i++) pcm[i] = Math.max(-1, Math.min(1, floats[i])) * 32767;
    if (socket.readyState === WebSocket.OPEN) socket.send(pcm.buffer);
  };
  source.connect(node);
  setStatus("recording");
  $("start").disabled = true; $("stop").disabled = false;
};

$("stop").onclick = async () => {
  if (node) node.disconnect();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (context) await context.close();
  socket.send(JSON.stringify({ type: "stop" }));
  setStatus("stopped; waiting for the summary");
  $("stop").disabled = true;
};
