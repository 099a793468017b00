/** Syscalls on Deno through Deno.dlopen. Only calls libc; see syscalls.ts. */
import { LIBC_SIGNATURES, syscallsFrom } from "./_libc.ts";
import type { Syscalls } from "./syscalls.ts";

// Deno's FFI types, declared here so the Node build type-checks without Deno's lib.
interface DenoFfi {
  dlopen(
    path: string,
    symbols: Record<string, { parameters: string[]; result: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  UnsafePointerView: new (ptr: unknown) => { getInt32(offset?: number): number };
  UnsafePointer: { of(buf: Uint8Array): unknown; value(ptr: unknown): bigint | number };
}

const TYPE: Record<string, string> = {
  i32: "i32",
  u32: "u32",
  u64: "usize",
  i64: "isize",
  buf: "buffer",
  ptr: "pointer",
};

/** Binds the libc functions the netlink source uses. */
export function createDenoSyscalls(): Syscalls {
  const Deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  const spec = Object.fromEntries(
    Object.entries(LIBC_SIGNATURES).map(([name, [params, result]]) => [name, {
      parameters: params.map((t) => TYPE[t]!),
      result: TYPE[result]!,
    }]),
  );
  const { symbols } = Deno.dlopen("libc.so.6", spec);
  return syscallsFrom({
    runtime: "deno",
    fn: symbols,
    errno: () => new Deno.UnsafePointerView(symbols["__errno_location"]!()).getInt32(0),
    size: (n) => BigInt(n), // Deno passes 64-bit integers as bigint
    address: (buf) => Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))),
  });
}
