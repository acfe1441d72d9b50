/**
 * The oldest Node per release line that runs nanosync: 22.22 on the 22 line, 24.6 on 24 and
 * anything newer. `node:sqlite` needs 22.13; the Kafka client (@platformatic/kafka) needs
 * 22.22 / 24.6. Keep in step with package.json `engines` (">=22.22.0 <23 || >=24.6.0").
 */
export const MIN_NODE = [
  { major: 22, minor: 22 },
  { major: 24, minor: 6 },
] as const;

/**
 * Undefined when `version` (e.g. `process.versions.node`) can run nanosync, else the message
 * to print: which Node is needed, which one is running, and how to get a suitable one.
 * This module imports nothing, so it loads on any Node.
 */
export function nodeVersionProblem(version: string, execPath: string): string | undefined {
  const [major = 0, minor = 0] = version.split('.').map((part) => Number.parseInt(part, 10));
  if (major > 24 || (major === 24 && minor >= 6) || (major === 22 && minor >= 22)) return undefined;
  return [
    'nanosync needs Node.js 22.22 or newer on the 22 line, or 24.6 or newer (for node:sqlite and its Kafka client);',
    `this is Node.js ${version} (${execPath}).`,
    'Get a current one, for example:',
    '  nvm install 24 && nvm use 24          (https://github.com/nvm-sh/nvm)',
    '  or a Node.js 24 package from https://nodejs.org/en/download',
  ].join('\n');
}
