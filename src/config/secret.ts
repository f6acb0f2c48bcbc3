/**
 * A secret value (an API token, a client secret, a private key) that cannot be printed by accident: every
 * way of turning it into text — JSON, string conversion, template literals, `util.inspect`, pino — yields
 * `[redacted]`. Only {@link Secret.reveal} gives the value, so each use of a secret is a visible call.
 */
import { inspect } from 'node:util';

/** What every printable form of a secret shows. */
export const REDACTED = '[redacted]';

/** A string that redacts itself wherever it is printed or serialised. */
export class Secret {
  // A private field: enumeration, spreading, structuredClone and util.inspect cannot see it.
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The secret itself. Call it only where the value is handed to the party that needs it. */
  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [Symbol.toPrimitive](): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
