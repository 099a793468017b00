/** A call's outcome as the runtime scripts print it: its error's code and message, or "ok" if it succeeded. */
export async function outcome(call: () => Promise<unknown>): Promise<{ code: number | "ok"; message: string }> {
  try {
    await call();
    return { code: "ok", message: "" };
  } catch (e) {
    const err = e as { code: number; rawMessage: string };
    return { code: err.code, message: err.rawMessage };
  }
}
