// Summarises V8 CPU profiles (node --cpu-prof) into self time by category: which library, which
// part of src/, or the runtime itself. Each thread writes its own file; each is summarised apart.
// Only the samples inside a window (the load) count, so start-up and verification do not show.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
}
interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: CallFrame }[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileShare {
  readonly category: string;
  readonly ms: number;
  /** Of every sample of this thread in the window, idle included. */
  readonly share: number;
}

export interface ThreadProfile {
  readonly thread: string;
  readonly file: string;
  readonly sampledMs: number;
  readonly top: ProfileShare[];
  /** The heaviest functions by self time, "name (category)": what a category is made of (e.g. native writev in node internals). */
  readonly functions: { readonly name: string; readonly ms: number; readonly share: number }[];
}

/** Packages that belong together under one name. */
const PACKAGE_GROUPS: Record<string, string> = {
  '@electric-sql/pglite': 'pglite',
  'pg-protocol': 'pg',
  'pg-pool': 'pg',
  'pg-types': 'pg',
  '@hono/node-server': 'hono',
  jws: 'jsonwebtoken',
  jwa: 'jsonwebtoken',
  'sonic-boom': 'pino',
  'pino-std-serializers': 'pino',
};
const RUNTIME_ENTRIES = new Set(['(program)', '(garbage collector)', '(idle)', '(root)']);

export function categoryOf({ url, functionName }: CallFrame): string {
  if (url === '') return RUNTIME_ENTRIES.has(functionName) ? functionName : 'node internals';
  if (url.startsWith('node:')) return 'node internals';
  // The only WebAssembly in the server is PGlite's Postgres.
  if (url.startsWith('wasm://')) return 'pglite';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const [scope = '', name = ''] = url.slice(modules + '/node_modules/'.length).split('/');
    const pkg = scope.startsWith('@') ? `${scope}/${name}` : scope;
    return PACKAGE_GROUPS[pkg] ?? pkg;
  }
  const src = url.indexOf('/src/');
  if (src >= 0) {
    const parts = url.slice(src + '/src/'.length).split('/');
    return parts.length > 1 ? `src/${parts[0]}` : 'src';
  }
  return 'other';
}

/**
 * Self time by category over the samples whose time (µs, the monotonic clock
 * process.hrtime uses) falls in [fromUs, toUs]; the whole profile without a window.
 */
export function summariseProfile(profile: CpuProfile, window?: { fromUs: number; toUs: number }, topCount = 12): Omit<ThreadProfile, 'thread' | 'file'> {
  const frameById = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us);
  let at = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) return;
    const frame = frameById.get(id) ?? { functionName: '', url: '' };
    const category = categoryOf(frame);
    add(byCategory, category, delta);
    add(byFunction, category === frame.functionName ? category : `${frame.functionName || '(anonymous)'} (${category})`, delta);
    total += delta;
  });
  const heaviest = (map: Map<string, number>, count: number) =>
    [...map.entries()]
      .sort((left, right) => right[1] - left[1])
      .slice(0, count)
      .map(([name, us]) => ({ name, ms: us / 1000, share: us / total }));
  return {
    sampledMs: total / 1000,
    top: heaviest(byCategory, topCount).map(({ name, ...share }) => ({ category: name, ...share })),
    functions: heaviest(byFunction, 10),
  };
}

/** Every profile in a folder; the main thread's file names thread 0 (CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile). */
export function summariseProfiles(folder: string, window?: { fromUs: number; toUs: number }): ThreadProfile[] {
  return readdirSync(folder)
    .filter((file) => file.endsWith('.cpuprofile'))
    .sort()
    .map((file) => {
      const thread = file.split('.').at(-3);
      const summary = summariseProfile(JSON.parse(readFileSync(join(folder, file), 'utf8')) as CpuProfile, window);
      return { thread: thread === '0' ? 'main' : `worker ${thread}`, file, ...summary };
    });
}
