// The addon's two calls for the real amdgpu backend, on kernel objects this machine has without a
// GPU: ioctlPointers against SIOCGIFCONF (a socket ioctl whose struct points at a caller array,
// sized with the same two-call probe LIST_HANDLES uses) and PAGEMAP_SCAN; mmapCopy against a
// memfd and /dev/zero. RealSys is driven through the same paths the plugin uses.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import { native, isNativeError } from '../../native';
import { RealSys } from '../../engine/plugins/amdgpu/real';
import { SysError } from '../../engine/plugins/amdgpu/backend';

const SIOCGIFCONF = 0x8912;
const IFREQ = 40; // struct ifreq on x86-64
const SOCK_DGRAM = 2;
const PAGEMAP_SCAN = 0xc0606610; // _IOWR('f', 16, struct pm_scan_arg)
const PAGE_IS_FILE = 1 << 2;

/** IPv4 interfaces as the kernel lists them, read through ioctlPointers */
function ifconf(call: (fd: number, buf: Buffer, target: Buffer) => void): { name: string; addr: string }[] {
  const s = native().unixSocket(SOCK_DGRAM);
  try {
    const probe = Buffer.alloc(16); // ifc_len = 0, ifc_buf = NULL: the kernel says how much it needs
    native().ioctl(s, SIOCGIFCONF, probe);
    const need = probe.readInt32LE(0);
    expect(need % IFREQ).toBe(0);
    const target = Buffer.alloc(need);
    const arg = Buffer.alloc(16);
    arg.writeInt32LE(need, 0);
    call(s, arg, target);
    expect(arg.readBigUInt64LE(8)).toBe(0n); // the pointer field is the caller's again
    const got = arg.readInt32LE(0);
    return Array.from({ length: got / IFREQ }, (_, i) => {
      const o = i * IFREQ;
      const name = target.subarray(o, o + 16).toString('latin1').replace(/\0.*$/s, '');
      return { name, addr: [...target.subarray(o + 20, o + 24)].join('.') };
    });
  } finally {
    native().close(s);
  }
}

const ipv4 = () => Object.entries(os.networkInterfaces()).flatMap(([name, as]) => (as ?? []).filter((a) => a.family === 'IPv4').map((a) => ({ name, addr: a.address })));
const byName = (a: { name: string; addr: string }, b: { name: string; addr: string }) => (a.name + a.addr < b.name + b.addr ? -1 : 1);

describe('native ioctlPointers', () => {
  it('SIOCGIFCONF: the kernel fills the array the struct points at, and the count comes back', () => {
    const got = ifconf((fd, arg, target) => native().ioctlPointers(fd, SIOCGIFCONF, arg, [{ at: 8, target }]));
    expect(got.length).toBeGreaterThan(0);
    expect([...got].sort(byName)).toEqual(ipv4().sort(byName));
  });

  it('RealSys.ioctl routes a struct with pointer fields through it (the DRM path)', () => {
    const got = ifconf((fd, buf, target) => new RealSys().ioctl(fd, SIOCGIFCONF, { buf, ptrs: [{ at: 8, target }] }));
    expect([...got].sort(byName)).toEqual(ipv4().sort(byName));
  });

  it('PAGEMAP_SCAN: output fields of the struct and of the pointed-to array, 64-bit addresses intact', () => {
    const maps = fs.readFileSync('/proc/self/maps', 'utf8').split('\n');
    const text = maps.map((l) => /^([0-9a-f]+)-([0-9a-f]+) r-xp \S+ \S+ [1-9]\d* +(\/\S+)$/.exec(l)).find((m) => m && m[3].endsWith('/node'));
    expect(text).toBeTruthy();
    const start = BigInt('0x' + text![1]), end = BigInt('0x' + text![2]);
    const fd = fs.openSync('/proc/self/pagemap', 'r');
    try {
      const arg = Buffer.alloc(96);
      const vec = Buffer.alloc(24 * 4);
      arg.writeBigUInt64LE(96n, 0);
      arg.writeBigUInt64LE(start, 16);
      arg.writeBigUInt64LE(end, 24);
      arg.writeBigUInt64LE(4n, 48); // vec_len
      arg.writeBigUInt64LE(BigInt(PAGE_IS_FILE), 80); // any of: file-backed
      arg.writeBigUInt64LE(BigInt(PAGE_IS_FILE), 88); // report that category
      const n = native().ioctlPointers(fd, PAGEMAP_SCAN, arg, [{ at: 40, target: vec }]);
      expect(n).toBe(1);
      expect(vec.readBigUInt64LE(0)).toBe(start);
      expect(vec.readBigUInt64LE(8)).toBe(end);
      expect(vec.readBigUInt64LE(16)).toBe(BigInt(PAGE_IS_FILE));
      expect(arg.readBigUInt64LE(32)).toBe(end); // walk_end, written by the kernel into the struct
      expect(arg.readBigUInt64LE(40)).toBe(0n);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('errors carry errno, code and the call; bad pointer offsets are refused before the call', () => {
    const s = native().unixSocket(SOCK_DGRAM);
    native().close(s);
    const t = Buffer.alloc(40);
    let err: unknown;
    try { native().ioctlPointers(s, SIOCGIFCONF, Buffer.alloc(16), [{ at: 8, target: t }]); } catch (e) { err = e; }
    expect(isNativeError(err) && err.code === 'EBADF' && err.errno === 9 && err.syscall === 'ioctl').toBe(true);
    const f = fs.openSync('/proc/self/status', 'r');
    try {
      expect(() => native().ioctlPointers(f, SIOCGIFCONF, Buffer.alloc(16), [{ at: 8, target: t }])).toThrow(/^ioctl: Inappropriate ioctl for device$/);
      expect(() => native().ioctlPointers(f, SIOCGIFCONF, Buffer.alloc(16), [{ at: 9, target: t }])).toThrow(/pointer field at 9 is outside the 16-byte struct/);
      expect(() => new RealSys().ioctl(f, SIOCGIFCONF, { buf: Buffer.alloc(16), ptrs: [{ at: 8, target: t }] })).toThrow(SysError);
      expect(() => new RealSys().ioctl(f, SIOCGIFCONF, { buf: Buffer.alloc(16), ptrs: [{ at: 8, target: t }] })).toThrow(/^ioctl 0x8912: ENOTTY$/);
    } finally {
      fs.closeSync(f);
    }
  });
});

describe('native mmapCopy', () => {
  const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + seed + (i >> 12)) & 0xff));

  it('memfd: reads and writes at page-aligned and unaligned offsets through a shared mapping', () => {
    const fd = native().memfdCreate('gpu-test', 1);
    try {
      const data = pattern(3 * 4096, 7);
      fs.writeSync(fd, data, 0, data.length, 0);
      const out = Buffer.alloc(5000);
      native().mmapCopy(fd, 4096n, 5000, out, false);
      expect(out.equals(data.subarray(4096, 9096))).toBe(true);
      native().mmapCopy(fd, 100, 5000, out, false);
      expect(out.equals(data.subarray(100, 5100))).toBe(true);
      const w = pattern(6000, 99);
      native().mmapCopy(fd, 4000n, 6000, w, true);
      const back = Buffer.alloc(3 * 4096);
      fs.readSync(fd, back, 0, back.length, 0);
      expect(back.subarray(4000, 10000).equals(w)).toBe(true);
      expect(back.subarray(0, 4000).equals(data.subarray(0, 4000))).toBe(true);
      expect(back.subarray(10000).equals(data.subarray(10000))).toBe(true);
      // RealSys, as the plugin copies BO contents
      const sys = new RealSys();
      expect(sys.readMapped(fd, 4000n, 6000).equals(w)).toBe(true);
      sys.writeMapped(fd, 8192n, pattern(4096, 3));
      expect(sys.readMapped(fd, 8192n, 4096).equals(pattern(4096, 3))).toBe(true);
      // past the end: refused, not SIGBUS
      expect(() => native().mmapCopy(fd, 8192n, 8192, Buffer.alloc(8192), false)).toThrow(/^mmap: No such device or address$/);
      expect(() => sys.readMapped(fd, 3n * 4096n, 1)).toThrow(/^mmap fd \d+ at 0x3000: ENXIO$/);
      expect(() => native().mmapCopy(fd, 0n, 10, Buffer.alloc(5), false)).toThrow(/length 10 is more than the buffer's 5 bytes/);
    } finally {
      native().close(fd);
    }
  });

  it('a 64-bit offset (DRM fake offsets start at 4 GiB) reaches the right bytes of a sparse memfd', () => {
    const fd = native().memfdCreate('gpu-test-big', 1);
    try {
      const at = (1n << 32n) + 4096n + 100n;
      fs.ftruncateSync(fd, 2 ** 32 + 4 * 4096);
      const w = pattern(5000, 42);
      native().mmapCopy(fd, at, w.length, w, true);
      const back = Buffer.alloc(5000);
      fs.readSync(fd, back, 0, back.length, Number(at));
      expect(back.equals(w)).toBe(true);
      const r = Buffer.alloc(5100, 0xff);
      native().mmapCopy(fd, at - 100n, 5100, r, false);
      expect(r.subarray(0, 100).every((x) => x === 0) && r.subarray(100).equals(w)).toBe(true);
    } finally {
      native().close(fd);
    }
  });

  it('/dev/zero (a mappable character device, like a render node): reads zeros; a read-only fd refuses writes', () => {
    const fd = fs.openSync('/dev/zero', 'r+');
    const ro = fs.openSync('/dev/zero', 'r');
    try {
      const b = Buffer.alloc(10000, 0xff);
      native().mmapCopy(fd, 100n, 10000, b, false);
      expect(b.every((x) => x === 0)).toBe(true);
      native().mmapCopy(fd, 0n, 4096, Buffer.alloc(4096, 1), true);
      let err: unknown;
      try { native().mmapCopy(ro, 0n, 4096, Buffer.alloc(4096, 1), true); } catch (e) { err = e; }
      expect(isNativeError(err) && err.code === 'EACCES' && err.syscall === 'mmap').toBe(true);
    } finally {
      fs.closeSync(fd);
      fs.closeSync(ro);
    }
    expect(() => native().mmapCopy(fd, 0n, 16, Buffer.alloc(16), false)).toThrow(/^fstat: Bad file descriptor$/);
  });
});
