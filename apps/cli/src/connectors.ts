import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ConnectorResolver, createConnectorResolver, findWorkspaceRoot } from '@nanosync/core/host';

/**
 * The CLI has no list of connectors: first-party ones are found exactly like third-party
 * ones, as packages. An installed CLI finds those it ships with in its own `node_modules`
 * (its package.json dependencies); a checkout also finds every package of its workspace by
 * name, so a connector folder added under `connectors/` or `examples/` is usable at once.
 */

/** The CLI's own folder: connectors installed with the CLI are found from here. */
export const cliDir = dirname(fileURLToPath(import.meta.url));

/**
 * Running from the TypeScript sources (a checkout, under tsx or vitest): load the
 * workspace's packages from their sources too, through the export condition the repository
 * declares for them. A built CLI loads their built entries.
 */
const fromSources = import.meta.url.endsWith('.ts');

let shared: ConnectorResolver | undefined;

/** The resolver every command uses: the config's folder, then the CLI's install, then the checkout's workspace. */
export function connectorResolver(): ConnectorResolver {
  if (shared === undefined) {
    const workspace = findWorkspaceRoot(cliDir);
    shared = createConnectorResolver({
      fallbackDirs: [cliDir],
      ...(workspace === undefined ? {} : { workspace }),
      conditions: fromSources ? ['@nanosync/source'] : [],
    });
  }
  return shared;
}
