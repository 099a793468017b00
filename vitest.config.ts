import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // Tests use the SDK's sources (its Node entry), so a change to clients/ts is tested without a build.
    alias: { "@taskwire/client": fileURLToPath(new URL("./clients/ts/src/node.ts", import.meta.url)) },
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
  },
});
