// Prints a bearer token for a user: npm run token -- <userId> [--admin]
import { loadConfig } from '../src/config.js';
import { issueToken, USER_ID_PATTERN } from '../src/http/auth.js';

const args = process.argv.slice(2);
const userId = args.find((arg) => !arg.startsWith('--'));
if (userId === undefined || !USER_ID_PATTERN.test(userId)) {
  console.error('usage: npm run token -- <userId> [--admin]   (userId: 1–64 characters of [A-Za-z0-9_-])');
  process.exit(2);
}
console.log(await issueToken(loadConfig().authSecret, userId, { admin: args.includes('--admin') }));
