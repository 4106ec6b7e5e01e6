/** Polyfills the Signal mock server needs on Node 20 (Promise.withResolvers arrived in Node 22). */
export function installPolyfills(): void {
  const P = Promise as unknown as {
    withResolvers?: <T>() => {
      promise: Promise<T>;
      resolve: (v: T | PromiseLike<T>) => void;
      reject: (e?: unknown) => void;
    };
  };
  if (typeof P.withResolvers === 'function') return;
  P.withResolvers = function withResolvers<T>() {
    let resolve!: (v: T | PromiseLike<T>) => void;
    let reject!: (e?: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
