import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BigQuery } from '@google-cloud/bigquery';
import type { ConnectorContext, Logger } from '@nanosync/core';

/**
 * Live BigQuery for the integration suites. They run only with a project and credentials:
 * `NANOSYNC_TEST_BIGQUERY_PROJECT`, plus `GOOGLE_APPLICATION_CREDENTIALS` (a service-account
 * key) or Application Default Credentials from `gcloud auth application-default login`.
 * Otherwise every test is registered and reported as skipped with {@link LIVE_SKIP}; no
 * stand-in takes BigQuery's place here.
 */
export const LIVE_PROJECT = process.env.NANOSYNC_TEST_BIGQUERY_PROJECT;
export const LIVE_LOCATION = process.env.NANOSYNC_TEST_BIGQUERY_LOCATION ?? 'US';
export const LIVE_CREDENTIALS_FILE = process.env.GOOGLE_APPLICATION_CREDENTIALS;

function hasCredentials(): boolean {
  if (LIVE_CREDENTIALS_FILE) return existsSync(LIVE_CREDENTIALS_FILE);
  return existsSync(join(homedir(), '.config', 'gcloud', 'application_default_credentials.json'));
}

export const LIVE_SKIP: string | false =
  LIVE_PROJECT && hasCredentials()
    ? false
    : 'needs BigQuery credentials: set NANOSYNC_TEST_BIGQUERY_PROJECT and GOOGLE_APPLICATION_CREDENTIALS (or gcloud auth application-default login)';

/** A dataset of its own for one suite, deleted (with its tables) at the end. */
export class LiveDataset implements AsyncDisposable {
  readonly client: BigQuery;
  private constructor(
    readonly projectId: string,
    readonly datasetId: string,
  ) {
    this.client = new BigQuery({ projectId, location: LIVE_LOCATION });
  }

  static async create(label: string): Promise<LiveDataset> {
    const projectId = LIVE_PROJECT as string;
    const datasetId = `nanosync_test_${label}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    const live = new LiveDataset(projectId, datasetId);
    await live.client.createDataset(datasetId, { location: LIVE_LOCATION });
    return live;
  }

  /** Sink properties for this dataset. */
  properties(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      project_id: this.projectId,
      dataset_id: this.datasetId,
      location: LIVE_LOCATION,
      ...(LIVE_CREDENTIALS_FILE ? { credentials_file: LIVE_CREDENTIALS_FILE } : {}),
      ...extra,
    };
  }

  async rows(sql: string): Promise<Record<string, unknown>[]> {
    const [rows] = await this.client.query({
      query: sql,
      location: LIVE_LOCATION,
      wrapIntegers: { integerTypeCastFunction: (v: string) => v },
    });
    return rows as Record<string, unknown>[];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.client.dataset(this.datasetId).delete({ force: true });
  }
}

export const quietLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => quietLogger,
};

export function liveContext(pipeline: string): ConnectorContext {
  return { pipeline, logger: quietLogger, signal: new AbortController().signal };
}
