// The plugin host: CRIU's hook model. Plugins register typed hooks; each call walks the plugins
// in load order, NOT_MINE (CRIU's -ENOTSUP) passes to the next one, anything else (a value or a
// thrown error) ends the walk. The inventory lists the plugins a dump needed; a restore refuses
// when one of them is not loaded, and runs only the listed ones.
import type { Msg } from '../../images/codec';
import { EngineError } from '../errors';

/** "not mine": the next plugin is asked */
export const NOT_MINE: unique symbol = Symbol('ENOTSUP');
export type NotMine = typeof NOT_MINE;
export type Answer<T> = T | NotMine;

export type Stage = 'dump' | 'pre-dump' | 'restore';

export interface DumpFileArgs {
  /** the engine's own fd on the task's open file description (the engine closes it) */
  fd: number;
  /** files.img id */
  id: number;
  /** task and fd number, for messages */
  pid: number;
  fdNum: number;
  /** readlink of /proc/PID/fd/N */
  link: string;
}

export interface DeviceVmaArgs {
  pid: number;
  path: string;
  start: bigint;
  end: bigint;
  /** offset in bytes, as /proc/PID/maps shows it */
  pgoff: bigint;
  rdev: number;
}

export type RestoreFileResult = { fd: number } | { retry: true };

export interface VmaMapArgs {
  pid: number;
  path: string;
  start: bigint;
  end: bigint;
  pgoff: bigint;
}

/** the pgoff to map with, and an fd to map through (the caller owns and closes it) */
export interface VmaMapResult {
  pgoff: bigint;
  fd?: number;
}

export interface Hooks {
  DUMP_EXT_FILE(a: DumpFileArgs): Answer<void>;
  /** idempotent: may be called again with the same id after a retry */
  RESTORE_EXT_FILE(id: number): Answer<RestoreFileResult>;
  HANDLE_DEVICE_VMA(a: DeviceVmaArgs): Answer<void>;
  UPDATE_VMA_MAP(a: VmaMapArgs): Answer<VmaMapResult>;
  PAUSE_DEVICES(pid: number): Answer<void>;
  CHECKPOINT_DEVICES(pid: number): Answer<void>;
  /** after every task is dumped, tree still frozen */
  DUMP_DEVICES_LATE(rootPid: number): Answer<void>;
  /** before any task is created */
  RESTORE_INIT(): Answer<void>;
  POST_FORKING(): Answer<void>;
  RESUME_DEVICES_LATE(pid: number): Answer<void>;
}

export type HookName = keyof Hooks;
export const HOOK_NAMES: HookName[] = [
  'DUMP_EXT_FILE', 'RESTORE_EXT_FILE', 'HANDLE_DEVICE_VMA', 'UPDATE_VMA_MAP', 'PAUSE_DEVICES', 'CHECKPOINT_DEVICES',
  'DUMP_DEVICES_LATE', 'RESTORE_INIT', 'POST_FORKING', 'RESUME_DEVICES_LATE',
];

/** What the host gives a plugin. */
export interface PluginEnv {
  stage: Stage;
  imagesDir: string;
  /** a restored fd (or buffer) became available: wake every task waiting on a retry */
  notify(): void;
  log(msg: string): void;
}

export interface Plugin {
  name: string;
  init?(env: PluginEnv): void;
  /** end of the stage; failed = the dump or restore is being abandoned (release everything) */
  exit?(failed: boolean): void;
  hooks: Partial<Hooks>;
}

export class PluginError extends EngineError {
  constructor(plugin: string, hook: string, message: string, code?: string) {
    super(`${plugin}: ${hook}: ${message}`, code ?? 'EPLUGIN');
    this.name = 'PluginError';
  }
}

export class PluginHost {
  private plugins: Plugin[] = [];
  private enabled = new Set<Plugin>();
  private inited = false;
  /** plugins that claimed something during this dump (inventory plugins_entry) */
  private claimed = new Set<string>();
  private waiters: (() => void)[] = [];
  readonly env: PluginEnv;

  constructor(stage: Stage, imagesDir: string, log: (msg: string) => void = () => {}) {
    this.env = { stage, imagesDir, notify: () => this.fire(), log };
  }

  register(p: Plugin): this {
    if (this.inited) throw new EngineError(`plugin ${p.name} registered after init`);
    if (this.plugins.some((q) => q.name === p.name)) throw new EngineError(`plugin ${p.name} registered twice`);
    this.plugins.push(p);
    this.enabled.add(p);
    return this;
  }

  get names(): string[] {
    return this.plugins.map((p) => p.name);
  }

  /**
   * Restore: the inventory's plugin list decides. No field 12: every plugin runs (older CRIU).
   * A listed plugin that is not loaded refuses the restore; a loaded one not listed stays idle.
   */
  applyInventory(inventory: Msg): void {
    const pe = inventory.plugins_entry as Msg | undefined;
    if (pe === undefined) return;
    const listed: string[] = (pe.plugins ?? []) as string[];
    const missing = listed.filter((n) => !this.plugins.some((p) => p.name === n));
    if (missing.length) throw new EngineError(`inventory.img: plugins_entry: missing required plugin${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, 'EPLUGIN');
    for (const p of this.plugins) if (!listed.includes(p.name)) this.enabled.delete(p);
  }

  /** init(stage) of every enabled plugin, in load order */
  init(): void {
    this.inited = true;
    for (const p of this.active()) p.init?.(this.env);
  }

  exit(failed: boolean): void {
    let first: unknown;
    for (const p of this.active()) {
      try {
        p.exit?.(failed);
      } catch (e) {
        first ??= e;
      }
    }
    this.waiters = [];
    if (first && !failed) throw first;
  }

  /** the plugins_entry message for inventory.img (CRIU always writes it, empty when no plugin took part) */
  inventoryEntry(): Msg {
    const names = this.plugins.filter((p) => this.claimed.has(p.name)).map((p) => p.name);
    return names.length ? { plugins: names } : {};
  }

  isEnabled(name: string): boolean {
    return [...this.enabled].some((p) => p.name === name);
  }

  private active(): Plugin[] {
    return this.plugins.filter((p) => this.enabled.has(p));
  }

  /** run one hook: the first plugin that does not answer NOT_MINE decides */
  run<H extends HookName>(hook: H, ...args: Parameters<Hooks[H]>): Answer<ReturnType<Hooks[H]>> {
    for (const p of this.active()) {
      const fn = p.hooks[hook] as ((...a: Parameters<Hooks[H]>) => ReturnType<Hooks[H]>) | undefined;
      if (!fn) continue;
      let r: ReturnType<Hooks[H]>;
      try {
        r = fn.apply(p.hooks, args);
      } catch (e) {
        if (e instanceof EngineError) throw e;
        throw new PluginError(p.name, hook, (e as Error).message, (e as { code?: string }).code);
      }
      if (r === NOT_MINE) continue;
      if (hook === 'DUMP_EXT_FILE' || hook === 'HANDLE_DEVICE_VMA') this.claimed.add(p.name);
      return r;
    }
    return NOT_MINE;
  }

  /** a lifecycle hook whose answer only matters when it is an error */
  call<H extends 'PAUSE_DEVICES' | 'CHECKPOINT_DEVICES' | 'DUMP_DEVICES_LATE' | 'RESTORE_INIT' | 'POST_FORKING' | 'RESUME_DEVICES_LATE'>(
    hook: H, ...args: Parameters<Hooks[H]>
  ): void {
    this.run(hook, ...args);
  }

  /** register a one-shot wake-up for the next notify() */
  onNotify(fn: () => void): void {
    this.waiters.push(fn);
  }

  private fire(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
