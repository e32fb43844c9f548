/**
 * A turn-taker for one connection: tasks run one after another in call order, and a task
 * that fails does not stop the ones queued behind it.
 */
export function serial(): <T>(task: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve()
  return (task) => {
    const run = tail.then(task)
    tail = run.catch(() => {})
    return run
  }
}
