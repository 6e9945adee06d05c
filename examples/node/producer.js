// Emits executions and one rate-limit report, printing each event id on a line of its own.
//   PHEROMONE_REDIS_URL=redis://localhost:6379/0 node producer.js [workspace] [count]

import { createClient } from "redis";
import { emit, envelope } from "./wire.js";

const url = process.env.PHEROMONE_REDIS_URL ?? "redis://localhost:6379/0";
const prefix = process.env.PHEROMONE_PREFIX ?? "pheromone";
const workspace = process.argv[2] ?? "node-ws";
const count = Number(process.argv[3] ?? 10);
const job = `node-job-${process.pid}`;

const client = createClient({ url });
client.on("error", (err) => console.error("redis:", err.message));
await client.connect();
try {
  for (let i = 0; i < count; i++) {
    const done = new Date();
    const started = new Date(done.getTime() - 2000);
    const execution = {
      type: "execution",
      workspace_hash: workspace,
      job_hash: job,
      sheet_num: i,
      started_at: started.toISOString(),
      completed_at: done.toISOString(),
      duration_seconds: 2.0,
      status: "completed",
      retry_count: 0,
      success_without_retry: true,
      validation_pass_rate: 1.0,
      confidence_score: 0.9,
      model: "claude-sonnet",
    };
    console.log(await emit(client, prefix, envelope(workspace, job, execution)));
  }
  const now = new Date();
  const limit = {
    type: "rate_limit",
    error_code: "429",
    model: "claude-sonnet",
    recorded_at: now.toISOString(),
    expires_at: new Date(now.getTime() + 60_000).toISOString(),
    source_job_hash: job,
    duration_seconds: 60,
  };
  console.log(await emit(client, prefix, envelope(workspace, job, limit)));
} finally {
  await client.quit();
}
