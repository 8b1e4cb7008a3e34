#!/usr/bin/env node
// Node.js client of speech_analysis.v1.SpeechAnalysisService (see README.md).
//
//   node client.js FILE.wav [--address HOST:PORT] [--mode paraformer|sensevoice] [--fast]
//                           [--separate-channels] [--speakers] [--max-speakers N]
//                           [--token TOKEN] [--protos DIR]
//
// --separate-channels analyses each channel of a stereo file on its own (CHANNEL_MODE_SEPARATE);
// --speakers asks for speaker labels (a gateway with a speaker worker), --max-speakers N bounds them.
// Streams a PCM16 or float32 WAV file through Analyze at real-time pace (--fast: as fast as
// the server takes it) and prints every event as one JSON line on stdout. Exit status 0 when the
// call ends OK, 1 on a gRPC error (printed as JSON on stderr), 2 on bad arguments or input.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const CHUNK_MS = 100; // as the Python client: each chunk is a message through gateway and VAD

// The loader options a client of this API needs:
//  * keepCase: field names as in the .proto (segment_result, start_ms);
//  * longs: Number -- uint64 fields (every *_ms) arrive as JS numbers; exact up to 2^53 ms;
//    use String to get decimal strings instead (never Long objects: that is the default);
//  * enums: String -- enum values as their names ("ASR_MODE_PARAFORMER");
//  * defaults: true -- unset scalars arrive as 0/""/false instead of being absent;
//  * oneofs: true -- each message with a oneof names the field that is set (event.event).
const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

function usage(message, status = 2) {
  (status ? process.stderr : process.stdout).write(`${message}\nusage: node client.js FILE.wav ` +
    "[--address HOST:PORT] [--mode paraformer|sensevoice] [--fast] [--separate-channels] [--speakers] " +
    "[--max-speakers N] [--token TOKEN] [--protos DIR]\n");
  process.exit(status);
}

function parseArgs(argv) {
  const args = { address: "127.0.0.1:50050", mode: "", fast: false, token: "", separate: false,
                 speakers: false, maxSpeakers: 0,
                 protos: process.env.SPEECH_ANALYSIS_PROTOS || path.resolve(__dirname, "..", "..", "protos") };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${arg} needs a value`));
    if (arg === "--address") args.address = value();
    else if (arg === "--mode") args.mode = value();
    else if (arg === "--token") args.token = value();
    else if (arg === "--protos") args.protos = value();
    else if (arg === "--fast") args.fast = true;
    else if (arg === "--separate-channels") args.separate = true;
    else if (arg === "--speakers") args.speakers = true;
    else if (arg === "--max-speakers") { args.speakers = true; args.maxSpeakers = Number(value()); }
    else if (arg === "-h" || arg === "--help") usage("Stream a WAV file to the speech-emotion gateway.", 0);
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (positional.length !== 1) usage("give exactly one WAV file");
  if (args.mode && !["paraformer", "sensevoice"].includes(args.mode)) usage(`--mode ${args.mode}?`);
  if (!Number.isInteger(args.maxSpeakers) || args.maxSpeakers < 0 || args.maxSpeakers > 32) {
    usage("--max-speakers must be 0..32 (0: the gateway's default, 8)");
  }
  args.file = positional[0];
  return args;
}

// A RIFF/WAVE file's PCM16 (format 1, 16 bit) or IEEE float (format 3, 32 bit) samples.
function readWav(file) {
  const data = fs.readFileSync(file);
  if (data.toString("ascii", 0, 4) !== "RIFF" || data.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error(`${file} is not a RIFF/WAVE file`);
  }
  let format = null;
  for (let offset = 12; offset + 8 <= data.length;) {
    const id = data.toString("ascii", offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === "fmt ") {
      let code = data.readUInt16LE(body);
      if (code === 0xfffe) code = data.readUInt16LE(body + 24); // WAVE_FORMAT_EXTENSIBLE: sub-format
      format = { code, channels: data.readUInt16LE(body + 2), sampleRateHz: data.readUInt32LE(body + 4),
                 bitsPerSample: data.readUInt16LE(body + 14) };
    } else if (id === "data") {
      if (!format) throw new Error(`${file}: data chunk before fmt chunk`);
      let encoding;
      if (format.code === 1 && format.bitsPerSample === 16) encoding = "AUDIO_ENCODING_PCM16LE";
      else if (format.code === 3 && format.bitsPerSample === 32) encoding = "AUDIO_ENCODING_FLOAT32LE";
      else throw new Error(`${file}: only 16-bit PCM or 32-bit float WAV (format ${format.code}, ${format.bitsPerSample} bit)`);
      const end = Math.min(body + size, data.length);
      return { ...format, encoding, frameBytes: format.channels * format.bitsPerSample / 8,
               samples: data.subarray(body, end) };
    }
    offset = body + size + (size % 2); // chunks are padded to an even size
  }
  throw new Error(`${file}: no data chunk`);
}

function loadService(protosDir) {
  const definition = protoLoader.loadSync("speech_analysis/v1/gateway.proto",
                                          { ...LOADER_OPTIONS, includeDirs: [protosDir] });
  return grpc.loadPackageDefinition(definition).speech_analysis.v1.SpeechAnalysisService;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Write config, then audio chunks, honouring back-pressure; at real-time pace unless fast.
async function sendAudio(call, wav, config, fast) {
  call.write({ config });
  const chunkBytes = Math.max(1, Math.round(wav.sampleRateHz * CHUNK_MS / 1000)) * wav.frameBytes;
  const started = Date.now();
  for (let offset = 0, index = 0; offset < wav.samples.length; offset += chunkBytes, index++) {
    if (!fast) {
      const delay = started + index * CHUNK_MS - Date.now();
      if (delay > 0) await sleep(delay);
    }
    const ok = call.write({ audio: wav.samples.subarray(offset, offset + chunkBytes) });
    if (!ok) await new Promise((resolve) => call.once("drain", resolve));
  }
  call.end();
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  let wav;
  try {
    wav = readWav(args.file);
  } catch (error) {
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(2);
  }
  const Service = loadService(args.protos);
  const client = new Service(args.address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (args.token) metadata.set("authorization", `Bearer ${args.token}`);
  const call = client.Analyze(metadata);
  call.on("data", (event) => process.stdout.write(JSON.stringify(event) + "\n"));
  call.on("error", (error) => {
    process.stderr.write(JSON.stringify({ error: { code: grpc.status[error.code], details: error.details } }) + "\n");
    process.exitCode = 1;
  });
  call.on("end", () => client.close());
  const config = { sample_rate_hz: wav.sampleRateHz, encoding: wav.encoding, channels: wav.channels };
  if (args.mode) config.mode = args.mode === "paraformer" ? "ASR_MODE_PARAFORMER" : "ASR_MODE_SENSEVOICE";
  if (args.separate) config.channel_mode = "CHANNEL_MODE_SEPARATE";
  if (args.speakers) config.speaker_labels = { enabled: true, max_speakers: args.maxSpeakers };
  sendAudio(call, wav, config, args.fast).catch((error) => {
    process.stderr.write(`error: ${error.message}\n`);
    call.cancel();
  });
}

main();
