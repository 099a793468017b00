/** Loads this runtime's syscalls (the one place the FFI is chosen by runtime). */
import type { Syscalls } from "./syscalls.ts";

interface RuntimeGlobals {
  Deno?: unknown;
  Bun?: unknown;
}

/** Loads the current runtime's implementation. Throws SyscallError-free errors naming what is missing. */
export async function loadSyscalls(): Promise<Syscalls> {
  const g = globalThis as RuntimeGlobals;
  if (g.Deno !== undefined) return (await import("./sys-deno.ts")).createDenoSyscalls();
  if (g.Bun !== undefined) return await (await import("./sys-bun.ts")).createBunSyscalls();
  return (await import("./sys-node.ts")).createNodeSyscalls();
}
