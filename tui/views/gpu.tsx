// GPU buffer objects per render node / KFD file (gpuRows), with their VA mappings; Enter shows
// a buffer's saved contents in the hex pane.
import * as React from 'react';
import { ListScreen, ListState, ViewProps, Row, pad, size } from '../ui';
import { gpu } from '../data';
import type { GpuBo, GpuFile } from '../../images/query/explore-more';

type Item = { file: GpuFile; bo?: GpuBo };

export function GpuView(p: ViewProps<ListState>): React.ReactElement {
  const g = gpu(p.ctx.set);
  const items: Item[] = React.useMemo(() => {
    if (g instanceof Error) return [];
    const out: Item[] = [];
    for (const f of g) {
      out.push({ file: f });
      for (const bo of f.bos) out.push({ file: f, bo });
    }
    return out;
  }, [g]);
  const hx = (v: bigint | number) => '0x' + BigInt(v).toString(16);
  const row = (i: number): Row => {
    const { file, bo } = items[i];
    if (!bo) return { text: `${file.file}  ${file.kind}${file.gpuId !== undefined ? ` gpu ${file.gpuId.toString(16)}` : ''}${file.renderMinor !== undefined ? ` renderD${file.renderMinor}` : ''}  ${file.bos.length} BOs`, tone: 'header' };
    const maps = bo.mappings.length ? bo.mappings.map((m) => `${hx(m.addr)}+${size(m.size)}`).join(' ') : '';
    return {
      text: `  ${String(bo.index).padStart(4)} ${String(bo.handle).padStart(6)} ${size(bo.size).padStart(9)} ${pad(bo.domains, 10)} ${hx(bo.addr).padStart(14)} ${bo.imported ? 'imported ' : ''}${maps ? 'va ' + maps + '  ' : ''}${bo.contents}`,
      tone: bo.contentFile ? undefined : 'dim',
    };
  };
  return (
    <ListScreen
      {...p}
      header={`  ${'BO'.padStart(4)} ${'HANDLE'.padStart(6)} ${'SIZE'.padStart(9)} ${pad('DOMAINS', 10)} ${'ADDR'.padStart(14)} MAPPINGS / CONTENTS`}
      count={items.length}
      rowsKey={items}
      row={row}
      empty={g instanceof Error ? `GPU images unreadable: ${g.message}` : 'no GPU buffers in this set (no amdgpu-* images)'}
      open={(i) => {
        const { file, bo } = items[i];
        if (!bo) return p.ctx.open({ v: 'image', name: file.file });
        if (!bo.contentFile) return p.ctx.status(`BO ${bo.index}: ${bo.contents}`);
        p.ctx.open({ v: 'hexfile', file: p.ctx.set.path(bo.contentFile), offset: bo.contentOffset ?? 0, size: Number(bo.size), title: `BO ${bo.index} of ${file.file} (${bo.contentFile})` });
      }}
    />
  );
}
