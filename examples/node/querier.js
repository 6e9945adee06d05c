// Asks the query service for a workspace's events and the ledger's counts; prints one JSON object.
//   PHEROMONE_REDIS_URL=redis://localhost:6379/0 node querier.js [workspace] [limit]

import { createClient } from "redis";
import { query } from "./wire.js";

const url = process.env.PHEROMONE_REDIS_URL ?? "redis://localhost:6379/0";
const prefix = process.env.PHEROMONE_PREFIX ?? "pheromone";
const workspace = process.argv[2] ?? "node-ws";
const limit = Number(process.argv[3] ?? 100);

const client = createClient({ url });
client.on("error", (err) => console.error("redis:", err.message));
await client.connect();
try {
  const events = await query(client, prefix, "events", { workspace, limit });
  const counts = await query(client, prefix, "counts");
  let unknown = null;
  try {
    await query(client, prefix, "no_such_op");
  } catch (err) {
    unknown = err.message; // errors come back as {"ok": false, "error": "..."}
  }
  console.log(JSON.stringify({ event_ids: events.map((e) => e.event_id), counts, unknown }));
} finally {
  await client.quit();
}
