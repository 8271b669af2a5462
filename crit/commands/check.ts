// crit check DIR [--json]: one line per problem (file: at byte N, entry K: what); exit 0 when
// the set is clean, 1 when anything is wrong.
import { checkSet, problemLine, CheckError } from '../../images/query/check';
import { pyJson } from '../../images/json/pytext';
import { TextSink } from '../../images/json/document';
import { stdoutFd } from '../io';

export { CheckError };

export function check(dir: string, opts: { json?: boolean; pageSize?: number }): number {
  const r = checkSet(dir, { pageSize: opts.pageSize });
  const errors = r.problems.filter((p) => p.severity === 'error').length;
  const out = new TextSink(stdoutFd());
  if (opts.json) {
    out.write(pyJson({ dir: r.dir, ok: errors === 0, errors, files: r.files, problems: r.problems }, true) + '\n');
  } else {
    for (const p of r.problems) out.write(problemLine(dir, p) + '\n');
    out.write(errors ? `${errors} problem${errors === 1 ? '' : 's'} in ${r.files} images\n` : `${dir}: ${r.files} images, no problems found\n`);
  }
  out.flush();
  return errors ? 1 : 0;
}
