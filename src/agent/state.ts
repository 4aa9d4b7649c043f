// The agent's state directory: its identity (node id, server, Ed25519 private key), the last report it
// queued (what the next delta is computed against), its report queue and its job records. Every file is
// written whole through a temp file and a rename, so a kill at any moment leaves either the old or the
// new content.

import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";

/** The default state directory, the one the systemd unit runs with. */
export { AGENT_STATE_DIR as DEFAULT_STATE_DIR } from "../os/agent-unit.ts";

export interface Identity {
  server: string;
  nodeId: string;
  publicKey: string;
  enrolledAt: string;
  interval: number;
  /** The name given at enrolment (--hostname), reported instead of the machine's own. */
  hostname?: string;
}

/** Where the queue and job records live: the state directory, or memory (the simulator's nodes). */
export interface Store {
  ensure(): void;
  readJson<T>(name: string): T | undefined;
  writeJson(name: string, value: unknown): Promise<void>;
  list(sub: string): string[];
  remove(name: string): void;
}

/**
 * A Store that keeps everything in memory, by reference (the queue never changes what it stored):
 * simulated nodes in benchmarks and tests, ten thousand of them in one process.
 */
export class MemoryStore implements Store {
  private readonly files = new Map<string, unknown>();
  ensure(): void {}
  readJson<T>(name: string): T | undefined {
    return this.files.get(name) as T | undefined;
  }
  async writeJson(name: string, value: unknown): Promise<void> {
    this.files.set(name, value);
  }
  list(sub: string): string[] {
    const prefix = `${sub}/`;
    return [...this.files.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }
  remove(name: string): void {
    this.files.delete(name);
  }
}

export class AgentState implements Store {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  ensure(): void {
    mkdirSync(this.path("queue"), { recursive: true, mode: 0o700 });
    mkdirSync(this.path("jobs"), { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
  }

  identity(): Identity | undefined {
    return this.readJson<Identity>("node.json");
  }

  requireIdentity(): Identity {
    const id = this.identity();
    if (!id || !existsSync(this.path("node.key")))
      throw new BerthError(
        `this agent is not enrolled (no ${this.path("node.json")}): run berth agent enroll`,
      );
    return id;
  }

  privateKeyPem(): string {
    return readFileSync(this.path("node.key"), "utf8");
  }

  async saveIdentity(id: Identity, privatePem: string): Promise<void> {
    this.ensure();
    await writeFileAtomic(this.path("node.key"), privatePem, 0o600);
    await this.writeJson("node.json", id);
  }

  readJson<T>(name: string): T | undefined {
    try {
      return JSON.parse(readFileSync(this.path(name), "utf8")) as T;
    } catch {
      return undefined;
    }
  }

  async writeJson(name: string, value: unknown, mode = 0o600): Promise<void> {
    await writeFileAtomic(this.path(name), `${JSON.stringify(value)}\n`, mode);
  }

  list(sub: string): string[] {
    try {
      return readdirSync(this.path(sub)).filter((f) => f.endsWith(".json") && !f.startsWith("."));
    } catch {
      return [];
    }
  }

  remove(name: string): void {
    rmSync(this.path(name), { force: true });
  }
}
