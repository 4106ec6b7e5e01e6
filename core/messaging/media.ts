/**
 * What an outgoing attachment is, from its first bytes: the content type (magic bytes, then the file
 * name's extension, else application/octet-stream) and, for PNG, JPEG, GIF and WebP, the pixel size
 * Signal's apps put on an image's pointer. Pure: callers hand in a head of the file (at most
 * HEAD_BYTES; a file is never read whole for this).
 */

/** The most of a file's start these functions need (a JPEG's size may sit after its EXIF data). */
export const HEAD_BYTES = 64 * 1024;

export const OCTET_STREAM = 'application/octet-stream';

/** Content types by lower-case extension, for what magic bytes cannot tell (text, office files). */
const BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  heic: 'image/heic',
  heif: 'image/heif',
  bmp: 'image/bmp',
  svg: 'image/svg+xml',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
  mkv: 'video/x-matroska',
  '3gp': 'video/3gpp',
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  ogg: 'audio/ogg',
  oga: 'audio/ogg',
  opus: 'audio/ogg',
  wav: 'audio/wav',
  flac: 'audio/flac',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  json: 'application/json',
  xml: 'application/xml',
  txt: 'text/plain',
  log: 'text/plain',
  text: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  tsv: 'text/tab-separated-values',
  html: 'text/html',
  htm: 'text/html',
  ics: 'text/calendar',
  vcf: 'text/vcard',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
  odp: 'application/vnd.oasis.opendocument.presentation',
  apk: 'application/vnd.android.package-archive',
  epub: 'application/epub+zip',
  doc: 'application/msword',
  xls: 'application/vnd.ms-excel',
};

/** ISO base-media (ftyp) major brands, by what they hold. */
const FTYP: Record<string, string> = {
  heic: 'image/heic',
  heix: 'image/heic',
  heim: 'image/heic',
  heis: 'image/heic',
  hevc: 'image/heic',
  hevx: 'image/heic',
  mif1: 'image/heif',
  msf1: 'image/heif',
  avif: 'image/avif',
  'qt  ': 'video/quicktime',
  'M4A ': 'audio/mp4',
  'M4B ': 'audio/mp4',
  '3gp4': 'video/3gpp',
  '3gp5': 'video/3gpp',
  '3gp6': 'video/3gpp',
  '3g2a': 'video/3gpp2',
};

function ascii(head: Uint8Array, at: number, length: number): string {
  if (head.length < at + length) return '';
  return String.fromCharCode(...head.subarray(at, at + length));
}

function startsWith(head: Uint8Array, bytes: number[], at = 0): boolean {
  return head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b);
}

function extensionOf(fileName: string | undefined): string | undefined {
  const base = fileName?.split(/[\\/]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : undefined;
}

/** A content type from the magic bytes alone, or undefined. */
function fromMagic(head: Uint8Array): string | undefined {
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (startsWith(head, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  const six = ascii(head, 0, 6);
  if (six === 'GIF87a' || six === 'GIF89a') return 'image/gif';
  if (ascii(head, 0, 4) === 'RIFF') {
    const form = ascii(head, 8, 4);
    if (form === 'WEBP') return 'image/webp';
    if (form === 'WAVE') return 'audio/wav';
  }
  if (ascii(head, 4, 4) === 'ftyp') {
    const brand = ascii(head, 8, 4);
    return FTYP[brand] ?? 'video/mp4';
  }
  if (startsWith(head, [0x1a, 0x45, 0xdf, 0xa3])) {
    // EBML: the DocType near the start says WebM or Matroska.
    const start = ascii(head, 0, Math.min(head.length, 64));
    return start.includes('matroska') ? 'video/x-matroska' : 'video/webm';
  }
  if (ascii(head, 0, 5) === '%PDF-') return 'application/pdf';
  if (ascii(head, 0, 4) === 'OggS') return 'audio/ogg';
  if (ascii(head, 0, 4) === 'fLaC') return 'audio/flac';
  if (ascii(head, 0, 3) === 'ID3') return 'audio/mpeg';
  if (head.length >= 2 && head[0] === 0xff && ((head[1] as number) & 0xe0) === 0xe0) {
    // An MPEG audio frame sync; layer bits 00 are AAC's ADTS header, anything else MP3.
    const layer = ((head[1] as number) >> 1) & 3;
    return layer === 0 ? 'audio/aac' : 'audio/mpeg';
  }
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04]) || startsWith(head, [0x50, 0x4b, 0x05, 0x06]))
    return 'application/zip';
  if (startsWith(head, [0x1f, 0x8b])) return 'application/gzip';
  return undefined;
}

/**
 * The content type of a file from its first bytes, then its name's extension, else
 * application/octet-stream. A ZIP whose name says it is an office document or an e-book takes the
 * name's type (those are ZIPs inside); text files have no magic, so only their extension tells.
 */
export function sniffContentType(head: Uint8Array, fileName?: string): string {
  const magic = fromMagic(head);
  const ext = extensionOf(fileName);
  const byName = ext !== undefined ? BY_EXTENSION[ext] : undefined;
  if (magic === 'application/zip' && byName && byName !== 'application/zip') {
    if (/zip|openxml|opendocument|android/.test(byName)) return byName;
  }
  return magic ?? byName ?? OCTET_STREAM;
}

export interface ImageSize {
  width: number;
  height: number;
}

const u16be = (b: Uint8Array, at: number) => ((b[at] as number) << 8) | (b[at + 1] as number);
const u16le = (b: Uint8Array, at: number) => (b[at] as number) | ((b[at + 1] as number) << 8);
const u24le = (b: Uint8Array, at: number) => u16le(b, at) | ((b[at + 2] as number) << 16);
const u32be = (b: Uint8Array, at: number) => u16be(b, at) * 65536 + u16be(b, at + 2);

function sized(width: number, height: number): ImageSize | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}

function pngSize(head: Uint8Array): ImageSize | undefined {
  // The signature, then the IHDR chunk first: length, "IHDR", width, height (big-endian).
  if (head.length < 24 || ascii(head, 12, 4) !== 'IHDR') return undefined;
  return sized(u32be(head, 16), u32be(head, 20));
}

function gifSize(head: Uint8Array): ImageSize | undefined {
  if (head.length < 10) return undefined;
  return sized(u16le(head, 6), u16le(head, 8));
}

/** The start-of-frame markers that carry the size (not DHT C4, JPG C8, DAC CC). */
const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/**
 * The EXIF orientation (1-8) in an APP1 segment's data, or 1. Orientations 5-8 turn the picture a
 * quarter, so the displayed width is the stored height.
 */
function exifOrientation(head: Uint8Array, start: number, end: number): number {
  if (ascii(head, start, 6) !== 'Exif\0\0') return 1;
  const tiff = start + 6;
  const order = ascii(head, tiff, 2);
  if (order !== 'II' && order !== 'MM') return 1;
  const le = order === 'II';
  const u16 = (at: number) => (le ? u16le(head, at) : u16be(head, at));
  const u32 = (at: number) =>
    le ? u16le(head, at) + u16le(head, at + 2) * 65536 : u32be(head, at);
  if (tiff + 8 > end) return 1;
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 1;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > end) return 1;
    if (u16(entry) === 0x0112) {
      const v = u16(entry + 8);
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

function jpegSize(head: Uint8Array): ImageSize | undefined {
  let orientation = 1;
  let at = 2;
  while (at + 4 <= head.length) {
    if (head[at] !== 0xff) return undefined;
    const marker = head[at + 1] as number;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    // Markers without a length: TEM, RST0-7, SOI.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      at += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // end, or scan data before any SOF
    const length = u16be(head, at + 2);
    if (length < 2) return undefined;
    if (marker === 0xe1 && orientation === 1)
      orientation = exifOrientation(head, at + 4, Math.min(head.length, at + 2 + length));
    if (SOF.has(marker)) {
      // FF Cn, length, precision, height, width: as stored; as shown, turned by the EXIF orientation.
      if (at + 9 > head.length) return undefined;
      const height = u16be(head, at + 5);
      const width = u16be(head, at + 7);
      return orientation >= 5 ? sized(height, width) : sized(width, height);
    }
    at += 2 + length;
  }
  return undefined;
}

function webpSize(head: Uint8Array): ImageSize | undefined {
  if (head.length < 30) return undefined;
  switch (ascii(head, 12, 4)) {
    case 'VP8 ':
      // A lossy key frame: 3-byte frame tag, start code 9D 01 2A, 14-bit width and height.
      if (!startsWith(head, [0x9d, 0x01, 0x2a], 23)) return undefined;
      return sized(u16le(head, 26) & 0x3fff, u16le(head, 28) & 0x3fff);
    case 'VP8L': {
      // Lossless: signature 0x2F, then width-1 and height-1 in 14 bits each, little-endian.
      if (head[20] !== 0x2f) return undefined;
      const bits =
        (head[21] as number) |
        ((head[22] as number) << 8) |
        ((head[23] as number) << 16) |
        ((head[24] as number) << 24);
      return sized((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
    }
    case 'VP8X':
      // Extended: flags and reserved bytes, then canvas width-1 and height-1 in 24 bits each.
      return sized(u24le(head, 24) + 1, u24le(head, 27) + 1);
    default:
      return undefined;
  }
}

/**
 * The pixel size of a PNG, JPEG, GIF or WebP image from its head (a JPEG's frame header is searched
 * for within it, and its size is as shown: turned by its EXIF orientation), or undefined for any other type or a head that does not show it.
 */
export function imageSize(head: Uint8Array, contentType: string): ImageSize | undefined {
  switch (contentType.toLowerCase()) {
    case 'image/png':
      return fromMagic(head) === 'image/png' ? pngSize(head) : undefined;
    case 'image/jpeg':
      return fromMagic(head) === 'image/jpeg' ? jpegSize(head) : undefined;
    case 'image/gif':
      return fromMagic(head) === 'image/gif' ? gifSize(head) : undefined;
    case 'image/webp':
      return fromMagic(head) === 'image/webp' ? webpSize(head) : undefined;
    default:
      return undefined;
  }
}
