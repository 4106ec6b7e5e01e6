/** The sender certificate sealed-sender messages carry (PROTOCOL.md §5). */
import type { ChatRequester } from '../net/types';
import { ajv, call, fail, fromB64, parse } from './http';

const validateCertificate = ajv.compile<{ certificate: string }>({
  type: 'object',
  properties: { certificate: { type: 'string' } },
  required: ['certificate'],
});

export async function getSenderCertificate(requester: ChatRequester): Promise<Uint8Array> {
  // Without includeE164=false Signal-Server puts the account's phone number into every sealed-sender
  // certificate (CertificateController defaults it to true); Signal's apps ask for it this way
  // unless the user shares their number, and this engine never shares it.
  const res = await call(requester, 'GET', '/v1/certificate/delivery?includeE164=false');
  if (res.status !== 200) fail(res, 'Fetching the sender certificate');
  return fromB64(parse(res, validateCertificate, 'Fetching the sender certificate').certificate);
}
