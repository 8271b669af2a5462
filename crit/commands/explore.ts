// crit x DIR ps|fds|mems|rss (CRIT's text, byte for byte) and sk|tree|gpu (ours); --json on each.
import { ImageSet } from '../../images/imageset';
import { psRows, fdsRows, memsRows, rssRows } from '../../images/query/explore';
import { socketRows, treeRows, gpuRows } from '../../images/query/explore-more';
import { pyJson } from '../../images/json/pytext';
import { TextSink } from '../../images/json/document';
import { padL, padR, hex08 } from '../render/text';
import { stdoutFd } from '../io';

export class ExploreError extends Error {}

const EXPLORERS = ['ps', 'fds', 'mems', 'rss', 'sk', 'tree', 'gpu'];

export function explore(dir: string, what: string, opts: { json: boolean }): void {
  if (!EXPLORERS.includes(what)) throw new ExploreError(`unknown explorer '${what}' (choose from ${EXPLORERS.join(', ')})`);
  let set: ImageSet;
  try {
    set = new ImageSet(dir);
  } catch (e) {
    throw new ExploreError((e as Error).message);
  }
  const out = new TextSink(stdoutFd(), 'utf8');
  const line = (s: string) => out.write(s + '\n');
  try {
    switch (what) {
      case 'ps': {
        const rows = psRows(set);
        if (opts.json) return line(pyJson(rows.map((r) => ({ pid: r.pid, ppid: r.ppid, pgid: r.pgid, sid: r.sid, comm: r.comm, threads: r.threads, state: r.state, depth: r.depth })), true));
        line(`${padL('PID', 7)}${padL('PGID', 7)}${padL('SID', 7)}   COMM`);
        for (const r of rows) line(`${padL(r.pid, 7)}${padL(r.pgid, 7)}${padL(r.sid, 7)}   ${' '.repeat(4 * r.depth)}${r.comm}`);
        return;
      }
      case 'fds': {
        const tasks = fdsRows(set);
        if (opts.json) return line(pyJson(tasks, true));
        for (const t of tasks) {
          if (t.note) continue; // CRIT crashes on these; there is nothing to list
          line(String(t.pid));
          for (const f of t.fds) line(typeof f.fd === 'number' ? `\t${padL(f.fd, 7)}: ${f.desc}` : `\t${padL(f.fd, 7)}: ${f.desc}`);
        }
        return;
      }
      case 'mems': {
        const tasks = memsRows(set);
        if (opts.json) {
          return line(pyJson(tasks.map((t) => ({ pid: t.pid, note: t.note, exe: t.exe, vmas: t.vmas.map((v) => ({ start: v.start, end: v.end, prot: v.prot, desc: v.desc.trim() })) })), true));
        }
        for (const t of tasks) {
          if (t.note) continue;
          line(String(t.pid));
          line(`\t${padR('exe', 36)}    ${t.exe}`);
          for (const v of t.vmas) line(`\t${padR(`${hex08(v.start)}-${hex08(v.end)}`, 36)}${v.prot}${v.desc}`);
        }
        return;
      }
      case 'rss': {
        const tasks = rssRows(set);
        if (opts.json) {
          return line(pyJson(tasks.map((t) => ({ pid: t.pid, note: t.note, lines: t.lines.map((l) => ({ vaddr: l.vaddr, pages: l.pages, vmas: l.vmas.map((v) => (v ? { start: v.start, pages: v.pages, file: v.file } : 'same as above')) })) })), true));
        }
        for (const t of tasks) {
          if (t.note) continue;
          line(String(t.pid));
          for (const l of t.lines) {
            const left = `\t${l.vaddr.toString(16)} / ${padR(l.pages, 8)}`;
            let right = '';
            for (const v of l.vmas) {
              if (!v) right += ' ~';
              else right += ` ${hex08(v.start)} / ${padR(v.pages, 8)}` + (v.file !== undefined ? ' ' + v.file : '');
              right += '\n\t' + ' '.repeat(23);
            }
            line(padR(left, 24) + right);
          }
        }
        return;
      }
      case 'sk': {
        const rows = socketRows(set);
        if (opts.json) return line(pyJson(rows, true));
        for (const t of rows) {
          line(String(t.pid));
          for (const s of t.sockets) line(`\t${padL(s.fd, 7)}: ${s.summary}`);
        }
        return;
      }
      case 'tree': {
        const rows = treeRows(set);
        if (opts.json) return line(pyJson(rows, true));
        for (const r of rows) {
          const ind = '  '.repeat(r.depth);
          line(`${ind}${r.pid} ${r.comm} [${r.state}] pgid ${r.pgid} sid ${r.sid}${r.threads.length > 1 ? ` threads ${r.threads.join(',')}` : ''}`);
          if (r.argv) line(`${ind}  argv: ${r.argv.map((a) => JSON.stringify(a)).join(' ')}`);
          if (r.env) line(`${ind}  env:  ${r.env.length} variables${r.env.length ? ` (${r.env.slice(0, 3).map((a) => JSON.stringify(a)).join(' ')}${r.env.length > 3 ? ' ...' : ''})` : ''}`);
          if (r.memoryNote) line(`${ind}  (${r.memoryNote})`);
        }
        return;
      }
      case 'gpu': {
        const rows = gpuRows(set);
        if (opts.json) return line(pyJson(rows, true));
        if (!rows.length) return line('no amdgpu plugin files in this image set');
        for (const f of rows) {
          line(`${f.file}: ${f.kind}${f.gpuId !== undefined ? ` gpu 0x${f.gpuId.toString(16)}` : ''}${f.renderMinor !== undefined ? ` renderD${f.renderMinor}` : ''}, ${f.bos.length} buffer objects`);
          for (const b of f.bos) {
            line(`\t#${b.index} handle ${b.handle} size ${b.size} domains ${b.domains} addr 0x${b.addr.toString(16)}${b.imported ? ' (imported)' : ''} -> ${b.contents}`);
            for (const m of b.mappings) line(`\t\tva 0x${m.addr.toString(16)} +0x${m.size.toString(16)} offset 0x${m.offset.toString(16)} flags 0x${m.flags.toString(16)}`);
          }
        }
        return;
      }
    }
  } finally {
    out.flush();
    set.close();
  }
}
