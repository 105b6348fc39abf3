/**
 * Entry point of the single executable (`npm run build:sea`, scripts/build-sea.mjs). It differs from
 * bin/foreman.js only in where better-sqlite3's native addon comes from: the executable carries it as
 * the SEA asset `better_sqlite3.node`, and a native addon can only be loaded from a file, so it is
 * written once to a cache file named by its hash and loaded from there.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getAsset, isSea } from 'node:sea';
import { setSqliteNativeBinding } from '../agent/process.ts';
import { main } from './main.ts';

export const ADDON_ASSET = 'better_sqlite3.node';

/**
 * Writes the carried addon to `<dir>/better_sqlite3-<hash>.node` (kept and reused) and returns that
 * path. `dir` is systemd's `CacheDirectory=` when set (a `/tmp` mounted `noexec` cannot load native
 * code), else `<tmpdir>/foreman-<uid>`.
 */
export function unpackAddon(dir: string): string {
  const addon = Buffer.from(getAsset(ADDON_ASSET));
  const hash = createHash('sha256').update(addon).digest('hex').slice(0, 16);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A shared temp dir: refuse one another user could have made or can write into, since whatever
  // file sits there is loaded as native code.
  const stat = lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o022) !== 0) {
    throw new Error(`cannot unpack the SQLite addon: ${dir} is not a directory of this user that only it can write to`);
  }
  const file = join(dir, `better_sqlite3-${hash}.node`);
  if (!sameContent(file, addon)) {
    // Written beside and renamed: another foreman starting at the same time never loads half a file.
    const partial = `${file}.${process.pid}.tmp`;
    writeFileSync(partial, addon, { mode: 0o600 });
    renameSync(partial, file);
  }
  return file;
}

function sameContent(file: string, expected: Buffer): boolean {
  try {
    return readFileSync(file).equals(expected);
  } catch {
    return false;
  }
}

const addonDir = process.env.CACHE_DIRECTORY?.split(':')[0] || join(tmpdir(), `foreman-${process.getuid?.() ?? 'user'}`);
if (isSea()) setSqliteNativeBinding(() => unpackAddon(addonDir));
main(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`foreman: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
