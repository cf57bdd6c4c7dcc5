#!/usr/bin/env node
// Reference outputs for satcap's encoder parity test, computed by TensorFlow.js itself.
//   node tools/node/tfjs_reference.js NAME INPUT.f32 N H W [LAYER]
// Loads nsfwjs@4.4.0's model NAME straight from the npm package's .min.js modules (not from
// satcap's imported copy, so the import is checked too), with @tensorflow/tfjs 4.22.0 on its
// pure-JS CPU backend; reads INPUT.f32 (raw little-endian float32, NHWC [N, H, W, 3], already
// preprocessed) and prints {"backend", "shape", "output": [[...], ...]} for LAYER (default: the
// model's output, the 5-class probabilities) as JSON on stdout.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [name, input, n, h, w, layer] = process.argv.slice(2);
  if (!name || !input || !n || !h || !w) throw new Error('usage: tfjs_reference.js NAME INPUT.f32 N H W [LAYER]');
  const tf = require('@tensorflow/tfjs');
  await tf.setBackend('cpu');
  const modelDir = path.join(__dirname, 'node_modules', 'nsfwjs', 'dist', 'models', name);
  const unwrap = (m) => (m && m.default !== undefined ? m.default : m);
  const model = unwrap(require(path.join(modelDir, 'model.min.js')));
  const shards = [];
  const weightSpecs = [];
  for (const group of model.weightsManifest) {
    for (const p of group.paths) shards.push(Buffer.from(unwrap(require(path.join(modelDir, `${p}.min.js`))), 'base64'));
    weightSpecs.push(...group.weights);
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const net = await tf.loadLayersModel({
    load: async () => ({ modelTopology: model.modelTopology, weightSpecs, weightData }),
  });
  const shape = [Number(n), Number(h), Number(w), 3];
  const bytes = fs.readFileSync(input);
  const count = shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * 4) throw new Error(`${input}: ${bytes.length} bytes, expected ${count * 4}`);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const x = tf.tensor4d(data, shape);
  const target = layer ? tf.model({ inputs: net.inputs, outputs: net.getLayer(layer).output }) : net;
  const y = target.predict(x);
  const flat = Array.from(await y.data());
  const rows = [];
  const per = flat.length / shape[0];
  for (let i = 0; i < shape[0]; i++) rows.push(flat.slice(i * per, (i + 1) * per));
  process.stdout.write(JSON.stringify({ backend: tf.getBackend(), shape: y.shape, output: rows }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`tfjs_reference: ${e.message}\n`);
  process.exit(1);
});
