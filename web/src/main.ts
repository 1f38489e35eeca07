// The viewer page: open an image, draw marks, refine, undo, accept, download. State lives in `state`;
// every server call goes through `run`, which shows its failure as a readable message.

import type { Mark, ModelInfo } from "./gen/medrefine/v1/refine_pb";
import {
  classColour, displayRange, pixelsOf, planeAxes, planeOffsets, renderMask, renderPlane, voxel,
  type ImageMeta, type Pixels, type Plane,
} from "./image";
import { box, click, drawDrag, drawMarks, scribble, type Tool } from "./marks";
import { api, connect, describe, unauthenticated } from "./rpc";
import { newSessionId, Session } from "./session";

const TOKEN_KEY = "medrefine-token";

interface LoadedImage {
  meta: ImageMeta;
  data: Uint8Array<ArrayBuffer>;
  pixels: Pixels;
  range: [number, number];
}

const state = {
  models: [] as ModelInfo[],
  image: null as LoadedImage | null,
  session: null as Session | null,
  openingId: null as string | null,
  plane: { axis: -1, index: 0 } as Plane,
  tool: "scribble" as Tool,
  label: 1,
  marks: [] as Mark[],
  pending: [] as Mark[],
  busy: 0,
};
const client = connect({
  token: () => sessionStorage.getItem(TOKEN_KEY),
  session: () => state.session?.id ?? state.openingId,
});

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const root = $("viewer");
const stage = $("stage");
const imageCanvas = $<HTMLCanvasElement>("image");
const overlayCanvas = $<HTMLCanvasElement>("overlay");
const marksCanvas = $<HTMLCanvasElement>("marks");

// ----------------------------------------------------------------------------- calls, errors

function showError(message: string | null): void {
  const box = $("error");
  box.hidden = message === null;
  box.querySelector("span")!.textContent = message ?? "";
}

async function run(action: () => Promise<void>): Promise<void> {
  state.busy++;
  root.dataset.busy = "1";
  syncControls();
  try {
    showError(null);
    await action();
  } catch (error) {
    showError(describe(error));
    if (unauthenticated(error)) askToken();
  } finally {
    state.busy--;
    root.dataset.busy = state.busy > 0 ? "1" : "0";
    syncControls();
  }
}

function askToken(): void {
  const dialog = $<HTMLDialogElement>("token-dialog");
  if (!dialog.open) dialog.showModal();
}

$<HTMLDialogElement>("token-dialog").addEventListener("close", () => {
  const token = $<HTMLInputElement>("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  if (state.models.length === 0) void start();
});
$("error").querySelector("button")!.addEventListener("click", () => showError(null));
window.addEventListener("error", (e) => showError(`the viewer failed: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => showError(`the viewer failed: ${describe(e.reason)}`));

// ----------------------------------------------------------------------------- opening

async function start(): Promise<void> {
  await run(async () => {
    const listed = await client.listModels({});
    state.models = listed.models;
    $<HTMLSelectElement>("model").replaceChildren(
      ...state.models.map((m) => new Option(`${m.name} (${m.spatialDims}D)`, m.name)),
    );
    const samples = (await (await api("api/samples", sessionStorage.getItem(TOKEN_KEY))).json()) as { name: string; model: string }[];
    const select = $<HTMLSelectElement>("sample");
    select.replaceChildren(new Option("choose…", ""), ...samples.map((s) => new Option(`${s.name} (${s.model})`, s.name)));
    root.dataset.ready = "1";
    const wanted = new URLSearchParams(location.search).get("sample");
    if (wanted) {
      select.value = wanted;
      await openFrom(`api/samples/${encodeURIComponent(wanted)}`);
    }
  });
}

/** Fetch an image the server decoded (a sample, or uploaded files), then open a session. */
async function openFrom(path: string, body?: FormData): Promise<void> {
  // The id the session will get travels with the decode already: a balancer that keeps a
  // session on one replica sends both to the replica that then holds the series' headers.
  const id = newSessionId();
  const init: RequestInit = { method: body ? "POST" : "GET", body, headers: { "x-session-id": id } };
  const response = await api(path, sessionStorage.getItem(TOKEN_KEY), init);
  const meta = JSON.parse(response.headers.get("X-Medrefine-Image") ?? "null") as ImageMeta | null;
  if (!meta) throw new Error("the server sent an image without its description");
  const buffer = await response.arrayBuffer();
  const pixels = pixelsOf(meta, buffer);
  const known = state.models.find((m) => m.name === meta.model);
  const model = known ?? state.models.find((m) => m.spatialDims === meta.spatial_dims) ?? state.models[0];
  if (!model) throw new Error("the server serves no model");
  $<HTMLSelectElement>("model").value = model.name;
  const spatialSize = meta.shape.slice(meta.shape.length - model.spatialDims).reduce((a, b) => a * b, 1);
  state.image = { meta, data: new Uint8Array(buffer), pixels, range: displayRange(pixels, spatialSize) };
  const dicom = $<HTMLSelectElement>("format").querySelector<HTMLOptionElement>('option[value="dicom-seg"]')!;
  dicom.disabled = !meta.dicom;
  $<HTMLSelectElement>("format").value = meta.dicom ? "dicom-seg" : "nifti";
  await openSession(model, id);
}

async function openSession(model: ModelInfo, id = newSessionId()): Promise<void> {
  const image = state.image;
  if (!image) return;
  const previous = state.session;
  state.session = null;
  state.openingId = id;
  $("image-info").textContent = `${image.meta.name}: ${image.meta.shape.join(" × ")} ${image.meta.dtype}; opening on ${model.name}…`;
  if (previous) await client.closeSession({ sessionId: previous.id }).catch(() => undefined);
  let session: Session;
  try {
    session = await Session.open(client, state.openingId, model, image.meta, image.data);
  } catch (error) {
    for (const canvas of [imageCanvas, overlayCanvas, marksCanvas]) canvas.width = canvas.height = 0;
    $("views").hidden = true;
    $("hint").hidden = false;
    $("hint").textContent = "The image could not be opened (the message above says why).";
    throw error;
  }
  state.session = session;
  state.marks = [];
  state.pending = [];
  state.label = Math.min(1, session.classNames.length - 1);
  const spatial = session.spatial;
  state.plane = spatial.length === 3 ? { axis: 0, index: Math.floor(spatial[0] / 2) } : { axis: -1, index: 0 };
  const spacing = image.meta.spacing ? ` · ${image.meta.spacing.map((s) => s.toPrecision(3)).join(" × ")} mm` : "";
  $("image-info").textContent = `${image.meta.name}: ${image.meta.shape.join(" × ")} ${image.meta.dtype}${spacing}`;
  $("latency").textContent = `opened in ${(session.openSeconds * 1000).toFixed(0)} ms on the server (${session.backend})`;
  const head = session.headSource === "network" ? "the network's head" : `the head of ${session.headSource}`;
  $("head-source").textContent = `started from ${head}: ${session.headReason}`;
  $("site-info").textContent = "";
  root.dataset.headSource = session.headSource;
  delete root.dataset.siteVersion;
  $("hint").hidden = true;
  (document.activeElement as HTMLElement | null)?.blur(); // the keys now go to the viewer
  buildLegend();
  layout();
}

$<HTMLSelectElement>("sample").addEventListener("change", (e) => {
  const name = (e.target as HTMLSelectElement).value;
  if (name) void run(() => openFrom(`api/samples/${encodeURIComponent(name)}`));
});

function upload(files: FileList | null): void {
  if (!files || files.length === 0) return;
  $<HTMLSelectElement>("sample").value = "";
  const form = new FormData();
  for (const file of Array.from(files)) form.append("file", file, file.webkitRelativePath || file.name);
  void run(() => openFrom("api/decode", form));
}
$<HTMLInputElement>("file").addEventListener("change", (e) => upload((e.target as HTMLInputElement).files));
$<HTMLInputElement>("folder").addEventListener("change", (e) => upload((e.target as HTMLInputElement).files));
$<HTMLSelectElement>("model").addEventListener("change", (e) => {
  const model = state.models.find((m) => m.name === (e.target as HTMLSelectElement).value);
  if (model && state.image) void run(() => openSession(model));
});

// ----------------------------------------------------------------------------- drawing

/** Size and place the canvases for the plane shown, keeping the pixels' physical aspect. */
function layout(): void {
  const session = state.session;
  if (!session) return;
  const { rows, cols, rowAxis, colAxis } = planeAxes(session.spatial, state.plane.axis);
  const spacing = state.image?.meta.spacing ?? [];
  const [sr, sc] = spacing.length === session.spatial.length ? [spacing[rowAxis], spacing[colAxis]] : [1, 1];
  const fit = Math.min((stage.clientWidth - 16) / (cols * sc), (stage.clientHeight - 16) / (rows * sr));
  const width = Math.max(1, cols * sc * fit);
  const height = Math.max(1, rows * sr * fit);
  for (const canvas of [imageCanvas, overlayCanvas, marksCanvas]) {
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    canvas.style.left = `${(stage.clientWidth - width) / 2}px`;
    canvas.style.top = `${(stage.clientHeight - height) / 2}px`;
  }
  imageCanvas.width = overlayCanvas.width = cols;
  imageCanvas.height = overlayCanvas.height = rows;
  marksCanvas.width = Math.round(width * devicePixelRatio);
  marksCanvas.height = Math.round(height * devicePixelRatio);
  syncViews();
  render();
}

function render(): void {
  const session = state.session;
  const image = state.image;
  if (!session || !image) return;
  const offsets = planeOffsets(session.spatial, state.plane);
  const spatialSize = session.spatial.reduce((a, b) => a * b, 1);
  const channels = image.meta.shape.length > session.spatial.length ? image.meta.shape[0] : 1;
  const { rows, cols } = planeAxes(session.spatial, state.plane.axis);
  const rgba = renderPlane(image.pixels, channels, spatialSize, offsets, image.range);
  imageCanvas.getContext("2d")!.putImageData(new ImageData(rgba, cols, rows), 0, 0);
  const colours = session.classNames.map((_, i) => classColour(i));
  const overlay = renderMask(session.mask, offsets, colours);
  overlayCanvas.getContext("2d")!.putImageData(new ImageData(overlay, cols, rows), 0, 0);
  root.dataset.session = session.id;
  root.dataset.maskVersion = String(session.version);
  redrawMarks();
  syncControls();
}

function frame() {
  const session = state.session!;
  const { rows, cols } = planeAxes(session.spatial, state.plane.axis);
  return { spatial: session.spatial, plane: state.plane, sx: marksCanvas.width / cols, sy: marksCanvas.height / rows };
}

function redrawMarks(): void {
  if (!state.session) return;
  drawMarks(marksCanvas.getContext("2d")!, frame(), state.marks, state.pending);
}

/** The plane pixel (row, col) under a pointer event, or null outside the image. */
function pixelAt(e: PointerEvent): [number, number] | null {
  const session = state.session;
  if (!session) return null;
  const rect = overlayCanvas.getBoundingClientRect();
  const { rows, cols } = planeAxes(session.spatial, state.plane.axis);
  const col = Math.floor(((e.clientX - rect.left) / rect.width) * cols);
  const row = Math.floor(((e.clientY - rect.top) / rect.height) * rows);
  return row >= 0 && row < rows && col >= 0 && col < cols ? [row, col] : null;
}

let gesture: { points: number[][]; start: [number, number]; last: [number, number] } | null = null;

/** Where a pointer event is on the marks canvas, in its own pixels. */
function onMarks(e: PointerEvent): [number, number] {
  const r = marksCanvas.getBoundingClientRect();
  const k = marksCanvas.width / r.width;
  return [(e.clientX - r.left) * k, (e.clientY - r.top) * k];
}

stage.addEventListener("pointerdown", (e) => {
  const at = pixelAt(e);
  if (!at || !state.session || e.button !== 0) return;
  stage.setPointerCapture(e.pointerId);
  gesture = { points: [voxel(state.session.spatial, state.plane, ...at)], start: onMarks(e), last: at };
});

stage.addEventListener("pointermove", (e) => {
  if (!gesture || !state.session) return;
  const at = pixelAt(e);
  if (state.tool === "scribble" && at && (at[0] !== gesture.last[0] || at[1] !== gesture.last[1])) {
    gesture.points.push(voxel(state.session.spatial, state.plane, ...at));
    gesture.last = at;
    const ctx = marksCanvas.getContext("2d")!;
    drawMarks(ctx, frame(), state.marks, [...state.pending, scribble(state.label, gesture.points, radius())]);
  } else if (state.tool === "box") {
    if (at) gesture.last = at;
    redrawMarks();
    drawDrag(marksCanvas.getContext("2d")!, state.label, gesture.start, onMarks(e));
  }
});

stage.addEventListener("pointerup", () => {
  const g = gesture;
  gesture = null;
  const session = state.session;
  if (!g || !session) return;
  let mark: Mark;
  if (state.tool === "scribble") mark = scribble(state.label, g.points, radius());
  else if (state.tool === "click") mark = click(state.label, g.points[0], radius());
  else mark = box(state.label, g.points[0], voxel(session.spatial, state.plane, ...g.last));
  void run(async () => {
    state.pending.push(mark);
    redrawMarks();
    try {
      await session.addMarks([mark]);
    } catch (error) {
      state.pending.pop();
      redrawMarks();
      throw error;
    }
    if ($<HTMLInputElement>("auto").checked) await refine();
  });
});

stage.addEventListener("wheel", (e) => {
  if (state.plane.axis < 0) return;
  e.preventDefault();
  moveSlice(e.deltaY > 0 ? 1 : -1);
}, { passive: false });

function radius(): number {
  return Math.max(0, Math.min(50, Number($<HTMLInputElement>("radius").value) || 0));
}

// ----------------------------------------------------------------------------- planes

function moveSlice(step: number): void {
  const session = state.session;
  if (!session || state.plane.axis < 0) return;
  const size = session.spatial[state.plane.axis];
  state.plane = { ...state.plane, index: Math.max(0, Math.min(size - 1, state.plane.index + step)) };
  syncViews();
  render();
}

function setAxis(axis: number): void {
  const session = state.session;
  if (!session || session.spatial.length !== 3) return;
  state.plane = { axis, index: Math.floor(session.spatial[axis] / 2) };
  layout();
}

function syncViews(): void {
  const session = state.session;
  const views = $("views");
  views.hidden = !session || session.spatial.length !== 3;
  if (views.hidden || !session) return;
  const slider = $<HTMLInputElement>("slice");
  slider.max = String(session.spatial[state.plane.axis] - 1);
  slider.value = String(state.plane.index);
  $("slice-label").textContent = `${"zyx"[state.plane.axis]} = ${state.plane.index} / ${session.spatial[state.plane.axis] - 1}`;
  for (const b of views.querySelectorAll<HTMLButtonElement>("button[data-axis]")) {
    b.classList.toggle("on", Number(b.dataset.axis) === state.plane.axis);
  }
}

$("views").addEventListener("click", (e) => {
  const axis = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-axis]")?.dataset.axis;
  if (axis !== undefined) setAxis(Number(axis));
});
$<HTMLInputElement>("slice").addEventListener("input", (e) => {
  moveSlice(Number((e.target as HTMLInputElement).value) - state.plane.index);
});
window.addEventListener("resize", layout);

// ----------------------------------------------------------------------------- classes, tools

function buildLegend(): void {
  const session = state.session;
  const names = session?.classNames ?? [];
  $("legend").replaceChildren(
    ...names.map((name, label) => {
      const item = document.createElement("li");
      const [r, g, b] = classColour(label);
      item.dataset.label = String(label);
      item.dataset.rgb = `${r},${g},${b}`;
      item.classList.toggle("on", label === state.label);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${r} ${g} ${b})`;
      const key = document.createElement("span");
      key.className = "key";
      key.textContent = label < 10 ? String(label) : "";
      const text = document.createElement("span");
      text.textContent = label === 0 ? `${name} (marks only)` : name;
      item.append(swatch, key, text);
      item.addEventListener("click", () => selectLabel(label));
      return item;
    }),
  );
}

function selectLabel(label: number): void {
  if (!state.session || label >= state.session.classNames.length) return;
  state.label = label;
  buildLegend();
}

function selectTool(tool: Tool): void {
  state.tool = tool;
  for (const b of $("tools").querySelectorAll<HTMLButtonElement>("button")) b.classList.toggle("on", b.dataset.tool === tool);
}

$("tools").addEventListener("click", (e) => {
  const tool = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-tool]")?.dataset.tool;
  if (tool) selectTool(tool as Tool);
});

$<HTMLFormElement>("add-class").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("class-name");
  const session = state.session;
  if (!session || !input.value.trim()) return;
  void run(async () => {
    const label = await session.addClass(input.value.trim());
    input.value = "";
    state.label = label;
    buildLegend();
    render();
  });
});

// ----------------------------------------------------------------------------- refine, history

async function refine(): Promise<void> {
  const session = state.session;
  if (!session) return;
  const bar = $<HTMLProgressElement>("progress");
  bar.value = 0;
  const outcome = await session.refine((iteration, max) => {
    bar.value = max > 0 ? (iteration + 1) / max : 1;
  });
  bar.value = 1;
  const s = outcome.summary;
  const agree = s.satisfied ? "every marked pixel agrees" : `${s.wrongMarks} of ${s.markedPixels} marked pixels disagree`;
  $("latency").textContent =
    `refine: ${outcome.browserMs.toFixed(0)} ms in the browser, ${(s.seconds * 1000).toFixed(0)} ms on the server, ` +
    `${s.iterations} steps; ${agree}${s.note ? `. ${s.note}` : ""}`;
  await afterChange();
}

async function afterChange(): Promise<void> {
  const session = state.session!;
  state.marks = await session.marks();
  state.pending = [];
  buildLegend();
  render();
}

function history(kind: "undo" | "redo" | "reset"): void {
  const session = state.session;
  if (!session) return;
  void run(async () => {
    await session.step(kind);
    if (state.label >= session.classNames.length) state.label = session.classNames.length - 1;
    await afterChange();
  });
}

function accept(): void {
  const session = state.session;
  if (!session) return;
  void run(async () => {
    const v = await session.accept();
    const use = v.inUse ? "in use: new images start from it" : "not used yet";
    $("site-info").textContent = `accepted as site v${v.version} (${v.images} images); its head is ${use}. ${v.reason}`;
    root.dataset.siteVersion = String(v.version);
    root.dataset.siteInUse = v.inUse ? "1" : "0";
  });
}

$("refine").addEventListener("click", () => void run(refine));
$("accept").addEventListener("click", accept);
$("undo").addEventListener("click", () => history("undo"));
$("redo").addEventListener("click", () => history("redo"));
$("reset").addEventListener("click", () => history("reset"));

function syncControls(): void {
  const session = state.session;
  const idle = state.busy === 0 && session !== null;
  $<HTMLButtonElement>("refine").disabled = !idle || (session?.status?.pendingMarks ?? 0) === 0 && !session?.status?.historyLength;
  $<HTMLButtonElement>("undo").disabled = !idle || !session?.status?.canUndo;
  $<HTMLButtonElement>("redo").disabled = !idle || !session?.status?.canRedo;
  $<HTMLButtonElement>("reset").disabled = !idle;
  $<HTMLButtonElement>("download").disabled = !idle;
  const accept = $<HTMLButtonElement>("accept");
  accept.disabled = !idle || !session?.model.hasSite || (session?.status?.pendingMarks ?? 0) > 0;
  accept.title = session && !session.model.hasSite
    ? "this server keeps no site for this model (medrefine serve --site-dir)"
    : "the mask shown is this image's answer: the model's site learns from it";
  const s = session?.status;
  root.dataset.pending = String(s?.pendingMarks ?? 0);
  $("status").textContent = session
    ? `session ${session.id} · ${session.model.name} on ${session.backend} · mask v${session.version} · ` +
      `${s?.pendingMarks ?? 0} marks pending · ${s?.historyLength ?? 0} interactions`
    : "";
}

// ----------------------------------------------------------------------------- download

$("download").addEventListener("click", () => {
  const session = state.session;
  const image = state.image;
  if (!session || !image) return;
  void run(async () => {
    const mask = await session.fetchMask();
    render();
    const format = $<HTMLSelectElement>("format").value;
    const meta = {
      mask_shape: session.spatial,
      class_names: session.classNames,
      name: image.meta.name,
      digest: image.meta.digest,
      shape: image.meta.shape,
      spacing: image.meta.spacing && image.meta.spacing.length === session.spatial.length ? image.meta.spacing : null,
      affine: image.meta.affine,
    };
    const response = await api(`api/mask?format=${encodeURIComponent(format)}`, sessionStorage.getItem(TOKEN_KEY), {
      method: "POST",
      headers: {
        "X-Medrefine-Mask": JSON.stringify(meta),
        "Content-Type": "application/octet-stream",
        "x-session-id": session.id, // the replica that decoded a DICOM series holds its headers
      },
      body: new Uint8Array(mask),
    });
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? "mask";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  });
});

// ----------------------------------------------------------------------------- keyboard

document.addEventListener("keydown", (e) => {
  const target = e.target as HTMLElement;
  if (target.matches("input:not([type=range]), select, textarea") || $<HTMLDialogElement>("token-dialog").open) return;
  const key = e.key.toLowerCase();
  const ctrl = e.ctrlKey || e.metaKey;
  if (ctrl && key === "z") history(e.shiftKey ? "redo" : "undo");
  else if (ctrl && key === "y") history("redo");
  else if (ctrl) return;
  else if (/^[0-9]$/.test(key)) selectLabel(Number(key));
  else if (key === "s") selectTool("scribble");
  else if (key === "c") selectTool("click");
  else if (key === "b") selectTool("box");
  else if (key === "r") void run(refine);
  else if (key === "[" || key === "]") {
    const input = $<HTMLInputElement>("radius");
    input.value = String(Math.max(0, Math.min(50, radius() + (key === "]" ? 1 : -1))));
  } else if (key === "z" || key === "y" || key === "x") setAxis("zyx".indexOf(key));
  else if (key === "arrowup" || key === "arrowright" || key === "pageup") moveSlice(1);
  else if (key === "arrowdown" || key === "arrowleft" || key === "pagedown") moveSlice(-1);
  else return;
  e.preventDefault();
});

void start();
