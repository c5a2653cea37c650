// The API as the bench scenarios call it for set-up and checks (not for the measured load):
// one keep-alive agent per scenario, JSON in and out, and a bounded-parallel loop.
import { Agent, request } from 'undici';

export type ApiCall = (url: string, method: 'GET' | 'POST', path: string, token: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; body: any }>;

/** The call, and `close()` for the agent when the scenario ends. */
export function setupApi(options: { connections: number; timeoutMs: number }): ApiCall & { close(): Promise<void> } {
  const agent = new Agent({ connections: options.connections, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  const call: ApiCall = async (url, method, path, token, body, headers = {}) => {
    const answer = await request(`${url}${path}`, {
      method,
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await answer.body.text();
    try {
      return { status: answer.statusCode, body: JSON.parse(text) };
    } catch {
      return { status: answer.statusCode, body: text };
    }
  };
  return Object.assign(call, { close: () => agent.close() });
}

/** Runs `task` over `items`, at most `concurrency` at once. */
export async function inParallel<T>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let index = next++; index < items.length; index = next++) await task(items[index]!, index);
    }),
  );
}
