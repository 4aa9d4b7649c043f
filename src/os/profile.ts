// The OS profile: a YAML description of a Berth image. The schema is TypeBox (so it is also a JSON
// Schema); errors are reported with the file, line and key they come from, before anything is fetched.

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Type, { type Static } from "typebox";
import { UsageError } from "../common/errors.ts";
import { parseYamlChecked } from "../common/yaml-schema.ts";

const PackageName = Type.String({ pattern: "^[a-z0-9][a-z0-9+.-]+$" });
const UnitName = Type.String({
  pattern: "^[A-Za-z0-9:_.@\\\\-]+\\.(service|socket|timer|path|mount|target)$",
});
const UserName = Type.String({ pattern: "^[a-z_][a-z0-9_-]{0,31}$" });

export const ProfileSchema = Type.Object(
  {
    name: Type.String({ pattern: "^[a-z0-9][a-z0-9-]*$" }),
    description: Type.Optional(Type.String()),
    archive: Type.Optional(
      Type.Object(
        {
          suite: Type.Optional(Type.String({ pattern: "^[a-z0-9][a-z0-9.+-]*$" })),
          updates: Type.Optional(Type.Boolean()),
          security: Type.Optional(Type.Boolean()),
          mirror: Type.Optional(Type.String({ pattern: "^(https?|file)://" })),
          securityMirror: Type.Optional(Type.String({ pattern: "^(https?|file)://" })),
        },
        { additionalProperties: false },
      ),
    ),
    architecture: Type.Optional(Type.Literal("amd64")),
    /** mmdebstrap's starting set: essential (Essential: yes only), minbase, or standard (a stock install). */
    variant: Type.Optional(
      Type.Union([Type.Literal("essential"), Type.Literal("minbase"), Type.Literal("standard")]),
    ),
    recommends: Type.Optional(Type.Boolean()),
    kernel: Type.Optional(
      Type.Object(
        {
          package: Type.Optional(PackageName),
          cmdline: Type.Optional(Type.Array(Type.String({ pattern: "^\\S+$" }))),
          /** Module directories under kernel/ left out of the image, e.g. drivers/infiniband. */
          dropModules: Type.Optional(Type.Array(Type.String({ pattern: "^[a-z0-9_/-]+$" }))),
        },
        { additionalProperties: false },
      ),
    ),
    runtime: Type.Optional(Type.Union([Type.Literal("docker"), Type.Literal("containerd")])),
    /** berth harden profile applied to the root at build time. */
    hardening: Type.Optional(
      Type.Union([Type.Literal("none"), Type.Literal("security-mode"), Type.Literal("essential")]),
    ),
    packages: Type.Optional(Type.Array(PackageName)),
    cut: Type.Optional(
      Type.Object(
        {
          docs: Type.Optional(Type.Boolean()),
          manpages: Type.Optional(Type.Boolean()),
          locales: Type.Optional(Type.Boolean()),
          hwdb: Type.Optional(Type.Boolean()),
          packageManager: Type.Optional(Type.Boolean()),
          /** Packages only maintainer scripts need; purged once the image is configured. */
          installTimeOnly: Type.Optional(Type.Array(PackageName)),
          /** Extra dpkg path-exclude patterns, as paths inside packages. */
          paths: Type.Optional(Type.Array(Type.String({ pattern: "^/" }))),
          /** The AppArmor profiles of /etc/apparmor.d to keep (the rest are left out); absent: all. */
          apparmorProfiles: Type.Optional(
            Type.Array(Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$" })),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    services: Type.Optional(
      Type.Object(
        {
          enable: Type.Optional(Type.Array(UnitName)),
          disable: Type.Optional(Type.Array(UnitName)),
          mask: Type.Optional(Type.Array(UnitName)),
        },
        { additionalProperties: false },
      ),
    ),
    sysctls: Type.Optional(
      Type.Record(Type.String({ pattern: "^[a-z0-9_.*/-]+$" }), Type.Union([Type.String(), Type.Number()])),
    ),
    users: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: UserName,
            uid: Type.Optional(Type.Integer({ minimum: 1000, maximum: 59999 })),
            groups: Type.Optional(Type.Array(Type.String({ pattern: "^[a-z_][a-z0-9_-]*$" }))),
            sudo: Type.Optional(Type.Union([Type.Literal("nopasswd"), Type.Literal(false)])),
            sshAuthorizedKeys: Type.Optional(Type.Array(Type.String({ pattern: "^(ssh-|ecdsa-|sk-)" }))),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    hostname: Type.Optional(Type.String({ pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" })),
    network: Type.Optional(
      Type.Object({ dhcp: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    ),
    /** A/B updates from a signed repository (docs/update.md): its address and trust, health, migrations. */
    update: Type.Optional(
      Type.Object(
        {
          repository: Type.Optional(Type.String({ pattern: "^(https?|file)://" })),
          /** The repository's initial root.json, relative to the profile's directory. */
          root: Type.Optional(Type.String({ minLength: 1 })),
          /** Boots a new release gets before the node falls back (systemd-boot boot counting). */
          tries: Type.Optional(Type.Integer({ minimum: 1, maximum: 9 })),
          health: Type.Optional(
            Type.Object(
              {
                /** Units that must not have failed, besides the runtime, SSH and Berth's own. */
                units: Type.Optional(Type.Array(UnitName)),
                /** Shell commands that must exit 0. */
                commands: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
              },
              { additionalProperties: false },
            ),
          ),
          /** Changes to the /etc upper layer: run forward at the first boot of this release, back on rollback. */
          migrations: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  id: Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,63}$" }),
                  up: Type.String({ minLength: 1 }),
                  down: Type.String({ minLength: 1 }),
                },
                { additionalProperties: false },
              ),
            ),
          ),
          /** Container images this release pins: repository image targets by manifest digest. */
          images: Type.Optional(Type.Array(Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }))),
          /** The oldest release this one may be applied on (older nodes go through that one first). */
          minimumFrom: Type.Optional(Type.String({ pattern: "^[0-9]{4}\\.[0-9]{1,2}\\.[0-9]+$" })),
        },
        { additionalProperties: false },
      ),
    ),
    image: Type.Optional(
      Type.Object(
        {
          compression: Type.Optional(
            Type.Union([Type.Literal("xz"), Type.Literal("zstd"), Type.Literal("gzip")]),
          ),
          /** Size of the writable state partition, e.g. 4G. */
          stateSize: Type.Optional(Type.String({ pattern: "^[0-9]+[MG]$" })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type RawProfile = Static<typeof ProfileSchema>;

/** A profile with every default filled in. */
export interface Profile {
  name: string;
  description: string;
  suite: string;
  updates: boolean;
  security: boolean;
  mirror?: string;
  securityMirror?: string;
  architecture: "amd64";
  variant: "essential" | "minbase" | "standard";
  recommends: boolean;
  kernel: { package: string; cmdline: string[]; dropModules: string[] };
  runtime: "docker" | "containerd";
  hardening: "none" | "security-mode" | "essential";
  packages: string[];
  cut: {
    docs: boolean;
    manpages: boolean;
    locales: boolean;
    hwdb: boolean;
    packageManager: boolean;
    installTimeOnly: string[];
    paths: string[];
    /** AppArmor profiles kept in /etc/apparmor.d, or undefined for every one the packages ship. */
    apparmorProfiles?: string[];
  };
  services: { enable: string[]; disable: string[]; mask: string[] };
  sysctls: Record<string, string>;
  users: {
    name: string;
    uid: number;
    groups: string[];
    sudo: "nopasswd" | false;
    sshAuthorizedKeys: string[];
  }[];
  hostname: string;
  network: { dhcp: boolean };
  image: { compression: "xz" | "zstd" | "gzip"; stateSize: string };
  update: UpdateSettings;
  /** Where the profile came from, for messages. */
  source: string;
  /** Line of each top-level list item, for messages about packages and services found later. */
  lines: Map<string, number>;
}

export interface UpdateSettings {
  repository?: string;
  /** Absolute path of the trusted root.json. */
  root?: string;
  tries: number;
  health: { units: string[]; commands: string[] };
  migrations: { id: string; up: string; down: string }[];
  images: string[];
  minimumFrom?: string;
}

/** Parses and validates a profile's text. Every problem becomes one UsageError naming file, line and key. */
export function parseProfile(text: string, source = "profile"): Profile {
  const y = parseYamlChecked<RawProfile>(ProfileSchema, text, source, "a profile", "profile");
  const r = y.value;
  const lines = new Map<string, number>();
  const note = (path: string, items: unknown[] | undefined) =>
    items?.forEach((_, i) => {
      const l = y.lineAt(`${path}/${i}`);
      if (l) lines.set(`${path}/${i}`, l);
    });
  note("/packages", r.packages);
  note("/services/enable", r.services?.enable);
  note("/services/disable", r.services?.disable);
  note("/services/mask", r.services?.mask);
  note("/cut/installTimeOnly", r.cut?.installTimeOnly);
  note("/cut/apparmorProfiles", r.cut?.apparmorProfiles);
  const kernelLine = y.lineAt("/kernel/package");
  if (kernelLine) lines.set("/kernel/package", kernelLine);

  const users = (r.users ?? []).map((u, i) => ({
    name: u.name,
    uid: u.uid ?? 1000 + i,
    groups: u.groups ?? [],
    sudo: u.sudo ?? false,
    sshAuthorizedKeys: u.sshAuthorizedKeys ?? [],
  }));
  const seen = new Set<string>();
  for (const u of users) {
    if (seen.has(u.name)) throw new UsageError(`${source}: user "${u.name}" is declared twice`);
    seen.add(u.name);
  }
  const migrationIds = new Set<string>();
  for (const m of r.update?.migrations ?? []) {
    if (migrationIds.has(m.id)) throw new UsageError(`${source}: migration "${m.id}" is declared twice`);
    migrationIds.add(m.id);
  }
  return {
    name: r.name,
    description: r.description ?? "",
    suite: r.archive?.suite ?? "trixie",
    updates: r.archive?.updates ?? true,
    security: r.archive?.security ?? true,
    mirror: r.archive?.mirror,
    securityMirror: r.archive?.securityMirror,
    architecture: "amd64",
    variant: r.variant ?? "essential",
    recommends: r.recommends ?? false,
    kernel: {
      package: r.kernel?.package ?? "linux-image-cloud-amd64",
      cmdline: r.kernel?.cmdline ?? ["console=ttyS0,115200"],
      dropModules: r.kernel?.dropModules ?? [],
    },
    runtime: r.runtime ?? "docker",
    hardening: r.hardening ?? "none",
    packages: r.packages ?? [],
    cut: {
      docs: r.cut?.docs ?? true,
      manpages: r.cut?.manpages ?? true,
      locales: r.cut?.locales ?? true,
      hwdb: r.cut?.hwdb ?? true,
      packageManager: r.cut?.packageManager ?? true,
      installTimeOnly: r.cut?.installTimeOnly ?? [],
      paths: r.cut?.paths ?? [],
      apparmorProfiles: r.cut?.apparmorProfiles,
    },
    services: {
      enable: r.services?.enable ?? [],
      disable: r.services?.disable ?? [],
      mask: r.services?.mask ?? [],
    },
    sysctls: Object.fromEntries(Object.entries(r.sysctls ?? {}).map(([k, v]) => [k, String(v)])),
    users,
    hostname: r.hostname ?? "berth",
    network: { dhcp: r.network?.dhcp ?? true },
    image: { compression: r.image?.compression ?? "xz", stateSize: r.image?.stateSize ?? "512M" },
    update: {
      repository: r.update?.repository,
      root: r.update?.root === undefined ? undefined : resolve(dirname(source), r.update.root),
      tries: r.update?.tries ?? 3,
      health: { units: r.update?.health?.units ?? [], commands: r.update?.health?.commands ?? [] },
      migrations: r.update?.migrations ?? [],
      images: r.update?.images ?? [],
      minimumFrom: r.update?.minimumFrom,
    },
    source,
    lines,
  };
}

export function readProfile(path: string): Profile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(
      `cannot read profile ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`,
    );
  }
  return parseProfile(text, path);
}

/** Where a list item of the profile was written, for messages like "profile.yaml:12". */
export function whereIs(p: Profile, pointer: string): string {
  const l = p.lines.get(pointer);
  return l ? `${p.source}:${l}` : p.source;
}
