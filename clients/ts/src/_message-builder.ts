/**
 * The message objects the fast decoder (_fast-decode.ts) makes: built from
 * the values it decoded, in create()'s property order, as fromBinary()
 * makes them (zero values for fields not on the wire, `$unknown` when any
 * field was unknown).
 */
import { create, type DescMessage } from "@bufbuild/protobuf";

/** A message's properties by name. */
export type Fields = Record<string, unknown>;
/** Fields a message type does not know, as protobuf-es keeps them in `$unknown`. */
export type Unknown = { no: number; wireType: number; data: Uint8Array }[];
/** Makes a message from its members' values (by member index), its unknown fields, and how many members were set. */
export type Build = (values: unknown[], unknown: Unknown | undefined, set: number) => Fields;

// The message object is built in one go, in create()'s property order, with
// constant property names: assigning dozens of properties by computed name
// sends V8 objects into slow dictionary mode (and made this decoder 2x slower).
// Compiled once per message type; where eval is forbidden (a CSP without
// 'unsafe-eval'), the same steps run as a loop.
export function builder(desc: DescMessage): Build {
  const zero = create(desc) as Fields;
  const steps = desc.members.map((m, i) => ({
    key: m.localName,
    i,
    always: m.localName in zero,
    zero: zero[m.localName],
  }));
  const fresh = (
    v: unknown,
  ): unknown => (v instanceof Uint8Array
    ? new Uint8Array(0)
    : Array.isArray(v)
    ? []
    : typeof v === "object" && v !== null
    ? { case: undefined }
    : v);
  // Every member set (TaskStats from a kernel that has all its fields): one object literal, one allocation.
  const all = steps.map((st) => `${JSON.stringify(st.key)}: v[${st.i}]`);
  const code = [
    `if (n === ${steps.length}) { const o = { $typeName: T, ${
      all.join(", ")
    } }; if (u !== undefined) o.$unknown = u; return o; }`,
  ];
  code.push("const o = { $typeName: T };");
  for (const st of steps) {
    const key = JSON.stringify(st.key);
    if (!st.always) code.push(`if (v[${st.i}] !== undefined) o[${key}] = v[${st.i}];`);
    else if (typeof st.zero === "object" && st.zero !== null) {
      code.push(`o[${key}] = v[${st.i}] !== undefined ? v[${st.i}] : fresh(Z[${st.i}]);`);
    } else code.push(`o[${key}] = v[${st.i}] !== undefined ? v[${st.i}] : Z[${st.i}];`);
  }
  code.push("if (u !== undefined) o.$unknown = u;", "return o;");
  const zeros = steps.map((st) => st.zero);
  try {
    return new Function("T", "Z", "fresh", `return function build(v, u, n) {\n${code.join("\n")}\n};`)(
      desc.typeName,
      zeros,
      fresh,
    ) as Build;
  } catch {
    return (v, u) => {
      const o: Fields = { $typeName: desc.typeName };
      for (const st of steps) if (v[st.i] !== undefined || st.always) o[st.key] = v[st.i] ?? fresh(st.zero);
      if (u !== undefined) o["$unknown"] = u;
      return o;
    };
  }
}
