// The set at a glance: inventory, tasks, pages, GPU buffers, check findings, then every file
// of the directory with its size and (decoded when it scrolls into view) kind and entry count.
import * as React from 'react';
import * as path from 'path';
import { Box, Text } from '../ink';
import { ListScreen, ListState, ViewProps, Row, tone, size, pad, clip } from '../ui';
import { fileRows, imageInfo, processes, pagesSummary, gpu, checkReport } from '../data';

export function summaryLines(p: ViewProps<ListState>): { text: string; tone?: 'accent' | 'dim' | 'error' | 'warn' | 'ok' }[] {
  const set = p.ctx.set;
  const out: { text: string; tone?: 'accent' | 'dim' | 'error' | 'warn' | 'ok' }[] = [];
  let inv = 'inventory.img: missing';
  try {
    const i = set.inventory();
    inv = `images v${i.img_version ?? '?'}  lsm ${i.lsmtype ?? '?'}${i.dump_criu_run_id ? `  run ${String(i.dump_criu_run_id).slice(0, 8)}` : ''}${set.parent() ? '  parent: ' + path.basename(set.parent()!.dir) : ''}`;
  } catch (e) {
    inv = `inventory: ${(e as Error).message.replace(set.dir + '/', '')}`;
  }
  out.push({ text: `${set.dir}`, tone: 'accent' });
  out.push({ text: inv });
  const ps = processes(set);
  const threads = ps.reduce((n, r) => n + Math.max(1, r.threads.length), 0);
  const comms = [...new Set(ps.map((r) => r.comm))].slice(0, 4).join(', ');
  out.push({ text: `tasks ${ps.length}  threads ${threads}${comms ? `  (${comms}${ps.length > 4 ? ', …' : ''})` : ''}` });
  const pg = pagesSummary(set, false);
  if (!pg) out.push({ text: 'pages …', tone: 'dim' });
  else {
    const expect = pg.stored * set.pageSize;
    const short = pg.stored && pg.fileBytes < expect ? `, pages files hold ${size(pg.fileBytes)} of ${size(expect)}` : '';
    out.push({ text: `pages ${pg.stored} stored (${size(expect)})${pg.inParent ? `, ${pg.inParent} in parent` : ''}${pg.lazy ? `, ${pg.lazy} lazy` : ''}${short}`, tone: short ? 'warn' : undefined });
  }
  const g = gpu(set);
  if (g instanceof Error) out.push({ text: `gpu: ${g.message}`, tone: 'error' });
  else {
    const bos = g.reduce((n, f) => n + f.bos.length, 0);
    out.push({ text: bos ? `GPU ${g.length} files, ${bos} buffer objects (4 or :gpu)` : 'GPU none' });
  }
  const ch = checkReport(set, false);
  if (ch === undefined) out.push({ text: 'check: running…', tone: 'dim' });
  else if (ch instanceof Error) out.push({ text: `check: ${ch.message}`, tone: 'error' });
  else {
    const errors = ch.problems.filter((x) => x.severity === 'error');
    const notes = ch.problems.length - errors.length;
    const first = errors[0] ?? ch.problems[0];
    if (!ch.problems.length) out.push({ text: `check: ${ch.files} files, no problems`, tone: 'ok' });
    else out.push({ text: `check: ${errors.length} problem${errors.length === 1 ? '' : 's'}, ${notes} note${notes === 1 ? '' : 's'} (:check): ${first.file}: ${first.what}`, tone: errors.length ? 'error' : 'warn' });
  }
  return out;
}

export function OverviewView(p: ViewProps<ListState>): React.ReactElement {
  const set = p.ctx.set;
  const files = fileRows(set);
  // the first frame decodes only small images; page counts, large images and crit check (which
  // reads every file) follow once it is on screen
  const [stage, setStage] = React.useState(() => (checkReport(set, false) !== undefined ? 2 : 0));
  React.useEffect(() => {
    if (stage >= 2) return;
    const t = setTimeout(() => {
      if (stage === 0) pagesSummary(set);
      else checkReport(set);
      setStage(stage + 1);
    }, 15);
    return () => clearTimeout(t);
  }, [set, stage]);
  const lines = React.useMemo(() => summaryLines(p), [set, stage]); // eslint-disable-line react-hooks/exhaustive-deps
  const above = (
    <Box flexDirection="column">
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate" {...tone(l.tone, p.ctx.color)}>{clip(l.text, p.width)}</Text>
      ))}
    </Box>
  );
  const nameW = Math.max(20, Math.min(40, p.width - 46));
  const row = (i: number): Row => {
    const f = files[i];
    let kind = '';
    let entries = '';
    let t: Row['tone'];
    if (f.raw) kind = f.raw;
    else {
      const inf = imageInfo(set, f.name, stage > 0 || f.size < 64 * 1024);
      if (!inf) kind = '…';
      else if (inf.error) {
        kind = 'DAMAGED: ' + inf.error;
        t = 'error';
      } else {
        kind = inf.magic ?? '';
        entries = String(inf.entries);
      }
    }
    return { text: `${pad(f.name, nameW)} ${pad(f.dir ? '' : size(f.size), 10)} ${entries.padStart(7)}  ${kind}`, tone: t };
  };
  return (
    <ListScreen
      {...p}
      header={`${pad('file', nameW)} ${pad('size', 10)} ${'entries'.padStart(7)}  kind`}
      count={files.length}
      rowsKey={files}
      row={row}
      above={above}
      aboveHeight={lines.length}
      open={(i) => {
        const f = files[i];
        if (f.dir) p.ctx.status(`${f.name} is a directory`);
        else if (f.raw) p.ctx.status(`${f.name}: ${f.raw}; its bytes are reached through the memory x-ray (:mem) or :gpu`);
        else p.ctx.open({ v: 'image', name: f.name });
      }}
    />
  );
}
