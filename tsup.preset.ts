import type { Options } from 'tsup';

/** The one tsup preset every package builds with: ESM, Node 22, types, no bundled deps. */
export function preset(entry: Record<string, string> | string[] = ['src/index.ts'], extra: Options = {}): Options {
  return {
    entry,
    format: ['esm'],
    target: 'node22',
    platform: 'node',
    dts: true,
    sourcemap: true,
    clean: true,
    splitting: false,
    // Keep `node:` specifiers: `node:sqlite` exists only with the prefix.
    removeNodeProtocol: false,
    ...extra,
  };
}
