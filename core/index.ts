/** Public API of the sigflow engine. */
export {};
