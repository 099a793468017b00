/**
 * Which cgroup directory a client's path names, confined to the cgroup
 * filesystem: the path must lie under the cgroup root as written (so `..`
 * cannot climb out, and paths elsewhere are refused without being looked
 * up), still lie under it once symlinks are resolved, and be a directory
 * on a cgroup (v1) or cgroup2 mount. Anything else is CgroupPathError; a
 * missing directory under the root is CgroupNotFoundError.
 */
import { readFileSync, realpathSync, statSync } from "node:fs";
import { posix } from "node:path";
import { quote } from "../../core/errors.ts";
import {
  CGROUP_PATH_MAX,
  CGROUP_ROOT,
  CgroupNotFoundError,
  CgroupPathError,
  SourceUnsupportedError,
} from "../source.ts";

export { CGROUP_ROOT };

/** A cgroup directory a path resolved to. */
export interface CgroupDir {
  /** The directory, symlinks resolved. */
  readonly path: string;
  /** Its filesystem: "cgroup" (a v1 hierarchy) or "cgroup2". */
  readonly fs: "cgroup" | "cgroup2";
}

/** Where to look; tests point these elsewhere, production never does. */
export interface CgroupPathOptions {
  /** The only tree paths may name (default CGROUP_ROOT). */
  readonly root?: string;
  /** The mount table to read (default /proc/self/mountinfo). */
  readonly mountinfo?: string;
}

/** One mount of /proc/self/mountinfo. */
interface Mount {
  readonly dev: bigint;
  readonly mountPoint: string;
  readonly fstype: string;
}

/** Resolves `path` to a cgroup directory, or throws CgroupPathError / CgroupNotFoundError saying what to pass. */
export function resolveCgroupDir(path: string, options: CgroupPathOptions = {}): CgroupDir {
  checkSyntax(path);
  const root = posix.resolve(options.root ?? CGROUP_ROOT);
  const mounts = parseMountinfo(readFileSync(options.mountinfo ?? "/proc/self/mountinfo", "utf8"));
  if (!within(posix.resolve(path), root)) {
    throw new CgroupPathError(`${quote(path)} is outside ${root}; ${whatToPass(root, mounts)}`);
  }
  const realRoot = realRootOf(root);
  const real = realpathOf(path, realRoot, root, mounts);
  if (!within(real, realRoot)) {
    throw new CgroupPathError(
      `${quote(path)} resolves to ${quote(real)}, outside ${root} (through a symlink); ${whatToPass(root, mounts)}`,
    );
  }
  return { path: real, fs: cgroupFsOf(path, real, { root, mounts }) };
}

// The filesystem of the directory `real`: its device number's mount in the mount table.
function cgroupFsOf(path: string, real: string, at: { root: string; mounts: readonly Mount[] }): CgroupDir["fs"] {
  const st = statSync(real, { bigint: true, throwIfNoEntry: false });
  if (st === undefined) throw new CgroupNotFoundError(`the cgroup ${quote(path)} was removed`);
  if (!st.isDirectory()) {
    throw new CgroupPathError(`${quote(path)} is not a directory; pass the cgroup's directory, not one of its files`);
  }
  const mount = at.mounts.findLast((m) => m.dev === st.dev && isCgroupFs(m.fstype));
  if (mount !== undefined) return mount.fstype as CgroupDir["fs"];
  const fstype = at.mounts.findLast((m) => m.dev === st.dev)?.fstype ?? "unknown";
  throw new CgroupPathError(
    `${quote(path)} is not in a cgroup hierarchy (its filesystem is ${fstype}); ${whatToPass(at.root, at.mounts)}`,
  );
}

function checkSyntax(path: string): void {
  if (path === "") throw new CgroupPathError(`the path is empty; pass a cgroup directory under ${CGROUP_ROOT}`);
  const bytes = new TextEncoder().encode(path).byteLength;
  if (bytes > CGROUP_PATH_MAX) {
    throw new CgroupPathError(
      `the path is ${bytes} bytes, longer than PATH_MAX allows (${CGROUP_PATH_MAX}); pass a cgroup directory`,
    );
  }
  if (path.includes("\0")) throw new CgroupPathError(`${quote(path)} contains a NUL character`);
  if (!path.startsWith("/")) {
    throw new CgroupPathError(`${quote(path)} is relative; pass an absolute path under ${CGROUP_ROOT}`);
  }
}

function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root === "/" ? "/" : `${root}/`);
}

function isCgroupFs(fstype: string): boolean {
  return fstype === "cgroup" || fstype === "cgroup2";
}

// The path's real location; for a missing one, NOT_FOUND only when its nearest existing
// ancestor lies under the root (a symlink out must not turn the server into a probe of other trees).
function realpathOf(path: string, realRoot: string, root: string, mounts: readonly Mount[]): string {
  try {
    return realpathSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && within(nearestExisting(path), realRoot)) {
      throw new CgroupNotFoundError(`no cgroup directory ${quote(path)}; ${whatToPass(root, mounts)}`);
    }
    if (code === "ENOENT") {
      throw new CgroupPathError(
        `${quote(path)} leads outside ${root} (through a symlink); ${whatToPass(root, mounts)}`,
      );
    }
    if (code === "ENOTDIR") throw new CgroupPathError(`${quote(path)} goes through a file; pass a cgroup directory`);
    throw new CgroupPathError(`${quote(path)} cannot be resolved (${code ?? "error"}); pass a cgroup directory`);
  }
}

function nearestExisting(path: string): string {
  for (let p = posix.dirname(path);; p = posix.dirname(p)) {
    try {
      return realpathSync(p);
    } catch {
      if (p === "/") return "/";
    }
  }
}

// "pass …" naming the hierarchies mounted under the root, so a caller sees what exists.
function whatToPass(root: string, mounts: readonly Mount[]): string {
  const names = [
    ...new Set(
      mounts.filter((m) => isCgroupFs(m.fstype) && within(m.mountPoint, root))
        .map((m) => `${posix.relative(root, m.mountPoint) || "."}${m.fstype === "cgroup2" ? " (v2)" : ""}`),
    ),
  ];
  const listed = names.length === 0 ? "none is mounted there" : `hierarchies: ${names.slice(0, 16).join(", ")}`;
  return `pass a cgroup directory under ${root} (${listed})`;
}

/** Parses /proc/<pid>/mountinfo (proc(5)): the device, mount point and filesystem type of each mount. */
export function parseMountinfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-", 6);
    const [major, minor] = (fields[2] ?? "").split(":").map(Number);
    if (sep < 0 || major === undefined || minor === undefined || !Number.isInteger(major + minor)) continue;
    out.push({ dev: makedev(major, minor), mountPoint: unescape(fields[4] ?? ""), fstype: fields[sep + 1] ?? "" });
  }
  return out;
}

// glibc's makedev(): what stat(2) reports as st_dev for major:minor.
function makedev(major: number, minor: number): bigint {
  const [ma, mi] = [BigInt(major), BigInt(minor)];
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function realRootOf(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    throw new SourceUnsupportedError(`this host has no cgroup filesystem at ${root}`);
  }
}
