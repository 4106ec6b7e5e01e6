/**
 * The attachment upload form (PROTOCOL.md §7): `GET /v4/attachments/form/upload?uploadLength=<n>`
 * on the authenticated socket (Signal-Server AttachmentControllerV4: `uploadLength` is the size of
 * the encrypted file, a positive number of bytes, 413 above the server's maximum, 429 when rate
 * limited) → AttachmentDescriptorV3 `{cdn, key, headers, signedUploadLocation}`.
 */
import { InvalidInputError } from '../errors';
import type { ChatRequester } from '../net/types';
import { ajv, call, fail, parse } from './http';

export interface AttachmentUploadForm {
  /** 2 (Google Cloud Storage resumable) or 3 (tus). */
  cdn: number;
  /** The object's name on the CDN: the pointer's `cdnKey`. */
  key: string;
  /** Headers every upload request carries (signed by the server). */
  headers: Record<string, string>;
  signedUploadLocation: string;
}

const validateForm = ajv.compile<AttachmentUploadForm>({
  type: 'object',
  properties: {
    cdn: { type: 'integer' },
    key: { type: 'string', minLength: 1 },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    signedUploadLocation: { type: 'string', minLength: 1 },
  },
  required: ['cdn', 'key', 'headers', 'signedUploadLocation'],
});

export async function getAttachmentUploadForm(
  requester: ChatRequester,
  uploadLength: number,
): Promise<AttachmentUploadForm> {
  const what = 'Getting an attachment upload form';
  const res = await call(
    requester,
    'GET',
    `/v4/attachments/form/upload?uploadLength=${encodeURIComponent(String(uploadLength))}`,
  );
  if (res.status === 413 && !res.headers['retry-after'])
    // AttachmentControllerV4 answers 413 without Retry-After for an uploadLength over its maximum
    // (with Retry-After, 413 is the rate limit, as on every route).
    throw new InvalidInputError(
      `${what}: Signal refuses a file of ${uploadLength} bytes as too large`,
    );
  if (res.status !== 200) fail(res, what);
  return parse(res, validateForm, what);
}
