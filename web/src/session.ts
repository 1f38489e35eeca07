// One session on the server, as the Python RemoteSession drives it: open (upload once, by
// digest), queue marks, refine with progress, undo/redo/reset, add a class, fetch the mask,
// accept it into the model's site.
// The mask is kept in step with the server through the deltas every call returns.

import type { ModelInfo, Mark, MaskUpdate, RefineSummary, SessionStatus, SiteVersion } from "./gen/medrefine/v1/refine_pb";
import { DType } from "./gen/medrefine/v1/refine_pb";
import type { ImageMeta } from "./image";
import { applyDelta, inflate, unpack } from "./mask";
import type { RefinerClient } from "./rpc";

const CHUNK = 1 << 20; // the proto's largest image chunk
const DTYPES: Record<string, DType> = {
  uint8: DType.DTYPE_UINT8,
  int8: DType.DTYPE_INT8,
  uint16: DType.DTYPE_UINT16,
  int16: DType.DTYPE_INT16,
  uint32: DType.DTYPE_UINT32,
  int32: DType.DTYPE_INT32,
  float32: DType.DTYPE_FLOAT32,
  float64: DType.DTYPE_FLOAT64,
};

/** A new session id: 32 hex characters (crypto.getRandomValues works without HTTPS too). */
export function newSessionId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export interface RefineOutcome {
  summary: RefineSummary;
  browserMs: number;
}

export class Session {
  mask: Uint8Array = new Uint8Array(0);
  version = 0n;
  status: SessionStatus | undefined;
  spatial: number[] = [];
  backend = "";
  openSeconds = 0;
  /** Which head the session started from ("network" or "site vN"), and why. */
  headSource = "";
  headReason = "";

  private constructor(
    private readonly client: RefinerClient,
    readonly id: string,
    readonly model: ModelInfo,
    readonly image: ImageMeta,
  ) {}

  /** Open a session on `image` (raw little-endian `data`): header only first, and the pixels
   * only if the server does not already hold an image with this digest. */
  static async open(client: RefinerClient, id: string, model: ModelInfo, image: ImageMeta, data: Uint8Array): Promise<Session> {
    const session = new Session(client, id, model, image);
    const header = {
      model: model.name,
      shape: image.shape,
      dtype: DTYPES[image.dtype] ?? DType.DTYPE_UNSPECIFIED,
      spacing: image.spacing && image.spacing.length === model.spatialDims ? image.spacing : [],
      affine: image.affine ?? [],
      sessionId: id,
      digest: image.digest,
    };
    async function* requests(withPixels: boolean) {
      yield { part: { case: "header" as const, value: header } };
      if (!withPixels) return;
      for (let at = 0; at < data.byteLength; at += CHUNK) {
        yield { part: { case: "chunk" as const, value: data.subarray(at, at + CHUNK) } };
      }
    }
    let response = await client.openSession(requests(false));
    if (response.imageRequired) response = await client.openSession(requests(true));
    session.spatial = response.spatialShape;
    session.backend = response.backend;
    session.openSeconds = response.seconds;
    session.headSource = response.headSource;
    session.headReason = response.headReason;
    session.status = response.status;
    await session.apply(response.mask);
    return session;
  }

  private async apply(update: MaskUpdate | undefined): Promise<void> {
    if (!update) throw new Error("the server sent no mask");
    if (update.fetchRequired || !update.delta) {
      await this.fetchMask();
    } else {
      const base = update.delta.baseVersion;
      if (base !== 0n && base !== this.version) throw new Error(`a mask change against version ${base}, the viewer holds ${this.version}`);
      this.mask = await applyDelta(base === 0n ? null : this.mask, this.spatial, update.delta);
    }
    this.version = update.version;
  }

  /** The whole current mask from GetMask (also what a download writes). */
  async fetchMask(): Promise<Uint8Array> {
    let bits = 0;
    let version = 0n;
    const parts: Uint8Array[] = [];
    for await (const chunk of this.client.getMask({ sessionId: this.id })) {
      if (chunk.part.case === "header") {
        bits = chunk.part.value.bitsPerLabel;
        version = chunk.part.value.version;
      } else if (chunk.part.case === "data") {
        parts.push(chunk.part.value);
      }
    }
    const data = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    parts.reduce((at, p) => (data.set(p, at), at + p.byteLength), 0);
    this.mask = unpack(await inflate(data), bits, this.spatial.reduce((a, b) => a * b, 1));
    this.version = version;
    return this.mask;
  }

  get classNames(): string[] {
    return this.status?.classNames ?? this.model.classNames;
  }

  async addMarks(marks: Mark[]): Promise<void> {
    this.status = (await this.client.addMarks({ sessionId: this.id, marks })).status;
  }

  async refine(onProgress: (iteration: number, max: number) => void): Promise<RefineOutcome> {
    const started = performance.now();
    const events = this.client.refine({ sessionId: this.id, options: { progress: true }, knownVersion: this.version });
    for await (const event of events) {
      if (event.event.case === "progress") {
        onProgress(event.event.value.iteration, event.event.value.maxIterations);
      } else if (event.event.case === "result") {
        const result = event.event.value;
        await this.apply(result.mask);
        this.status = result.status;
        if (!result.summary) throw new Error("the refine result has no summary");
        return { summary: result.summary, browserMs: performance.now() - started };
      }
    }
    throw new Error("the refine stream ended without a result");
  }

  async step(kind: "undo" | "redo" | "reset"): Promise<void> {
    const request = { sessionId: this.id, knownVersion: this.version };
    const response = await this.client[kind](request);
    this.status = response.status;
    await this.apply(response.mask);
  }

  async addClass(name: string): Promise<number> {
    const response = await this.client.addClass({ sessionId: this.id, name });
    this.status = response.status;
    return response.label;
  }

  /** Accept the mask shown as this image's answer: the model's site keeps a sample of it and
   * refits its head. The session is unchanged. */
  async accept(): Promise<SiteVersion> {
    const response = await this.client.acceptMask({ sessionId: this.id, maskVersion: this.version });
    this.status = response.status;
    if (!response.version) throw new Error("the server sent no site version");
    return response.version;
  }

  /** Every mark of the interactions that led to the current mask. */
  async marks(): Promise<Mark[]> {
    const history = await this.client.getHistory({ sessionId: this.id });
    return history.entries.flatMap((e) => e.marks);
  }
}
