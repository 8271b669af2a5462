// Synthetic images for every special handler and layout, with the exact bytes and JSON of the
// spec's test vectors (made with CRIU's own pycriu), and our additions beyond CRIT.
import { describe, it, expect } from 'vitest';
import { decodeBuffer, encodeFromString } from '../helpers/inproc';
import { encodeMessage } from '../../images/codec';
import { qpEncode, qpDecode } from '../../images/json/quopri';
import { encodeBytes } from '../../images/json/b64';
import { pyString } from '../../images/json/pytext';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const u64 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; };
const COMMON = 'IMG_COMMON';
const HEADS: Record<string, number> = { [COMMON]: 0x54564319, SERVICE: 0x55105940 };

function framed(type: string, msg: object): Buffer {
  const p = encodeMessage(type, msg as never);
  return Buffer.concat([u32(p.length), p]);
}

function image(magic: number, parts: Buffer[], head = HEADS[COMMON]): Buffer {
  return Buffer.concat([...(head ? [u32(head)] : []), u32(magic), ...parts]);
}

/** decode -> exact JSON, then JSON (plain and pretty) -> exactly the same bytes. */
function roundTrip(name: string, bytes: Buffer, plain?: string): { plain: string; pretty: string } {
  const p = decodeBuffer(bytes, name, 'plain');
  if (plain !== undefined) expect(p).toBe(plain);
  const q = decodeBuffer(bytes, name, 'pretty');
  expect(encodeFromString(p).equals(bytes)).toBe(true);
  expect(encodeFromString(q).equals(bytes)).toBe(true);
  return { plain: p, pretty: q };
}

describe('spec test vectors', () => {
  it('fs', () => {
    roundTrip('fs-100.img', hex('19435654 12394051 06000000 080110021812'), '{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "umask": 18}]}');
  });
  it('pstree with three entries', () => {
    roundTrip('pstree.img', hex('19435654 30302750 0a000000 0864 1000 1864 2001 2864 0c000000 0865 1064 1864 2001 2865 2866 0a000000 0867 1065 1867 2001 2867'),
      '{"magic": "PSTREE", "entries": [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 1, "threads": [100]}, {"pid": 101, "ppid": 100, "pgid": 100, "sid": 1, "threads": [101, 102]}, {"pid": 103, "ppid": 101, "pgid": 103, "sid": 1, "threads": [103]}]}');
  });
  it('pagemap: head then entries, nr_pages in field 5, flags by name when pretty', () => {
    const r = roundTrip('pagemap-100.img', hex('19435654 25400856 02000000 0864 0b000000 0880c08002 1000 2004 2802 0b000000 0880808102 1000 2005 2801 0e000000 0880c0ffffffff1f 1000 2006 2801'),
      '{"magic": "PAGEMAP", "entries": [{"pages_id": 100}, {"vaddr": 4202496, "compat_nr_pages": 0, "flags": 4, "nr_pages": 2}, {"vaddr": 4210688, "compat_nr_pages": 0, "flags": 5, "nr_pages": 1}, {"vaddr": 140737488347136, "compat_nr_pages": 0, "flags": 6, "nr_pages": 1}]}');
    expect(r.pretty).toContain('"vaddr": "0x7fffffffe000",\n            "compat_nr_pages": 0,\n            "flags": "PE_LAZY | PE_PRESENT"');
    expect(r.pretty).toContain('"flags": "PE_PARENT | PE_PRESENT"');
  });
  it('sk-queues: extra is MIME base64 of `length` bytes', () => {
    roundTrip('sk-queues.img', hex('19435654 26402656 04000000 0805 1003 616263 04000000 0806 1000'),
      '{"magic": "SK_QUEUES", "entries": [{"id_for": 5, "length": 3, "extra": "YWJj\\n"}, {"id_for": 6, "length": 0, "extra": ""}]}');
  });
  it('tcp-stream: inq then outq', () => {
    roundTrip('tcp-stream-1a.img', hex('19435654 06554651 0f000000 0803 1001 1805 2002 2807 3007 38b40b 494e51 4f55545151'),
      '{"magic": "TCP_STREAM", "entries": [{"inq_len": 3, "inq_seq": 1, "outq_len": 5, "outq_seq": 2, "opt_mask": 7, "snd_wscale": 7, "mss_clamp": 1460, "extra": {"inq": "SU5R\\n", "outq": "T1VUUVE=\\n"}}]}');
  });
  it('stats-dump uses the service head magic', () => {
    roundTrip('stats-dump', hex('40591055 06330957 12000000 0a10 0801 1002 1803 2004 2805 3006 3807 4800'),
      '{"magic": "STATS", "entries": [{"dump": {"freezing_time": 1, "frozen_time": 2, "memdump_time": 3, "memwrite_time": 4, "pages_scanned": 5, "pages_skipped_parent": 6, "pages_written": 7, "pages_lazy": 0}}]}');
  });
  it('irmap-cache: dev+odev prints major:minor when pretty', () => {
    const r = roundTrip('irmap-cache', hex('40591055 59400057 09000000 088110 1005 1a022f78'), '{"magic": "IRMAP_CACHE", "entries": [{"dev": 2049, "inode": 5, "path": "/x"}]}');
    expect(r.pretty).toContain('"dev": "8:1"');
  });
  it('inventory has no head magic', () => {
    roundTrip('inventory.img', hex('16313158 1a000000 0802 1001 1a0c080110011801200128023003 2001 2801 3000 5801'),
      '{"magic": "INVENTORY", "entries": [{"img_version": 2, "fdinfo_per_id": true, "root_ids": {"vm_id": 1, "files_id": 1, "fs_id": 1, "sighand_id": 1, "pid_ns_id": 2, "net_ns_id": 3}, "ns_per_id": true, "root_cg_set": 1, "lsmtype": "NO_LSM", "network_lock_method": 1}]}');
  });
});

const desc = (id: number) => ({ key: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 384, id });

describe('extra payloads', () => {
  it('ipcns-sem: u16 values padded to 8 bytes', () => {
    const bytes = image(0x59573019, [
      framed('ipc_sem_entry', { desc: desc(3), nsems: 3 }), hex('0100 0200 0300 0000'),
      framed('ipc_sem_entry', { desc: desc(4), nsems: 4 }), hex('0100 0200 0300 0400'),
    ]);
    const r = roundTrip('ipcns-sem-9.img', bytes);
    expect(r.plain).toContain('"nsems": 3, "extra": [1, 2, 3]}');
    expect(r.plain).toContain('"nsems": 4, "extra": [1, 2, 3, 4]}');
  });
  it('ipcns-msg: framed ipc_msg headers, data padded to 8', () => {
    const m1 = encodeMessage('ipc_msg', { mtype: 1, msize: 5 });
    const m2 = encodeMessage('ipc_msg', { mtype: 2, msize: 16 });
    const bytes = image(0x55453737, [
      framed('ipc_msg_entry', { desc: desc(7), qbytes: 16384, qnum: 2 }),
      u32(m1.length), Buffer.from(m1), Buffer.from('first'), Buffer.alloc(3),
      u32(m2.length), Buffer.from(m2), Buffer.from('second message!!'),
    ]);
    const r = roundTrip('ipcns-msg-9.img', bytes);
    expect(r.plain).toContain('"qnum": 2, "extra": [{"mtype": 1, "msize": 5}, "Zmlyc3Q=\\n", {"mtype": 2, "msize": 16}, "c2Vjb25kIG1lc3NhZ2UhIQ==\\n"]}');
  });
  it('ipcns-shm: nothing follows when in_pagemaps (CRIT would swallow the next entry)', () => {
    const bytes = image(0x46283044, [
      framed('ipc_shm_entry', { desc: desc(1), size: 4096, in_pagemaps: true }),
      framed('ipc_shm_entry', { desc: desc(2), size: 8192, in_pagemaps: true }),
    ]);
    const r = roundTrip('ipcns-shm-9.img', bytes);
    expect(JSON.parse(r.plain).entries).toHaveLength(2);
    expect(r.plain).toContain('"in_pagemaps": true, "extra": ""}');
  });
  it('ipcns-shm from old CRIU: `size` bytes padded to 4 (and we can encode it, CRIT cannot)', () => {
    const bytes = image(0x46283044, [framed('ipc_shm_entry', { desc: desc(1), size: 6 }), Buffer.from('abcdef'), Buffer.alloc(2)]);
    const r = roundTrip('ipcns-shm-9.img', bytes);
    expect(r.plain).toContain('"extra": "YWJjZGVm\\n"');
  });
  it('bpfmap-data: keys then values as one blob (CRIT cannot encode it)', () => {
    const bytes = image(0x64324033, [framed('bpfmap_data_entry', { map_id: 9, keys_bytes: 4, values_bytes: 8, count: 1 }), Buffer.from('KEY!VALUEVAL')]);
    const r = roundTrip('bpfmap-data.img', bytes);
    expect(r.plain).toContain(`"extra": ${pyString(encodeBytes(Buffer.from('KEY!VALUEVAL')))}`);
  });
  it('pipes-data and fifo-data: `bytes` bytes', () => {
    for (const [name, magic] of [['pipes-data.img', 0x56453709], ['fifo-data.img', 0x59333054]] as const) {
      const bytes = image(magic, [framed('pipe_data_entry', { pipe_id: 1, bytes: 13, size: 65536 }), Buffer.from('hello-through')]);
      expect(roundTrip(name, bytes).plain).toContain('"extra": "aGVsbG8tdGhyb3VnaA==\\n"');
    }
  });
  it('show --nopl replaces payloads by their size', async () => {
    const { decodeToString } = await import('../helpers/inproc');
    const fs = await import('fs');
    const bytes = image(0x56264026, [framed('sk_packet_entry', { id_for: 1, length: 1536 }), Buffer.alloc(1536)]);
    fs.writeFileSync('/tmp/crit-nopl-sk-queues.img', bytes);
    expect(decodeToString('/tmp/crit-nopl-sk-queues.img', 'pretty', true)).toContain('"extra": "... 1.5KB"');
    fs.unlinkSync('/tmp/crit-nopl-sk-queues.img');
  });
});

describe('ghost files', () => {
  it('unchunked: the rest of the file is the content', () => {
    const bytes = image(0x52583605, [framed('ghost_file_entry', { uid: 0, gid: 0, mode: 33188 }), Buffer.from('gone but open')]);
    expect(roundTrip('ghost-file-1f.img', bytes).plain).toBe(`{"magic": "GHOST_FILE", "entries": [{"uid": 0, "gid": 0, "mode": 33188, "extra": ${pyString(encodeBytes(Buffer.from('gone but open')))}}]}`);
  });
  it('chunked: chunk headers each followed by their data', () => {
    const bytes = image(0x52583605, [
      framed('ghost_file_entry', { uid: 0, gid: 0, mode: 33188, chunks: true, size: 20000 }),
      framed('ghost_chunk_entry', { len: 10, off: 0 }), Buffer.from('AAAAAAAAAA'),
      framed('ghost_chunk_entry', { len: 3, off: 16384 }), Buffer.from('xyz'),
    ]);
    const r = roundTrip('ghost-file-2.img', bytes);
    expect(r.plain).toContain('{"len": 10, "off": 0, "extra": "QUFBQUFBQUFBQQ==\\n"}');
  });
});

describe('kinds CRIT has no handler for', () => {
  it('SIGNAL (signal-s / signal-p), BINFMT_MISC and PIDFD decode and round-trip', () => {
    const si = Buffer.alloc(128, 7);
    roundTrip('signal-p-42.img', image(0x59255647, [framed('siginfo_entry', { siginfo: si })]));
    roundTrip('binfmt-misc.img', image(0x67343323, [framed('binfmt_misc_entry', { name: 'qemu-arm', enabled: true, interpreter: '/usr/bin/qemu-arm', magic: 'x7fELF' })]));
    const r = roundTrip('pidfd.img', image(0x54435556, [framed('pidfd_entry', { id: 3, ino: 77, flags: 0, nspid: 1234, fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 } })]));
    expect(r.plain).toContain('"magic": "PIDFD"');
  });
});

describe('amdgpu plugin files: 8-byte length header, no magic', () => {
  it('amdgpu-kfd, amdgpu-renderD and amdgpu-dmabuf hold one message', () => {
    const kfd = encodeMessage('criu_kfd', { pid: 10, num_of_gpus: 1, num_of_cpus: 2, num_of_bos: 1, bo_entries: [{ addr: 0x7f0000000000, size: 4096, offset: 0, alloc_flags: 1, gpu_id: 0x1234, handle: 5 }], num_of_objects: 0, shared_mem_size: 0, shared_mem_magic: 0, priv_data: Buffer.from('priv') });
    const r1 = roundTrip('amdgpu-kfd-7.img', Buffer.concat([u64(BigInt(kfd.length)), kfd]));
    expect(r1.plain).toContain('"magic": "AMDGPU_KFD"');
    const rn = encodeMessage('criu_render_node', { gpu_id: 0x1234, id: 7, drm_render_minor: 128, num_of_bos: 1, bo_entries: [{ addr: 0, size: 8192, offset: 0x100000000, alloc_flags: 4, alignment: 4096, preferred_domains: 4, handle: 1, is_import: 0, num_of_vms: 1, vm_entries: [{ addr: 0x800000000000n, size: 8192, offset: 0, flags: 14 }] }] });
    const r2 = roundTrip('amdgpu-renderD-7.img', Buffer.concat([u64(BigInt(rn.length)), rn]));
    expect(r2.plain).toContain('"addr": 140737488355328');
    const db = encodeMessage('criu_dmabuf_node', { gem_handle: 3 });
    expect(roundTrip('amdgpu-dmabuf_9.img', Buffer.concat([u64(BigInt(db.length)), db])).plain).toBe('{"magic": "AMDGPU_DMABUF", "entries": [{"gem_handle": 3}]}');
  });
  it('amdgpu-pages and amdgpu-drm-pages are raw contents; the drm header is kept, never trusted', () => {
    const data = Buffer.from('0123456789abcdef');
    roundTrip('amdgpu-pages-7-1234.img', Buffer.concat([u64(16n), data]));
    const r = roundTrip('amdgpu-drm-pages-7-128-0001.img', Buffer.concat([u64(0xdeadbeefcafef00dn), data]));
    expect(r.plain).toContain('"header": 16045690984503111693');
  });
});

describe('JSON mapping details', () => {
  it('uint64 max and negative int32 stay exact both ways', () => {
    const bytes = image(0x57113925, [framed('rlimit_entry', { cur: 0xffffffffffffffffn, max: 0xffffffffffffffffn })]);
    expect(roundTrip('rlimit-1.img', bytes).plain).toBe('{"magic": "RLIMIT", "entries": [{"cur": 18446744073709551615, "max": 18446744073709551615}]}');
    const lock = image(0x54323616, [framed('file_lock_entry', { flag: 1, type: 2, pid: -1, fd: 3, start: 0, len: -1 })]);
    expect(roundTrip('filelocks.img', lock).plain).toContain('"pid": -1');
  });
  it('unix socket names are quoted-printable in both modes', () => {
    const bytes = image(0x54373943, [framed('unix_sk_entry', { id: 1, ino: 5555, type: 1, state: 10, flags: 0, uflags: 0, backlog: 5, peer: 0, fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 }, opts: { so_sndbuf: 1, so_rcvbuf: 1, so_snd_tmo_sec: 0, so_snd_tmo_usec: 0, so_rcv_tmo_sec: 0, so_rcv_tmo_usec: 0 }, name: Buffer.from('\0abstract=\xff', 'latin1') })]);
    const r = roundTrip('unixsk.img', bytes);
    expect(r.plain).toContain('"name": "=00abstract=3D=FF"');
    expect(r.pretty).toContain('"type": "STREAM"');
    expect(r.pretty).toContain('"state": "LISTEN"');
  });
  it('quoted-printable follows Python quopri exactly', () => {
    expect(qpEncode(Buffer.from('a b '))).toBe('a b=20');
    expect(qpEncode(Buffer.from('.'))).toBe('=2E');
    expect(qpEncode(Buffer.from('\t'))).toBe('=09');
    expect(qpEncode(Buffer.alloc(80, 'x'))).toBe('x'.repeat(75) + '=\n' + 'xxxxx');
    expect(Buffer.from(qpDecode('x'.repeat(75) + '=\n' + 'xxxxx')).toString()).toBe('x'.repeat(80));
  });
  it('IP addresses: one word is IPv4, four are IPv6 (compressed), both parse back', () => {
    const fown = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
    const opts = { so_sndbuf: 1, so_rcvbuf: 1, so_snd_tmo_sec: 0, so_snd_tmo_usec: 0, so_rcv_tmo_sec: 0, so_rcv_tmo_usec: 0 };
    const base = { id: 5, ino: 6666, type: 1, proto: 6, state: 10, src_port: 80, dst_port: 0, flags: 0x800, backlog: 128, fown, opts };
    const v4 = image(0x56443851, [framed('inet_sk_entry', { ...base, family: 2, src_addr: [16777343], dst_addr: [0] })]);
    const r4 = roundTrip('inetsk.img', v4);
    expect(r4.pretty).toContain('"src_addr": [\n                "127.0.0.1"\n            ]');
    const v6 = image(0x56443851, [framed('inet_sk_entry', { ...base, family: 10, src_addr: [0, 0, 4294901760, 16777343], dst_addr: [0, 0, 0, 0] })]);
    const r6 = roundTrip('inetsk.img', v6);
    expect(r6.pretty).toContain('"::ffff:7f00:1"');
    expect(r6.pretty).toContain('"::"');
    expect(r6.pretty).toContain('"family": "INET6"');
  });
  it("task_state labels are CRIT's (3 'Zombie', 6 'Stopped', 2 a number)", () => {
    for (const [state, label] of [[1, '"Alive"'], [2, '2'], [3, '"Zombie"'], [6, '"Stopped"']] as const) {
      const core = { mtype: 1, tc: { task_state: state, exit_code: 0, personality: 0, flags: 0, blk_sigset: 0, comm: 'x' } };
      expect(roundTrip('core-1.img', image(0x55053847, [framed('core_entry', core)])).pretty).toContain(`"task_state": ${label}`);
    }
  });
  it('hex is inherited into sub-messages and overrides other marks; enums stay names', () => {
    const regs: Record<string, number | bigint> = {};
    for (const n of ['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di', 'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs']) regs[n] = 0;
    regs.ip = 0xffffffffff600000n;
    const ti = { clear_tid_addr: 0, gpregs: { ...regs, mode: 1 }, fpregs: { cwd: 0, swd: 0, twd: 0, fop: 0, rip: 0, rdp: 0, mxcsr: 0, mxcsr_mask: 0 } };
    const r = roundTrip('core-2.img', image(0x55053847, [framed('core_entry', { mtype: 1, thread_info: ti })]));
    expect(r.pretty).toContain('"ip": "0xffffffffff600000"');
    expect(r.pretty).toContain('"mode": "NATIVE"');
    expect(r.pretty).toContain('"cwd": 0');
  });
  it('strings are escaped as Python json does (ensure_ascii, lowercase \\u, DEL)', () => {
    expect(pyString('é\u007f\n"\\/😀')).toBe('"\\u00e9\\u007f\\n\\"\\\\/\\ud83d\\ude00"');
    const bytes = image(0x54473203, [framed('utsns_entry', { nodename: 'hôte', domainname: '(none)' })]);
    expect(roundTrip('utsns-1.img', bytes).plain).toContain('"nodename": "h\\u00f4te"');
  });
  it('base64 wraps at 76 characters like base64.encodebytes', () => {
    expect(encodeBytes(Buffer.alloc(60))).toBe('A'.repeat(76) + '\nAAAA\n');
    expect(encodeBytes(Buffer.alloc(0))).toBe('');
  });
  it('unknown fields from a newer CRIU are kept and written back in place', () => {
    // fs_entry with an extra field 9 (varint 7) between known fields on the wire order
    const p = hex('0801 1002 1812 4807');
    const bytes = Buffer.concat([u32(0x54564319), u32(0x51403912), u32(p.length), p]);
    const r = roundTrip('fs-7.img', bytes);
    expect(r.plain).toContain('"_unknown_fields": "SAc=\\n"');
  });
  it('an unknown enum number is kept as an unknown field, not printed', () => {
    const p = hex('0863'); // core_entry.mtype = 99
    const bytes = Buffer.concat([u32(0x54564319), u32(0x55053847), u32(p.length), p]);
    // mtype is required and its only value is unknown: the entry is refused, as CRIU would
    expect(() => decodeBuffer(bytes, 'core-3.img')).toThrow(/missing required field mtype/);
  });
  it('a magic-only file has no entries; v1.0 images (no head magic) decode too', () => {
    expect(decodeBuffer(hex('19435654 12394051'), 'fs-1.img')).toBe('{"magic": "FS", "entries": []}');
    expect(decodeBuffer(hex('12394051 06000000 080110021812'), 'fs-1.img')).toBe('{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "umask": 18}]}');
  });
  it('pretty encoders accept both forms: flags sum tokens, hex strings, labels, devices', () => {
    const json = '{"magic": "VMAS", "entries": [{"start": "0x1000", "end": 8192, "pgoff": 0, "shmid": 0, "prot": "PROT_READ | 0x2", "flags": "MAP_PRIVATE | MAP_ANON", "status": "", "fd": -1}]}';
    const out = encodeFromString(json);
    const back = decodeBuffer(out, 'vmas-1.img');
    expect(back).toBe('{"magic": "VMAS", "entries": [{"start": 4096, "end": 8192, "pgoff": 0, "shmid": 0, "prot": 3, "flags": 34, "status": 0, "fd": -1}]}');
  });
});

describe('encode of many entries (the batched fast path and its fallbacks)', () => {
  it('a long pagemap with one address beyond 2^53 stays exact; nested separators fall back', () => {
    const entries = ['{"pages_id": 1}'];
    for (let i = 0; i < 30000; i++) {
      const vaddr = i === 17000 ? '18446744073709547520' : String(0x7f0000000000 + i * 8192);
      entries.push(`{"vaddr": ${vaddr}, "compat_nr_pages": 0, "flags": ${i % 3 ? 4 : 6}, "nr_pages": 1}`);
    }
    const plain = `{"magic": "PAGEMAP", "entries": [${entries.join(', ')}]}`;
    const bin = encodeFromString(plain);
    expect(decodeBuffer(bin, 'pagemap-1.img', 'plain')).toBe(plain);
    const pretty = decodeBuffer(bin, 'pagemap-1.img', 'pretty');
    expect(encodeFromString(pretty).equals(bin)).toBe(true);
    // entries whose repeated sub-messages look like entry separators ("}, {") inside an entry
    const fown = '{"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}';
    const tfd = (fd: number) => `{"id": ${fd}, "tfd": ${fd}, "events": 1, "data": ${fd}}`;
    const files = Array.from({ length: 3000 }, (_, i) => `{"type": "EVENTPOLL", "id": ${i + 1}, "epfd": {"id": ${i + 1}, "flags": 2, "fown": ${fown}, "tfd": [${tfd(3)}, ${tfd(4)}]}}`);
    const doc = `{"magic": "FILES", "entries": [${files.join(', ')}]}`;
    expect(decodeBuffer(encodeFromString(doc), 'files.img', 'plain')).toBe(doc);
  });
});
