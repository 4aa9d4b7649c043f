// An image definition (images/<name>.yaml): which Debian packages, what is dropped from their closure and
// why, what is cut, the effects of the maintainer scripts written out (users, directories, symlinks,
// generated files), files added from the repository or a build step, and how the image runs. The schema
// is TypeBox; every mistake is one line naming the file, line and key, before anything is fetched.

import { readFileSync } from "node:fs";
import { posix } from "node:path";
import Type, { type Static } from "typebox";
import { UsageError } from "../common/errors.ts";
import { parseYamlChecked } from "../common/yaml-schema.ts";

const PackageName = Type.String({ pattern: "^[a-z0-9][a-z0-9+.-]+$" });
const Name = Type.String({ pattern: "^[a-z_][a-z0-9_-]{0,31}$" });
const AbsPath = Type.String({ pattern: "^/[^\\0]*$" });
const Glob = Type.String({ pattern: "^/?[^\\0]+$" });
const Mode = Type.String({ pattern: "^0?[0-7]{3,4}$" });
const Reason = Type.String({ minLength: 10 });
const Duration = Type.String({ pattern: "^[0-9]+(ms|s|m)$" });

export const DefinitionSchema = Type.Object(
  {
    name: Type.String({ pattern: "^[a-z0-9][a-z0-9-]*$" }),
    description: Type.Optional(Type.String()),
    /** The package whose Debian version is the image's version. */
    main: PackageName,
    archive: Type.Optional(
      Type.Object(
        {
          suites: Type.Optional(
            Type.Array(Type.String({ pattern: "^[a-z0-9][a-z0-9.+-]*$" }), { minItems: 1 }),
          ),
          mirror: Type.Optional(Type.String({ pattern: "^(https?|file)://" })),
          securityMirror: Type.Optional(Type.String({ pattern: "^(https?|file)://" })),
        },
        { additionalProperties: false },
      ),
    ),
    packages: Type.Array(PackageName, { minItems: 1 }),
    /** Packages taken out of the closure; what only they pulled in goes with them. */
    drop: Type.Optional(
      Type.Array(Type.Object({ package: PackageName, reason: Reason }, { additionalProperties: false })),
    ),
    cut: Type.Optional(
      Type.Object(
        {
          docs: Type.Optional(Type.Boolean()),
          manpages: Type.Optional(Type.Boolean()),
          locales: Type.Optional(Type.Boolean()),
          headers: Type.Optional(Type.Boolean()),
          staticLibs: Type.Optional(Type.Boolean()),
          packageManager: Type.Optional(Type.Boolean()),
          /** Init scripts, systemd units, logrotate and cron snippets: no init system runs in a container. */
          init: Type.Optional(Type.Boolean()),
          paths: Type.Optional(Type.Array(Glob)),
          keep: Type.Optional(Type.Array(Glob)),
        },
        { additionalProperties: false },
      ),
    ),
    /** Why the image ships a shell; a build that ends with a shell and no reason fails. */
    shell: Type.Optional(Type.Object({ reason: Reason }, { additionalProperties: false })),
    users: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Name,
            uid: Type.Integer({ minimum: 1, maximum: 65533 }),
            gid: Type.Optional(Type.Integer({ minimum: 1, maximum: 65533 })),
            home: Type.Optional(AbsPath),
            shell: Type.Optional(AbsPath),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    groups: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Name,
            gid: Type.Integer({ minimum: 1, maximum: 65533 }),
            members: Type.Optional(Type.Array(Name)),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    directories: Type.Optional(
      Type.Array(
        Type.Object(
          {
            path: AbsPath,
            owner: Type.Optional(Name),
            group: Type.Optional(Name),
            mode: Type.Optional(Mode),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    symlinks: Type.Optional(
      Type.Array(
        Type.Object(
          { path: AbsPath, target: Type.String({ minLength: 1 }), reason: Type.Optional(Type.String()) },
          { additionalProperties: false },
        ),
      ),
    ),
    files: Type.Optional(
      Type.Array(
        Type.Object(
          {
            path: AbsPath,
            content: Type.String(),
            mode: Type.Optional(Mode),
            owner: Type.Optional(Name),
            group: Type.Optional(Name),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    generate: Type.Optional(
      Type.Array(
        Type.Object(
          {
            kind: Type.Union([Type.Literal("ca-bundle"), Type.Literal("concat")]),
            path: Type.Optional(AbsPath),
            sources: Type.Optional(Type.Array(AbsPath)),
            prefix: Type.Optional(Type.String()),
            reason: Type.Optional(Type.String()),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    /** Commands run on the build machine in a scratch directory; their output can be added to the image. */
    build: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Name,
            /** Repository files copied into the step's directory first. */
            copy: Type.Optional(Type.Array(Type.String({ pattern: "^[^/\\0][^\\0]*$" }))),
            run: Type.Array(Type.String(), { minItems: 1 }),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    /** Files from the repository ("repo:PATH") or a build step ("step:NAME/PATH") put into the image. */
    add: Type.Optional(
      Type.Array(
        Type.Object(
          {
            from: Type.String({ pattern: "^(repo|step):[^\\0]+$" }),
            to: AbsPath,
            exclude: Type.Optional(Type.Array(Glob)),
            mode: Type.Optional(Mode),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    run: Type.Object(
      {
        user: Name,
        entrypoint: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
        cmd: Type.Optional(Type.Array(Type.String())),
        workdir: Type.Optional(AbsPath),
        env: Type.Optional(Type.Record(Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*$" }), Type.String())),
        ports: Type.Optional(Type.Array(Type.String({ pattern: "^[0-9]{1,5}/(tcp|udp)$" }))),
        volumes: Type.Optional(Type.Array(AbsPath)),
        tmpfs: Type.Optional(Type.Array(AbsPath)),
        stopSignal: Type.Optional(Type.String({ pattern: "^SIG[A-Z0-9]+$" })),
        healthcheck: Type.Object(
          {
            test: Type.Array(Type.String(), { minItems: 1 }),
            interval: Type.Optional(Duration),
            timeout: Type.Optional(Duration),
            startPeriod: Type.Optional(Duration),
            retries: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
          },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
    /** Fixable HIGH or CRITICAL vulnerabilities the security gate lets through, each with a reason. */
    accepted: Type.Optional(
      Type.Array(
        Type.Object(
          { cve: Type.String({ pattern: "^[A-Z]+-[0-9]{4}-[0-9]+$" }), reason: Reason },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);

type Raw = Static<typeof DefinitionSchema>;

export interface ImageUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface ImageGroup {
  name: string;
  gid: number;
  members: string[];
}

export interface CutRules {
  docs: boolean;
  manpages: boolean;
  locales: boolean;
  headers: boolean;
  staticLibs: boolean;
  packageManager: boolean;
  init: boolean;
  paths: string[];
  keep: string[];
}

export interface ImageDefinition {
  name: string;
  description: string;
  main: string;
  suites: string[];
  mirror?: string;
  securityMirror?: string;
  packages: string[];
  drop: { package: string; reason: string }[];
  cut: CutRules;
  shellReason?: string;
  /** root and nobody first, then the definition's users. */
  users: ImageUser[];
  groups: ImageGroup[];
  directories: { path: string; uid: number; gid: number; mode: number }[];
  symlinks: { path: string; target: string; reason?: string }[];
  files: { path: string; content: string; mode: number; uid: number; gid: number }[];
  generate: { kind: "ca-bundle" | "concat"; path: string; sources: string[]; prefix: string }[];
  build: { name: string; copy: string[]; run: string[] }[];
  add: { from: { kind: "repo" | "step"; path: string }; to: string; exclude: string[]; mode?: number }[];
  run: {
    user: ImageUser;
    entrypoint: string[];
    cmd: string[];
    workdir: string;
    env: Record<string, string>;
    ports: string[];
    volumes: string[];
    tmpfs: string[];
    stopSignal: string;
    healthcheck: { test: string[]; interval: string; timeout: string; startPeriod: string; retries: number };
  };
  accepted: { cve: string; reason: string }[];
  /** Where the definition came from, and "file:line" of any value in it, for later messages. */
  source: string;
  where(pointer: string): string;
}

export const DEFAULT_SUITES = ["trixie", "trixie-updates", "trixie-security"];

const ROOT_USER: ImageUser = { name: "root", uid: 0, gid: 0, home: "/root", shell: "/usr/sbin/nologin" };
const NOBODY: ImageUser = {
  name: "nobody",
  uid: 65534,
  gid: 65534,
  home: "/nonexistent",
  shell: "/usr/sbin/nologin",
};

function normal(path: string, where: string): string {
  const n = posix.normalize(path);
  if (n !== path.replace(/\/+$/, "") || path.split("/").includes(".."))
    throw new UsageError(`${where}: path "${path}" is not in normal form (no "..", "//" or trailing "/")`);
  return n;
}

/** Parses and validates a definition's text. */
export function parseDefinition(text: string, source = "image.yaml"): ImageDefinition {
  const y = parseYamlChecked<Raw>(DefinitionSchema, text, source, "an image definition");
  const r = y.value;
  const at = y.where;
  if (!r.packages.includes(r.main))
    throw new UsageError(`${at("/main")}: main package "${r.main}" is not among packages`);

  const users = [ROOT_USER, NOBODY];
  const groups: ImageGroup[] = [
    { name: "root", gid: 0, members: [] },
    { name: "nogroup", gid: 65534, members: [] },
  ];
  (r.groups ?? []).forEach((g, i) => {
    if (groups.some((x) => x.name === g.name || x.gid === g.gid))
      throw new UsageError(`${at(`/groups/${i}`)}: group "${g.name}" (gid ${g.gid}) is declared twice`);
    groups.push({ name: g.name, gid: g.gid, members: g.members ?? [] });
  });
  (r.users ?? []).forEach((u, i) => {
    if (users.some((x) => x.name === u.name || x.uid === u.uid))
      throw new UsageError(`${at(`/users/${i}`)}: user "${u.name}" (uid ${u.uid}) is declared twice`);
    const gid = u.gid ?? u.uid;
    // A user's primary group is implied (named like the user) unless a declared group has its gid.
    if (!groups.some((g) => g.gid === gid)) {
      if (groups.some((g) => g.name === u.name))
        throw new UsageError(`${at(`/users/${i}`)}: group "${u.name}" exists with another gid than ${gid}`);
      groups.push({ name: u.name, gid, members: [] });
    }
    users.push({
      name: u.name,
      uid: u.uid,
      gid,
      home: u.home ?? "/nonexistent",
      shell: u.shell ?? "/usr/sbin/nologin",
    });
  });
  for (const [i, g] of (r.groups ?? []).entries())
    for (const m of g.members ?? [])
      if (!users.some((u) => u.name === m))
        throw new UsageError(`${at(`/groups/${i}/members`)}: member "${m}" is not a user of this image`);

  const userOf = (name: string | undefined, pointer: string, fallback: number) => {
    if (name === undefined) return fallback;
    const u = users.find((x) => x.name === name);
    if (!u)
      throw new UsageError(
        `${at(pointer)}: user "${name}" does not exist in this image (declare it under users:)`,
      );
    return u.uid;
  };
  const groupOf = (name: string | undefined, pointer: string, fallback: number) => {
    if (name === undefined) return fallback;
    const g = groups.find((x) => x.name === name);
    if (!g)
      throw new UsageError(
        `${at(pointer)}: group "${name}" does not exist in this image (declare it under groups:)`,
      );
    return g.gid;
  };
  const primaryGid = (uid: number) => users.find((u) => u.uid === uid)?.gid ?? 0;

  const user = users.find((u) => u.name === r.run.user);
  if (!user)
    throw new UsageError(
      `${at("/run/user")}: user "${r.run.user}" does not exist in this image (declare it under users:)`,
    );
  if (user.uid === 0) throw new UsageError(`${at("/run/user")}: images run as a non-root user, not root`);
  if (!r.run.entrypoint && !r.run.cmd?.length)
    throw new UsageError(`${at("/run")}: an image needs an entrypoint or a cmd`);

  const seen = new Set<string>();
  (r.drop ?? []).forEach((d, i) => {
    if (seen.has(d.package)) throw new UsageError(`${at(`/drop/${i}`)}: ${d.package} is dropped twice`);
    if (r.packages.includes(d.package))
      throw new UsageError(`${at(`/drop/${i}`)}: ${d.package} is both requested and dropped`);
    seen.add(d.package);
  });

  const steps = (r.build ?? []).map((s) => ({ name: s.name, copy: s.copy ?? [], run: s.run }));
  const add = (r.add ?? []).map((a, i) => {
    const kind = a.from.startsWith("repo:") ? ("repo" as const) : ("step" as const);
    const path = a.from.slice(5);
    if (path.split("/").includes("..") || path.startsWith("/"))
      throw new UsageError(`${at(`/add/${i}/from`)}: "${a.from}" must stay inside the repository`);
    if (kind === "step" && !steps.some((s) => s.name === path.split("/")[0]))
      throw new UsageError(`${at(`/add/${i}/from`)}: no build step named "${path.split("/")[0]}"`);
    return {
      from: { kind, path },
      to: normal(a.to, at(`/add/${i}/to`)),
      exclude: a.exclude ?? [],
      mode: a.mode === undefined ? undefined : Number.parseInt(a.mode, 8),
    };
  });

  return {
    name: r.name,
    description: r.description ?? "",
    main: r.main,
    suites: r.archive?.suites ?? DEFAULT_SUITES,
    mirror: r.archive?.mirror,
    securityMirror: r.archive?.securityMirror,
    packages: r.packages,
    drop: r.drop ?? [],
    cut: {
      docs: r.cut?.docs ?? true,
      manpages: r.cut?.manpages ?? true,
      locales: r.cut?.locales ?? true,
      headers: r.cut?.headers ?? true,
      staticLibs: r.cut?.staticLibs ?? true,
      packageManager: r.cut?.packageManager ?? true,
      init: r.cut?.init ?? true,
      paths: r.cut?.paths ?? [],
      keep: r.cut?.keep ?? [],
    },
    shellReason: r.shell?.reason,
    users,
    groups,
    directories: (r.directories ?? []).map((d, i) => {
      const uid = userOf(d.owner, `/directories/${i}/owner`, 0);
      return {
        path: normal(d.path, at(`/directories/${i}/path`)),
        uid,
        gid: groupOf(d.group, `/directories/${i}/group`, primaryGid(uid)),
        mode: Number.parseInt(d.mode ?? "0755", 8),
      };
    }),
    symlinks: (r.symlinks ?? []).map((s, i) => ({
      path: normal(s.path, at(`/symlinks/${i}/path`)),
      target: s.target,
      reason: s.reason,
    })),
    files: (r.files ?? []).map((f, i) => {
      const uid = userOf(f.owner, `/files/${i}/owner`, 0);
      return {
        path: normal(f.path, at(`/files/${i}/path`)),
        content: f.content,
        mode: Number.parseInt(f.mode ?? "0644", 8),
        uid,
        gid: groupOf(f.group, `/files/${i}/group`, primaryGid(uid)),
      };
    }),
    generate: (r.generate ?? []).map((g, i) => {
      if (g.kind === "concat" && (!g.path || !g.sources?.length))
        throw new UsageError(`${at(`/generate/${i}`)}: a concat needs a path and sources`);
      return {
        kind: g.kind,
        path: g.path ?? "/etc/ssl/certs/ca-certificates.crt",
        sources: g.sources ?? [],
        prefix: g.prefix ?? "",
      };
    }),
    build: steps,
    add,
    run: {
      user,
      entrypoint: r.run.entrypoint ?? [],
      cmd: r.run.cmd ?? [],
      workdir: r.run.workdir ?? "/",
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ...(r.run.env ?? {}) },
      ports: r.run.ports ?? [],
      volumes: (r.run.volumes ?? []).map((v, i) => normal(v, at(`/run/volumes/${i}`))),
      tmpfs: (r.run.tmpfs ?? []).map((v, i) => normal(v, at(`/run/tmpfs/${i}`))),
      stopSignal: r.run.stopSignal ?? "SIGTERM",
      healthcheck: {
        test: r.run.healthcheck.test,
        interval: r.run.healthcheck.interval ?? "30s",
        timeout: r.run.healthcheck.timeout ?? "5s",
        startPeriod: r.run.healthcheck.startPeriod ?? "10s",
        retries: r.run.healthcheck.retries ?? 3,
      },
    },
    accepted: r.accepted ?? [],
    source,
    where: at,
  };
}

export function readDefinition(path: string): ImageDefinition {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(
      `cannot read image definition ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`,
    );
  }
  return parseDefinition(text, path);
}

/** Docker's duration strings ("30s") in nanoseconds, for the image config's Healthcheck. */
export function durationNs(d: string): number {
  const m = /^([0-9]+)(ms|s|m)$/.exec(d)!;
  const unit = m[2] === "ms" ? 1e6 : m[2] === "s" ? 1e9 : 60e9;
  return Number(m[1]) * unit;
}
