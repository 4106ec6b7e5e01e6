/**
 * Profiles (PROTOCOL.md, profiles): `GET /v1/profile/<aci>/<version>`, over the unauthenticated
 * socket with the owner's `Unidentified-Access-Key` as Signal's apps fetch a contact's profile (or
 * over the authenticated one without it), and `PUT /v1/profile` for our own. Values are encrypted
 * with the owner's profile key; this layer moves them as base64 and never decrypts.
 */
import { NotOnSignalError } from '../errors';
import type { ChatRequester } from '../net/types';
import { accessKeyHeaders, ajv, call, fail, parse } from './http';

export interface VersionedProfile {
  /** base64 of nonce ‖ ciphertext ‖ tag (core/crypto/profile-name.ts), absent when none is set. */
  name?: string | null;
  about?: string | null;
  aboutEmoji?: string | null;
  avatar?: string | null;
}

const validateProfile = ajv.compile<VersionedProfile>({
  type: 'object',
  properties: {
    name: { type: 'string', nullable: true },
    about: { type: 'string', nullable: true },
    aboutEmoji: { type: 'string', nullable: true },
    avatar: { type: 'string', nullable: true },
  },
});

/**
 * The profile of `aci` at the profile-key version `version` (hex, libsignal's
 * ProfileKey.getProfileKeyVersion(aci)). 404: not on Signal (or that version is unknown).
 */
export async function getVersionedProfile(
  requester: ChatRequester,
  aci: string,
  version: string,
  accessKey?: Uint8Array,
): Promise<VersionedProfile> {
  const res = await call(
    requester,
    'GET',
    `/v1/profile/${aci}/${version}`,
    undefined,
    accessKeyHeaders(accessKey),
  );
  if (res.status === 200) return parse(res, validateProfile, 'Fetching a profile');
  if (res.status === 404) throw new NotOnSignalError(aci);
  return fail(res, 'Fetching a profile', accessKey ? 'our access key for this contact' : undefined);
}

export interface ProfileWrite {
  /** Hex profile-key version for our ACI. */
  version: string;
  /** base64 ProfileKeyCommitment for our ACI. */
  commitment: string;
  /** base64 of the encrypted, padded name. */
  name: string;
  /** Whether an avatar upload follows (then the server answers with an upload form). */
  avatar: boolean;
  /** Keep the avatar the profile has. */
  sameAvatar: boolean;
}

/** PUT /v1/profile: our own profile at a version (authenticated; a primary device's call). */
export async function setProfile(requester: ChatRequester, body: ProfileWrite): Promise<void> {
  const res = await call(requester, 'PUT', '/v1/profile', { ...body });
  if (res.status === 200 || res.status === 204) return;
  return fail(res, 'Setting the profile');
}
