// Applies mask deltas with the viewer's own web/src/mask.ts (bundled for node by the test) and
// writes the masks it gets, or the error it throws, for test_mask_decoding.py to compare.
//
// usage: node apply_deltas.mjs <mask.mjs> <cases.json> <out.json>

import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [module, casesPath, outPath] = process.argv.slice(2);
const { applyDelta } = await import(pathToFileURL(module).href);
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));

const out = [];
for (const c of JSON.parse(readFileSync(casesPath, "utf8"))) {
  const delta = {
    baseVersion: BigInt(c.base_version),
    boxStart: c.start,
    boxStop: c.stop,
    bitsPerLabel: c.bits,
    data: bytes(c.data),
  };
  try {
    const mask = await applyDelta(c.held === null ? null : bytes(c.held), c.shape, delta);
    out.push({ mask: Buffer.from(mask).toString("base64") });
  } catch (error) {
    out.push({ error: String(error.message ?? error) });
  }
}
writeFileSync(outPath, JSON.stringify(out));
