// AudioWorklet: copies microphone frames (mono, float32, at the AudioContext's rate)
// to the main thread in ~50 ms batches.
class RecorderProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = [];
    this.length = 0;
    this.batch = Math.round(sampleRate / 20);
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      this.buffer.push(new Float32Array(channel));
      this.length += channel.length;
      if (this.length >= this.batch) {
        const out = new Float32Array(this.length);
        let offset = 0;
        for (const part of this.buffer) { out.set(part, offset); offset += part.length; }
        this.port.postMessage(out, [out.buffer]);
        this.buffer = [];
        this.length = 0;
      }
    }
    return true;
  }
}
registerProcessor("recorder", RecorderProcessor);
