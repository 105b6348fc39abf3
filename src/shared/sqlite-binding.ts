import type Database from 'better-sqlite3';

/**
 * Where better-sqlite3's native addon comes from. Left unset, better-sqlite3 finds it in
 * node_modules, as in every run from the npm package or the repository. The single executable
 * (src/cli/sea.ts) carries the addon inside itself and has no node_modules, so it sets a function
 * that unpacks the addon to a file and returns its path; that runs once, at the first database open,
 * so `foreman --version` and `--help` never touch the disk.
 */
let locate: (() => string) | undefined;
let located: string | undefined;

export function setSqliteNativeBinding(where: () => string): void {
  locate = where;
  located = undefined;
}

/** Options for every `new Database(path, …)`: the addon file when one was set. */
export function sqliteOptions(): Database.Options {
  if (!locate) return {};
  located ??= locate();
  return { nativeBinding: located };
}
