// Runs the ledger conformance suite against the simulator's ledger, so the engine simulation's
// stand-in for storage is held to exactly what the real ledger does (codes, replays, reconciliation).
import { MemoryLog } from '../../src/log/memory-log.js';
import { describeLedger } from '../support/ledger-suite.js';
import { SimLedger } from '../support/sim-ledger.js';

describeLedger('SimLedger', async () => {
  const ledger = new SimLedger(new MemoryLog());
  await ledger.start();
  return {
    ledger,
    replayFromStart: () => ledger.replayFromStart(),
    skipInLog: (events) => ledger.skipInLog(events),
    corruptBalance: async (userId, deltaFen) => {
      ledger.balances.set(`wallet:${userId}`, ledger.balance(`wallet:${userId}`) + deltaFen);
    },
    closeWithoutRefund: async (packetId, refundFen) => {
      const row = ledger.rows.get(packetId);
      if (row === undefined) throw new Error(`sim: no packet ${packetId}`);
      row.expired = true;
      row.refundFen = refundFen;
    },
    cleanup: () => ledger.stop(),
  };
});
