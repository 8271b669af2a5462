// CRIU's fdstore, as the engine needs it: files parked for the whole restore and handed out
// again (a new fd each time, the stored one kept). Our plugins run in the engine process, so a
// held duplicate is the store; ids count from 0 as CRIU's do.
export interface FdOps {
  dup(fd: number): number;
  close(fd: number): void;
}

export class FdStore {
  private held: number[] = [];
  constructor(private ops: FdOps) {}

  /** keeps a duplicate of fd (the caller still owns fd) */
  add(fd: number): number {
    this.held.push(this.ops.dup(fd));
    return this.held.length - 1;
  }

  /** a new fd on the stored file; the caller owns it */
  get(id: number): number {
    const fd = this.held[id];
    if (fd === undefined) throw new Error(`fdstore: no entry ${id}`);
    return this.ops.dup(fd);
  }

  get size(): number {
    return this.held.length;
  }

  close(): void {
    for (const fd of this.held) this.ops.close(fd);
    this.held = [];
  }
}
