// Types of scripts/runtime.mjs, for the TypeScript build scripts that import it.

export interface RuntimeNode {
  /** Path of the pinned node binary. */
  readonly node: string;
  /** Its version as `process.version` says it, e.g. "v24.22.3". */
  readonly version: string;
  /** The folder holding include/node (for node-gyp's --nodedir). */
  readonly nodedir: string;
  /** Its NODE_MODULE_VERSION (the ABI of native addons). */
  readonly modules: string;
}

export const RUNTIME_DIR: string;
export function pinnedNodeVersion(): string;
export function runtimeNode(): Promise<RuntimeNode>;
export function sqliteAddonFor(runtime: RuntimeNode): Promise<string>;
