import { randomBytes } from 'node:crypto';
import type { CheckResult } from '@nanosync/core';
import type { BigQueryPort } from './client/port.js';
import type { BigQuerySinkConfig } from './config.js';
import { classifyBigQueryError, googleMessage } from './errors.js';
import { quoteTablePath } from './naming.js';
import { createTableSql, targetTableFor } from './schema/target-table.js';
import { CHANGE_SEQUENCE_NUMBER, CHANGE_TYPE, encodeRow, rowLayoutFor } from './write/proto-rows.js';

/**
 * Preflight: credentials, dataset and its location, then a probe that exercises exactly
 * what the pipeline will do — create a table with a primary key (bigquery.tables.create,
 * bigquery.jobs.create), append a CDC UPSERT through the Storage Write API
 * (bigquery.tables.updateData, the BigQuery Storage API enabled), drop it. The probe table
 * is `_ns_check_<random>` and is dropped at the end, also when a step fails.
 */
export async function checkBigQuery(port: BigQueryPort, config: BigQuerySinkConfig): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const project = config.projectId;
  const dataset = `${project}:${config.datasetId}`;
  const credentials = config.credentialsFile
    ? `credentials_file ${config.credentialsFile}`
    : config.credentialsJson
      ? 'credentials_json'
      : 'Application Default Credentials';

  let location: string | undefined;
  try {
    const info = await port.getDataset();
    if (!info) {
      results.push({
        name: 'bigquery dataset',
        ok: false,
        message: `dataset ${dataset} does not exist`,
        fix: `bq --location=${config.location ?? 'US'} mk --dataset ${dataset}`,
      });
      return results;
    }
    location = info.location;
    results.push({
      name: 'bigquery dataset',
      ok: true,
      message: `dataset ${dataset} exists in ${location} (credentials: ${credentials})`,
    });
  } catch (err) {
    results.push(
      failed(
        'bigquery dataset',
        `cannot read dataset ${dataset} with ${credentials}: ${googleMessage(err)}`,
        err,
        config,
      ),
    );
    return results;
  }

  if (config.location && location && config.location.toLowerCase() !== location.toLowerCase()) {
    results.push({
      name: 'bigquery location',
      ok: false,
      message: `dataset ${dataset} is in ${location}, but location is ${config.location}`,
      fix: `set location: ${location}, or create the dataset in ${config.location}: bq --location=${config.location} mk --dataset ${project}:NEW_DATASET`,
    });
  }

  const probeId = `_ns_check_${randomBytes(6).toString('hex')}`;
  const probePath = quoteTablePath(project, config.datasetId, probeId);
  const probeSchema = {
    schema: 'nanosync',
    name: 'check',
    keyColumns: ['id'],
    columns: [{ name: 'id', type: { kind: 'int64' as const }, nullable: false }],
  };
  const target = targetTableFor(probeSchema, 'mirror');
  let created = false;
  try {
    await port.query(
      createTableSql(target, {
        projectId: project,
        datasetId: config.datasetId,
        tableId: probeId,
        maxStalenessSeconds: config.maxStalenessSeconds,
      }),
    );
    created = true;
    results.push({
      name: 'bigquery create table',
      ok: true,
      message: `created probe table ${probeId} with a primary key (bigquery.tables.create, bigquery.jobs.create)`,
    });
  } catch (err) {
    results.push(
      failed('bigquery create table', `cannot create a table in ${dataset}: ${googleMessage(err)}`, err, config),
    );
  }
  if (created) {
    try {
      const layout = rowLayoutFor(target, [
        { name: CHANGE_TYPE, type: 'STRING', mode: 'NULLABLE' },
        { name: CHANGE_SEQUENCE_NUMBER, type: 'STRING', mode: 'NULLABLE' },
      ]);
      const row = encodeRow(layout, { id: '1' }, { [CHANGE_TYPE]: 'UPSERT', [CHANGE_SEQUENCE_NUMBER]: '1' });
      const outcome = await port.append(probeId, layout.descriptor, [row]);
      if (outcome.rowErrors.length > 0) throw new Error(outcome.rowErrors.map((e) => e.message).join('; '));
      results.push({
        name: 'bigquery storage write',
        ok: true,
        message: 'appended a CDC UPSERT through the Storage Write API (bigquery.tables.updateData)',
      });
    } catch (err) {
      const disabled = /has not been used|is disabled|SERVICE_DISABLED/i.test(googleMessage(err));
      results.push(
        disabled
          ? {
              name: 'bigquery storage write',
              ok: false,
              message: `the BigQuery Storage API is not enabled in project ${project}: ${googleMessage(err)}`,
              fix: `gcloud services enable bigquerystorage.googleapis.com --project=${project}`,
            }
          : failed(
              'bigquery storage write',
              `cannot write through the Storage Write API: ${googleMessage(err)}`,
              err,
              config,
            ),
      );
    }
    try {
      await port.query(`DROP TABLE IF EXISTS ${probePath}`);
    } catch (err) {
      results.push({
        name: 'bigquery cleanup',
        ok: false,
        severity: 'warning',
        message: `could not drop probe table ${probeId}: ${googleMessage(err)}`,
        fix: `bq rm -f -t ${project}:${config.datasetId}.${probeId}`,
      });
    }
  }

  if (
    config.writeMode === 'upsert' &&
    config.onTruncate === 'delete' &&
    config.maxStalenessSeconds > 0 &&
    config.upsertMethod === 'cdc'
  ) {
    results.push({
      name: 'bigquery truncate',
      ok: false,
      severity: 'warning',
      message:
        `max_staleness is ${config.maxStalenessSeconds}s: a source TRUNCATE deletes the keys a query can see, and rows upserted within ` +
        'the staleness window may not be visible yet and so survive the TRUNCATE',
      fix: 'set max_staleness: 0 for exact TRUNCATE, or on_truncate: fail to stop and decide by hand',
    });
  }
  return results;
}

function failed(name: string, message: string, err: unknown, config: BigQuerySinkConfig): CheckResult {
  const kind = classifyBigQueryError(err);
  const noCredentials = /could not load the default credentials|default credentials/i.test(googleMessage(err));
  let fix: string | undefined;
  if (noCredentials)
    fix = 'set credentials_file to a service-account key, or run: gcloud auth application-default login';
  else if (kind === 'auth') {
    fix =
      `grant roles/bigquery.dataEditor on the dataset and roles/bigquery.jobUser on the project: ` +
      `bq add-iam-policy-binding --member=serviceAccount:SA_EMAIL --role=roles/bigquery.dataEditor ${config.projectId}:${config.datasetId}; ` +
      `gcloud projects add-iam-policy-binding ${config.projectId} --member=serviceAccount:SA_EMAIL --role=roles/bigquery.jobUser`;
  } else if (kind === 'retriable') {
    const unreachable = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH|getaddrinfo/i.test(message);
    const hint = unreachable
      ? 'BigQuery is not reachable from here: check DNS, firewall and proxy (HTTPS_PROXY) for bigquery.googleapis.com and bigquerystorage.googleapis.com'
      : 'a transient error: the start is retried';
    return { name, ok: false, message, fix: hint, retriable: true };
  }
  return fix ? { name, ok: false, message, fix } : { name, ok: false, message };
}
