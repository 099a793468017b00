/**
 * Byte counts as people write them ("64MiB", "1.5GiB", "25%" of a budget)
 * and as the server writes them back ("64 MiB"): the memory budget's
 * settings, buffer sizes, and every message that states a size.
 */
import type { Share } from "./budget.ts";

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses a byte count: "67108864", "64MiB", "64M" (binary), "64MB" (decimal), "1.5GiB"; at least `least` (1, or 0
 * where 0 means something: "0", "0B", "0KiB"). The count must come out a whole number of bytes: "1.0001KiB" is
 * refused, not floored.
 */
export function parseBytes(text: string, least: 0 | 1 = 1): number {
  const m = /^\s*(\d+)(?:\.(\d+))?\s*([a-z]*)\s*$/i.exec(text);
  const unit = m === null ? undefined : UNITS[m[3]!.toLowerCase()];
  if (m === null || unit === undefined) {
    throw new RangeError(`expected a byte count such as 67108864, 64MiB or 1GiB, got ${JSON.stringify(text)}`);
  }
  const whole = m[1]!, fraction = m[2] ?? "";
  // A fraction of a byte is a slip (1.5 meant 1.5GiB?), never floored to a byte count nobody asked for.
  if (unit === 1 && fraction !== "") {
    throw new RangeError(
      `expected a whole number of bytes, got ${JSON.stringify(text)} (a fraction takes a unit: 1.5MiB, 1.5GiB)`,
    );
  }
  // Exact decimal arithmetic on a number's digits takes time quadratic in their count (a fraction of a million took
  // minutes): a count whose whole part alone is past 2^53-1 is refused before it, as is a fraction with more digits
  // that count (its trailing zeros do not) than any unit makes whole (1024^4 = 2^40 makes at most 40 whole).
  const digits = fraction.replace(/0+$/, "");
  if (whole.replace(/^0+/, "").length > 16) { // 2^53-1 has 16 digits
    throw new RangeError(`expected at most 2^53-1 bytes (about 8 PiB), got ${clipped(text)}`);
  }
  if (digits.length > 40) {
    throw new RangeError(
      `expected a whole number of bytes, got ${clipped(text)}: no unit makes a fraction of ${digits.length} digits ` +
        `a whole number of bytes; write the count in bytes, or a fraction the unit makes whole (1.5KiB is 1536)`,
    );
  }
  return exactBytes(text, whole, digits, unit, least);
}

// `text` quoted, its middle left out past 80 characters (a count of a million digits is not said back whole).
function clipped(text: string): string {
  return JSON.stringify(text.length <= 80 ? text : `${text.slice(0, 40)}...${text.slice(-20)}`);
}

// The count `whole`.`fraction` times `unit`, which must be a whole number of bytes (parseBytes).
function exactBytes(text: string, whole: string, fraction: string, unit: number, least: 0 | 1): number {
  // In exact decimal arithmetic (in floats 1.005KB is 1004.9999999999999 bytes): the count times 10^digits.
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(whole + fraction) * BigInt(unit);
  const n = Number(scaled / scale);
  // Nor is a unit's fraction that leaves part of a byte (1.0001KiB is 1024.1024 bytes) floored in silence.
  if (scaled % scale !== 0n) {
    const exact = `${scaled / scale}.${(scaled % scale).toString().padStart(fraction.length, "0").replace(/0+$/, "")}`;
    const near = [n, n + 1].filter((x) => x >= least).join(" or ");
    throw new RangeError(
      `expected a whole number of bytes, got ${JSON.stringify(text)}, which is ${exact} bytes: write ${near}, ` +
        `or a fraction the unit makes whole (1.5KiB is 1536)`,
    );
  }
  if (n < least) throw new RangeError(`expected at least 1 byte, got ${JSON.stringify(text)}`);
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(`expected at most 2^53-1 bytes (about 8 PiB), got ${JSON.stringify(text)}`);
  }
  return n;
}

/** Parses a share: a percentage of the budget ("25%") or a byte count (as parseBytes). */
export function parseShare(text: string): Share {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  // 0.25 or 1.0 is no byte count: a part of the budget was meant.
  const part = /^\s*(\d*\.\d+)\s*$/.exec(text)?.[1];
  if (part !== undefined && Number(part) <= 1) {
    const percent = Number((Number(part) * 100).toFixed(6));
    const hint = percent > 0 ? `for ${percent}% of the budget write ${percent}%` : "a share is above 0";
    throw new RangeError(`expected a percentage or a byte count, got ${JSON.stringify(text)}: ${hint}`);
  }
  if (m === null) return parseBytes(text);
  const fraction = Number(m[1]) / 100;
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`expected a percentage above 0 and at most 100, got ${JSON.stringify(text)}`);
  }
  return { fraction };
}

/** Bytes for people: "64 MiB", "1.5 GiB", "512 B". */
export function formatBytes(n: number): string {
  if (n >= Number.MAX_SAFE_INTEGER) return "unlimited";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}
