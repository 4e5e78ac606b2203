#!/usr/bin/env node
// tuf-js client driven by softhsm-test/clients (Go). It is a test harness
// helper, not a product: it runs the tuf-js 5.x client workflow against a TUF
// repository served over HTTP and reports the outcome as ONE JSON line.
//
// Input: a JSON object on stdin (or as the first argument):
//   {
//     "metadataUrl": "http://127.0.0.1:1234/metadata/",
//     "targetsUrl":  "http://127.0.0.1:1234/targets/",
//     "cacheDir":    "/tmp/x",        // persistent state: <cacheDir>/metadata, <cacheDir>/targets
//     "trustedRoot": "/path/1.root.json", // copied to <cacheDir>/metadata/root.json if absent
//     "targets":     ["a.txt", "dir/b.txt"], // optional: targets to download
//     "lookup":      ["lib/app:v1"],  // optional: targets to look up only (no download)
//     "outDir":      "/tmp/out",     // required with targets: target i is written to <outDir>/<i>
//     "refTime":     "2030-01-01T00:00:00Z" // optional: reference time for expiry checks
//   }
//
// Output (stdout, one line):
//   {"ok":true|false,"client":"tuf-js","version":"5.0.1","error":"...",
//    "versions":{"root":1,"timestamp":3,...},"targets":{"a.txt":"/tmp/out/0"},
//    "infos":{"lib/app:v1":{"length":527,"hashes":{"sha256":"…"},"custom":{…}}}}
// "versions" are the versions of the metadata files in the cache directory
// after the run. Exit status: 0 on success, 1 on a client failure, 2 on a
// usage error.
//
// refTime: tuf-js has no public API to change its reference time; it takes
// `new Date()` when the Updater is built. This script overwrites the
// (TypeScript-private) field trustedSet.referenceTime of the pinned tuf-js
// version, and fails loudly if that field is not there any more.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Updater } = require('tuf-js');
const tufVersion = require('tuf-js/package.json').version;

function readVersions(metadataDir) {
  const versions = {};
  let names = [];
  try {
    names = fs.readdirSync(metadataDir);
  } catch {
    return versions;
  }
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    try {
      const doc = JSON.parse(fs.readFileSync(path.join(metadataDir, name), 'utf8'));
      const role = decodeURIComponent(name.slice(0, -'.json'.length));
      if (Number.isInteger(doc?.signed?.version)) versions[role] = doc.signed.version;
    } catch {
      // unreadable cache files are not reported
    }
  }
  return versions;
}

function describe(err) {
  let msg = `${err?.name ?? 'Error'}: ${err?.message ?? String(err)}`;
  if (err?.statusCode) msg += ` (HTTP ${err.statusCode})`;
  for (let c = err?.cause, depth = 0; c && depth < 5; c = c.cause, depth++) {
    msg += ` (cause: ${c?.name ?? 'Error'}: ${c?.message ?? String(c)})`;
  }
  return msg;
}

async function readInput() {
  if (process.argv[2]) return process.argv[2];
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function emit(obj) {
  process.stdout.write(JSON.stringify({ client: 'tuf-js', version: tufVersion, ...obj }) + '\n');
}

async function main() {
  let req;
  try {
    req = JSON.parse(await readInput());
    for (const k of ['metadataUrl', 'targetsUrl', 'cacheDir', 'trustedRoot']) {
      if (typeof req[k] !== 'string' || req[k] === '') throw new Error(`missing "${k}"`);
    }
    if (req.targets?.length && !req.outDir) throw new Error('missing "outDir"');
  } catch (err) {
    emit({ ok: false, error: `usage: ${describe(err)}` });
    return 2;
  }

  const metadataDir = path.join(req.cacheDir, 'metadata');
  const targetDir = path.join(req.cacheDir, 'targets');
  try {
    fs.mkdirSync(metadataDir, { recursive: true });
    fs.mkdirSync(targetDir, { recursive: true });
    const rootPath = path.join(metadataDir, 'root.json');
    if (!fs.existsSync(rootPath)) fs.copyFileSync(req.trustedRoot, rootPath);

    const updater = new Updater({
      metadataDir,
      metadataBaseUrl: req.metadataUrl,
      targetDir,
      targetBaseUrl: req.targetsUrl,
      config: { fetchRetries: 0, fetchTimeout: 30000 },
    });
    if (req.refTime) {
      const t = new Date(req.refTime);
      if (Number.isNaN(t.getTime())) throw new Error(`bad refTime ${req.refTime}`);
      if (!(updater.trustedSet?.referenceTime instanceof Date)) {
        throw new Error(`refTime: tuf-js ${tufVersion} has no trustedSet.referenceTime to override`);
      }
      updater.trustedSet.referenceTime = t;
    }

    await updater.refresh();

    const fetched = {};
    for (const [i, target] of (req.targets ?? []).entries()) {
      const info = await updater.getTargetInfo(target);
      if (!info) throw new Error(`target ${target} not found`);
      fs.mkdirSync(req.outDir, { recursive: true });
      const out = path.join(req.outDir, String(i));
      await updater.downloadTarget(info, out);
      fetched[target] = out;
    }
    const infos = {};
    for (const target of req.lookup ?? []) {
      const info = await updater.getTargetInfo(target);
      if (!info) throw new Error(`target ${target} not found`);
      infos[target] = { length: info.length, hashes: info.hashes, custom: info.custom };
    }
    emit({ ok: true, versions: readVersions(metadataDir), targets: fetched, infos });
    return 0;
  } catch (err) {
    emit({ ok: false, error: describe(err), versions: readVersions(metadataDir) });
    return 1;
  }
}

// Exit once the result line is written: a download abandoned half-way
// (a file over the length limit) would otherwise keep Node waiting for the
// rest of the body until the fetch timeout.
const code = await main();
process.stdout.write('', () => process.exit(code));
