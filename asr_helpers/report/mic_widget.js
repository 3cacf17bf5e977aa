// The browser half of the microphone panel (asr_helpers/report/mic_widget.py, an anywidget module).
// It captures the microphone into an AudioContext running at 16 kHz (Chrome resamples the device's
// rate to the context's), taps the mono signal with an AudioWorklet, and sends chunks of
// `chunk_ms` as float32 buffers. The kernel acknowledges every message; a message left
// unacknowledged for `ack_timeout_s` (a restarted or stuck kernel) ends the recording with one line.

const TAP = `registerProcessor("asr-mic-tap", class extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
});`;
const RATE = 16000;
const STYLE = `
.asr-mic { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; }
.asr-mic button { margin-right: 6px; padding: 2px 10px; }
.asr-mic-status { margin-left: 6px; color: var(--jp-ui-font-color2, #555); }
.asr-mic-status.asr-mic-failed { color: #b00020; }
.asr-mic-partial { margin-top: 6px; min-height: 1.4em; color: var(--jp-ui-font-color2, #555); font-style: italic; }
.asr-mic-final { margin-top: 4px; white-space: pre-wrap; font-family: var(--jp-code-font-family, monospace); }`;

// One line for what getUserMedia or the AudioContext refused.
function refusal(error) {
  const name = (error && error.name) || "Error";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "microphone permission denied: allow the microphone for this page and press Record again";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "no microphone found: connect one, or stream a file with the panel's stream_file(...)";
  }
  if (name === "InsecureContextError") return error.message;
  if (name === "NotReadableError") return "the microphone cannot be read (another program holds it?)";
  const text = String((error && error.message) || error).split("\n")[0];
  return `cannot record: ${name}: ${text}`;
}

// Microphone -> AudioContext(16 kHz) -> worklet tap; `onSamples` gets Float32Array blocks. The graph is
// ready before the microphone opens, so none of its first sound is lost.
async function openMicrophone(onSamples) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw Object.assign(new Error("this page gets no microphone (it needs https, or http on localhost)"),
                        { name: "InsecureContextError" });
  }
  const context = new AudioContext({ sampleRate: RATE });
  let stream = null;
  try {
    if (context.sampleRate !== RATE) throw new Error(`the browser records at ${context.sampleRate} Hz, not ${RATE}`);
    const url = URL.createObjectURL(new Blob([TAP], { type: "application/javascript" }));
    await context.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const tap = new AudioWorkletNode(context, "asr-mic-tap", { channelCount: 1, channelCountMode: "explicit" });
    tap.port.onmessage = (event) => onSamples(event.data);
    const silent = context.createGain();
    silent.gain.value = 0;  // the tap must reach the destination to be pulled; nothing is heard
    tap.connect(silent).connect(context.destination);
    await context.resume();
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    context.createMediaStreamSource(stream).connect(tap);
  } catch (error) {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    context.close();
    throw error;
  }
  return {
    rate: context.sampleRate,
    deviceRate: stream.getAudioTracks()[0].getSettings().sampleRate,
    close() {
      stream.getTracks().forEach((track) => track.stop());
      context.close();
    },
  };
}

function render({ model, el }) {
  el.classList.add("asr-mic");
  el.innerHTML = `<style>${STYLE}</style>
    <div><button class="asr-mic-record">\u25cf Record</button><button class="asr-mic-stop" disabled>\u25a0 Stop</button>
    <span class="asr-mic-status"></span></div>
    <div class="asr-mic-partial"></div><div class="asr-mic-final"></div>`;
  const [record, stop] = [el.querySelector(".asr-mic-record"), el.querySelector(".asr-mic-stop")];
  const [status, partial, final] = ["status", "partial", "final"].map((part) => el.querySelector(`.asr-mic-${part}`));
  let microphone = null;   // the open capture, while recording
  let pending = [];        // chunk samples not yet sent
  let pendingLength = 0;
  let sent = new Map();    // seq -> time sent, until acknowledged
  let seq = 0;
  let seconds = 0;
  let finishing = false;

  function say(text, failed = false) {
    status.textContent = text;
    status.classList.toggle("asr-mic-failed", failed);
  }
  function buttons(recording) {
    record.disabled = recording || finishing;
    stop.disabled = !recording;
  }
  function release() {
    if (microphone) microphone.close();
    microphone = null;
    pending = [];
    pendingLength = 0;
  }
  function fail(text) {
    release();
    finishing = false;
    sent.clear();
    buttons(false);
    say(text, true);
  }
  function send(content, buffers) {
    seq += 1;
    sent.set(seq, performance.now());
    try {
      model.send({ ...content, seq }, undefined, buffers);
    } catch (error) {
      fail(`the kernel is not reachable (${String(error.message || error).split("\n")[0]}): run this cell again`);
    }
  }
  function flush() {
    if (!pendingLength) return;
    const chunk = new Float32Array(pendingLength);
    let offset = 0;
    for (const block of pending) {
      chunk.set(block, offset);
      offset += block.length;
    }
    pending = [];
    pendingLength = 0;
    send({ type: "chunk" }, [chunk.buffer]);
  }
  function onSamples(block) {
    if (!microphone) return;
    pending.push(block);
    pendingLength += block.length;
    seconds += block.length / microphone.rate;
    el.dataset.seconds = seconds.toFixed(3);
    if (pendingLength >= (microphone.rate * model.get("chunk_ms")) / 1000) flush();
  }

  record.addEventListener("click", async () => {
    finishing = false;
    seconds = 0;
    el.dataset.seconds = "0";
    record.disabled = true;
    say("opening the microphone\u2026");
    try {
      const opened = await openMicrophone(onSamples);
      microphone = opened;
      send({ type: "start" });
      buttons(true);
      const device = opened.deviceRate ? `microphone at ${opened.deviceRate} Hz, ` : "";
      say(`recording (${device}${opened.rate} Hz to the kernel): speak, then press Stop`);
    } catch (error) {
      fail(refusal(error));
    }
  });
  stop.addEventListener("click", () => {
    flush();
    release();
    finishing = true;
    buttons(false);
    say("finishing\u2026");
    send({ type: "stop" });
  });
  model.on("msg:custom", (message) => {
    if (message.type !== "ack") return;
    sent.delete(message.seq);
    if (message.final) {
      finishing = false;
      buttons(false);
    }
  });
  const timer = setInterval(() => {
    if (!sent.size) return;
    const waited = performance.now() - Math.min(...sent.values());
    if (waited > 1000 * model.get("ack_timeout_s")) {
      fail(`the kernel did not answer for ${model.get("ack_timeout_s")} s (restarted or busy?): run this cell again`);
    }
  }, 250);

  function showText() {
    partial.textContent = model.get("partial");
    final.textContent = model.get("final");
  }
  function showStatus() {  // the kernel's word; an empty one leaves the browser's own line
    if (model.get("error")) say(model.get("error"), true);
    else if (model.get("status")) say(model.get("status"));
  }
  ["change:partial", "change:final"].forEach((event) => model.on(event, showText));
  ["change:status", "change:error"].forEach((event) => model.on(event, showStatus));
  showText();
  showStatus();
  return () => {
    clearInterval(timer);
    release();
  };
}

export default { render };
