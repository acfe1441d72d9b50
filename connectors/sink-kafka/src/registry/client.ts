import http from 'node:http';
import https from 'node:https';
import { NanosyncError, readTlsFile } from '@nanosync/core';
import { KafkaErrorCode } from '../errors.js';

/** How the sink reaches a Confluent-compatible Schema Registry (Confluent, Apicurio's ccompat API, Redpanda, Karapace). */
export interface SchemaRegistryConfig {
  /** Base URL, e.g. `https://registry:8081` or `http://apicurio:8080/apis/ccompat/v7`. */
  url: string;
  /** Basic authentication (Confluent Cloud: API key and secret). */
  basic?: { username: string; password: string };
  /** Bearer token (`Authorization: Bearer …`). */
  bearerToken?: string;
  /** PEM files: CA for the registry's certificate, client certificate and key for mutual TLS. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  requestTimeoutMs?: number;
}

export type SchemaType = 'AVRO' | 'PROTOBUF';

/** How the client authenticates: which settings to name when the registry refuses it. */
export type RegistryAuth = 'basic' | 'bearer' | 'none';

/**
 * A registry answer other than 2xx: the HTTP status, the registry's own `error_code` and
 * message, and on a 401 the `WWW-Authenticate` challenge (RFC 6750 puts why a bearer token
 * was refused there, e.g. `error="invalid_token"`).
 */
export class RegistryHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: number | undefined,
    message: string,
    readonly challenge?: string,
  ) {
    super(message);
    this.name = 'RegistryHttpError';
  }
}

/**
 * A small client for the Confluent Schema Registry REST API: just what the sink needs to
 * register subjects, read their compatibility rule and latest version, and fetch a schema
 * by id (for readers). Node's own http/https, so TLS takes the same PEM files as the
 * broker connection.
 */
export class SchemaRegistryClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(private readonly config: SchemaRegistryConfig) {
    this.base = new URL(config.url.endsWith('/') ? config.url : `${config.url}/`);
    const secure = this.base.protocol === 'https:';
    this.agent = secure
      ? new https.Agent({
          keepAlive: true,
          ...(config.tls?.caFile ? { ca: readTlsFile('schema_registry_ca_cert', config.tls.caFile) } : {}),
          ...(config.tls?.certFile ? { cert: readTlsFile('schema_registry_client_cert', config.tls.certFile) } : {}),
          ...(config.tls?.keyFile ? { key: readTlsFile('schema_registry_client_key', config.tls.keyFile) } : {}),
        })
      : new http.Agent({ keepAlive: true });
    this.headers = {
      accept: 'application/vnd.schemaregistry.v1+json, application/json',
      'content-type': 'application/vnd.schemaregistry.v1+json',
    };
    if (config.basic) {
      const token = Buffer.from(`${config.basic.username}:${config.basic.password}`, 'utf8').toString('base64');
      this.headers.authorization = `Basic ${token}`;
    } else if (config.bearerToken) {
      this.headers.authorization = `Bearer ${config.bearerToken}`;
    }
    this.timeoutMs = config.requestTimeoutMs ?? 30_000;
  }

  get url(): string {
    return this.config.url;
  }

  get auth(): RegistryAuth {
    return this.config.basic ? 'basic' : this.config.bearerToken ? 'bearer' : 'none';
  }

  /** Register `schema` under `subject` (a no-op returning the existing id when already there). */
  async register(subject: string, schema: string, schemaType: SchemaType): Promise<number> {
    const body: Record<string, unknown> = { schema };
    if (schemaType !== 'AVRO') body.schemaType = schemaType;
    const answer = (await this.request('POST', `subjects/${encodeURIComponent(subject)}/versions`, body)) as {
      id?: number;
    };
    if (typeof answer?.id !== 'number')
      throw new RegistryHttpError(200, undefined, `registry answered without an id: ${JSON.stringify(answer)}`);
    return answer.id;
  }

  /** The subject's compatibility rule, falling back to the registry-wide one. */
  async compatibility(subject: string): Promise<string> {
    try {
      const own = (await this.request('GET', `config/${encodeURIComponent(subject)}`)) as {
        compatibilityLevel?: string;
        compatibility?: string;
      };
      const level = own?.compatibilityLevel ?? own?.compatibility;
      if (level) return level;
    } catch (err) {
      if (!(err instanceof RegistryHttpError) || err.status !== 404) throw err;
    }
    const global = (await this.request('GET', 'config')) as { compatibilityLevel?: string; compatibility?: string };
    return global?.compatibilityLevel ?? global?.compatibility ?? 'BACKWARD';
  }

  /** Set a subject's compatibility rule (for tests and tooling; the sink never changes rules). */
  async setCompatibility(subject: string | undefined, level: string): Promise<void> {
    await this.request('PUT', subject === undefined ? 'config' : `config/${encodeURIComponent(subject)}`, {
      compatibility: level,
    });
  }

  /** The latest version of a subject, or undefined when the subject does not exist. */
  async latest(subject: string): Promise<{ id: number; version: number; schema: string } | undefined> {
    try {
      return (await this.request('GET', `subjects/${encodeURIComponent(subject)}/versions/latest`)) as {
        id: number;
        version: number;
        schema: string;
      };
    } catch (err) {
      if (err instanceof RegistryHttpError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** Version numbers of a subject (empty when it does not exist). */
  async versions(subject: string): Promise<number[]> {
    try {
      return (await this.request('GET', `subjects/${encodeURIComponent(subject)}/versions`)) as number[];
    } catch (err) {
      if (err instanceof RegistryHttpError && err.status === 404) return [];
      throw err;
    }
  }

  /** The schema text registered with `id` (what a consumer's deserializer fetches). */
  async schemaById(id: number): Promise<{ schema: string; schemaType: SchemaType }> {
    const answer = (await this.request('GET', `schemas/ids/${id}`)) as { schema: string; schemaType?: SchemaType };
    return { schema: answer.schema, schemaType: answer.schemaType ?? 'AVRO' };
  }

  /** Reachability and credentials: list subjects. */
  async probe(): Promise<number> {
    const subjects = (await this.request('GET', 'subjects')) as unknown[];
    return Array.isArray(subjects) ? subjects.length : 0;
  }

  close(): void {
    this.agent.destroy();
  }

  private request(method: string, path: string, body?: unknown): Promise<unknown> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(
        url,
        {
          method,
          agent: this.agent,
          headers: { ...this.headers, ...(payload ? { 'content-length': String(payload.length) } : {}) },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON: keep the text for the error message
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(parsed);
            const info = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as {
              error_code?: number;
              message?: string;
            };
            const message = info.message ?? (typeof parsed === 'string' && parsed ? parsed.slice(0, 300) : '');
            const challenge = res.headers['www-authenticate'];
            reject(
              new RegistryHttpError(
                status,
                info.error_code,
                `${method} ${url.pathname} answered ${status}${message ? `: ${message}` : ''}`,
                Array.isArray(challenge) ? challenge.join(', ') : challenge,
              ),
            );
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/**
 * Why a 401 happened, in the terms of the sink's settings. Never the secret itself: the
 * user name at most (not a secret), and the registry's own reason from its challenge.
 */
function refusal(status: number, auth: RegistryAuth, challenge: string | undefined): string {
  // RFC 6750: Bearer error="invalid_token", error_description="…" (quoted, no secrets).
  const reason =
    /error_description="([^"]*)"/.exec(challenge ?? '')?.[1] ?? /error="([^"]*)"/.exec(challenge ?? '')?.[1];
  const because = reason ? `; the registry says: ${reason}` : '';
  if (status === 403)
    return `denied it (403): the credentials were accepted but lack the permission; give the account write access to its subjects${because}`;
  if (auth === 'bearer')
    return `refused the bearer token of schema_registry_token (401${because}): it has expired, was issued by an identity provider the registry does not trust, or is not meant for this registry; set a fresh token`;
  if (auth === 'basic')
    return `refused the user name and password (401${because}): check schema_registry_username / schema_registry_password`;
  return `requires authentication (401${because}) and none is configured: set schema_registry_username / schema_registry_password or schema_registry_token`;
}

/**
 * The TLS alerts a server sends when it wants a client certificate and got none, or one it
 * does not trust (OpenSSL's names, as Node's error codes carry them).
 */
const CLIENT_CERT_ALERT =
  /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/;

/** A registry failure as the error the pipeline shows: auth and TLS are not retried, outages are. */
export function registryError(
  err: unknown,
  registry: { readonly url: string; readonly auth: RegistryAuth },
  what: string,
): NanosyncError {
  const { url } = registry;
  if (err instanceof NanosyncError) return err;
  if (err instanceof RegistryHttpError) {
    if (err.status === 401 || err.status === 403) {
      return new NanosyncError(
        KafkaErrorCode.KafkaSchemaRegistry,
        `Schema Registry at ${url}, asked to ${what}, ${refusal(err.status, registry.auth, err.challenge)}`,
        { cause: err, retriable: false, details: { url, status: err.status, auth: registry.auth } },
      );
    }
    return new NanosyncError(
      KafkaErrorCode.KafkaSchemaRegistry,
      `Schema Registry at ${url} could not ${what}: ${err.message}`,
      {
        cause: err,
        retriable: err.status >= 500 || err.status === 429,
        details: { url, status: err.status },
      },
    );
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string' && CLIENT_CERT_ALERT.test(code)) {
    return new NanosyncError(
      KafkaErrorCode.KafkaSchemaRegistry,
      `Schema Registry at ${url} refused the TLS client certificate (${(err as Error).message.trim()}): it requires mutual TLS; set schema_registry_client_cert and schema_registry_client_key to a certificate signed by a CA it trusts`,
      { cause: err, retriable: false, details: { url, code } },
    );
  }
  // Node's codes for a certificate it does not trust, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE for
  // one signed by a CA other than schema_registry_ca_cert, or a plain-text answer on https.
  const tls = typeof code === 'string' && /CERT|SSL|SELF_SIGNED|ALTNAME|VERIFY|ISSUER/.test(code);
  return new NanosyncError(
    KafkaErrorCode.KafkaSchemaRegistry,
    tls
      ? `TLS handshake with the Schema Registry at ${url} failed: ${(err as Error).message}. Set schema_registry_ca_cert to the CA that signed its certificate`
      : `cannot reach the Schema Registry at ${url} to ${what}: ${(err as Error)?.message ?? String(err)}`,
    { cause: err, retriable: !tls, details: { url } },
  );
}
