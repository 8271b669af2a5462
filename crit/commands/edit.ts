// crit edit IMAGE --set PATH=VALUE ... [-o OUT]: prints what changed, one line per --set.
import { editImage, parseAssignment, EditError } from '../../images/query/edit';
import { TextSink } from '../../images/json/document';
import { stdoutFd } from '../io';

export { EditError };

export function edit(file: string, sets: string[], out: string | undefined): void {
  const assignments = sets.map(parseAssignment);
  const r = editImage(file, assignments, out);
  const o = new TextSink(stdoutFd());
  for (const e of r.edits) o.write(`${e.path}: ${e.oldText ?? '(absent)'} -> ${e.newText ?? '(removed)'}\n`);
  o.write(`${r.out}: ${r.reencoded.length} entr${r.reencoded.length === 1 ? 'y' : 'ies'} re-encoded, every other byte copied\n`);
  o.flush();
}
