// Proves that start-up refuses, with one line that says what to fix and no stack trace, what
// would otherwise corrupt data or fail obscurely: a second process on a DATA_DIR in use (the
// first keeps serving, and its lock is gone after a clean stop), a port in use (found before
// any recovery work), a database or a Kafka broker that cannot be reached. Each runs the real
// server process; the refusals need no outside service.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CRASH_SECRET, call } from '../support/crash-scenario.js';
import { freePort, runUntilExit, startServer, type ServerProcess } from '../support/process.js';

/** The lines on stderr, without the warnings pino writes to stdout. */
const linesOf = (stderr: string) => stderr.split('\n').filter((line) => line.trim() !== '');

describe.concurrent('start-up refusals', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-startup-'));
  const running: ServerProcess[] = [];
  const held: Server[] = [];
  afterAll(async () => {
    await Promise.all(running.map((server) => server.kill('SIGKILL')));
    for (const server of held) server.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a second process on a DATA_DIR in use exits with one line; the first keeps serving and unlocks on a clean stop', async () => {
    const env = { DATA_DIR: dataDir, AUTH_SECRET: CRASH_SECRET };
    const first = await startServer(env);
    running.push(first);
    const lockFile = join(dataDir, 'hongbao.lock');
    expect(JSON.parse(readFileSync(lockFile, 'utf8'))).toMatchObject({ pid: first.child.pid });

    const second = await runUntilExit(env, 30_000);
    expect(second.code).not.toBe(0);
    expect(linesOf(second.stderr)).toEqual([
      expect.stringMatching(new RegExp(`^hongbao: DATA_DIR ${dataDir} is in use by process ${first.child.pid} \\(started [0-9T:.Z-]+\\); stop it first or use another DATA_DIR$`)),
    ]);

    // The first never noticed: it still answers, and writes.
    const deposit = await call(first.url, 'POST', '/v1/wallet/deposits', 'admin', { userId: 'u1', amount: '1.00' }, { 'idempotency-key': 'k1' });
    expect(deposit.status).toBe(201);
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);

    await first.kill('SIGTERM');
    expect(first.child.exitCode).toBe(0);
    expect(existsSync(lockFile)).toBe(false);
  }, 90_000);

  it('a port in use exits with one line', async () => {
    const port = await freePort();
    const holder = createServer();
    held.push(holder);
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
    const result = await runUntilExit({ DATA_DIR: 'memory', PORT: String(port) }, 30_000);
    expect(result.code).not.toBe(0);
    expect(linesOf(result.stderr)).toEqual([`hongbao: port ${port} on 127.0.0.1 is in use; stop that process or set PORT`]);
  }, 40_000);

  it('an unreachable database exits with one line naming its host', async () => {
    const port = await freePort(); // free: nothing listens there
    const result = await runUntilExit({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/test` }, 30_000);
    expect(result.code).not.toBe(0);
    expect(linesOf(result.stderr)).toEqual([`hongbao: cannot reach the database at 127.0.0.1:${port} (ECONNREFUSED); is Postgres running?`]);
  }, 40_000);

  it('an unreachable Kafka exits with one line naming the brokers, within its bounded retries', async () => {
    const port = await freePort();
    const started = Date.now();
    const result = await runUntilExit({ DATA_DIR: 'memory', KAFKA_BROKERS: `127.0.0.1:${port}` }, 30_000);
    expect(result.code).not.toBe(0);
    expect(linesOf(result.stderr)).toEqual([
      `hongbao: cannot reach Kafka at 127.0.0.1:${port} (ECONNREFUSED); is the broker running (bash scripts/services.sh up)? check KAFKA_BROKERS`,
    ]);
    expect(Date.now() - started).toBeLessThan(25_000);
  }, 40_000);
});
