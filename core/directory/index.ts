/** Phone-number lookup: E.164 normalization, CDSI over libsignal's Net, the cached, merging directory. */
export { normalizeNumber } from './number';
export {
  cdsiLookup,
  convertCdsiResponse,
  DEFAULT_CDSI_TIMEOUT_MS,
  disposeSharedNets,
  mapCdsiError,
  NetCdsiBackend,
  sharedNet,
  sharedNetCount,
  type CdsiAciAccessKey,
  type CdsiBackend,
  type CdsiCredentials,
  type CdsiEntries,
  type CdsiEntry,
  type CdsiEnvironment,
  type CdsiQuery,
} from './cdsi';
export {
  DEFAULT_CACHE_TTL,
  Directory,
  knownAccessKeys,
  type CacheTtl,
  type ContactsSource,
  type DirectoryOptions,
  type LookupOptions,
} from './directory';
export { classifyRecipient, resolveRecipient } from './recipient';
export { AccountDirectory, type AccountDirectoryOptions } from './account-directory';
export { ContactsSync, CONTACTS_WAIT_MS } from './contacts-sync';
