/** Registering a primary number (PROTOCOL.md §9) and the guard registry of claimed numbers. */
export * from './errors';
export * from './guard';
export * from './register';
export * from './registrar';
