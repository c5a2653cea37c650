// Proves planSend accepts every send within the product limits, rejects each one outside them with the rule it broke, and computes the total to debit.
import { describe, expect, it } from 'vitest';
import { DEFAULT_GREETING, DEFAULT_LIMITS, type Limits } from '../../src/domain/limits.js';
import { MEMBERS_MAX, planSend, type SendRequest } from '../../src/domain/validation.js';

const lucky: SendRequest = {
  type: 'group_lucky',
  senderId: 'alice',
  targetId: 'g1',
  count: 10,
  amountFen: 2000,
  greeting: DEFAULT_GREETING,
  members: null,
};
const fixed: SendRequest = { ...lucky, type: 'group_fixed', amountFen: 200 };
const personal: SendRequest = { ...lucky, type: 'personal', targetId: 'bob', count: 1, amountFen: 500 };

/** `count` Chinese characters: one code point, one UTF-16 unit each. */
const chinese = (count: number) => '福'.repeat(count);
/** `count` emoji: one code point each, but two UTF-16 units, so .length would count double. */
const emoji = (count: number) => '🧧'.repeat(count);
const users = (count: number) => Array.from({ length: count }, (_, index) => `u${index}`);

describe('planSend accepts', () => {
  it.each<[string, SendRequest, number]>([
    ['a personal packet (total = the share)', personal, 500],
    ['a personal packet of 0.01', { ...personal, amountFen: 1 }, 1],
    ['a personal packet of 200.00', { ...personal, amountFen: 20_000 }, 20_000],
    ['group_fixed: total = amount × count', fixed, 2000],
    ['group_fixed with 1 share of 0.01', { ...fixed, count: 1, amountFen: 1 }, 1],
    ['group_fixed with 100 shares of 200.00', { ...fixed, count: 100, amountFen: 20_000 }, 2_000_000],
    ['group_lucky: total = amount', lucky, 2000],
    ['group_lucky with total = count × 0.01', { ...lucky, count: 100, amountFen: 100 }, 100],
    ['group_lucky with total = count × 200.00', { ...lucky, count: 100, amountFen: 2_000_000 }, 2_000_000],
    ['group_lucky with 1 share of 200.00', { ...lucky, count: 1, amountFen: 20_000 }, 20_000],
    ['group_lucky with 1 share of 0.01', { ...lucky, count: 1, amountFen: 1 }, 1],
    ['a greeting of 100 Chinese characters', { ...lucky, greeting: chinese(100) }, 2000],
    ['a greeting of 100 emoji (200 UTF-16 units, 100 characters)', { ...lucky, greeting: emoji(100) }, 2000],
    ['an empty greeting', { ...lucky, greeting: '' }, 2000],
    ['members on group_lucky', { ...lucky, members: ['bob'] }, 2000],
    ['members on group_fixed', { ...fixed, members: ['bob', 'dave'] }, 2000],
    [`${MEMBERS_MAX} members`, { ...lucky, members: users(MEMBERS_MAX) }, 2000],
    ['members that include the sender', { ...lucky, members: ['alice', 'bob'] }, 2000],
  ])('%s', (_, request, totalFen) => {
    expect(planSend(request, DEFAULT_LIMITS)).toEqual({ ok: true, totalFen });
  });
});

describe('planSend rejects', () => {
  it.each<[string, SendRequest, RegExp]>([
    ['personal with count 2', { ...personal, count: 2 }, /personal packet has exactly 1 share/],
    ['personal with count 0', { ...personal, count: 0 }, /count must be a positive integer/],
    ['group count 0', { ...lucky, count: 0 }, /count must be a positive integer/],
    ['group count -1', { ...fixed, count: -1 }, /count must be a positive integer/],
    ['group count 1.5', { ...lucky, count: 1.5 }, /count must be a positive integer/],
    ['group count NaN', { ...lucky, count: Number.NaN }, /count must be a positive integer/],
    ['group_lucky count 101', { ...lucky, count: 101, amountFen: 10_100 }, /count must be at most 100/],
    ['group_fixed count 101', { ...fixed, count: 101 }, /count must be at most 100/],
    ['group_fixed share 0', { ...fixed, amountFen: 0 }, /each share must be between 0\.01 and 200\.00/],
    ['group_fixed share 200.01', { ...fixed, amountFen: 20_001 }, /each share must be between 0\.01 and 200\.00/],
    ['personal share 0', { ...personal, amountFen: 0 }, /each share must be between 0\.01 and 200\.00/],
    ['personal share 200.01', { ...personal, amountFen: 20_001 }, /each share must be between 0\.01 and 200\.00/],
    ['group_lucky total < count × 0.01', { ...lucky, count: 10, amountFen: 9 }, /amount must be at least 0\.10 for 10 shares/],
    ['group_lucky total 0', { ...lucky, count: 1, amountFen: 0 }, /amount must be at least 0\.01 for 1 shares/],
    [
      'group_lucky total > count × 200.00',
      { ...lucky, count: 10, amountFen: 200_001 },
      /amount must be at most 2000\.00 for 10 shares/,
    ],
    ['a greeting of 101 Chinese characters', { ...lucky, greeting: chinese(101) }, /greeting must be at most 100 characters/],
    ['a greeting of 101 emoji', { ...lucky, greeting: emoji(101) }, /greeting must be at most 100 characters/],
    ['a personal packet to oneself', { ...personal, targetId: 'alice' }, /cannot send a personal packet to yourself/],
    ['members on a personal packet', { ...personal, members: ['bob'] }, /members is only for group packets/],
    ['empty members on a personal packet', { ...personal, members: [] }, /members is only for group packets/],
    ['empty members on a group packet', { ...lucky, members: [] }, /members, when given, must list at least one user/],
    ['duplicate members', { ...fixed, members: ['bob', 'dave', 'bob'] }, /members must not repeat a user/],
    [`${MEMBERS_MAX + 1} members`, { ...lucky, members: users(MEMBERS_MAX + 1) }, /members must list at most 500 users/],
  ])('%s', (_, request, problem) => {
    const plan = planSend(request, DEFAULT_LIMITS);
    expect(plan.ok).toBe(false);
    if (plan.ok) return;
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0]).toMatch(problem);
  });

  it('lists every independent problem at once', () => {
    const plan = planSend({ ...personal, count: 2, targetId: 'alice', greeting: chinese(101), members: ['bob'] }, DEFAULT_LIMITS);
    expect(plan.ok).toBe(false);
    if (plan.ok) return;
    expect(plan.problems).toHaveLength(4);
    expect(plan.problems.join('\n')).toMatch(/exactly 1 share/);
    expect(plan.problems.join('\n')).toMatch(/greeting/);
    expect(plan.problems.join('\n')).toMatch(/yourself/);
    expect(plan.problems.join('\n')).toMatch(/members is only for group packets/);
  });

  it('does not judge the amount against a count it already rejected', () => {
    const plan = planSend({ ...lucky, count: 0, amountFen: 0 }, DEFAULT_LIMITS);
    expect(plan).toEqual({ ok: false, problems: ['count must be a positive integer'] });
  });
});

describe('planSend follows the configured limits', () => {
  const tight: Limits = { ...DEFAULT_LIMITS, countMax: 5, shareFenMin: 10, shareFenMax: 1000, greetingLengthMax: 4 };
  const short = { greeting: '吉祥' }; // within the tight greeting limit, so each row tests one rule

  it.each<[string, SendRequest, boolean]>([
    ['count at the configured maximum', { ...lucky, ...short, count: 5, amountFen: 50 }, true],
    ['count above the configured maximum', { ...lucky, ...short, count: 6, amountFen: 60 }, false],
    ['lucky total = count × configured minimum', { ...lucky, ...short, count: 5, amountFen: 50 }, true],
    ['lucky total below count × configured minimum', { ...lucky, ...short, count: 5, amountFen: 49 }, false],
    ['lucky total = count × configured maximum', { ...lucky, ...short, count: 5, amountFen: 5000 }, true],
    ['lucky total above count × configured maximum', { ...lucky, ...short, count: 5, amountFen: 5001 }, false],
    ['fixed share at the configured minimum', { ...fixed, ...short, count: 5, amountFen: 10 }, true],
    ['fixed share below the configured minimum', { ...fixed, ...short, count: 5, amountFen: 9 }, false],
    ['fixed share above the configured maximum', { ...fixed, ...short, count: 5, amountFen: 1001 }, false],
    ['greeting at the configured maximum', { ...lucky, ...short, count: 5, amountFen: 50, greeting: chinese(4) }, true],
    ['greeting above the configured maximum', { ...lucky, ...short, count: 5, amountFen: 50, greeting: chinese(5) }, false],
  ])('%s', (_, request, ok) => {
    expect(planSend(request, tight).ok).toBe(ok);
  });
});
