// An image as the server decoded it, and how one plane of it is shown.
//
// Arrays are channel-first with spatial axes in array order: 2D (y, x), 3D (z, y, x). A 3D image
// is shown one plane at a time: axial planes cut z (rows y, columns x), coronal planes cut y
// (rows z, columns x), sagittal planes cut x (rows z, columns y). Planes are shown in array order,
// not reoriented to the patient.

/** What /api/samples/<name> and /api/decode answer in the X-Medrefine-Image header. */
export interface ImageMeta {
  name: string;
  shape: number[];
  dtype: string;
  spacing: number[] | null;
  affine: number[] | null;
  digest: string;
  spatial_dims: number;
  dicom: boolean;
  model: string | null;
}

export type Pixels =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

const ARRAYS: Record<string, (b: ArrayBuffer) => Pixels> = {
  uint8: (b) => new Uint8Array(b),
  int8: (b) => new Int8Array(b),
  uint16: (b) => new Uint16Array(b),
  int16: (b) => new Int16Array(b),
  uint32: (b) => new Uint32Array(b),
  int32: (b) => new Int32Array(b),
  float32: (b) => new Float32Array(b),
  float64: (b) => new Float64Array(b),
};

export function pixelsOf(meta: ImageMeta, buffer: ArrayBuffer): Pixels {
  const make = ARRAYS[meta.dtype];
  if (!make) throw new Error(`the server sent pixels of type ${meta.dtype}`);
  const pixels = make(buffer);
  if (pixels.length !== meta.shape.reduce((a, b) => a * b, 1)) throw new Error("the image data does not fill its shape");
  return pixels;
}

/** Which plane is shown: the cut axis (-1 for a 2D image) and the index along it. */
export interface Plane {
  axis: number;
  index: number;
}

/** Rows and columns of a plane: their sizes and the spatial axes they run along. */
export function planeAxes(spatial: number[], axis: number): { rowAxis: number; colAxis: number; rows: number; cols: number } {
  const rest = spatial.map((_, i) => i).filter((i) => i !== axis);
  const [rowAxis, colAxis] = rest.slice(-2);
  return { rowAxis, colAxis, rows: spatial[rowAxis], cols: spatial[colAxis] };
}

/** The spatial coordinates (array order) of plane pixel (row, col). */
export function voxel(spatial: number[], plane: Plane, row: number, col: number): number[] {
  const { rowAxis, colAxis } = planeAxes(spatial, plane.axis);
  const point = spatial.map(() => 0);
  if (plane.axis >= 0) point[plane.axis] = plane.index;
  point[rowAxis] = row;
  point[colAxis] = col;
  return point;
}

/** Flat C-order offsets of every pixel of a plane, row by row. */
export function planeOffsets(spatial: number[], plane: Plane): Uint32Array {
  const strides = spatial.map((_, i) => spatial.slice(i + 1).reduce((a, b) => a * b, 1));
  const { rowAxis, colAxis, rows, cols } = planeAxes(spatial, plane.axis);
  const base = plane.axis >= 0 ? plane.index * strides[plane.axis] : 0;
  const out = new Uint32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = base + r * strides[rowAxis] + c * strides[colAxis];
  }
  return out;
}

/** Display window [low, high] of channel 0: its 0.5th and 99.5th percentiles (a sample). */
export function displayRange(pixels: Pixels, spatialSize: number): [number, number] {
  const step = Math.max(1, Math.floor(spatialSize / 200_000));
  const values: number[] = [];
  for (let i = 0; i < spatialSize; i += step) {
    const v = pixels[i];
    if (Number.isFinite(v)) values.push(v);
  }
  if (values.length === 0) return [0, 1];
  values.sort((a, b) => a - b);
  const low = values[Math.floor(0.005 * (values.length - 1))];
  const high = values[Math.ceil(0.995 * (values.length - 1))];
  return high > low ? [low, high] : [low, low + 1];
}

/** RGBA of a plane: grey from channel 0 through the window, or colour for 3- and 4-channel
 * uint8 images (photographs and stained slides). */
export function renderPlane(
  pixels: Pixels,
  channels: number,
  spatialSize: number,
  offsets: Uint32Array,
  range: [number, number],
): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(offsets.length * 4);
  const colour = (channels === 3 || channels === 4) && pixels instanceof Uint8Array;
  const [low, high] = range;
  const scale = 255 / (high - low);
  for (let i = 0; i < offsets.length; i++) {
    const at = offsets[i];
    if (colour) {
      out[4 * i] = pixels[at];
      out[4 * i + 1] = pixels[at + spatialSize];
      out[4 * i + 2] = pixels[at + 2 * spatialSize];
    } else {
      const g = (pixels[at] - low) * scale;
      out[4 * i] = out[4 * i + 1] = out[4 * i + 2] = g;
    }
    out[4 * i + 3] = 255;
  }
  return out;
}

/** RGBA of a plane of the mask: the class colour, opaque, and transparent background (the
 * overlay's own opacity is set in CSS, so the canvas holds exact colours). */
export function renderMask(mask: Uint8Array, offsets: Uint32Array, colours: number[][]): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(offsets.length * 4);
  for (let i = 0; i < offsets.length; i++) {
    const label = mask[offsets[i]];
    if (label === 0) continue;
    const c = colours[label] ?? [255, 255, 255];
    out[4 * i] = c[0];
    out[4 * i + 1] = c[1];
    out[4 * i + 2] = c[2];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** A distinct colour per class; 0 (background) is only used for background marks. */
export function classColour(label: number): number[] {
  const fixed = [
    [235, 235, 235], [255, 200, 0], [0, 190, 255], [230, 25, 75], [60, 180, 75], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128], [170, 110, 40],
  ];
  if (label < fixed.length) return fixed[label];
  const hue = (label * 137.508) % 360;
  const f = (n: number) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.55 - 0.35 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}
