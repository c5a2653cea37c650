// Proves the limits are configurable by environment: the defaults are DEFAULT_LIMITS and app.ts's
// constants, good values become config.limits/openRate/bodyBytesMax, and every bad value is a
// ConfigError that names the setting.
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_BODY_BYTES_MAX, DEV_AUTH_SECRET, loadConfig } from '../../src/config.js';
import { DEFAULT_OPEN_RATE, DEFAULT_REQUEST_RATE, DEFAULT_REQUESTS_IN_FLIGHT_MAX } from '../../src/engine/rate-limit.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';

describe('limits from the environment', () => {
  it('defaults to DEFAULT_LIMITS and the HTTP constants', () => {
    const config = loadConfig({});
    expect(config.limits).toEqual(DEFAULT_LIMITS);
    expect(config.openRate).toEqual(DEFAULT_OPEN_RATE);
    expect(DEFAULT_OPEN_RATE).toEqual({ burst: 100, perSecond: 20 });
    expect(config.requestRate).toEqual(DEFAULT_REQUEST_RATE);
    expect(DEFAULT_REQUEST_RATE).toEqual({ burst: 50, perSecond: 5 });
    expect(config.requestsInFlightMax).toBe(DEFAULT_REQUESTS_IN_FLIGHT_MAX);
    expect(DEFAULT_REQUESTS_IN_FLIGHT_MAX).toBe(32);
    expect(config.bodyBytesMax).toBe(DEFAULT_BODY_BYTES_MAX);
    expect(DEFAULT_BODY_BYTES_MAX).toBe(16 * 1024);
  });

  it('reads every limit; money in yuan becomes fen; PACKET_TTL_MS is limits.ttlMs', () => {
    const config = loadConfig({
      PACKET_COUNT_MAX: '500',
      SHARE_AMOUNT_MIN: '0.10',
      SHARE_AMOUNT_MAX: '1000',
      GREETING_LENGTH_MAX: '40',
      PACKET_TTL_MS: '3600000',
      OPEN_BURST: '10',
      OPENS_PER_SECOND: '2.5',
      BODY_BYTES_MAX: '65536',
      REQUESTS_BURST: '30',
      REQUESTS_PER_SECOND: '7.5',
      REQUESTS_IN_FLIGHT_MAX: '4',
    });
    expect(config.requestRate).toEqual({ burst: 30, perSecond: 7.5 });
    expect(config.requestsInFlightMax).toBe(4);
    expect(config.limits).toEqual({ countMax: 500, shareFenMin: 10, shareFenMax: 100_000, greetingLengthMax: 40, ttlMs: 3_600_000 });
    expect(config.packetTtlMs).toBe(3_600_000);
    expect(config.openRate).toEqual({ burst: 10, perSecond: 2.5 });
    expect(config.bodyBytesMax).toBe(65_536);
  });

  it('accepts the bounds themselves', () => {
    const config = loadConfig({ PACKET_COUNT_MAX: '1', SHARE_AMOUNT_MIN: '0.01', SHARE_AMOUNT_MAX: '0.01', GREETING_LENGTH_MAX: '9', BODY_BYTES_MAX: '1024' });
    expect(config.limits).toMatchObject({ countMax: 1, shareFenMin: 1, shareFenMax: 1, greetingLengthMax: 9 });
    expect(loadConfig({ PACKET_COUNT_MAX: '1000', SHARE_AMOUNT_MAX: '1000000.00' }).limits).toMatchObject({ countMax: 1000, shareFenMax: 100_000_000 });
  });

  it.each<[Record<string, string>, RegExp]>([
    [{ PACKET_COUNT_MAX: 'lots' }, /PACKET_COUNT_MAX: must be a whole number from 1 to 1000/],
    [{ PACKET_COUNT_MAX: '0' }, /PACKET_COUNT_MAX: must be a whole number from 1 to 1000/],
    [{ PACKET_COUNT_MAX: '1001' }, /PACKET_COUNT_MAX/],
    [{ PACKET_COUNT_MAX: '2.5' }, /PACKET_COUNT_MAX/],
    [{ SHARE_AMOUNT_MIN: '0.001' }, /SHARE_AMOUNT_MIN: must be yuan with at most two decimals .*got "0\.001"/],
    [{ SHARE_AMOUNT_MIN: '0' }, /SHARE_AMOUNT_MIN: must be yuan/],
    [{ SHARE_AMOUNT_MAX: '-1' }, /SHARE_AMOUNT_MAX: must be yuan/],
    [{ SHARE_AMOUNT_MAX: '1e3' }, /SHARE_AMOUNT_MAX: must be yuan/],
    [{ SHARE_AMOUNT_MAX: '1000000.01' }, /SHARE_AMOUNT_MAX: must be yuan .*to 1000000\.00/],
    [{ SHARE_AMOUNT_MAX: '' }, /SHARE_AMOUNT_MAX/],
    [{ SHARE_AMOUNT_MIN: '5.00', SHARE_AMOUNT_MAX: '4.99' }, /SHARE_AMOUNT_MIN \(5\.00\) must not be above SHARE_AMOUNT_MAX \(4\.99\)/],
    [{ GREETING_LENGTH_MAX: '8' }, /GREETING_LENGTH_MAX: must be a whole number from 9/],
    [{ OPEN_BURST: '0' }, /OPEN_BURST/],
    [{ OPENS_PER_SECOND: '0' }, /OPENS_PER_SECOND: must be a number above 0/],
    [{ OPENS_PER_SECOND: 'fast' }, /OPENS_PER_SECOND/],
    [{ REQUESTS_BURST: '0' }, /REQUESTS_BURST: must be a whole number from 1/],
    [{ REQUESTS_PER_SECOND: '-1' }, /REQUESTS_PER_SECOND: must be a number above 0/],
    [{ REQUESTS_IN_FLIGHT_MAX: '0' }, /REQUESTS_IN_FLIGHT_MAX: must be a whole number from 1 to 100000/],
    [{ REQUESTS_IN_FLIGHT_MAX: '2.5' }, /REQUESTS_IN_FLIGHT_MAX/],
    [{ BODY_BYTES_MAX: '100' }, /BODY_BYTES_MAX: must be a whole number from 1024 to 1048576/],
    [{ PACKET_TTL_MS: '-5' }, /PACKET_TTL_MS/],
  ])('%o → ConfigError', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe('production secrets', () => {
  const strong = 'a'.repeat(32);
  const strongSeed = 'b'.repeat(32);
  it.each([
    ['the public dev AUTH_SECRET', { NODE_ENV: 'production', AUTH_SECRET: DEV_AUTH_SECRET, SEED_SECRET: strongSeed }, /AUTH_SECRET is the public dev secret/],
    ['a one-character AUTH_SECRET', { NODE_ENV: 'production', AUTH_SECRET: 'x', SEED_SECRET: strongSeed }, /AUTH_SECRET must be at least 32 bytes/],
    ['a 31-byte SEED_SECRET', { NODE_ENV: 'production', AUTH_SECRET: strong, SEED_SECRET: 'c'.repeat(31) }, /SEED_SECRET must be at least 32 bytes/],
    ['no SEED_SECRET', { NODE_ENV: 'production', AUTH_SECRET: strong }, /SEED_SECRET is required/],
    ['the same secret twice', { NODE_ENV: 'production', AUTH_SECRET: strong, SEED_SECRET: strong }, /must differ/],
    ['NODE_ENV=Production (any case) with the dev secret', { NODE_ENV: 'Production', AUTH_SECRET: DEV_AUTH_SECRET, SEED_SECRET: strongSeed }, /public dev secret/],
    ['NODE_ENV=PRODUCTION without secrets', { NODE_ENV: 'PRODUCTION' }, /AUTH_SECRET is required/],
  ])('refuses %s', (_label, env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('accepts long, distinct, private secrets in production, and counts NODE_ENV=Production as production', () => {
    const config = loadConfig({ NODE_ENV: 'Production', AUTH_SECRET: strong, SEED_SECRET: strongSeed });
    expect(config.production).toBe(true);
    expect(config.authSecret).toBe(strong);
    expect(config.seedSecret).toBe(strongSeed);
    expect(config.warnings).toEqual([]);
  });

  it('TOKEN_TTL_MAX_SECONDS bounds token lifetimes (default 7 days)', () => {
    expect(loadConfig({}).tokenTtlMaxSeconds).toBe(7 * 24 * 3600);
    expect(loadConfig({ TOKEN_TTL_MAX_SECONDS: '3600' }).tokenTtlMaxSeconds).toBe(3600);
    expect(() => loadConfig({ TOKEN_TTL_MAX_SECONDS: '10' })).toThrow(/TOKEN_TTL_MAX_SECONDS/);
  });
});
