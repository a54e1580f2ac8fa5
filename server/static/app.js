// InstructAvatar browser client (protocol v1, docs/protocol.md).
// Microphone -> AudioWorklet (Float32 at the context's rate) -> PCM16 binary messages with sequence numbers.
// Frames (binary, 24-byte header: magic, index, pts_us, w, h, format, flags) are decoded and drawn on the
// canvas when the capture clock reaches their presentation time plus a small playout delay, so the face moves
// in step with the audio clock; the latency shown is capture clock minus the drawn frame's timestamp.
"use strict";
const state = window.avatarState = {
  ready: null, framesReceived: 0, framesDrawn: 0, lastLatencyMs: null, serverLatency: null, errors: [],
  samplesSent: 0, rate: 0, ended: false,
};
const $ = (id) => document.getElementById(id);
const canvas = $("avatar"), ctx = canvas.getContext("2d");
let ws = null, audioCtx = null, node = null, stream = null, seq = 0, playoutMs = 120;
const queue = [];                      // decoded frames waiting for their time: {pts, bitmap, index}

function status(text) { $("status").textContent = text; }

async function portraitBase64() {
  const file = $("portrait").files[0];
  const blob = file || await (await fetch("/portrait.png")).blob();
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function sendPcm(f32) {
  if (!ws || ws.readyState !== WebSocket.OPEN || !state.ready) return;
  const out = new ArrayBuffer(8 + f32.length * 2), dv = new DataView(out);
  dv.setUint8(0, 0x49); dv.setUint8(1, 0x41); dv.setUint8(2, 0x41); dv.setUint8(3, 0x31);   // "IAA1"
  dv.setUint32(4, seq++ >>> 0, true);
  for (let i = 0; i < f32.length; i++) {
    const v = Math.max(-1, Math.min(1, f32[i]));
    dv.setInt16(8 + 2 * i, Math.round(v * 32767), true);
  }
  ws.send(out);
  state.samplesSent += f32.length;
}

async function onFrame(buf) {
  const dv = new DataView(buf);
  const index = dv.getUint32(4, true), pts = Number(dv.getBigInt64(8, true)) / 1e6;
  const w = dv.getUint16(16, true), h = dv.getUint16(18, true), format = dv.getUint8(20);
  state.framesReceived++;
  let bitmap;
  if (format === 0) {
    bitmap = await createImageBitmap(new Blob([buf.slice(24)], { type: "image/jpeg" }));
  } else {
    const rgb = new Uint8Array(buf, 24), rgba = new Uint8ClampedArray(w * h * 4);
    for (let i = 0, j = 0; i < w * h; i++) { rgba[j++] = rgb[3 * i]; rgba[j++] = rgb[3 * i + 1]; rgba[j++] = rgb[3 * i + 2]; rgba[j++] = 255; }
    bitmap = await createImageBitmap(new ImageData(rgba, w, h));
  }
  queue.push({ pts, bitmap, index });
}

function draw() {
  const clock = state.rate ? state.samplesSent / state.rate : 0;       // capture clock (seconds of audio sent)
  let frame = null;
  while (queue.length && (queue[0].pts <= clock - playoutMs / 1000 || state.ended || queue.length > 50)) {
    frame = queue.shift();
  }
  if (frame) {
    if (canvas.width !== frame.bitmap.width) { canvas.width = frame.bitmap.width; canvas.height = frame.bitmap.height; }
    ctx.drawImage(frame.bitmap, 0, 0);
    state.framesDrawn++;
    state.lastLatencyMs = Math.round(1000 * (clock - frame.pts));
    const server = state.serverLatency ? `, server audio-to-frame p50 ${state.serverLatency.p50} ms` : "";
    $("latency").textContent = `${state.lastLatencyMs} ms behind the microphone${server} (frame ${frame.index})`;
  }
  requestAnimationFrame(draw);
}
requestAnimationFrame(draw);

async function start() {
  $("start").disabled = true;
  status("asking for the microphone");
  stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false } });
  audioCtx = new AudioContext();
  await audioCtx.audioWorklet.addModule("/static/pcm-worklet.js");
  state.rate = audioCtx.sampleRate;
  const source = audioCtx.createMediaStreamSource(stream);
  node = new AudioWorkletNode(audioCtx, "pcm-capture");
  node.port.onmessage = (e) => sendPcm(e.data);
  source.connect(node);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = async () => {
    status("starting session");
    const params = new URLSearchParams(location.search);
    const msg = {
      type: "session.start", version: 1, request_id: "start", portrait: await portraitBase64(),
      instruction: $("instruction").value, audio: { format: "pcm16", rate: state.rate, channels: 1 },
      output: { format: "jpeg", quality: 85 },
    };
    if (params.get("token")) msg.token = params.get("token");
    if (params.get("chunk")) msg.chunk_frames = Number(params.get("chunk"));
    ws.send(JSON.stringify(msg));
  };
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") { onFrame(e.data); return; }
    const ev = JSON.parse(e.data);
    if (ev.type === "session.ready") {
      state.ready = ev; seq = 0; state.samplesSent = 0;
      status(`streaming: ${ev.model} on ${ev.backend}, ${ev.fps} fps, chunk ${ev.chunk_frames} frames`);
      $("set").disabled = false; $("stop").disabled = false;
    } else if (ev.type === "stats") {
      state.serverLatency = ev.latency_ms;
    } else if (ev.type === "error") {
      state.errors.push(ev); status(`error ${ev.code}: ${ev.message}`);
    } else if (ev.type === "instruction.ack") {
      status(`instruction: ${ev.text}`);
    } else if (ev.type === "session.end") {
      state.ended = true; status(`ended (${ev.reason}): ${ev.frames_sent} frames, ${ev.frames_dropped} dropped`);
    }
  };
  ws.onclose = () => { if (!state.ended) status("connection closed"); stop(false); };
}

function stop(sendEnd = true) {
  if (sendEnd && ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "audio.end" }));
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (audioCtx) audioCtx.close();
  stream = null; audioCtx = null;
  $("stop").disabled = true; $("set").disabled = true;
}

$("start").onclick = () => start().catch((e) => { status("failed: " + e); state.errors.push({ code: "page", message: String(e) }); });
$("stop").onclick = () => stop(true);
$("set").onclick = () => ws && ws.send(JSON.stringify({ type: "instruction.set", text: $("instruction").value, request_id: "box" }));
if (new URLSearchParams(location.search).get("autostart")) $("start").click();
