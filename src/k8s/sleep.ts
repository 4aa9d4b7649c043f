// Waiting that an abort ends early: the operator's loops all stop promptly on shutdown or when a node
// they wait for is deleted.

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Resolves after `ms`, when `signal` aborts, or when the returned `wake` is called, whichever is first. */
export function wakeableSleep(ms: number, signal?: AbortSignal): { done: Promise<void>; wake: () => void } {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) ctl.abort();
  const done = sleep(ms, ctl.signal).then(() => signal?.removeEventListener("abort", onAbort));
  return { done, wake: () => ctl.abort() };
}
