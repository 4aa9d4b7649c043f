// A small typed client for the Docker Engine API over its Unix socket, shared by every part that talks
// to the local engine (scan and harden read it, images load into it, the agent reports from it).
// Hand-written on node:http: the maintained npm clients (dockerode and its docker-modem) pull in ssh2
// and a dozen transitive packages for the few calls Berth makes, and a plain request over the socket is
// what they do underneath.

import { existsSync } from "node:fs";
import { request } from "node:http";
import type { Readable } from "node:stream";
import { BerthError } from "./errors.ts";

/** The engine's socket: $DOCKER_HOST when it is a unix:// address, else Docker's default. */
export function dockerSocket(): string {
  const host = process.env.DOCKER_HOST;
  return host?.startsWith("unix://") ? host.slice(7) : "/var/run/docker.sock";
}

/** The parts of `docker inspect` (container) that Berth reads. */
export interface ContainerInfo {
  Id: string;
  Name: string;
  Image?: string;
  Created?: string;
  Config: {
    User?: string;
    Image?: string;
    Env?: string[];
    Labels?: Record<string, string> | null;
    Healthcheck?: { Test?: string[] };
  };
  State?: { Running?: boolean; Status?: string; StartedAt?: string; Health?: { Status?: string } };
  HostConfig: {
    Privileged?: boolean;
    CapAdd?: string[] | null;
    CapDrop?: string[] | null;
    NetworkMode?: string;
    PidMode?: string;
    IpcMode?: string;
    UTSMode?: string;
    UsernsMode?: string;
    CgroupnsMode?: string;
    Memory?: number;
    PidsLimit?: number | null;
    CpuShares?: number;
    NanoCpus?: number;
    CpuQuota?: number;
    ReadonlyRootfs?: boolean;
    SecurityOpt?: string[] | null;
    Devices?: unknown[] | null;
    PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null;
    RestartPolicy?: { Name?: string; MaximumRetryCount?: number };
    Ulimits?: unknown[] | null;
  };
  Mounts?: { Source?: string; Destination?: string; RW?: boolean; Propagation?: string; Type?: string }[];
  AppArmorProfile?: string;
}

/** The parts of `docker image inspect` that Berth reads. */
export interface ImageInfo {
  Id: string;
  RepoTags?: string[];
  RepoDigests?: string[];
  Size?: number;
  Config?: {
    User?: string;
    Env?: string[];
    Labels?: Record<string, string> | null;
    Healthcheck?: { Test?: string[] };
  };
}

/** One row of GET /containers/json. */
export interface ContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  State: string;
  Status: string;
  Labels?: Record<string, string>;
}

export interface EngineVersion {
  Version: string;
  ApiVersion: string;
  Os: string;
  Arch: string;
}

interface RequestOptions {
  method?: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** A JSON body, or a stream (sent as application/x-tar). */
  body?: unknown;
  /** Statuses other than 2xx that are answers, not errors (404 for "no such container", say). */
  accept?: number[];
}

export class DockerEngine {
  readonly socket: string;

  constructor(socket: string = dockerSocket()) {
    this.socket = socket;
  }

  /** The response body as a stream; a non-2xx status becomes a BerthError with the engine's message. */
  stream(path: string, options: RequestOptions = {}): Promise<{ status: number; body: Readable }> {
    const { method = "GET", query, body, accept = [] } = options;
    const qs = query
      ? `?${new URLSearchParams(
          Object.entries(query)
            .filter(([, v]) => v !== undefined)
            .map(([k, v]): [string, string] => [k, String(v)]),
        )}`
      : "";
    return new Promise((res, rej) => {
      if (!existsSync(this.socket)) return rej(new BerthError(`no Docker engine socket at ${this.socket}`));
      const isStream = body !== undefined && typeof (body as Readable).pipe === "function";
      const payload = body !== undefined && !isStream ? Buffer.from(JSON.stringify(body)) : undefined;
      const headers: Record<string, string | number> = { Host: "docker" };
      if (payload) {
        headers["Content-Type"] = "application/json";
        headers["Content-Length"] = payload.length;
      } else if (isStream) headers["Content-Type"] = "application/x-tar";
      const req = request({ socketPath: this.socket, path: `${path}${qs}`, method, headers }, (r) => {
        const status = r.statusCode ?? 0;
        if ((status >= 200 && status < 300) || accept.includes(status)) return res({ status, body: r });
        let text = "";
        r.setEncoding("utf8").on("data", (d: string) => {
          text += d;
        });
        r.on("end", () => {
          let message = text.trim();
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? message;
          } catch {}
          rej(new BerthError(`Docker engine: ${message || `HTTP ${status}`}`));
        });
      });
      req.on("error", (e) =>
        rej(new BerthError(`cannot reach the Docker engine at ${this.socket}: ${e.message}`)),
      );
      if (isStream) (body as Readable).pipe(req);
      else req.end(payload);
    });
  }

  /** The response body parsed as JSON (undefined for an empty body, e.g. 204). */
  async json<T>(path: string, options: RequestOptions = {}): Promise<{ status: number; value: T }> {
    const { status, body } = await this.stream(path, options);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    return { status, value: (text.trim() ? JSON.parse(text) : undefined) as T };
  }

  async get<T>(path: string, query?: RequestOptions["query"]): Promise<T> {
    return (await this.json<T>(path, { query })).value;
  }

  /** True when the engine answers /_ping. */
  async ping(): Promise<boolean> {
    try {
      const { body } = await this.stream("/_ping");
      body.resume();
      return true;
    } catch {
      return false;
    }
  }

  version(): Promise<EngineVersion> {
    return this.get<EngineVersion>("/version");
  }

  listContainers(all = false): Promise<ContainerSummary[]> {
    return this.get<ContainerSummary[]>("/containers/json", { all });
  }

  inspectContainer(id: string): Promise<ContainerInfo> {
    return this.get<ContainerInfo>(`/containers/${encodeURIComponent(id)}/json`);
  }

  inspectImage(name: string): Promise<ImageInfo> {
    return this.get<ImageInfo>(`/images/${encodeURIComponent(name)}/json`);
  }

  /** Undefined when the engine has no such image. */
  async findImage(name: string): Promise<ImageInfo | undefined> {
    const r = await this.json<ImageInfo>(`/images/${encodeURIComponent(name)}/json`, { accept: [404] });
    return r.status === 404 ? undefined : r.value;
  }

  /** `docker save`: the image as a docker-save tar stream. */
  async saveImage(name: string): Promise<Readable> {
    return (await this.stream(`/images/${encodeURIComponent(name)}/get`)).body;
  }

  /**
   * `docker load` of a docker-save archive. The engine streams JSON progress lines; an error line
   * (a bad archive) becomes a BerthError. Returns the "Loaded image" lines' names.
   */
  async loadImage(archive: Readable): Promise<string[]> {
    const { body } = await this.stream("/images/load", {
      method: "POST",
      body: archive,
      query: { quiet: 1 },
    });
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const loaded: string[] = [];
    for (const line of Buffer.concat(chunks).toString("utf8").split("\n")) {
      if (!line.trim()) continue;
      let msg: { stream?: string; error?: string; errorDetail?: { message?: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.error) throw new BerthError(`Docker engine: ${msg.errorDetail?.message ?? msg.error}`);
      const m = /Loaded image(?: ID)?: (\S+)/.exec(msg.stream ?? "");
      if (m) loaded.push(m[1]!);
    }
    return loaded;
  }

  /** Running containers with their full inspect data; none when no engine answers. */
  async runningContainers(): Promise<ContainerInfo[]> {
    let list: ContainerSummary[];
    try {
      list = await this.listContainers();
    } catch {
      return [];
    }
    return Promise.all(list.map((c) => this.inspectContainer(c.Id)));
  }
}

/** The engine at $DOCKER_HOST or the default socket. */
export const docker = new DockerEngine();
