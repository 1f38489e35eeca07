// Drives the viewer in Debian's Chromium through playwright-core, as a person would: choose a
// sample, pick class and tool with the keyboard, draw a scribble with the mouse, refine, undo,
// redo, accept, download. It reads the overlay canvas back after each step and writes what it saw to
// <out>/result.json for tests/web/test_viewer.py to check against an in-process session.
//
// usage: node drive.mjs <plan.json>   (plan: see test_viewer.py's _drive)

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(join(plan.web, "package.json"))("playwright-core");

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const WAIT = { timeout: 120_000 };

const viewer = (page) => page.evaluate(() => ({ ...document.getElementById("viewer").dataset }));

/** Wait until no call runs and `test(dataset)` holds. */
async function settle(page, test, what) {
  const started = Date.now();
  for (;;) {
    const d = await viewer(page);
    if (d.busy === "0" && test(d)) return d;
    const error = await page.textContent("#error span");
    if (error) throw new Error(`${what}: the page shows an error: ${error}`);
    if (Date.now() - started > WAIT.timeout) throw new Error(`${what}: timed out (${JSON.stringify(d)})`);
    await page.waitForTimeout(50);
  }
}

/** The overlay canvas's pixels (RGBA, base64) and the legend's class colours. */
function readOverlay(page) {
  return page.evaluate(() => {
    const canvas = document.getElementById("overlay");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let text = "";
    for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
    const legend = [...document.querySelectorAll("#legend li")].map((li) => li.dataset.rgb);
    return { width: canvas.width, height: canvas.height, rgba: btoa(text), legend };
  });
}

/** Show plane `view.index` along `view.axis` (3D) with the keyboard: the axis key, then arrows. */
async function showPlane(page, view) {
  if (view.axis < 0) return;
  await page.keyboard.press("zyx"[view.axis]);
  let shown = Number((await page.inputValue("#slice")));
  while (shown !== view.index) {
    await page.keyboard.press(shown < view.index ? "ArrowUp" : "ArrowDown");
    shown = Number(await page.inputValue("#slice"));
  }
}

async function planes(page, views) {
  const out = [];
  for (const view of views) {
    await showPlane(page, view);
    out.push({ ...view, ...(await readOverlay(page)) });
  }
  return out;
}

/** A call the server refuses (undo with nothing to undo): the message the page shows. */
async function refused(page) {
  await page.keyboard.press("Control+z");
  await page.waitForFunction(() => document.querySelector("#error span").textContent !== "", null, WAIT);
  const shown = await page.textContent("#error span");
  await page.click("#error button");
  return shown;
}

/** Client coordinates of the centre of plane pixel (row, col). */
async function at(page, row, col) {
  const box = await page.locator("#overlay").boundingBox();
  const [w, h] = await page.evaluate(() => [document.getElementById("overlay").width, document.getElementById("overlay").height]);
  return [box.x + ((col + 0.5) * box.width) / w, box.y + ((row + 0.5) * box.height) / h];
}

async function drive(page, run) {
  const result = { sample: run.sample };
  const before = await viewer(page);
  if (run.file) await page.setInputFiles("#file", run.file);
  else await page.selectOption("#sample", run.sample);
  let d = await settle(page, (v) => v.session && v.session !== before.session && v.maskVersion === "1", "open");
  result.session = d.session;
  result.head = { source: d.headSource, text: await page.textContent("#head-source") };
  result.opened = await planes(page, run.views);
  result.refused = await refused(page);

  await showPlane(page, run.views[0]);
  await page.keyboard.press(String(run.label));
  await page.keyboard.press("s");
  await page.fill("#radius", String(run.radius));
  const [first, ...rest] = run.points;
  await page.mouse.move(...(await at(page, first[0], first[1])));
  await page.mouse.down();
  for (const [row, col] of rest) await page.mouse.move(...(await at(page, row, col)), { steps: 3 });
  await page.mouse.up();
  await settle(page, (v) => v.pending === "1", "scribble");

  await page.keyboard.press("r");
  d = await settle(page, (v) => v.maskVersion === "2", "refine");
  result.progress = await page.evaluate(() => document.getElementById("progress").value);
  result.latency = await page.textContent("#latency");
  result.refined = await planes(page, run.views);
  await showPlane(page, run.views[0]);
  if (run.screenshot) await page.screenshot({ path: join(plan.out, run.screenshot) });

  await page.keyboard.press("Control+z");
  await settle(page, (v) => v.maskVersion === "3", "undo");
  result.undone = await planes(page, run.views);
  await page.keyboard.press("Control+Shift+z");
  await settle(page, (v) => v.maskVersion === "4", "redo");
  result.redone = await planes(page, run.views);

  await page.click("#accept");
  d = await settle(page, (v) => v.siteVersion !== undefined, "accept");
  result.accepted = { version: d.siteVersion, inUse: d.siteInUse, text: await page.textContent("#site-info") };

  const download = page.waitForEvent("download", WAIT);
  await page.click("#download");
  const file = await download;
  result.download = join(plan.out, `${run.sample}-${file.suggestedFilename()}`);
  await file.saveAs(result.download);
  await settle(page, () => true, "download");
  return result;
}

const browser = await chromium.launchPersistentContext(mkdtempSync(join(plan.out, "profile-")), {
  executablePath: plan.chromium,
  headless: true,
  args: FLAGS,
  viewport: { width: 1280, height: 860 },
  acceptDownloads: true,
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(plan.url);
  if (plan.token) {
    await page.waitForSelector("#token-dialog[open]", WAIT);
    await page.fill("#token", plan.token);
    await page.click("#token-dialog button");
  }
  await page.waitForSelector("#viewer[data-ready='1']", WAIT);
  const result = await drive(page, plan.run);
  writeFileSync(join(plan.out, "result.json"), JSON.stringify({ ...result, errors }));
} finally {
  await browser.close();
}
