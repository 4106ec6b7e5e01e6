/** scrypt as a promise, shared by the file key (sealed-file) and the ownership secrets (policy). */
import crypto from 'node:crypto';
import { promisify } from 'node:util';

export const scryptAsync = promisify(crypto.scrypt) as (
  password: crypto.BinaryLike,
  salt: crypto.BinaryLike,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

/** Node's default maxmem (32 MiB) is exactly N=2^15, r=8: leave headroom. */
export const SCRYPT_MAXMEM = 128 * 1024 * 1024;
