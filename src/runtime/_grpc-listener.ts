/**
 * Real gRPC (application/grpc) on the Node adapter: to the server's universal
 * RPC handlers, after the same checks the app makes (server.admit), with a
 * refusal answered as gRPC servers answer calls they refuse outright.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "@logtape/logtape";
import { logUnexpected } from "../log/error-log.ts";
import { quote } from "../core/errors.ts";
import { withDetail } from "../rpc/errors.ts";
import type { TaskwireServer } from "../server/server.ts";
import {
  authorizationOf,
  type HeldRequest,
  type NodeRequest,
  type NodeResponse,
  pathOf,
  peerOf,
} from "./_held-calls.ts";

// Real gRPC on the universal handlers (as connect-node's adapter does, over the one router's
// handlers), after the same checks the app makes (server.admit).
export function grpcListener(
  server: TaskwireServer,
  logger: Logger,
  holds: WeakMap<NodeRequest, HeldRequest>,
): (req: NodeRequest, res: NodeResponse) => void {
  const paths = new Map(server.rpcHandlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const handler = paths.get(pathOf(req));
    if (handler === undefined) return trailersOnly(res, Code.Unimplemented, `no method ${quote(req.url ?? "")}`);
    const given = req.headers[":authority"] ?? req.headers.host;
    const authority = authorityHost(given, req.url);
    if (authority === undefined) {
      return trailersOnly(
        res,
        Code.InvalidArgument,
        `:authority ${quote(String(given ?? ""))} is not a host[:port]; send this server's host name or address`,
      );
    }
    const facts = holds.get(req);
    const caller = facts?.caller ?? server.caller(peerOf(req), authorizationOf(req));
    const admitted = server.admit(caller, { host: authority, ...(facts && { held: facts.held }) });
    if ("refusal" in admitted) return trailersOnly(res, Code.PermissionDenied, admitted.refusal);
    handler(universalRequestFromNodeRequest(req, res, undefined, admitted.values))
      .then((ures) => universalResponseToNodeResponse(ures, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        logUnexpected(`gRPC ${handler.method.name} failed`, reason, {}, logger);
      });
  };
}

// `given` (a request's :authority or Host) as the host[:port] of a URL, as the app's Host check reads it;
// undefined when it is missing or no URL can be made of it (connect-node would throw building the request).
function authorityHost(given: string | string[] | undefined, path = "/"): string | undefined {
  if (typeof given !== "string" || given === "") return undefined;
  try {
    return new URL(path, `http://${given}`).host;
  } catch {
    return undefined;
  }
}

// A gRPC response with no messages: the status in the headers, as gRPC servers answer calls they refuse
// outright, with an ErrorDetail in grpc-status-details-bin like every other error.
function trailersOnly(res: NodeResponse, code: Code, message: string): void {
  const headers = setTrailerStatus(
    new Headers({ "content-type": "application/grpc" }),
    withDetail(new ConnectError(message, code)),
  );
  res.writeHead(200, Object.fromEntries(headers));
  res.end();
}
