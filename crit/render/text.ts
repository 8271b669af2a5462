// printf-style padding as Python's % operator does it (the explorers' output must be byte-exact).

export function padL(s: string | number | bigint, w: number): string {
  return String(s).padStart(w);
}

export function padR(s: string | number | bigint, w: number): string {
  return String(s).padEnd(w);
}

export function hex08(v: bigint | number): string {
  return v.toString(16).padStart(8, '0');
}
