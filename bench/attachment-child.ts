/**
 * The fresh process of the attachment RSS figure (bench/attachments.ts measureFreshProcessRss): it
 * opens the linked account's store, connects, writes a plaintext file, and, RSS sampled every 5 ms
 * from just before, uploads it and downloads it back (bytes compared by hash). Nothing else lives
 * here, so what the transfer adds to the baseline is what the pipeline holds: a file held whole
 * would show as its size or more. Answers a ChildAnswer over IPC, then exits.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AccountSession } from '../core/account/session';
import { SignalClient } from '../core/client';
import { resolveEnvironment } from '../core/config';
import { downloadAttachment } from '../core/messaging/attachments';
import type { ChildAnswer, ChildJob } from './attachments';
import { hashFile, writeFile } from './attachments';

const MiB = 1024 * 1024;
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

async function main(): Promise<ChildAnswer> {
  const job = JSON.parse(process.env.SIGFLOW_BENCH_JOB ?? '') as ChildJob;
  const client = await SignalClient.open({
    dataFile: job.dataFile,
    environment: job.environment,
    logger: quiet,
  });
  try {
    await client.connect();
    const session = (client as unknown as { session: AccountSession | null }).session;
    if (!session) throw new Error('the client is not connected');
    const size = job.sizeMiB * MiB;
    const file = path.join(job.dir, `fresh-${size}.bin`);
    const target = path.join(job.dir, `fresh-${size}.out`);
    const hash = writeFile(file, size);
    await new Promise((r) => setTimeout(r, 200));
    const baselineRss = process.memoryUsage().rss;
    let peakRss = baselineRss;
    const timer = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 5);
    try {
      const p = await session.uploads.upload({
        source: { path: file },
        size,
        contentType: 'application/octet-stream',
      });
      await downloadAttachment(
        resolveEnvironment(job.environment),
        {
          cdnNumber: p.cdnNumber ?? 3,
          cdnKey: p.cdnKey ?? '',
          key: Buffer.from(p.key ?? []).toString('base64'),
          digest: Buffer.from(p.digest ?? []).toString('base64'),
        },
        size,
        job.dir,
        target,
        { maxBytes: 200 * MiB, timeoutMs: 300_000 },
      );
    } finally {
      clearInterval(timer);
    }
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const same = hashFile(target) === hash;
    fs.rmSync(file);
    fs.rmSync(target);
    if (!same) throw new Error('the attachment came back different');
    return { baselineRss, peakRss, maxRss: process.resourceUsage().maxRSS * 1024 };
  } finally {
    await client.close();
  }
}

main().then(
  (answer) => process.send?.(answer, () => process.exit(0)),
  (e: unknown) =>
    process.send?.({ error: e instanceof Error ? e.message : String(e) }, () => process.exit(1)),
);
