/** Helpers over connect-es's universal handlers. */
import type { UniversalHandler } from "@connectrpc/connect/protocol";

/** What identifies a universal handler (its route, method and protocols), without the function. */
export type HandlerFacts = Pick<
  UniversalHandler,
  "protocolNames" | "service" | "method" | "requestPath" | "allowedMethods" | "supportedContentType"
>;

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
