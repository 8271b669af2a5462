// Search over big synthetic memory: every planted needle found exactly once, including ones
// that straddle the reader's internal block boundaries, by bytes and by regex.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeImage } from '../../images/files';
import { ImageSet } from '../../images/imageset';
import { searchMemory, memoryStrings } from '../../images/query/search';

describe('searchMemory', () => {
  it('finds needles across 8 MiB block boundaries once each, with context', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-search-'));
    try {
      const size = 20 << 20;
      const start = 0x7f0000000000;
      const pid = 7;
      writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid, ppid: 0, pgid: pid, sid: pid, threads: [pid] } }]);
      writeImage(path.join(dir, `mm-${pid}.img`), 'MM', [{ msg: { mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0, mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1, vmas: [{ start, end: start + size, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 }] } }]);
      const entries = [{ msg: { pages_id: 1 } as Record<string, unknown> }];
      for (let p = 0; p < size / 4096; p += 256) entries.push({ msg: { vaddr: start + p * 4096, compat_nr_pages: 0, flags: 4, nr_pages: 256 } });
      writeImage(path.join(dir, `pagemap-${pid}.img`), 'PAGEMAP', entries);
      const data = Buffer.alloc(size, 0x2e);
      const at = [0, 4093, (8 << 20) - 5, (8 << 20) - 40, 16 << 20, size - 6];
      at.sort((a, b) => a - b);
      for (const a of at) data.write('NEEDLE', a);
      fs.writeFileSync(path.join(dir, 'pages-1.img'), data);
      const set = new ImageSet(dir);
      const mem = set.memory(pid);
      const hits = [...searchMemory(mem, { kind: 'bytes', bytes: Buffer.from('NEEDLE') }, 4)];
      expect(hits.map((h) => Number(h.addr - BigInt(start)))).toEqual(at);
      expect(Buffer.from(hits[2].context).toString()).toBe('....NEEDLE....');
      const re = [...searchMemory(mem, { kind: 'regex', re: /NEE+DLE/ })];
      expect(re.map((h) => Number(h.addr - BigInt(start)))).toEqual(at);
      const strs = [...memoryStrings(mem, 6)];
      expect(strs.length).toBe(1); // dots and needles form one long printable run
      set.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
