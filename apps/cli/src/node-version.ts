/** The oldest Node with `node:sqlite` available without a flag. Keep in step with package.json `engines`. */
export const MIN_NODE = { major: 22, minor: 13 } as const;

/**
 * Undefined when `version` (e.g. `process.versions.node`) can run nanosync, else the message
 * to print: which Node is needed, which one is running, and how to get a suitable one.
 * This module imports nothing, so it loads on any Node.
 */
export function nodeVersionProblem(version: string, execPath: string): string | undefined {
  const [major = 0, minor = 0] = version.split('.').map((part) => Number.parseInt(part, 10));
  if (major > MIN_NODE.major || (major === MIN_NODE.major && minor >= MIN_NODE.minor)) return undefined;
  return [
    `nanosync needs Node.js ${MIN_NODE.major}.${MIN_NODE.minor} or newer (for its built-in node:sqlite);`,
    `this is Node.js ${version} (${execPath}).`,
    'Get a current one, for example:',
    '  nvm install 24 && nvm use 24          (https://github.com/nvm-sh/nvm)',
    '  or a Node.js 24 package from https://nodejs.org/en/download',
  ].join('\n');
}
