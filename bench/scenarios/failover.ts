// Scenario 8, failover: 3 engine nodes and one ledger process on Kafka + the Postgres server +
// Redis, a steady load of opens spread over the nodes; one node is killed with SIGKILL. Measured:
// from the kill to the first acknowledged open of a packet whose slot moved (the slots the killed
// node owned, read from GET /v1/admin/cluster just before the kill), and to the moment every moved
// slot has acknowledged one. Every slot holds probe packets; each moved slot is probed with fresh
// users against the surviving nodes until one answers `claimed`. The killed node is started again
// with the same NODE_ID (10 s after the takeover), and the next kill waits until the cluster is stable
// and every slot serves. Every acknowledged claim is looked up in the ledger at the end.
import pg from 'pg';
import { Agent, request } from 'undici';
import { call, mintTokens, sendPackets, sleep, startCluster, verifyBooked, type Cluster, type NodeProcess } from '../cluster.js';
import { argument, emit, median, quick } from '../support.js';

const NODES = argument('nodes', 3);
const KILLS = argument('kills', quick ? 2 : 5);
const PARTITIONS = 8;
const SHARES = 100;
/** The steady load: opens per second offered, spread round robin over the live nodes. */
const LOAD_PER_SECOND = argument('rate', quick ? 300 : 1_000);
const LOAD_IN_FLIGHT_MAX = 256;
/** Enough shares that the steady load opens live packets to the end (rate × run time ≪ packets × shares). */
const LOAD_PACKETS = quick ? 300 : 3_000;
const LOAD_USERS = 20_001;
/** Probe packets per slot; a probe that is answered `claimed` takes one share. */
const PROBES_PER_SLOT = 2;
/** Between two probes of one slot. */
const PROBE_INTERVAL_MS = 20;
const PROBE_TIMEOUT_MS = 1_000;
const FAILOVER_TIMEOUT_MS = 90_000;
/**
 * The killed node is started again this long after every moved slot served: what the steady load
 * sees just after the takeover (the new owners activating the moved packets) is not mixed with the
 * CPU the restart takes on these 2 cores, nor with its taking slots back.
 */
const RESTART_DELAY_MS = quick ? 2_000 : 10_000;
/** Seconds of the steady load reported around each kill: 2 before, this many from the kill on. */
const AROUND_SECONDS = 24;

const loadAgent = new Agent({ connections: 128, pipelining: 1, keepAliveTimeout: 4_000, headersTimeout: 3_000, bodyTimeout: 3_000, connect: { timeout: 1_000 } });

/** A request that got no answer: timed out, refused, or cut. */
const errorName = (error: unknown) => `error ${(error as Error).name === 'TimeoutError' ? 'timeout' : ((error as { code?: string }).code ?? (error as Error).name)}`;

/**
 * Offered at a fixed rate (open loop, bounded in flight) round robin over the nodes that are ready (as a load balancer's
 * health check would have it: a killed node drops out at once, a restarted one comes back once /readyz says 200);
 * counts answers by state, per second since the start.
 */
function steadyLoad(cluster: Cluster, packets: readonly string[], tokens: readonly string[]) {
  let sequence = 0;
  let inFlight = 0;
  let stopped = false;
  const states = new Map<string, number>();
  const perSecond: { second: number; claimed: number; other: number; unanswered: number }[] = [];
  const startedMs = performance.now();
  let acknowledged = 0;
  /** Every acknowledged claim, as packet:user, to find in the ledger afterwards. */
  const claims: string[] = [];
  const note = (state: string) => {
    states.set(state, (states.get(state) ?? 0) + 1);
    const second = Math.floor((performance.now() - startedMs) / 1000);
    while (perSecond.length <= second) perSecond.push({ second: perSecond.length, claimed: 0, other: 0, unanswered: 0 });
    if (state === 'claimed') perSecond[second]!.claimed += 1;
    else if (state.startsWith('error')) perSecond[second]!.unanswered += 1;
    else perSecond[second]!.other += 1;
  };
  const one = async () => {
    const live = cluster.nodes.filter((node) => node.ready);
    const index = sequence++;
    const node = live[index % live.length];
    if (node === undefined) return;
    const packetId = packets[index % packets.length]!;
    inFlight += 1;
    try {
      const answer = await request(`${node.url}/v1/packets/${packetId}/open`, {
        method: 'POST',
        dispatcher: loadAgent,
        headers: { authorization: `Bearer ${tokens[index % tokens.length]}` },
        signal: AbortSignal.timeout(3_000),
      });
      const text = await answer.body.text();
      const match = /^\{"(?:state|error)":(?:\{"code":)?"([a-z_]+)"/.exec(text);
      const state = match ? match[1]! : `http ${answer.statusCode}`;
      if (state === 'claimed') {
        acknowledged += 1;
        claims.push(`${packetId}:l${index % tokens.length}`);
      }
      note(state);
    } catch (error) {
      note(errorName(error));
    } finally {
      inFlight -= 1;
    }
  };
  const TICK_MS = 10;
  const perTick = LOAD_PER_SECOND / (1000 / TICK_MS);
  let owed = 0;
  const timer = setInterval(() => {
    if (stopped) return;
    owed += perTick;
    for (; owed >= 1; owed -= 1) if (inFlight < LOAD_IN_FLIGHT_MAX) void one();
  }, TICK_MS);
  return {
    get acknowledged() {
      return acknowledged;
    },
    claims,
    secondNow: () => Math.floor((performance.now() - startedMs) / 1000),
    perSecond,
    states,
    async stop() {
      stopped = true;
      clearInterval(timer);
      while (inFlight > 0) await sleep(20);
    },
  };
}

/** Every acknowledged (packet, user) is a booked claim. */
async function expectBooked(cluster: Cluster, acknowledged: readonly string[]): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.databaseUrl });
  await client.connect();
  try {
    const booked = new Set((await client.query('select packet_id, user_id from claims')).rows.map((row) => `${row.packet_id}:${row.user_id}`));
    const missing = acknowledged.filter((claim) => !booked.has(claim));
    if (missing.length > 0) throw new Error(`${missing.length} acknowledged claims are not booked, e.g. ${missing.slice(0, 3).join(', ')}`);
  } finally {
    await client.end();
  }
}

async function main() {
  // LOG_LEVEL=info: each node logs when the group assigns it slots and when it has taken one.
  const cluster = await startCluster({ nodes: NODES, partitions: PARTITIONS, label: 'failover', env: { LOG_LEVEL: 'info' } });
  try {
    const loadTokens = await mintTokens('l', LOAD_USERS);
    let probeUser = 0;
    const probeTokens = await mintTokens('p', 20_000);
    const freshProbeToken = () => {
      if (probeUser >= probeTokens.length) throw new Error('out of probe users');
      return probeTokens[probeUser++]!;
    };

    // Probe packets: sent until every slot holds PROBES_PER_SLOT of them.
    const probes = new Map<number, string[]>(Array.from({ length: PARTITIONS }, (_, slot) => [slot, []]));
    let sentRounds = 0;
    while ([...probes.values()].some((list) => list.length < PROBES_PER_SLOT)) {
      const batch = await sendPackets(cluster, { count: PARTITIONS * 4, shares: SHARES, idempotencyPrefix: `probe-${sentRounds++}` });
      for (const packetId of batch) {
        const list = probes.get(cluster.slotOf(packetId))!;
        if (list.length < PROBES_PER_SLOT) list.push(packetId);
      }
    }
    const loadPackets = await sendPackets(cluster, { count: LOAD_PACKETS, shares: SHARES, idempotencyPrefix: 'load' });
    const probeClaims: string[] = [];
    const probeErrors = { count: 0 };

    /** One open of a probe packet of `slot` with a fresh user, through `node`: whether it was claimed. */
    const probe = async (slot: number, node: NodeProcess): Promise<string> => {
      const packets = probes.get(slot)!;
      const packetId = packets[probeUser % packets.length]!;
      const user = `p${probeUser}`;
      try {
        const reply = await call(node.url, 'POST', `/v1/packets/${packetId}/open`, freshProbeToken(), { timeoutMs: PROBE_TIMEOUT_MS });
        const state = (reply.body?.state ?? reply.body?.error?.code ?? `http ${reply.status}`) as string;
        if (state === 'claimed') probeClaims.push(`${packetId}:${user}`);
        return state;
      } catch (error) {
        probeErrors.count += 1;
        return errorName(error);
      }
    };

    /** Stable: the group agrees, and every slot acknowledges an open through every live node. */
    const waitServing = async () => {
      const view = await cluster.waitStable();
      const deadline = Date.now() + FAILOVER_TIMEOUT_MS;
      for (let slot = 0; slot < PARTITIONS; slot += 1) {
        for (const node of cluster.nodes.filter((candidate) => candidate.alive)) {
          for (let state = await probe(slot, node); state !== 'claimed'; state = await probe(slot, node)) {
            if (Date.now() > deadline) {
              const events = cluster.nodes.flatMap((each) => each.slotEvents.filter((event) => event.slots.includes(slot)));
              throw new Error(`slot ${slot} does not serve through ${node.nodeId} (last answer ${state}); its events: ${JSON.stringify(events)}; view ${JSON.stringify(view)}`);
            }
            await sleep(100);
          }
        }
      }
      return view;
    };

    await waitServing();
    const load = steadyLoad(cluster, loadPackets, loadTokens);
    await sleep(quick ? 2_000 : 5_000);
    const kills = [];
    for (let kill = 0; kill < KILLS; kill += 1) {
      const victim = cluster.nodes[kill % cluster.nodes.length]!;
      const view = await waitServing();
      await sleep(quick ? 1_000 : 3_000); // steady again after the probes
      const moved = [...(view.nodes.find((node) => node.id === victim.nodeId)?.owns ?? [])];
      if (moved.length === 0) throw new Error(`${victim.nodeId} owns no slot: ${JSON.stringify(view)}`);
      const survivors = cluster.nodes.filter((node) => node !== victim && node.alive);
      process.stderr.write(`[failover] kill ${kill + 1}/${KILLS}: ${victim.nodeId} (slots ${moved.join(', ')}) at load second ${load.secondNow()}\n`);

      const killedAtMs = performance.now();
      const killedAtEpochMs = Date.now();
      const killedAtSecond = load.secondNow();
      const exited = victim.kill('SIGKILL');
      const answersBefore = new Map<string, number>();
      const servedMs = await Promise.all(
        moved.map(async (slot, slotIndex) => {
          for (let attempt = slotIndex; ; attempt += 1) {
            const state = await probe(slot, survivors[attempt % survivors.length]!);
            if (state === 'claimed') return performance.now() - killedAtMs;
            answersBefore.set(state, (answersBefore.get(state) ?? 0) + 1);
            if (performance.now() - killedAtMs > FAILOVER_TIMEOUT_MS) {
              const views = await Promise.all(survivors.map((node) => cluster.view(node).catch(String)));
              throw new Error(`slot ${slot} not served within ${FAILOVER_TIMEOUT_MS} ms of the kill; answers ${JSON.stringify([...answersBefore])}; views ${JSON.stringify(views)}`);
            }
            await sleep(PROBE_INTERVAL_MS);
          }
        }),
      );
      await exited;
      const after = await cluster.view(survivors[0]!);
      // The survivors' own log: when the group handed them the moved slots, when they had taken them.
      const since = (kind: 'assignment' | 'taken') =>
        survivors
          .flatMap((node) => node.slotEvents)
          .filter((event) => event.kind === kind && event.atMs >= killedAtEpochMs && event.slots.some((slot) => moved.includes(slot)))
          .map((event) => event.atMs - killedAtEpochMs);
      const entry = {
        victim: victim.nodeId,
        slots: moved,
        takenBy: Object.fromEntries(moved.map((slot) => [slot, after.nodes.find((node) => node.owns.includes(slot))?.id ?? 'none'])),
        firstMs: Math.min(...servedMs),
        allMs: Math.max(...servedMs),
        perSlotMs: Object.fromEntries(moved.map((slot, index) => [slot, Math.round(servedMs[index]!)])),
        // From the kill to the first survivor's new assignment (session timeout + rebalance), and to the last moved slot taken (fence + catch-up).
        assignedMs: since('assignment').length > 0 ? Math.min(...since('assignment')) : Number.NaN,
        takenMs: since('taken').length > 0 ? Math.max(...since('taken')) : Number.NaN,
        probeAnswersBefore: Object.fromEntries(answersBefore),
        loadSecond: killedAtSecond,
      };
      kills.push(entry);
      process.stderr.write(
        `[failover]   assigned ${entry.assignedMs} ms, taken ${entry.takenMs} ms, first open ${Math.round(entry.firstMs)} ms, all ${Math.round(entry.allMs)} ms; before: ${JSON.stringify(entry.probeAnswersBefore)}\n`,
      );

      // Back to three: the same NODE_ID on the same port, then stable again (the loop's wait).
      await sleep(RESTART_DELAY_MS);
      victim.start();
      const restartedAtSecond = load.secondNow();
      await victim.waitReady();
      Object.assign(entry, { restartedAtLoadSecond: restartedAtSecond, readyAgainAtLoadSecond: load.secondNow() });
    }
    await waitServing();
    await sleep(2_000);
    await load.stop();
    // Nothing acknowledged is lost: every claim a node answered is booked. Requests that got no
    // answer (the killed node's, timeouts) may have been claimed too: at most that many more.
    const unanswered = [...load.states].filter(([state]) => state.startsWith('error')).reduce((sum, [, count]) => sum + count, 0) + probeErrors.count;
    const acknowledged = [...load.claims, ...probeClaims];
    const verified = await verifyBooked(cluster, { claims: acknowledged.length, sharesPerPacket: SHARES, inFlightMax: unanswered });
    await expectBooked(cluster, acknowledged);

    // The steady load around each kill: acknowledged claims per second from 2 s before to 15 s after.
    const window = (entry: { loadSecond: number }) => load.perSecond.slice(Math.max(0, entry.loadSecond - 2), entry.loadSecond + AROUND_SECONDS);
    const around = kills.map((entry) => window(entry).map((second) => second.claimed));
    const refusedAround = kills.map((entry) => window(entry).map((second) => second.other));
    const unansweredAround = kills.map((entry) => window(entry).map((second) => second.unanswered));
    emit({
      scenario: 'failover',
      mode: 'services',
      nodes: NODES,
      partitions: PARTITIONS,
      loadPerSecond: LOAD_PER_SECOND,
      loadPackets: LOAD_PACKETS,
      sharesPerPacket: SHARES,
      sessionTimeoutMs: 6_000,
      restartDelayMs: RESTART_DELAY_MS,
      kills,
      firstMsP50: median(kills.map((entry) => entry.firstMs)),
      firstMsMax: Math.max(...kills.map((entry) => entry.firstMs)),
      allMsP50: median(kills.map((entry) => entry.allMs)),
      allMsMax: Math.max(...kills.map((entry) => entry.allMs)),
      assignedMsP50: median(kills.map((entry) => entry.assignedMs)),
      takenMsP50: median(kills.map((entry) => entry.takenMs)),
      load: { acknowledged: load.acknowledged, states: Object.fromEntries(load.states), claimedPerSecondAroundKills: around, refusedPerSecondAroundKills: refusedAround, unansweredPerSecondAroundKills: unansweredAround },
      booked: verified.booked,
      unanswered,
    });
  } catch (error) {
    for (const node of [cluster.ledger, ...cluster.nodes]) process.stderr.write(`---- ${node.nodeId}\n${node.output().slice(-2000)}\n`);
    throw error;
  } finally {
    await cluster.stop();
    await loadAgent.close();
  }
}

await main();
process.exit(0);
