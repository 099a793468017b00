import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { VERSION } from "../src/version.ts";

it("VERSION matches package.json and the SDK's version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  const sdk = JSON.parse(readFileSync(new URL("../clients/ts/package.json", import.meta.url), "utf8"));
  expect(VERSION).toBe(pkg.version);
  expect(sdk.version).toBe(pkg.version);
});
