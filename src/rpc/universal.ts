/** Helpers over connect-es's universal handlers. */
import type { UniversalHandler } from "@connectrpc/connect/protocol";

/** What identifies a universal handler (its route, method and protocols), without the function. */
export type HandlerFacts = Pick<
  UniversalHandler,
  "protocolNames" | "service" | "method" | "requestPath" | "allowedMethods" | "supportedContentType"
>;

/**
 * The request paths of `handlers`' server-streaming methods (SubscribeExits): the runtime adapters pace their
 * responses while young (Node) and pass their bodies through one of their own, to drop a stalled stream (Deno, Bun).
 */
export function serverStreamingPaths(
  handlers: readonly Pick<UniversalHandler, "method" | "requestPath">[],
): Set<string> {
  return new Set(handlers.filter((h) => h.method.methodKind === "server_streaming").map((h) => h.requestPath));
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
