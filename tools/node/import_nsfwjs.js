#!/usr/bin/env node
// Imports one of nsfwjs@4.4.0's embedded TensorFlow.js layers models (MIT, Infinite Red) into the
// standard tfjs artifacts that satcap reads: OUT_DIR/model.json + OUT_DIR/weights.bin.
//   node tools/node/import_nsfwjs.js NAME OUT_DIR      NAME: mobilenet_v2 | inception_v3
// nsfwjs ships each model as UMD .min.js modules: model.min.js exports {modelTopology,
// weightsManifest}; each group1-shardKofN.min.js exports the binary shard as a base64 string.
// The shards are concatenated in manifest order (tfjs does the same), so weights.bin is exactly
// the byte stream the weight specs describe. Files are written to a temporary name and renamed.
'use strict';
const fs = require('fs');
const path = require('path');

function fail(message) {
  process.stderr.write(`import_nsfwjs: ${message}\n`);
  process.exit(1);
}

const [name, outDir] = process.argv.slice(2);
if (!name || !outDir) fail('usage: import_nsfwjs.js NAME OUT_DIR');
const pkgDir = path.join(__dirname, 'node_modules', 'nsfwjs');
const modelDir = path.join(pkgDir, 'dist', 'models', name);
if (!fs.existsSync(modelDir)) fail(`${modelDir}: no such model (run npm ci in tools/node)`);

const unwrap = (m) => (m && m.default !== undefined ? m.default : m);
const model = unwrap(require(path.join(modelDir, 'model.min.js')));
if (!model.modelTopology || !model.weightsManifest) fail(`${name}/model.min.js: no modelTopology/weightsManifest`);

const buffers = [];
for (const group of model.weightsManifest) {
  for (const shard of group.paths) {
    const b64 = unwrap(require(path.join(modelDir, `${shard}.min.js`)));
    if (typeof b64 !== 'string') fail(`${name}/${shard}.min.js: expected a base64 string`);
    buffers.push(Buffer.from(b64, 'base64'));
  }
}
const weights = Buffer.concat(buffers);

// Check the byte count against the specs before writing anything.
const bytesPer = { uint8: 1, uint16: 2, float16: 2, float32: 4, int32: 4 };
let expected = 0;
const specs = [];
for (const group of model.weightsManifest) {
  for (const w of group.weights) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    const dtype = w.quantization ? w.quantization.dtype : w.dtype;
    if (!(dtype in bytesPer)) fail(`${w.name}: unsupported dtype ${dtype}`);
    expected += n * bytesPer[dtype];
    specs.push(w);
  }
}
if (expected !== weights.length) fail(`${name}: shards hold ${weights.length} bytes, specs need ${expected}`);

const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
const json = {
  format: 'layers-model',
  generatedBy: `keras ${model.modelTopology.keras_version || '?'}`,
  convertedBy: `satcap tools/node/import_nsfwjs.js from nsfwjs@${pkg.version} (${pkg.license})`,
  modelTopology: model.modelTopology,
  weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
};

fs.mkdirSync(outDir, { recursive: true });
function writeAtomic(file, data) {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, data);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}
writeAtomic(path.join(outDir, 'weights.bin'), weights);
writeAtomic(path.join(outDir, 'model.json'), JSON.stringify(json));
process.stdout.write(`${name}: ${specs.length} weight tensors, ${weights.length} bytes -> ${outDir}\n`);
