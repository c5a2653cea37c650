// Which webhook URLs are accepted and where deliveries may connect (src/notify/webhook-url.ts,
// the SSRF stance of API.md, Notifications): http or https only, no credentials in the URL, and
// unless private addresses are allowed, no loopback, private, link-local, unique-local or mapped
// address — in any spelling the URL parser accepts — and no name that resolves only to one.
import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { isPrivateAddress, publicOnlyLookup, webhookUrlProblem, WEBHOOK_URL_LENGTH_MAX } from '../../src/notify/webhook-url.js';

const PRIVATE_HOSTS = [
  '127.0.0.1',
  '127.1', // the parser's short form of 127.0.0.1
  '0x7f000001',
  '2130706433',
  '0177.0.0.1',
  '127.255.255.254',
  '10.1.2.3',
  '172.16.0.1',
  '172.31.255.255',
  '192.168.1.10',
  '169.254.169.254', // the cloud metadata service
  '100.64.0.1', // carrier-grade NAT
  '0.0.0.0',
  '198.18.0.1',
  '224.0.0.1',
  '[::1]',
  '[0:0:0:0:0:0:0:1]',
  '[::]',
  '[fc00::1]',
  '[fd12:3456::1]',
  '[fe80::1]',
  '[ff02::1]',
  '[::ffff:127.0.0.1]',
  '[::ffff:10.0.0.1]',
  '[::ffff:169.254.169.254]',
  'localhost',
  'LOCALHOST',
  'api.localhost',
];

const PUBLIC_HOSTS = ['example.com', 'hooks.example.com:8443', '8.8.8.8', '172.32.0.1', '11.0.0.1', '192.169.0.1', '[2001:4860:4860::8888]'];

describe('webhookUrlProblem', () => {
  it('accepts http and https URLs of public hosts, with or without private addresses allowed', () => {
    for (const host of PUBLIC_HOSTS) {
      for (const scheme of ['http', 'https']) {
        expect(webhookUrlProblem(`${scheme}://${host}/hooks?x=1`, false), host).toBeNull();
        expect(webhookUrlProblem(`${scheme}://${host}/hooks`, true), host).toBeNull();
      }
    }
  });

  it('refuses every other scheme, and what is not an absolute URL', () => {
    for (const url of ['ftp://example.com/h', 'file:///etc/passwd', 'ws://example.com/h', 'gopher://example.com/', 'javascript:alert(1)', 'data:text/plain,x']) {
      expect(webhookUrlProblem(url, true), url).toBe('url must be http or https');
    }
    for (const url of ['not a url', '/v1/hooks', 'example.com/hooks', '']) {
      expect(webhookUrlProblem(url, true), url).toMatch(/absolute http or https URL/);
    }
  });

  it('refuses credentials in the URL', () => {
    for (const url of ['https://user:secret@example.com/h', 'https://user@example.com/h', 'http://:pw@example.com/']) {
      expect(webhookUrlProblem(url, true), url).toBe('url must not carry credentials');
      expect(webhookUrlProblem(url, false), url).toBe('url must not carry credentials');
    }
  });

  it('refuses a URL past the length bound', () => {
    const base = 'https://example.com/';
    expect(webhookUrlProblem(base + 'a'.repeat(WEBHOOK_URL_LENGTH_MAX - base.length), false)).toBeNull();
    expect(webhookUrlProblem(base + 'a'.repeat(WEBHOOK_URL_LENGTH_MAX - base.length + 1), false)).toMatch(/at most 2048/);
  });

  it('refuses loopback, private, link-local, ULA, multicast and mapped addresses (in every spelling) unless allowed', () => {
    for (const host of PRIVATE_HOSTS) {
      const url = `http://${host}:8080/hooks`;
      expect(webhookUrlProblem(url, false), url).toMatch(/public address.*WEBHOOK_ALLOW_PRIVATE/);
      expect(webhookUrlProblem(url, true), url).toBeNull();
    }
  });
});

describe('isPrivateAddress', () => {
  it('knows the blocked ranges at their edges; a name is not an address', () => {
    for (const address of ['10.0.0.0', '10.255.255.255', '172.16.0.0', '172.31.255.255', '192.168.0.0', '169.254.0.1', '127.0.0.1', '::1', 'fe80::abcd', 'fdff:ffff::1', '::ffff:192.168.0.1']) {
      expect(isPrivateAddress(address), address).toBe(true);
    }
    for (const address of ['9.255.255.255', '11.0.0.0', '172.15.255.255', '172.32.0.0', '192.167.255.255', '1.1.1.1', '2606:4700::1111', 'example.com', 'localhost']) {
      expect(isPrivateAddress(address), address).toBe(false);
    }
  });
});

type Looked = { error: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number };
const lookup = (hostname: string, options: { all?: boolean; family?: number } = {}) =>
  new Promise<Looked>((resolve) => {
    publicOnlyLookup(hostname, options as never, ((error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) =>
      resolve({ error, address, family })) as never);
  });

describe('publicOnlyLookup (every delivery connection, after DNS)', () => {
  it('refuses a name that resolves only to loopback (localhost), with or without all', async () => {
    for (const options of [{}, { all: true }]) {
      const looked = await lookup('localhost', options);
      expect(looked.error?.code).toBe('EPRIVATE');
      expect(looked.error?.message).toMatch(/localhost resolves only to private addresses/);
    }
  });

  it('refuses private literals and passes a public one through', async () => {
    for (const hostname of ['127.0.0.1', '10.0.0.7', '::1']) expect((await lookup(hostname)).error?.code, hostname).toBe('EPRIVATE');
    expect(await lookup('8.8.8.8')).toEqual({ error: null, address: '8.8.8.8', family: 4 });
    expect(await lookup('8.8.8.8', { all: true })).toMatchObject({ error: null, address: [{ address: '8.8.8.8', family: 4 }] });
    expect(await lookup('2001:4860:4860::8888')).toEqual({ error: null, address: '2001:4860:4860::8888', family: 6 });
  });
});
