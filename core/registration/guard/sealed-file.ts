/**
 * The guard registry's file at rest: one AES-256-GCM blob, `"SFGR" ‖ version(1) ‖ kdf(1) ‖ salt(16)
 * ‖ nonce(12) ‖ ciphertext ‖ tag(16)`, the header authenticated as associated data, a fresh nonce per
 * write. The key comes from Node-RED's `credentialSecret` (scrypt, salt in the header) when given,
 * else from a 32-byte random key file (HKDF). Writes are atomic (temp file + rename), mode 0600.
 * A file that does not decrypt is refused with GuardRegistryError and left as it is: resetting it
 * would silently drop every protection.
 *
 * This module knows nothing of what the registry holds: it seals and opens JSON, and the caller
 * says which content is valid.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GuardRegistryError } from '../errors';
import { SCRYPT_MAXMEM, scryptAsync } from './scrypt';

const MAGIC = Buffer.from('SFGR', 'ascii');
const FORMAT_VERSION = 1;
const KDF_CREDENTIAL_SECRET = 1;
const KDF_KEY_FILE = 2;
const SALT_LEN = 16;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const HEADER_LEN = MAGIC.length + 2 + SALT_LEN + NONCE_LEN;
const HKDF_INFO = Buffer.from('sigflow registration guard v1', 'utf8');
/** scrypt cost for deriving the file key from credentialSecret (once per open). */
const KEY_SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;

export interface SealedFileOptions {
  file: string;
  /** Node-RED's credentialSecret; empty or false means "not set" (then the key file is used). */
  credentialSecret?: string | false;
  /** Key file used when no credentialSecret is given; default `<file>.key`. */
  keyFile?: string;
}

export function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code
    : undefined;
}

export function ensureDir(dir: string): void {
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export class SealedFile {
  readonly file: string;
  private readonly keyFile: string;
  private readonly credentialSecret: string | undefined;
  /** Derived keys by salt (hex): the salt is fixed per file, so this holds one entry in practice. */
  private readonly keys = new Map<string, Buffer>();
  private keyMaterial: Buffer | undefined;
  /** Salt of the file as last read; a new file gets one at open. */
  private salt: Buffer = crypto.randomBytes(SALT_LEN);

  constructor(opts: SealedFileOptions) {
    this.file = path.resolve(opts.file);
    this.keyFile = path.resolve(opts.keyFile ?? `${opts.file}.key`);
    this.credentialSecret = opts.credentialSecret ? opts.credentialSecret : undefined;
  }

  private get kdf(): number {
    return this.credentialSecret ? KDF_CREDENTIAL_SECRET : KDF_KEY_FILE;
  }

  /**
   * The file's content, or undefined when there is no file yet (then the key is made ready, so the
   * first write can use it). Throws GuardRegistryError for anything that does not open and pass
   * `valid`, leaving the file untouched.
   */
  async read<T>(valid: (v: unknown) => v is T): Promise<T | undefined> {
    let blob: Buffer;
    try {
      blob = await fs.promises.readFile(this.file);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') {
        await this.keyFor(this.kdf, this.salt);
        return undefined;
      }
      throw new GuardRegistryError(
        this.file,
        `The registration registry at ${this.file} cannot be read: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const unreadable = (why: string, cause?: unknown) =>
      new GuardRegistryError(
        this.file,
        `The registration registry at ${this.file} cannot be decrypted: ${why}. It was left ` +
          'as it is; restore it from a backup, or move it away to start an empty registry (every ' +
          'number it protects becomes unprotected).',
        cause ? { cause } : undefined,
      );
    if (blob.length < HEADER_LEN + TAG_LEN || !blob.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw unreadable('it is not a sigflow registration registry, or the file was modified');
    }
    const version = blob[MAGIC.length];
    const kdf = blob[MAGIC.length + 1];
    if (version !== FORMAT_VERSION) {
      throw unreadable(
        `unknown format version ${String(version)} (written by another version of sigflow, or ` +
          'the file was modified)',
      );
    }
    if (kdf !== this.kdf) {
      throw unreadable(
        kdf === KDF_KEY_FILE
          ? `it was encrypted with the key file ${this.keyFile}, but Node-RED's credential secret ` +
              'was given now (or the file was modified)'
          : kdf === KDF_CREDENTIAL_SECRET
            ? "it was encrypted with Node-RED's credential secret, but none was given now (or " +
              'the file was modified)'
            : 'the file was modified',
      );
    }
    const header = blob.subarray(0, HEADER_LEN);
    const salt = Buffer.from(blob.subarray(MAGIC.length + 2, MAGIC.length + 2 + SALT_LEN));
    const nonce = blob.subarray(HEADER_LEN - NONCE_LEN, HEADER_LEN);
    const tag = blob.subarray(blob.length - TAG_LEN);
    const ciphertext = blob.subarray(HEADER_LEN, blob.length - TAG_LEN);
    const key = await this.keyFor(kdf, salt);
    let plaintext: Buffer;
    try {
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, nonce);
      decipher.setAAD(header);
      decipher.setAuthTag(tag);
      plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (e) {
      throw unreadable(
        this.credentialSecret
          ? 'wrong credential secret or the file was modified'
          : `wrong key file (${this.keyFile}) or the file was modified`,
        e,
      );
    }
    let data: unknown;
    try {
      data = JSON.parse(plaintext.toString('utf8'));
    } catch (e) {
      throw unreadable('its content is damaged', e);
    }
    if (!valid(data)) throw unreadable('its content is damaged');
    this.salt = salt;
    return data;
  }

  async write(value: unknown): Promise<void> {
    const kdf = this.kdf;
    const key = await this.keyFor(kdf, this.salt);
    const nonce = crypto.randomBytes(NONCE_LEN);
    const header = Buffer.concat([MAGIC, Buffer.from([FORMAT_VERSION, kdf]), this.salt, nonce]);
    const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(header);
    const body = Buffer.concat([
      cipher.update(Buffer.from(JSON.stringify(value), 'utf8')),
      cipher.final(),
    ]);
    const blob = Buffer.concat([header, body, cipher.getAuthTag()]);
    await atomicWrite(this.file, blob).catch((e: unknown) => {
      throw new GuardRegistryError(
        this.file,
        `The registration registry at ${this.file} cannot be written: ${(e as Error).message}`,
        { cause: e },
      );
    });
  }

  private async keyFor(kdf: number, salt: Buffer): Promise<Buffer> {
    const id = `${kdf}:${salt.toString('hex')}`;
    const cached = this.keys.get(id);
    if (cached) return cached;
    let key: Buffer;
    if (kdf === KDF_CREDENTIAL_SECRET) {
      // credentialSecret may be a human-chosen passphrase: a memory-hard KDF, not just HKDF.
      key = await scryptAsync(this.credentialSecret ?? '', salt, 32, {
        ...KEY_SCRYPT,
        maxmem: SCRYPT_MAXMEM,
      });
    } else {
      const material = await this.loadKeyFile();
      key = Buffer.from(crypto.hkdfSync('sha256', material, salt, HKDF_INFO, 32));
    }
    this.keys.set(id, key);
    return key;
  }

  /**
   * Reads the key file, creating it (32 random bytes, mode 0600, folder 0700) only when neither it
   * nor the registry exists: a registry without its key file is refused, never re-keyed.
   */
  private async loadKeyFile(): Promise<Buffer> {
    if (this.keyMaterial) return this.keyMaterial;
    let material: Buffer;
    try {
      material = await fs.promises.readFile(this.keyFile);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') {
        throw new GuardRegistryError(
          this.file,
          `The registration registry's key file ${this.keyFile} cannot be read: ${(e as Error).message}`,
          { cause: e },
        );
      }
      if (fs.existsSync(this.file)) {
        throw new GuardRegistryError(
          this.file,
          `The registration registry at ${this.file} cannot be decrypted: its key file ` +
            `${this.keyFile} is missing. Restore the key file, or move the registry away to start ` +
            'an empty one (every number it protects becomes unprotected).',
        );
      }
      ensureDir(path.dirname(this.keyFile));
      material = crypto.randomBytes(32);
      try {
        await fs.promises.writeFile(this.keyFile, material, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') {
          throw new GuardRegistryError(
            this.file,
            `The registration registry's key file ${this.keyFile} cannot be created: ` +
              (err as Error).message,
            { cause: err },
          );
        }
        // Another process created it first: use theirs.
        material = await fs.promises.readFile(this.keyFile);
      }
    }
    if (material.length !== 32) {
      throw new GuardRegistryError(
        this.file,
        `The registration registry's key file ${this.keyFile} is damaged (it must hold 32 bytes).`,
      );
    }
    this.keyMaterial = material;
    return material;
  }
}

async function atomicWrite(file: string, blob: Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  const handle = await fs.promises.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(blob);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}
