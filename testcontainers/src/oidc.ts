import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { log } from './env.js';

/** The audience (`aud`) of every access token the provider issues. */
export const OIDC_AUDIENCE = 'nanosync-schema-registry';

export interface OidcProviderOptions {
  /** Seconds an access token stays valid (default 300). */
  accessTokenTtl?: number;
}

export interface OidcTokenOptions {
  /** Seconds this token stays valid, instead of `accessTokenTtl`. */
  ttl?: number;
}

export interface OidcProviderService extends AsyncDisposable {
  /** The issuer URL (`iss`), where `/.well-known/openid-configuration` is served. */
  issuer: string;
  tokenEndpoint: string;
  /** The confidential client allowed the client_credentials grant. */
  client: { id: string; secret: string };
  /** An access token for `client` through the client_credentials grant: a JWT signed with the provider's RS256 key. */
  clientCredentialsToken(options?: OidcTokenOptions): Promise<{ accessToken: string; expiresIn: number }>;
}

/** Resource indicator for a token with its own lifetime: `urn:nanosync:ttl:<seconds>`. */
const TTL_RESOURCE = /^urn:nanosync:ttl:(\d+)$/;

/**
 * A certified OpenID provider (panva's `oidc-provider`) on a free loopback port, in this
 * process: one confidential client with the client_credentials grant, access tokens as
 * JWTs (RFC 9068) signed by a fresh RSA key published at the JWKS endpoint. A resource
 * server such as Apicurio (Quarkus OIDC) finds everything through discovery from `issuer`.
 */
export async function startOidcProvider(options: OidcProviderOptions = {}): Promise<OidcProviderService> {
  const started = Date.now();
  const defaultTtl = options.accessTokenTtl ?? 300;
  // The provider needs its issuer URL, which holds the port: listen first, then hand requests over.
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(8).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };
  const client = { id: 'nanosync', secret: randomBytes(24).toString('base64url') };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: client.id,
        client_secret: client.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTtl },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:nanosync:schema-registry',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          const ttl = TTL_RESOURCE.exec(resource);
          return {
            audience: OIDC_AUDIENCE,
            scope: 'registry',
            accessTokenTTL: ttl ? Number(ttl[1]) : defaultTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  handler = provider.callback();
  const tokenEndpoint = `${issuer}/token`;
  log(`openid provider at ${issuer} in ${Date.now() - started} ms`);
  let closed = false;
  return {
    issuer,
    tokenEndpoint,
    client,
    async clientCredentialsToken(tokenOptions: OidcTokenOptions = {}) {
      const body = new URLSearchParams({ grant_type: 'client_credentials' });
      if (tokenOptions.ttl !== undefined) body.set('resource', `urn:nanosync:ttl:${tokenOptions.ttl}`);
      const response = await fetch(tokenEndpoint, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body,
      });
      const answer = (await response.json()) as { access_token?: string; expires_in?: number; error?: string };
      if (!response.ok || !answer.access_token)
        throw new Error(
          `the OpenID provider refused the client_credentials grant (${response.status}): ${answer.error}`,
        );
      return { accessToken: answer.access_token, expiresIn: answer.expires_in ?? 0 };
    },
    async [Symbol.asyncDispose]() {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
