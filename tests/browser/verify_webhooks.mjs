// Checks the webhooks Rollway sent with the Standard Webhooks reference
// implementation (the `standardwebhooks` package), independent of
// Rollway's own signing code. Reads a JSON file:
//   {"secret": "whsec_…", "messages": [{"headers": {…}, "body": "…"}, …]}
// and prints "verified N" when every message verifies, or fails naming
// the first that does not.
import { readFileSync } from 'node:fs';
import { Webhook } from 'standardwebhooks';

const { secret, messages } = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const hook = new Webhook(secret);
for (const [i, m] of messages.entries()) {
  try {
    hook.verify(m.body, m.headers);
  } catch (e) {
    console.error(`message ${i} (${m.headers['webhook-id']}) does not verify: ${e.message}`);
    process.exit(1);
  }
}
// A tampered body must not verify.
if (messages.length > 0) {
  const m = messages[0];
  let refused = false;
  try {
    hook.verify(m.body.replace('}', ',"x":1}'), m.headers);
  } catch {
    refused = true;
  }
  if (!refused) {
    console.error('a tampered body verified');
    process.exit(1);
  }
}
console.log(`verified ${messages.length}`);
