// Runs a TypeScript worker entry when the process itself runs TypeScript (tsx, vitest): a worker
// thread does not inherit the main thread's loader, so tsx registers here before the entry loads.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.typescriptEntry);
