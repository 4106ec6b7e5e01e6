/**
 * Typed REST calls over the chat socket (PROTOCOL.md §3–§9), one file per resource. Each takes a
 * ChatRequester (the authenticated or the unauthenticated socket), validates the server's JSON with
 * ajv, and maps the statuses that matter to typed errors. core/api depends on core/errors,
 * core/net/types and libraries only: the services (messaging, registration, directory, client)
 * import it, never the other way.
 */
export { basicAuth, stripPni } from './http';
export * from './errors';
export * from './accounts';
export * from './certificates';
export * from './challenges';
export * from './devices';
export * from './directory';
export * from './keys';
export * from './messages';
export * from './multi-recipient';
export * from './registration';
export * from './profiles';
export * from './groups';
export * from './storage';
export * from './attachments';
