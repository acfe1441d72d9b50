import { ErrorCode, NanosyncError } from '@nanosync/core';
import type { Route } from '../http.js';

/**
 * `GET /v1/definitions`: every stored definition with its hash and state, for
 * `nanosync plan` to compare a config file with. Literal secrets are stored encrypted
 * (the apply route refuses anything else), so the definitions go out as stored; only a
 * client holding the server's key can read them.
 */
export const definitionRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/definitions',
    handle: async ({ engine }) => {
      if (engine.definitions === undefined)
        throw new NanosyncError(ErrorCode.Internal, 'this server cannot list its stored definitions');
      return { json: { definitions: await engine.definitions() } };
    },
  },
];
