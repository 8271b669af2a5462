// Device numbers as userspace sees them (st_dev, st_rdev: glibc's dev_t packing), split into
// major and minor.
export const major = (dev: number): number => (((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff)) >>> 0;
export const minor = (dev: number): number => ((dev & 0xff) | ((dev >>> 12) & ~0xff)) >>> 0;
