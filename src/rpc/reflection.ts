/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) over protobuf-es's
 * descriptors, so grpcurl and buf curl can call taskwire without the .proto
 * files. It is a bidirectional stream, so it is served on HTTP/2 only.
 */
import { create, createRegistry, type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { quote } from "../core/errors.ts";
import { toConnectError } from "./errors.ts";
import { callerWith } from "./principal.ts";

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

function dependencies(file: DescFile, into = new Map<string, DescFile>()): Map<string, DescFile> {
  // Keyed by the descriptor's file name ("taskwire/v1/taskstats.proto"), which is what clients ask for.
  if (into.has(file.proto.name)) return into;
  into.set(file.proto.name, file);
  for (const dep of file.dependencies) dependencies(dep, into);
  return into;
}

/** Answers one reflection request about `services`. */
export function createReflector(services: readonly DescService[]): (req: Request) => Response["messageResponse"] {
  const files = new Map<string, DescFile>();
  for (const s of services) dependencies(s.file, files);
  const registry = createRegistry(...files.values());
  const names = services.map((s) => s.typeName);
  const fileResponse = (file: DescFile): Response["messageResponse"] => ({
    case: "fileDescriptorResponse",
    value: create(v1.FileDescriptorResponseSchema, {
      fileDescriptorProto: [...dependencies(file).values()].map((f) => toBinary(FileDescriptorProtoSchema, f.proto)),
    }),
  });
  const error = (code: Code, message: string): Response["messageResponse"] => ({
    case: "errorResponse",
    value: create(v1.ErrorResponseSchema, { errorCode: code, errorMessage: message }),
  });
  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const direct = registry.get(symbol);
    if (direct !== undefined && "file" in direct) return direct.file;
    // A method or field name: its parent is a service or message.
    const parent = registry.get(symbol.slice(0, symbol.lastIndexOf(".")));
    return parent !== undefined && "file" in parent ? parent.file : undefined;
  };
  return (req) => {
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: create(v1.ListServiceResponseSchema, { service: names.map((name) => ({ name })) }),
        };
      case "fileByFilename": {
        const file = files.get(r.value);
        return file ? fileResponse(file) : error(Code.NotFound, `no file ${quote(r.value)}`);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(r.value);
        return file ? fileResponse(file) : error(Code.NotFound, `no symbol ${quote(r.value)}`);
      }
      case "fileContainingExtension":
      case "allExtensionNumbersOfType":
        return error(Code.NotFound, "taskwire's API declares no extensions");
      default:
        return error(Code.InvalidArgument, "empty reflection request");
    }
  };
}

function guarded(ctx: HandlerContext): void {
  try {
    callerWith(ctx, "read", "ServerReflectionInfo");
  } catch (err) {
    throw toConnectError(err);
  }
}

/** Routes for both reflection versions; `services` are the ones to describe (reflection lists itself too). */
export function reflectionRoutes(services: readonly DescService[]): (router: ConnectRouter) => void {
  const answer = createReflector([...services, v1.ServerReflection, v1alpha.ServerReflection]);
  return (router) => {
    // Reflection describes the API, not the host: any authenticated caller with the read role may use it.
    router.service(v1.ServerReflection, {
      async *serverReflectionInfo(requests, ctx) {
        guarded(ctx);
        for await (const req of requests) {
          yield create(v1.ServerReflectionResponseSchema, { originalRequest: req, messageResponse: answer(req) });
        }
      },
    });
    // v1alpha's messages are v1's field for field; convert through the wire format's JSON-free shape.
    router.service(v1alpha.ServerReflection, {
      async *serverReflectionInfo(requests, ctx) {
        guarded(ctx);
        for await (const req of requests) {
          const asV1 = create(v1.ServerReflectionRequestSchema, {
            host: req.host,
            messageRequest: req.messageRequest as Request["messageRequest"],
          });
          const res = answer(asV1);
          yield create(v1alpha.ServerReflectionResponseSchema, {
            originalRequest: req,
            messageResponse: res as v1alpha.ServerReflectionResponse["messageResponse"],
          });
        }
      },
    });
  };
}
