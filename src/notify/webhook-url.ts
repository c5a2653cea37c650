// Which webhook URLs are accepted, and where deliveries may connect (the SSRF stance): http or
// https only; unless private addresses are allowed (WEBHOOK_ALLOW_PRIVATE, on by default except
// in production), a URL whose host is loopback, private, link-local or otherwise not public is
// refused at registration, and every delivery's connection is checked again after DNS — a name
// that resolves to such an address (DNS rebinding included) is never connected to.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export const WEBHOOK_URL_LENGTH_MAX = 2048;

const blocked = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(network, prefix, 'ipv4');
// No ::ffff:0:0/96 rule: BlockList checks an IPv4 address as its mapped IPv6 form too, so that
// rule would refuse every IPv4 address; mapped addresses are checked against the IPv4 rules above.
for (const [network, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) {
  blocked.addSubnet(network, prefix, 'ipv6');
}

/** Whether an address is one a public webhook must not reach. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Why this URL cannot be a webhook, or null. */
export function webhookUrlProblem(text: string, allowPrivate: boolean): string | null {
  if (text.length > WEBHOOK_URL_LENGTH_MAX) return `url must be at most ${WEBHOOK_URL_LENGTH_MAX} characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'url must be an absolute http or https URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'url must be http or https';
  if (url.username !== '' || url.password !== '') return 'url must not carry credentials';
  if (!allowPrivate) {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (host === 'localhost' || host.endsWith('.localhost') || isPrivateAddress(host)) {
      return 'url must be a public address (private and loopback addresses are refused; WEBHOOK_ALLOW_PRIVATE=true allows them)';
    }
  }
  return null;
}

/** A DNS lookup for deliveries that refuses private addresses (after resolution: no rebinding past it). */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 4);
    const list = addresses as unknown as LookupAddress[];
    const allowed = list.filter((entry) => !isPrivateAddress(entry.address));
    if (allowed.length === 0) return callback(Object.assign(new Error(`${hostname} resolves only to private addresses`), { code: 'EPRIVATE' }), '', 4);
    if ((options as { all?: boolean }).all) return (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, allowed);
    return callback(null, allowed[0]!.address, allowed[0]!.family);
  });
};
