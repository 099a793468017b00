/**
 * The SDK's schema-driven decoder against protobuf-es's fromBinary(): the
 * same objects (toStrictEqual: same properties, no extra undefined ones) for
 * any message, including unknown fields, fields repeated on the wire and
 * input fromBinary() rejects.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeFast, decodeFastFromFields } from "../clients/ts/src/_fast-decode.ts";
import { TaskStatsSchema as SdkTaskStats } from "../clients/ts/src/gen/taskwire/kernel/v1/taskstats_pb.ts";
import { SubscribeExitsResponseSchema as SdkResponse } from "../clients/ts/src/gen/taskwire/v1/taskstats_pb.ts";
import { SubscribeExitsResponseSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { arbitraryResponse, arbitraryStats } from "./arbitraries.ts";
import { TaskStatsSchema } from "../src/gen/taskwire/kernel/v1/taskstats_pb.ts";

function outcome(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const UNKNOWN_FROM = Math.max(...SdkResponse.fields.map((f) => f.number)) + 1;

describe("fast decoding (SDK)", () => {
  it("decodes any TaskStats exactly as fromBinary does", () => {
    fc.assert(
      fc.property(arbitraryStats, (s) => {
        const bytes = toBinary(TaskStatsSchema, s);
        expect(decodeFast(SdkTaskStats, bytes)).toStrictEqual(fromBinary(SdkTaskStats, bytes));
      }),
      { numRuns: 300 },
    );
  });

  it("decodes any SubscribeExitsResponse exactly as fromBinary does", () => {
    fc.assert(
      fc.property(arbitraryResponse, (r) => {
        const bytes = toBinary(SubscribeExitsResponseSchema, r);
        expect(decodeFast(SdkResponse, bytes)).toStrictEqual(fromBinary(SdkResponse, bytes));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps unknown fields and merges repeated message fields as fromBinary does", () => {
    fc.assert(
      fc.property(
        arbitraryResponse,
        // Field numbers past the response's own (they stay unknown).
        fc.array(fc.tuple(fc.integer({ min: UNKNOWN_FROM, max: 9000 }), fc.uint8Array({ maxLength: 8 }))),
        (r, extra) => {
          const w = new BinaryWriter();
          w.raw(toBinary(SubscribeExitsResponseSchema, r));
          for (const [no, data] of extra) w.tag(no, WireType.LengthDelimited).bytes(data);
          // The same message twice: singular message fields (pid_stats) must merge, not replace.
          w.raw(toBinary(SubscribeExitsResponseSchema, r));
          const bytes = w.finish();
          expect(decodeFast(SdkResponse, bytes)).toStrictEqual(fromBinary(SdkResponse, bytes));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("fails where fromBinary fails, with its error", () => {
    fc.assert(
      fc.property(arbitraryResponse, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 }), (r, at, junk) => {
        const good = toBinary(SubscribeExitsResponseSchema, r);
        const i = good.length === 0 ? 0 : at % good.length;
        const bytes = new Uint8Array([...good.subarray(0, i), ...junk, ...good.subarray(i)]);
        expect(outcome(() => decodeFast(SdkResponse, bytes))).toStrictEqual(
          outcome(() => fromBinary(SdkResponse, bytes)),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a tag past uint32 as fromBinary does (found by the property below: it used to read a wrapped field number)", () => {
    // In the second event: cpu 0 (10 80 00), then a 6-byte tag varint (82 81 80 80 80 01).
    const bytes = Buffer.from(
      "0a10088080808080808080011080808080010a37088080808080808080011080008281808080800122250880808080808080808001" +
        "10808080808080808080011880808080808080808001200328011201201a0720202020202020288080808001",
      "hex",
    );
    expect(outcome(() => decodeFast(SdkResponse, bytes))).toStrictEqual(outcome(() => fromBinary(SdkResponse, bytes)));
    expect(outcome(() => fromBinary(SdkResponse, bytes))).toHaveProperty("error");
  });

  it("rebuilds a message from the fields another type left unknown (the SDK's stream path)", () => {
    fc.assert(
      fc.property(arbitraryResponse, (r) => {
        const bytes = toBinary(SubscribeExitsResponseSchema, r);
        const { $unknown = [] } = fromBinary(EmptySchema, bytes) as {
          $unknown?: { no: number; wireType: number; data: Uint8Array }[];
        };
        expect(decodeFastFromFields(SdkResponse, $unknown)).toStrictEqual(fromBinary(SdkResponse, bytes));
      }),
      { numRuns: 200 },
    );
  });
});
