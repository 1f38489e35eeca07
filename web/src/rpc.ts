// The medrefine.v1.Refiner client: gRPC-Web from @connectrpc/connect over the page's own origin.
//
// A browser's fetch() cannot stream a request body over HTTP/1.1, and OpenSession streams its
// request (header, then image chunks). gRPC-Web allows all of a call's request messages in one
// body, so the HTTP client below collects the body the Connect transport produces and sends it
// whole; responses (Refine's progress events) are still read as they arrive.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import {
  universalClientResponseFromFetch,
  type UniversalClientFn,
} from "@connectrpc/connect/protocol";
import { createTransport } from "@connectrpc/connect/protocol-grpc-web";
import { Refiner } from "./gen/medrefine/v1/refine_pb";

export type RefinerClient = Client<typeof Refiner>;

/** Where the page came from: the calls and /api requests go there (also behind a path prefix). */
export const base = new URL(".", location.href).href.replace(/\/$/, "");

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of chunks) {
    parts.push(part);
    size += part.byteLength;
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    body.set(part, at);
    at += part.byteLength;
  }
  return body;
}

const bufferedFetch: UniversalClientFn = async (request) => {
  const body = request.body === undefined ? undefined : await collect(request.body);
  const response = await fetch(request.url, {
    method: request.method,
    headers: request.header,
    signal: request.signal,
    body,
  });
  return universalClientResponseFromFetch(response);
};

/** Headers every call carries: the bearer token (if any) and the session id (for balancers
 * that keep a session on one replica, as the gRPC clients send it). */
export interface CallHeaders {
  token(): string | null;
  session(): string | null;
}

export function connect(headers: CallHeaders): RefinerClient {
  const stamp: Interceptor = (next) => async (req) => {
    const token = headers.token();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    const session = headers.session();
    if (session) req.header.set("x-session-id", session);
    return next(req);
  };
  const transport = createTransport({
    httpClient: bufferedFetch,
    baseUrl: base,
    useBinaryFormat: true,
    interceptors: [stamp],
    acceptCompression: [],
    sendCompression: null,
    compressMinBytes: 1024,
    readMaxBytes: 0xffffffff,
    writeMaxBytes: 0xffffffff,
  });
  return createClient(Refiner, transport);
}

/** A failed call or request as one readable line: "NOT_FOUND: no model named 'x'". */
export function describe(error: unknown): string {
  if (error instanceof ApiError) return `${error.code}: ${error.message}`;
  if (error instanceof ConnectError || (error instanceof Error && error.name === "ConnectError")) {
    const e = ConnectError.from(error);
    const name = (Code[e.code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    return `${name}: ${e.rawMessage}`;
  }
  return error instanceof Error ? error.message : String(error);
}

export function unauthenticated(error: unknown): boolean {
  if (error instanceof ApiError) return error.code === "UNAUTHENTICATED";
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}

/** An /api request the server refused (its JSON {code, message}). */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** fetch() of an /api path with the token; an ApiError unless the answer is 2xx. */
export async function api(path: string, token: string | null, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set("authorization", `Bearer ${token}`);
  const response = await fetch(`${base}/${path}`, { ...init, headers });
  if (response.ok) return response;
  let code = `HTTP ${response.status}`;
  let message = response.statusText;
  try {
    const body = (await response.json()) as { code?: string; message?: string };
    code = body.code ?? code;
    message = body.message ?? message;
  } catch {
    // not JSON: keep the HTTP status
  }
  throw new ApiError(code, message);
}
