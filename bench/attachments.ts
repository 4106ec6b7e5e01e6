/**
 * Attachment throughput (issue 15), against the mock in the peer process: MB/s to encrypt and
 * upload a 20 MiB file (padding, AES-256-CBC + HMAC + digest to a temp file, the upload form, tus
 * over HTTP/2 to the mock's CDN 3) and to download and decrypt it (HMAC + digest verified, then
 * decrypted to a file), each beside the raw node:crypto rate of the same work on the same 20 MiB
 * in this same run (medians of three, after a warm-up); and the process's RSS while a 30 MiB file goes up and comes back down.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { AccountSession } from '../core/account/session';
import type { SignalClient } from '../core/client';
import type { Environment } from '../core/config';
import { downloadAttachment } from '../core/messaging/attachments';
import type { StoredPointer } from '../core/messaging/content';

const MiB = 1024 * 1024;
const PIECE = 64 * 1024;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const mbps = (bytes: number, ms: number) => Math.round((bytes / MiB / (ms / 1000)) * 10) / 10;

function writeFile(file: string, size: number): string {
  const fd = fs.openSync(file, 'w');
  const piece = crypto.randomBytes(MiB);
  for (let at = 0; at < size; at += MiB) fs.writeSync(fd, piece, 0, Math.min(MiB, size - at));
  fs.closeSync(fd);
  const h = crypto.createHash('sha256');
  for (let at = 0; at < size; at += MiB) h.update(piece.subarray(0, Math.min(MiB, size - at)));
  return h.digest('hex');
}

function hashFile(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(MiB);
  for (let n; (n = fs.readSync(fd, buf, 0, MiB, null)) > 0;) h.update(buf.subarray(0, n));
  fs.closeSync(fd);
  return h.digest('hex');
}

/** The raw rate of the same crypto, in-memory, in 64 KiB pieces: AES-256-CBC with HMAC-SHA256. */
function rawRates(size: number): { encrypt: number; decrypt: number } {
  const data = crypto.randomBytes(size);
  const key = crypto.randomBytes(32);
  const iv = crypto.randomBytes(16);
  let start = now();
  const c = crypto.createCipheriv('aes-256-cbc', key, iv);
  const hmac = crypto.createHmac('sha256', key);
  const out: Buffer[] = [];
  for (let at = 0; at < size; at += PIECE) {
    const piece = c.update(data.subarray(at, at + PIECE));
    hmac.update(piece);
    out.push(piece);
  }
  out.push(c.final());
  hmac.digest();
  const encrypt = mbps(size, now() - start);
  const ct = Buffer.concat(out);
  start = now();
  const d = crypto.createDecipheriv('aes-256-cbc', key, iv);
  const check = crypto.createHmac('sha256', key);
  for (let at = 0; at < ct.length; at += PIECE) {
    check.update(ct.subarray(at, at + PIECE));
    d.update(ct.subarray(at, at + PIECE));
  }
  d.final();
  check.digest();
  return { encrypt, decrypt: mbps(size, now() - start) };
}

export async function measureAttachments(
  client: SignalClient,
  env: Environment,
  dir: string,
  sizeMiB = 20,
  rssMiB = 30,
): Promise<Record<string, number>> {
  const session = (client as unknown as { session: AccountSession | null }).session;
  if (!session) throw new Error('the client is not connected');
  const results: Record<string, number> = {};
  const roundTrip = async (size: number) => {
    const file = path.join(dir, `att-${size}.bin`);
    const hash = writeFile(file, size);
    let start = now();
    const p = await session.uploads.upload({
      source: { path: file },
      size,
      contentType: 'application/octet-stream',
    });
    const upMs = now() - start;
    const pointer: StoredPointer = {
      cdnNumber: p.cdnNumber ?? 3,
      cdnKey: p.cdnKey ?? '',
      key: Buffer.from(p.key ?? []).toString('base64'),
      digest: Buffer.from(p.digest ?? []).toString('base64'),
    };
    const target = path.join(dir, `att-${size}.out`);
    start = now();
    await downloadAttachment(env, pointer, size, dir, target, {
      maxBytes: 200 * MiB,
      timeoutMs: 300_000,
    });
    const downMs = now() - start;
    if (hashFile(target) !== hash) throw new Error('the attachment came back different');
    fs.rmSync(file);
    fs.rmSync(target);
    return { upMs, downMs };
  };

  // A warm-up round trip (JIT, the first TLS connections), then the median of three of each.
  await roundTrip(MiB);
  const runs = [];
  for (let i = 0; i < 3; i++) runs.push(await roundTrip(sizeMiB * MiB));
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[1]!;
  const upMs = median(runs.map((r) => r.upMs));
  const downMs = median(runs.map((r) => r.downMs));
  const raws = [rawRates(sizeMiB * MiB), rawRates(sizeMiB * MiB), rawRates(sizeMiB * MiB)];
  const raw = {
    encrypt: median(raws.map((r) => r.encrypt)),
    decrypt: median(raws.map((r) => r.decrypt)),
  };
  results.attachment_upload_mb_per_s = mbps(sizeMiB * MiB, upMs);
  results.attachment_raw_encrypt_mb_per_s = raw.encrypt;
  results.attachment_upload_ratio =
    Math.round((results.attachment_upload_mb_per_s / raw.encrypt) * 100) / 100;
  results.attachment_download_mb_per_s = mbps(sizeMiB * MiB, downMs);
  results.attachment_raw_decrypt_mb_per_s = raw.decrypt;
  results.attachment_download_ratio =
    Math.round((results.attachment_download_mb_per_s / raw.decrypt) * 100) / 100;

  // RSS while a 30 MiB file goes up and comes down, sampled every 10 ms, after a full GC (exposed
  // at run time: `npm run bench` passes no flags), so the baseline is what the process holds, not
  // the garbage of the phases before.
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  await new Promise((r) => setTimeout(r, 200));
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  try {
    await roundTrip(rssMiB * MiB);
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  results.attachment_rss_mb_before_30mib = Math.round((before / MiB) * 10) / 10;
  results.attachment_peak_rss_mb_30mib = Math.round((peak / MiB) * 10) / 10;
  results.attachment_rss_growth_mb_30mib = Math.round(((peak - before) / MiB) * 10) / 10;
  return results;
}
