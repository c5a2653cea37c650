// A cluster of three engine nodes and one ledger on Kafka + Postgres + Redis, each a real process,
// with many users opening at once, spread round robin over every node as a plain load balancer
// would. In each scenario one node loses its slots mid-load: killed with SIGKILL; paused with
// SIGSTOP past the engine group's session timeout (ENGINE_SESSION_TIMEOUT_MS) and resumed; or
// paused while a new process with its NODE_ID starts, then resumed. Afterwards, from the real
// database: every claim a user was told of is in the ledger with its amount and credited to that
// user, each packet drains to exactly its total, no user twice, reconciliation clean, Σ wallets +
// escrow = Σ deposits. And from the nodes' own logs: a node answered `claimed` for a slot only
// while it held it, never after another node had taken it (the broker's fence), and the node that
// lost its slots says so (`slot lost: N (reason)`; hongbao_slot_fenced_appends_total).
import { afterEach, describe, expect, it } from 'vitest';
import { ENGINE_SESSION_TIMEOUT_MS } from '../../src/log/kafka-membership.js';
import {
  checkCluster,
  checkOwnership,
  ownershipChanges,
  processesOf,
  sendPackets,
  slotOfPacket,
  slotsHeldAt,
  startCluster,
  startLoad,
  type Load,
  type LoadReport,
  type NodeHandle,
  type ProcessRef,
  type SentPacket,
  type TestCluster,
} from '../support/cluster.js';

const PARTITIONS = 8;
const PACKETS = 16;
const SHARES = 100;
/** Opens started per second over all users: enough to last through each disruption. */
const OPENS_PER_SECOND = 60;
const USERS_AT_ONCE = 32;

let cluster: TestCluster | undefined;

afterEach(async (context) => {
  // A failed scenario shows what the nodes said.
  if (context.task.result?.state === 'fail' && cluster !== undefined) console.error(`${cluster.output().slice(-10_000)}\nevery node's whole output: ${cluster.saveOutput()}`);
  await cluster?.stop();
  cluster = undefined;
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 45_000, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms ${detail()}`);
    await sleep(200);
  }
}

/** Waits until every slot in `slots` was taken by a process other than `loser` after `afterMs`. */
function untilTakenByOthers(loser: ProcessRef, slots: readonly number[], afterMs: number): Promise<void> {
  const missing = () => slots.filter((slot) => !takenByOthersSince(loser, afterMs).has(slot));
  return until(`every slot ${loser.label} held (${slots.join(', ')}) taken by another process`, () => missing().length === 0, ENGINE_SESSION_TIMEOUT_MS * 5, () =>
    `(never taken: ${missing().join(', ')}; what the others logged: ${processesOf(cluster!.nodes)
      .filter((process) => process.incarnation !== loser.incarnation)
      .map((process) => `${process.label} holds ${slotsHeldAt(process, Date.now()).join(',')}`)
      .join('; ')})`,
  );
}

const currentProcess = (node: NodeHandle): ProcessRef => processesOf([node]).at(-1)!;

/** The slots every process but `loser` took after `afterMs`, by their logs. */
function takenByOthersSince(loser: ProcessRef, afterMs: number): Set<number> {
  return new Set(
    processesOf(cluster!.nodes)
      .filter((process) => process.incarnation !== loser.incarnation)
      .flatMap(ownershipChanges)
      .filter((change) => change.kind === 'taken' && change.atMs > afterMs)
      .map((change) => change.slot),
  );
}

interface Prepared {
  cluster: TestCluster;
  packets: SentPacket[];
  depositedFen: bigint;
  load: Load;
}

async function prepare(): Promise<Prepared> {
  cluster = await startCluster({ engines: 3, ledgers: 1, partitions: PARTITIONS });
  // Every engine holds slots before the load starts (the group's first assignment is quick, but not instant).
  await until('every engine node holds slots', () => cluster!.engines.every((node) => slotsHeldAt(currentProcess(node), Date.now()).length > 0));
  const sent = await sendPackets(cluster.engineUrls(), { runId: cluster.runId, packets: PACKETS, shares: SHARES, amount: '100.00' });
  const load = startLoad({
    runId: cluster.runId,
    urls: () => cluster!.engineUrls(),
    packets: sent.packets,
    concurrency: USERS_AT_ONCE,
    opensPerSecond: OPENS_PER_SECOND,
    opensMax: PACKETS * SHARES,
    durationMs: 90_000,
  });
  return { cluster, packets: sent.packets, depositedFen: sent.depositedFen, load };
}

/** The checker over the database, and the single-writer check over the logs; returns the ownership report. */
async function verify(prepared: Prepared, report: LoadReport) {
  expect(report.unexpected, 'answers other than claimed/already_claimed/sold_out/busy/503').toEqual([]);
  const check = await checkCluster({
    databaseUrl: prepared.cluster.databaseUrl,
    urls: () => prepared.cluster.liveEngineUrls(),
    runId: prepared.cluster.runId,
    packets: prepared.packets,
    acknowledged: [...report.acknowledged, ...report.restated],
    depositedFen: prepared.depositedFen,
  });
  expect(check.problems).toEqual([]);
  expect(check.claims).toBe(PACKETS * SHARES);
  const ownership = checkOwnership(prepared.cluster.nodes, report.acknowledged, PARTITIONS);
  expect(ownership.problems).toEqual([]);
  return ownership;
}

/** What the node that lost its slots says about them itself: its log lines, and its fenced appends. */
function lossesLogged(loser: ProcessRef, afterMs: number) {
  return ownershipChanges(loser).filter((change) => change.kind === 'lost' && change.atMs >= afterMs);
}

/**
 * Claims the loser decided (by its own log it held the slot for the whole request) although
 * another process had taken that slot since the loser's own last take: an open acknowledged by
 * a node that had lost the slot. Must be none. (checkOwnership checks every process so; this
 * names the loser's own.)
 */
function decidedAfterLoss(ownership: ReturnType<typeof checkOwnership>, loser: ProcessRef, lostSlots: readonly number[]) {
  const own = ownershipChanges(loser);
  const others = processesOf(cluster!.nodes).filter((process) => process.incarnation !== loser.incarnation).flatMap(ownershipChanges);
  const decided = [...ownership.decidedBy].find(([process]) => process.incarnation === loser.incarnation)?.[1] ?? [];
  const forLostSlots = decided.filter((claim) => lostSlots.includes(slotOfPacket(claim.packetId, PARTITIONS)));
  const stale = forLostSlots.filter((claim) => {
    const slot = slotOfPacket(claim.packetId, PARTITIONS);
    const ownTake = own.filter((change) => change.slot === slot && change.kind === 'taken' && change.atMs <= claim.sentAtMs).at(-1);
    return others.some((change) => change.kind === 'taken' && change.slot === slot && change.atMs > (ownTake?.atMs ?? 0) && change.atMs < claim.sentAtMs);
  });
  console.log(`${loser.label}: claims it decided itself for the slots it lost ${forLostSlots.length} (while it held them, by its log), after another node had taken the slot ${stale.length}`);
  return stale;
}

const summary = (report: LoadReport) =>
  JSON.stringify({ acknowledged: report.acknowledged.length, restated: report.restated.length, answers: report.answers, retried: report.retried, byNode: report.byNode, ms: report.durationMs });

describe('a cluster of three engine nodes and a ledger, under load', () => {
  it('kill -9 of one node mid-load: its slots move, nothing acknowledged is lost, and it rejoins with the same NODE_ID', async () => {
    const prepared = await prepare();
    const { load } = prepared;
    await load.waitForAcknowledged(150);
    const victim = prepared.cluster.engines[1]!;
    const loser = currentProcess(victim);
    const heldBefore = slotsHeldAt(loser, Date.now());
    expect(heldBefore.length).toBeGreaterThan(0);
    const killedAtMs = Date.now();
    await victim.kill('SIGKILL');

    // Past the session timeout the group moves its slots; the others fence and take them.
    await untilTakenByOthers(loser, heldBefore, killedAtMs);
    const movedAtMs = Date.now();
    await load.waitForAcknowledged(load.acknowledged.length + 80);
    // The same NODE_ID, the same port: a supervisor's restart.
    await victim.restart();
    await load.waitForAcknowledged(load.acknowledged.length + 80);
    const report = await load.stop();
    console.log(`kill -9: ${summary(report)}`);

    const ownership = await verify(prepared, report);
    // Opens of the moved slots were answered again after the failover.
    expect(report.acknowledged.filter((claim) => claim.atMs > movedAtMs && heldBefore.includes(slotOfPacket(claim.packetId, PARTITIONS))).length).toBeGreaterThan(0);
    // What the killed process answered before it died is in the ledger (verify), and it decided
    // nothing for a slot once another node had taken it.
    expect(decidedAfterLoss(ownership, loser, heldBefore)).toEqual([]);
    console.log(`kill -9: claims decided by the node that held the slot (by its log) ${[...ownership.decidedBy.values()].flat().length}, forwarded or across a handover ${ownership.unattributed}`);
  });

  it('SIGSTOP of one node past the session timeout, then SIGCONT: the paused node finds its slots lost and acknowledges nothing for them', async () => {
    const prepared = await prepare();
    const { load } = prepared;
    await load.waitForAcknowledged(150);
    const victim = prepared.cluster.engines[0]!;
    const loser = currentProcess(victim);
    const heldBefore = slotsHeldAt(loser, Date.now());
    expect(heldBefore.length).toBeGreaterThan(0);
    const fencedBefore = (await victim.metrics()).value('hongbao_slot_fenced_appends_total');
    const pausedAtMs = Date.now();
    await victim.kill('SIGSTOP');
    // The requests the load sends it meanwhile wait in its socket: on SIGCONT it reads them first.
    await untilTakenByOthers(loser, heldBefore, pausedAtMs);
    await sleep(1_000);
    const resumedAtMs = Date.now();
    await victim.kill('SIGCONT');
    // Resumed, it first answers what waited in its socket, with what it still holds in memory.
    await load.waitForAcknowledged(load.acknowledged.length + 120);
    const report = await load.stop();
    console.log(`SIGSTOP past the session timeout: ${summary(report)}`);

    const ownership = await verify(prepared, report);
    // Its own log and metrics: what it found when it ran again (unassigned by the group, or its
    // appends refused by the broker: each fenced append is an open that was not acknowledged).
    const losses = lossesLogged(loser, resumedAtMs);
    const fencedAfter = (await victim.metrics()).value('hongbao_slot_fenced_appends_total');
    console.log(
      `the paused node held ${heldBefore.join(', ')}; on SIGCONT it logged: ${losses.map((change) => `slot lost: ${change.slot} (${change.reason})`).join(', ') || 'nothing'}; ` +
        `hongbao_slot_fenced_appends_total ${fencedBefore} → ${fencedAfter}`,
    );
    expect(fencedAfter).toBeGreaterThanOrEqual(fencedBefore);
    // By its own log of what it held, it answered claimed for none of those slots once another node had taken it.
    expect(decidedAfterLoss(ownership, loser, heldBefore)).toEqual([]);
  });

  it('a new process with the NODE_ID of a paused one takes over, then the old one resumes: the broker fences the old one', async () => {
    const prepared = await prepare();
    const { load } = prepared;
    await load.waitForAcknowledged(150);
    const old = prepared.cluster.engines[2]!;
    const loser = currentProcess(old);
    const heldBefore = slotsHeldAt(loser, Date.now());
    expect(heldBefore.length).toBeGreaterThan(0);
    const fencedBefore = (await old.metrics()).value('hongbao_slot_fenced_appends_total');
    const pausedAtMs = Date.now();
    await old.kill('SIGSTOP');
    // Same NODE_ID, another port: a supervisor that thinks the old one is dead. It joins the group
    // while the old member still counts, until its session times out.
    const replacement = await prepared.cluster.addNode({ nodeId: old.nodeId });
    prepared.cluster.engines.push(replacement);
    await untilTakenByOthers(loser, heldBefore, pausedAtMs);
    await until('the replacement holds slots', () => slotsHeldAt(currentProcess(replacement), Date.now()).length > 0);
    const resumedAtMs = Date.now();
    await old.kill('SIGCONT');
    await load.waitForAcknowledged(load.acknowledged.length + 120);
    const report = await load.stop();
    console.log(`same NODE_ID while paused: ${summary(report)}`);

    const ownership = await verify(prepared, report);
    const losses = lossesLogged(loser, resumedAtMs);
    console.log(
      `the old process held ${heldBefore.join(', ')}; on SIGCONT it logged: ${losses.map((change) => `slot lost: ${change.slot} (${change.reason})`).join(', ') || 'nothing'}; ` +
        `hongbao_slot_fenced_appends_total ${fencedBefore} → ${(await old.metrics()).value('hongbao_slot_fenced_appends_total')}`,
    );
    expect(decidedAfterLoss(ownership, loser, heldBefore)).toEqual([]);
    // Both processes of the NODE_ID answered claims, each for slots it held then.
    expect(ownership.decidedBy.get([...ownership.decidedBy.keys()].find((process) => process.incarnation === currentProcess(replacement).incarnation)!)?.length ?? 0).toBeGreaterThan(0);
  });
});
