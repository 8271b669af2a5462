// crit coredump DIR [-p PID] -o OUTDIR: an ELF core file per task (core.PID) for gdb and
// friends. One line per core on stdout; what had to be written as zeros goes to stderr as
// warnings (exit status 0: the core is still usable).
import { ImageSet } from '../../images/imageset';
import { writeCores, CoreResult, CoredumpError } from '../../images/coredump/write';

export { CoredumpError };

export function coredump(dir: string, opts: { pid?: string; out?: string; pageSize?: number }): void {
  if (!opts.out) throw new CoredumpError('-o OUTDIR is required (where core.PID files are written)');
  let pid: number | undefined;
  if (opts.pid !== undefined) {
    pid = Number(opts.pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new CoredumpError(`-p: '${opts.pid}' is not a pid`);
  }
  let set: ImageSet;
  try {
    set = new ImageSet(dir, { pageSize: opts.pageSize });
  } catch (e) {
    throw new CoredumpError((e as Error).message);
  }
  const line = (r: CoreResult) => {
    for (const w of r.warnings) process.stderr.write(`crit: warning: ${w}\n`);
    const mib = (n: number) => (n / 1048576).toFixed(1);
    process.stdout.write(`${r.file}: ${r.arch}, ${r.threads.length} thread${r.threads.length === 1 ? '' : 's'}, ${r.segments} segments, ` +
      `${mib(r.size)} MiB (${mib(r.fromImage)} MiB from the image, ${mib(r.fromFiles)} MiB from mapped files)\n`);
  };
  try {
    const { skipped } = writeCores(set, opts.out, { pid, onCore: line });
    for (const s of skipped) process.stderr.write(`crit: note: ${s}\n`);
  } finally {
    set.close();
  }
}
