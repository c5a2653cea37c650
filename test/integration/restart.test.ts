// Proves restart safety on the embedded default: the server is killed with SIGKILL in the
// middle of a crowd of opens and started again on the same DATA_DIR; no acknowledged claim
// is lost, no packet pays more or less than its total, nobody is paid twice.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CRASH_SECRET, runCrashScenario } from '../support/crash-scenario.js';
import { startServer, type ServerProcess } from '../support/process.js';

describe('kill -9 and restart on the embedded default', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-restart-'));
  const env = { DATA_DIR: dataDir, AUTH_SECRET: CRASH_SECRET, SEED_SECRET: 'restart-seed' };
  let engine: ServerProcess | undefined;
  afterAll(async () => {
    await engine?.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('loses no acknowledged claim and pays nobody twice', async () => {
    engine = await startServer(env);
    // Small on purpose: what it proves (acknowledged claims survive a kill -9; a drained packet
    // pays its total to distinct users; the books reconcile) needs a crowd, not a big one.
    const report = await runCrashScenario({
      packets: 3,
      sharesPerPacket: 40,
      acknowledgedBeforeDisrupt: 40,
      openersPerRound: 12,
      engine: () => engine!,
      disrupt: async () => {
        await engine!.kill('SIGKILL');
        engine = await startServer(env);
      },
    });
    expect(report.acknowledged).toBeGreaterThanOrEqual(40);
    // The kill was felt: the crowd met a dead process or 503s while it came back.
    expect(report.refusedWhileBroken).toBeGreaterThan(0);
  }, 240_000);
});
