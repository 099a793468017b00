/** Helpers over connect-es's universal handlers. */
import type { UniversalHandler } from "@connectrpc/connect/protocol";

/** What identifies a universal handler (its route, method and protocols), without the function. */
export type HandlerFacts = Pick<
  UniversalHandler,
  "protocolNames" | "service" | "method" | "requestPath" | "allowedMethods" | "supportedContentType"
>;

/** A method's kind (unary, server_streaming, client_streaming, bidi_streaming). */
export type MethodKind = UniversalHandler["method"]["methodKind"];

/**
 * The request paths of `handlers`' methods of `kinds`: the runtime adapters treat some apart, such as
 * server-streaming responses (SubscribeExits: paced while young on Node, passed through a body of the adapter's own
 * on Deno and Bun to drop a stalled stream) and client- or bidi-streaming requests (no request deadline on Node).
 */
export function methodPaths(
  handlers: readonly Pick<UniversalHandler, "method" | "requestPath">[],
  ...kinds: MethodKind[]
): Set<string> {
  return new Set(handlers.filter((h) => kinds.includes(h.method.methodKind)).map((h) => h.requestPath));
}

/** `handler`'s facts, for a function that stands in for it (a wrapper). */
export function handlerFacts(handler: UniversalHandler): HandlerFacts {
  return {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  };
}
