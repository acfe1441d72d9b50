/**
 * Thrown when a service cannot be provided on this machine (no Docker engine and no URL to
 * reuse). Tests catch it, or check {@link sqlServerAvailability}, and skip with a title
 * that says why, instead of failing.
 */
export class ServiceUnavailableError extends Error {
  override readonly name = 'ServiceUnavailableError';
  constructor(
    readonly service: string,
    message: string,
  ) {
    super(message);
  }
}

/** Name used in the team's interface notes; same class. */
export { ServiceUnavailableError as NanosyncTestUnavailable };

/** Thrown when a local service process fails to start; carries the tail of its log. */
export class ServiceStartError extends Error {
  override readonly name = 'ServiceStartError';
}
