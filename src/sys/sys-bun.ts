/** Syscalls on Bun through bun:ffi. Only calls libc; see syscalls.ts. */
import { LIBC_SIGNATURES, syscallsFrom } from "./_libc.ts";
import type { Syscalls } from "./syscalls.ts";

interface BunFfi {
  dlopen(
    path: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  read: { i32(ptr: unknown, offset?: number): number };
  ptr(buf: Uint8Array): number;
}

const TYPE: Record<string, string> = { i32: "i32", u32: "u32", u64: "u64", i64: "i64", buf: "ptr", ptr: "ptr" };

/** Binds the libc functions the netlink source uses. */
export async function createBunSyscalls(): Promise<Syscalls> {
  const ffi = (await import(/* @vite-ignore */ "bun:ffi" as string)) as BunFfi;
  const spec = Object.fromEntries(
    Object.entries(LIBC_SIGNATURES).map(([name, [params, result]]) => [name, {
      args: params.map((t) => TYPE[t]!),
      returns: TYPE[result]!,
    }]),
  );
  const { symbols } = ffi.dlopen("libc.so.6", spec);
  return syscallsFrom({
    runtime: "bun",
    fn: symbols,
    errno: () => ffi.read.i32(symbols["__errno_location"]!(), 0),
    size: (n) => n,
    address: (buf) => ffi.ptr(buf),
  });
}
