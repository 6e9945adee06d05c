// pheromone's wire format for Node.js (docs/WIRE.md): event ids, envelopes, stream entries, query requests.

import { randomBytes, randomUUID } from "node:crypto";

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // base32 without I, L, O, U: what event ids use

// A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base32 characters. Ids made otherwise
// (letters outside this alphabet, a wrong length) are dead-lettered by the store.
export function newId(now = Date.now()) {
  let time = "";
  for (let i = 0, t = now; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
  const bytes = randomBytes(16);
  let rand = "";
  for (let i = 0; i < 16; i++) rand += CROCKFORD[bytes[i] % 32];
  return time + rand;
}

// Payload type -> stream (contracts/streams.py ROUTES); every other type goes to ingest.
const ROUTES = { rate_limit: "ratelimits", pattern_discovery: "discoveries", session_trigger: "triggers" };

export function streamFor(prefix, payloadType) {
  return `{${prefix}}:${ROUTES[payloadType] ?? "ingest"}`;
}

// One envelope: the producer makes event_id and occurred_at (required on the wire: a retry sends the same).
export function envelope(workspace, job, payload) {
  return {
    schema_version: 1,
    event_id: newId(),
    occurred_at: new Date().toISOString(),
    workspace,
    job,
    payload,
  };
}

// XADD {prefix}:<stream> * e <envelope JSON> k <payload type>
export async function emit(client, prefix, env) {
  await client.xAdd(streamFor(prefix, env.payload.type), "*", { e: JSON.stringify(env), k: env.payload.type });
  return env.event_id;
}

// RPUSH {prefix}:queries {"op", "args", "reply"}, then BLPOP the one-off reply list.
export async function query(client, prefix, op, args = {}, timeoutSeconds = 10) {
  const reply = `{${prefix}}:reply:${randomUUID().replaceAll("-", "")}`;
  await client.rPush(`{${prefix}}:queries`, JSON.stringify({ op, args, reply }));
  const answer = await client.blPop(reply, timeoutSeconds);
  if (answer === null) throw new Error(`no query service answered ${op} within ${timeoutSeconds}s`);
  const body = JSON.parse(answer.element);
  if (!body.ok) throw new Error(`query ${op} failed: ${body.error}`);
  return body.result;
}
