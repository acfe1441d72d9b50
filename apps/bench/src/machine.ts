import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, freemem, platform, release, totalmem } from 'node:os';
import { run } from './util.js';

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryBytes: number;
  freeMemoryBytes: number;
  os: string;
  node: string;
  postgres?: string;
  kafka?: string;
  java?: string;
  debezium?: string;
  kafkajs?: string;
  /** The nanosync tree that was measured: commit, with "+changes" when the work tree differs from it. */
  nanosyncCommit?: string;
}

async function gitCommit(cwd: string): Promise<string | undefined> {
  try {
    const { stdout: head } = await run('git', ['rev-parse', '--short', 'HEAD'], { cwd, timeoutMs: 10_000 });
    const { stdout: status } = await run('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd,
      timeoutMs: 10_000,
    });
    return `${head.trim()}${status.trim() ? '+changes' : ''}`;
  } catch {
    return undefined;
  }
}

export async function javaVersion(): Promise<string | undefined> {
  try {
    const java = process.env.JAVA_HOME ? `${process.env.JAVA_HOME}/bin/java` : 'java';
    const { stderr, stdout } = await run(java, ['-version'], { timeoutMs: 20_000 });
    const text = `${stderr}\n${stdout}`;
    const runtime = /^(openjdk|java) version "([^"]+)"/m.exec(text);
    const vendor = /^(.*Runtime Environment.*)$/m.exec(text);
    return runtime
      ? `${runtime[2]}${vendor?.[1] ? ` (${vendor[1].replace(/\s*\(build.*$/, '').trim()})` : ''}`
      : text.trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

async function cpuModel(): Promise<string> {
  const fromOs = cpus()[0]?.model;
  if (fromOs && fromOs !== 'unknown') return fromOs.trim();
  try {
    const info = await readFile('/proc/cpuinfo', 'utf8');
    return /^model name\s*:\s*(.*)$/m.exec(info)?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The version of a package the bench depends on, as installed (undefined when it is not). */
export async function packageVersion(name: string): Promise<string | undefined> {
  try {
    const pkg = JSON.parse(
      await readFile(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8'),
    ) as { version?: string };
    return pkg.version;
  } catch {
    return undefined;
  }
}

export async function machineInfo(repoRoot: string): Promise<MachineInfo> {
  const kafkajs = await packageVersion('kafkajs');
  return {
    cores: cpus().length,
    cpuModel: await cpuModel(),
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    os: `${platform()} ${release()}${existsSync('/etc/debian_version') ? ' (Debian)' : ''}`,
    node: process.version,
    java: await javaVersion(),
    kafkajs,
    nanosyncCommit: await gitCommit(repoRoot),
  };
}
