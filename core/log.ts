/**
 * Logging for the engine. The engine never logs secrets: passwords, private keys, profile keys,
 * provisioning URLs, auth headers and message bodies are redacted before a line is written. Callers
 * should still avoid passing them; redaction is the safety net, tested on its own.
 */
export interface Logger {
  debug(msg: string, ...meta: unknown[]): void;
  info(msg: string, ...meta: unknown[]): void;
  warn(msg: string, ...meta: unknown[]): void;
  error(msg: string, ...meta: unknown[]): void;
}

const SECRET_KEYS =
  /^(password|pass|pwd|authorization|auth|token|privatekey|private|profilekey|masterkey|accountentropypool|provisioningcode|verificationcode|code|body|text|message|content|url|provisionurl|secret|key|keys|identitykeypair|captcha|ciphertext|plaintext)$/i;

/** sgnl:// links, Basic auth headers and long base64 runs are redacted wherever they appear. */
const SECRET_PATTERNS: Array<[RegExp, string]> = [
  [/sgnl:\/\/[^\s"']+/g, 'sgnl://[redacted]'],
  [/(Basic|Bearer)\s+[A-Za-z0-9+/=._-]+/g, '$1 [redacted]'],
  [/[A-Za-z0-9+/]{40,}={0,2}/g, '[redacted]'],
];

export function redactString(s: string): string {
  let out = s;
  for (const [re, rep] of SECRET_PATTERNS) out = out.replace(re, rep);
  return out;
}

/** A copy of `value` safe to log: secret-named fields and binary data replaced, strings scrubbed. */
export function redact(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return value;
  if (typeof value === 'string') return redactString(value);
  if (typeof value !== 'object') return value;
  if (depth > 4) return '[…]';
  if (value instanceof Uint8Array) return `[${value.length} bytes]`;
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return `${value.name}${code ? ` (${String(code)})` : ''}: ${redactString(value.message)}`;
  }
  if (Array.isArray(value)) return value.slice(0, 20).map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEYS.test(k) ? '[redacted]' : redact(v, depth + 1);
  }
  return out;
}

/** Wraps a sink so that every line and every meta argument passes through redaction. */
export function redactingLogger(sink: Logger): Logger {
  const wrap =
    (fn: (msg: string, ...meta: unknown[]) => void) =>
    (msg: string, ...meta: unknown[]) =>
      fn(redactString(msg), ...meta.map((m) => redact(m)));
  return {
    debug: wrap(sink.debug.bind(sink)),
    info: wrap(sink.info.bind(sink)),
    warn: wrap(sink.warn.bind(sink)),
    error: wrap(sink.error.bind(sink)),
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** Console logger used by scripts; honours SIGFLOW_LOG=debug|info|warn|error (default warn). */
export function consoleLogger(prefix = 'sigflow'): Logger {
  const levels = ['debug', 'info', 'warn', 'error'] as const;
  const min = Math.max(
    0,
    levels.indexOf((process.env.SIGFLOW_LOG as (typeof levels)[number]) ?? 'warn'),
  );
  const at =
    (level: (typeof levels)[number]) =>
    (msg: string, ...meta: unknown[]) => {
      if (levels.indexOf(level) < min) return;
      console[level === 'debug' ? 'log' : level](`[${prefix}] ${level}: ${msg}`, ...meta);
    };
  return redactingLogger({
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  });
}
