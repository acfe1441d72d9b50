import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { GoogleBigQuery } from '../../src/client/google.js';
import { parseBigQuerySinkConfig } from '../../src/config.js';

describe('credentials', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ns-bq-cred-'));

  test('an unreadable key file is refused with NS_B7002 and the gcloud line, never its content', () => {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '-----BEGIN PRIVATE KEY-----\nMIIEsecretsecret\n-----END PRIVATE KEY-----');
    const config = parseBigQuerySinkConfig({ project_id: 'my-project', dataset_id: 'ds', credentials_file: file });
    let message = '';
    let code: unknown;
    try {
      new GoogleBigQuery(config);
    } catch (err) {
      message = (err as Error).message;
      code = (err as { code?: unknown }).code;
    }
    expect(code).toBe('NS_B7002');
    expect(message).toMatch(/broken\.json is not readable JSON.*gcloud iam service-accounts keys create/);
    expect(message).not.toMatch(/MIIE|secret/);
  });

  test('a key file or inline key builds the clients without contacting Google', async () => {
    const key = JSON.stringify({
      type: 'service_account',
      client_email: 'sa@my-project.iam.gserviceaccount.com',
      private_key: 'not-a-real-key',
      project_id: 'my-project',
    });
    const file = join(dir, 'sa.json');
    writeFileSync(file, key);
    for (const properties of [{ credentials_file: file }, { credentials_json: key }, {}]) {
      const port = new GoogleBigQuery(
        parseBigQuerySinkConfig({ project_id: 'my-project', dataset_id: 'ds', ...properties }),
      );
      await port.close();
    }
  });
});
