import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ConnectorResolver, createConnectorResolver } from '@nanosync/core/host';

/**
 * First-party connectors, imported only when a config names them. A static map (rather
 * than a dynamic `import(name)`) keeps them visible to bundlers and lets the CLI work even
 * when the package manager did not hoist them next to the config file.
 */
export const builtinConnectors: Record<string, () => Promise<unknown>> = {
  '@nanosync/source-postgres': () => import('@nanosync/source-postgres'),
  '@nanosync/sink-kafka': () => import('@nanosync/sink-kafka'),
  '@nanosync/sink-file': () => import('@nanosync/sink-file'),
};

/** The CLI's own folder: third-party connectors installed next to the CLI are found from here. */
export const cliDir = dirname(fileURLToPath(import.meta.url));

let shared: ConnectorResolver | undefined;

/** The resolver every command uses: config folder first, then built-ins and the CLI's install. */
export function connectorResolver(): ConnectorResolver {
  shared ??= createConnectorResolver({ builtins: builtinConnectors, fallbackDirs: [cliDir] });
  return shared;
}
