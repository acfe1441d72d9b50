import { describe, expect, it } from 'vitest';
import {
  ServiceUnavailableError,
  SQLSERVER_UNAVAILABLE,
  sqlServerUnavailableReason,
  startSqlServer,
} from '../../src/index.js';

const unavailable = await sqlServerUnavailableReason();

describe('startSqlServer', () => {
  it.runIf(unavailable)(`reports "${SQLSERVER_UNAVAILABLE}" by name when it cannot run`, async () => {
    const error = await startSqlServer().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as Error).message).toContain('unavailable here: needs a Docker engine or NANOSYNC_TEST_MSSQL_URL');
  });

  it.skipIf(unavailable)(
    `provides a SQL Server with CDC enabled${unavailable ? ` (skipped: ${unavailable})` : ''}`,
    async () => {
      await using server = await startSqlServer();
      expect(server.url).toMatch(/^mssql:\/\//);
      expect(server.port).toBeGreaterThan(0);
    },
  );
});
