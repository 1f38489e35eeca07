// Label masks as the proto sends them (MaskDelta, MaskHeader): a box of packed labels, zlib.
//
// Packing: the box's labels in C order, `bits` bits each, pixel i in byte floor(i * bits / 8) at
// bit (i * bits) % 8 from the least significant bit; 16 and 32 bits are little-endian integers.

import type { MaskDelta } from "./gen/medrefine/v1/refine_pb";

/** Inflate one zlib stream (RFC 1950) with the browser's own DecompressionStream. */
export async function inflate(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** `count` labels of `bits` bits each from `packed`. */
export function unpack(packed: Uint8Array, bits: number, count: number): Uint8Array {
  if (![1, 2, 4, 8, 16, 32].includes(bits)) throw new Error(`bits_per_label ${bits} is not 1, 2, 4, 8, 16 or 32`);
  if (packed.byteLength * 8 < count * bits) throw new Error("the mask data is shorter than its box");
  const out = new Uint8Array(count);
  if (bits === 8) {
    out.set(packed.subarray(0, count));
    return out;
  }
  if (bits > 8) {
    const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
    for (let i = 0; i < count; i++) {
      const label = bits === 16 ? view.getUint16(2 * i, true) : view.getUint32(4 * i, true);
      if (label > 255) throw new Error(`label ${label} is beyond the 256 classes a viewer shows`);
      out[i] = label;
    }
    return out;
  }
  const perByte = 8 / bits;
  const bitMask = (1 << bits) - 1;
  for (let i = 0; i < count; i++) {
    out[i] = (packed[(i / perByte) | 0] >> ((i % perByte) * bits)) & bitMask;
  }
  return out;
}

/** Write `labels` (C order over the box start..stop) into `mask` of spatial `shape`. */
export function paste(mask: Uint8Array, shape: number[], start: number[], stop: number[], labels: Uint8Array): void {
  const box = stop.map((s, i) => s - start[i]);
  const rowLength = box[box.length - 1];
  const rows = box.slice(0, -1).reduce((a, b) => a * b, 1);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  for (let r = 0; r < rows; r++) {
    // coordinates of this row's first pixel: r spelled in the box's leading axes
    let rest = r;
    let offset = start[box.length - 1];
    for (let axis = box.length - 2; axis >= 0; axis--) {
      offset += (start[axis] + (rest % box[axis])) * strides[axis];
      rest = Math.floor(rest / box[axis]);
    }
    mask.set(labels.subarray(r * rowLength, (r + 1) * rowLength), offset);
  }
}

/** The mask after `delta` (a change from `mask`, or the whole mask when mask is null). */
export async function applyDelta(mask: Uint8Array | null, shape: number[], delta: MaskDelta): Promise<Uint8Array> {
  const start = delta.boxStart;
  const stop = delta.boxStop;
  if (start.length !== shape.length || stop.length !== shape.length) throw new Error("the mask box has the wrong number of axes");
  if (stop.some((s, i) => s > shape[i] || s < start[i])) throw new Error("the mask box lies outside the image");
  const whole = delta.baseVersion === 0n;
  const size = shape.reduce((a, b) => a * b, 1);
  if (!whole && mask === null) throw new Error("a mask change arrived before any mask");
  const out = whole ? new Uint8Array(size) : new Uint8Array(mask!);
  const count = stop.reduce((a, s, i) => a * (s - start[i]), 1);
  if (count === 0) return out;
  const labels = unpack(await inflate(new Uint8Array(delta.data)), delta.bitsPerLabel, count);
  paste(out, shape, start, stop, labels);
  return out;
}
