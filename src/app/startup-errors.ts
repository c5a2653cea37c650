// Start-up failures an operator can fix, each turned into one line that says what is wrong and
// how to fix it. The one place that knows the drivers' start-up errors (pg, kafkajs, node:net);
// the original error stays as `cause`, for the debug log. Anything not recognised here is a bug
// or a surprise and keeps its stack trace.
import { ConfigError } from '../config.js';
import { DataDirInUseError } from '../ledger/data-dir-lock.js';

export class StartupError extends Error {
  override readonly name = 'StartupError';
  constructor(line: string, options: { cause?: unknown } = {}) {
    super(line, options);
  }
}

/** Network-level codes of a peer that is not there (or not reachable). */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

/** The chain of causes, the error first (bounded: a cycle cannot loop). */
function chainOf(error: unknown): Record<string, unknown>[] {
  const chain: Record<string, unknown>[] = [];
  for (let current = error; typeof current === 'object' && current !== null && chain.length < 10; current = (current as { cause?: unknown }).cause) {
    chain.push(current as Record<string, unknown>);
    // AggregateError (a host name that resolves to several addresses): look at its first.
    const inner = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0 && typeof inner[0] === 'object') chain.push(inner[0] as Record<string, unknown>);
  }
  return chain;
}

function codeIn(error: unknown, codes: ReadonlySet<string>): string | undefined {
  for (const link of chainOf(error)) if (typeof link.code === 'string' && codes.has(link.code)) return link.code;
  return undefined;
}

/** Postgres answered, or could not be reached, while the database was opened. */
export function databaseStartupError(error: unknown, databaseUrl: string): unknown {
  if (error instanceof StartupError) return error;
  const url = new URL(databaseUrl);
  const host = url.hostname || 'localhost';
  const port = url.port || '5432';
  const unreachable = codeIn(error, UNREACHABLE_CODES);
  if (unreachable !== undefined) {
    return new StartupError(`cannot reach the database at ${host}:${port} (${unreachable}); is Postgres running?`, { cause: error });
  }
  if (chainOf(error).some((link) => typeof link.message === 'string' && /timeout expired|connection timeout/i.test(link.message))) {
    return new StartupError(`cannot reach the database at ${host}:${port} (connection timed out); is Postgres running?`, { cause: error });
  }
  // invalid_catalog_name: the server is there, the database is not.
  if (codeIn(error, new Set(['3D000'])) !== undefined) {
    const name = decodeURIComponent(url.pathname.replace(/^\//, '')) || decodeURIComponent(url.username) || 'postgres';
    const user = url.username === '' ? '' : ` -U ${decodeURIComponent(url.username)}`;
    return new StartupError(`database "${name}" does not exist; create it with: createdb -h ${host} -p ${port}${user} ${name}`, { cause: error });
  }
  // invalid_password / invalid_authorization_specification
  if (codeIn(error, new Set(['28P01', '28000'])) !== undefined) {
    return new StartupError(`the database at ${host}:${port} refused the login (${firstMessage(error)}); check the user and password in DATABASE_URL`, {
      cause: error,
    });
  }
  return error;
}

/** kafkajs gave up connecting to every broker. */
export function kafkaStartupError(error: unknown, brokers: readonly string[]): unknown {
  if (error instanceof StartupError) return error;
  const code = codeIn(error, UNREACHABLE_CODES);
  // By name, not instanceof: kafkajs's error classes are not named exports under Node's ESM loader.
  const connection = chainOf(error).some((link) => link.name === 'KafkaJSConnectionError' || link.name === 'KafkaJSBrokerNotFound');
  if (code === undefined && !connection) return error;
  const reason = code ?? firstMessage(error);
  return new StartupError(
    `cannot reach Kafka at ${brokers.join(',')} (${reason}); is the broker running (bash scripts/services.sh up)? check KAFKA_BROKERS`,
    { cause: error },
  );
}

/** The HTTP server could not listen. */
export function listenStartupError(error: unknown, host: string, port: number): unknown {
  const code = (error as { code?: unknown }).code;
  if (code === 'EADDRINUSE') return new StartupError(`port ${port} on ${host} is in use; stop that process or set PORT`, { cause: error });
  if (code === 'EACCES') return new StartupError(`no permission to listen on port ${port} on ${host}; use a port above 1023 or set PORT`, { cause: error });
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
    return new StartupError(`cannot listen on ${host}: no such address on this machine; set HOST`, { cause: error });
  }
  return error;
}

/** The one line for an operator, or undefined when the error is not one we can explain. */
export function startupLine(error: unknown): string | undefined {
  if (error instanceof StartupError || error instanceof DataDirInUseError || error instanceof ConfigError) return `hongbao: ${error.message}`;
  return undefined;
}

function firstMessage(error: unknown): string {
  for (const link of chainOf(error)) if (typeof link.message === 'string' && link.message !== '') return link.message;
  return String(error);
}
