// Marks (proto Mark messages) made from pointer gestures, and drawn on the plane shown.

import { create } from "@bufbuild/protobuf";
import { MarkSchema, type Mark } from "./gen/medrefine/v1/refine_pb";
import { classColour, planeAxes, type Plane } from "./image";

export type Tool = "scribble" | "click" | "box";

export function scribble(label: number, points: number[][], radius: number): Mark {
  return create(MarkSchema, { kind: { case: "scribble", value: { label, points: points.flat(), radius } } });
}

export function click(label: number, point: number[], radius: number): Mark {
  return create(MarkSchema, { kind: { case: "click", value: { label, point, radius: Math.max(radius, 1) } } });
}

/** A box from two corners on the plane shown; in 3D it is one slice thick. */
export function box(label: number, a: number[], b: number[]): Mark {
  const start = a.map((v, i) => Math.min(v, b[i]));
  const stop = a.map((v, i) => Math.max(v, b[i]) + 1);
  return create(MarkSchema, { kind: { case: "box", value: { label, start, stop } } });
}

/** Where a mark lies on the canvas: scale = canvas pixels per image pixel (columns, rows). */
interface Frame {
  spatial: number[];
  plane: Plane;
  sx: number;
  sy: number;
}

function points(flat: number[], ndim: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i + ndim <= flat.length; i += ndim) out.push(flat.slice(i, i + ndim));
  return out;
}

function onPlane(f: Frame, p: number[]): boolean {
  return f.plane.axis < 0 || p[f.plane.axis] === f.plane.index;
}

function xy(f: Frame, p: number[]): [number, number] {
  const { rowAxis, colAxis } = planeAxes(f.spatial, f.plane.axis);
  return [(p[colAxis] + 0.5) * f.sx, (p[rowAxis] + 0.5) * f.sy];
}

function style(ctx: CanvasRenderingContext2D, label: number): void {
  const [r, g, b] = classColour(label);
  ctx.strokeStyle = ctx.fillStyle = `rgb(${r} ${g} ${b})`;
}

/** Draw every mark's part on the plane shown onto `ctx` (pending marks dashed). */
export function drawMarks(ctx: CanvasRenderingContext2D, f: Frame, marks: Mark[], pending: Mark[]): void {
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.globalAlpha = 0.9;
  const ndim = f.spatial.length;
  const all = [...marks.map((m) => [m, false] as const), ...pending.map((m) => [m, true] as const)];
  for (const [mark, dashed] of all) {
    ctx.setLineDash(dashed ? [6, 4] : []);
    const k = mark.kind;
    if (k.case === "scribble") {
      style(ctx, k.value.label);
      ctx.lineWidth = Math.max(2, (2 * k.value.radius + 1) * Math.min(f.sx, f.sy));
      const pts = points(k.value.points, ndim);
      ctx.beginPath();
      let drawing = false;
      for (const p of pts) {
        if (!onPlane(f, p)) {
          drawing = false;
          continue;
        }
        const [x, y] = xy(f, p);
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        if (pts.length === 1) ctx.lineTo(x + 0.01, y);
        drawing = true;
      }
      ctx.stroke();
    } else if (k.case === "click") {
      const d = f.plane.axis < 0 ? 0 : Math.abs(k.value.point[f.plane.axis] - f.plane.index);
      if (d > k.value.radius) continue;
      style(ctx, k.value.label);
      const [x, y] = xy(f, k.value.point);
      const r = Math.sqrt(k.value.radius ** 2 - d ** 2) + 0.5;
      ctx.beginPath();
      ctx.ellipse(x, y, r * f.sx, r * f.sy, 0, 0, 2 * Math.PI);
      ctx.fill();
    } else if (k.case === "box") {
      const { start, stop, label } = k.value;
      if (f.plane.axis >= 0 && (f.plane.index < start[f.plane.axis] || f.plane.index >= stop[f.plane.axis])) continue;
      style(ctx, label);
      ctx.lineWidth = 2;
      const [x0, y0] = xy(f, start);
      const [x1, y1] = xy(f, stop.map((v) => v - 1));
      ctx.strokeRect(x0 - f.sx / 2, y0 - f.sy / 2, x1 - x0 + f.sx, y1 - y0 + f.sy);
    } else if (k.case === "paint") {
      style(ctx, k.value.label);
      for (const p of points(k.value.pixels, ndim)) {
        if (!onPlane(f, p)) continue;
        const [x, y] = xy(f, p);
        ctx.fillRect(x - f.sx / 2, y - f.sy / 2, f.sx, f.sy);
      }
    }
  }
}

/** A box being dragged, as an outline between two plane points (canvas pixels). */
export function drawDrag(ctx: CanvasRenderingContext2D, label: number, a: [number, number], b: [number, number]): void {
  style(ctx, label);
  ctx.setLineDash([4, 3]);
  ctx.lineWidth = 2;
  ctx.strokeRect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
}
