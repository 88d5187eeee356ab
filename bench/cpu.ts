import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** Which processes count as which component. */
export interface CpuTargets {
  /** Components made of known processes (resolved once: they live as long as the stack). */
  pids: Record<string, number[]>;
  /** Components identified by process name anywhere on the machine (postgres backends come and go). */
  byName: Record<string, string>;
}

/** CPU milliseconds consumed so far, by component; this process's own total is under `process`. */
export type CpuSnapshot = Record<string, number>;

interface ProcStat {
  ppid: number;
  comm: string;
  /** utime + stime + cutime + cstime, in ms: exited and reaped children (e.g. Postgres backends) count too. */
  cpuMs: number;
}

// /proc reports times in USER_HZ ticks, which Linux fixes at 100 for user space on every architecture.
const MS_PER_TICK = 10;

function readProcs(): Map<number, ProcStat> | null {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return null;
  }
  const procs = new Map<number, ProcStat>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited between readdir and read
    }
    // "pid (comm) state ppid …": comm may contain spaces and parentheses, so split after the last ")".
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
    procs.set(Number(entry), { ppid: Number(fields[1] ?? 0), comm, cpuMs: ticks * MS_PER_TICK });
  }
  return procs;
}

/** The process and all its descendants, with their names; empty where /proc is unavailable. */
export function processTree(root: number): { pid: number; comm: string }[] {
  const procs = readProcs();
  if (!procs) return [];
  const children = new Map<number, number[]>();
  for (const [pid, p] of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  const tree: { pid: number; comm: string }[] = [];
  const queue = [root];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    const p = procs.get(pid);
    if (p) tree.push({ pid, comm: p.comm });
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** The process among `candidates` that listens on TCP `port` (IPv4), found through socket inodes. */
export function listeningPid(port: number, candidates: number[]): number | null {
  const inodes = new Set<string>();
  try {
    for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; column 9 is the inode.
      if (cols[1]?.endsWith(`:${port.toString(16).toUpperCase().padStart(4, "0")}`) && cols[3] === "0A" && cols[9]) inodes.add(cols[9]);
    }
  } catch {
    return null;
  }
  for (const pid of candidates) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (inodes.has(link.slice("socket:[".length, -1))) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return null;
}

/** Reads the CPU time of every target; null where /proc is unavailable (not Linux). */
export function sampleCpu(targets: CpuTargets): CpuSnapshot | null {
  const procs = readProcs();
  if (!procs) return null;
  const usage = process.cpuUsage();
  const snapshot: CpuSnapshot = { process: (usage.user + usage.system) / 1000 };
  for (const [name, pids] of Object.entries(targets.pids)) {
    snapshot[name] = pids.reduce((sum, pid) => sum + (procs.get(pid)?.cpuMs ?? 0), 0);
  }
  for (const [name, comm] of Object.entries(targets.byName)) {
    let total = 0;
    for (const p of procs.values()) if (p.comm === comm) total += p.cpuMs;
    snapshot[name] = total;
  }
  return snapshot;
}

/** after − before, per component. */
export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): CpuSnapshot {
  const delta: CpuSnapshot = {};
  for (const [name, value] of Object.entries(after)) delta[name] = Math.max(0, value - (before[name] ?? 0));
  return delta;
}
