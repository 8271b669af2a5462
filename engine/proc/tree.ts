// Task discovery: threads of a process and the process tree below a root.
import * as fs from 'fs';
import { readProc } from './read';
import { EngineError } from '../errors';

export function listThreads(pid: number): number[] {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
  } catch {
    throw new EngineError(`task ${pid} exited during the dump`, 'ESRCH');
  }
}

/** Children of every thread of pid (/proc/PID/task/TID/children), in order. */
export function listChildren(pid: number): number[] {
  const out: number[] = [];
  for (const tid of listThreads(pid)) {
    let text = '';
    try {
      text = readProc(pid, 'task', String(tid), 'children');
    } catch {
      continue; // the thread exited; its children were reparented to the leader
    }
    for (const c of text.trim().split(/\s+/)) if (c) out.push(Number(c));
  }
  return out;
}
