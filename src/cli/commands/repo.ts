// `berth repo`: the TUF-signed update repository — init, add, remove, publish, refresh, rotate, status on
// the publisher's side; verify (a client run from a trusted root) and serve (a static server for tests
// and demos).

import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { UsageError } from "../../common/errors.ts";
import { formatBytes, renderTable } from "../../common/format.ts";
import { BAKED_ROOT } from "../../repo/client.ts";
import { DEFAULT_EXPIRIES, type Expiries, withOverrides } from "../../repo/expiry.ts";
import type { RoleName } from "../../repo/keys.ts";
import { describeAdvisory } from "../../repo/kinds/advisory.ts";
import { describeImage } from "../../repo/kinds/image.ts";
import { describeLivepatchKernel, describeLivepatchLib } from "../../repo/kinds/livepatch.ts";
import { describeOsRelease, parseWaves } from "../../repo/kinds/os-release.ts";
import { initRepository, publish, refresh } from "../../repo/publish.ts";
import { isRepository, pathsOf, readState } from "../../repo/repository.ts";
import { rotate } from "../../repo/rotate.ts";
import { serveRepository } from "../../repo/serve.ts";
import { readStaged, stageRemoval, stageTargets } from "../../repo/stage.ts";
import { isTargetKind, type NewTarget, TARGET_KINDS } from "../../repo/targets.ts";
import { verifyRepository } from "../../repo/verify.ts";
import { contextOf, say, warn } from "../context.ts";
import { printJson } from "../output.ts";
import { libraryIdentityOf, moduleFactsOf } from "./livepatch-facts.ts";

const collect = (v: string, prev: string[] = []) => [...prev, v];

function positiveInt(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`${what} wants a whole number, not "${v}"`);
  return Number(v);
}

function expiresOf(o: { expires?: string[] }): Partial<Expiries> | undefined {
  if (!o.expires?.length) return undefined;
  const all = withOverrides(DEFAULT_EXPIRIES, o.expires);
  const out: Partial<Expiries> = {};
  for (const part of o.expires.flatMap((e) => e.split(","))) {
    const role = part.split("=")[0] as RoleName;
    out[role] = all[role];
  }
  return out;
}

async function requireRepo(dir: string): Promise<void> {
  if (!(await isRepository(dir)))
    throw new UsageError(
      `${dir} is not a Berth repository (no berth-repo.json; make one with berth repo init)`,
    );
}

interface AddFlags {
  name?: string;
  release?: string;
  wave?: string[];
  file?: string[];
  imageName?: string;
  digest?: string;
  sbom?: string[];
  replaces?: string;
  lib?: string;
  kernel?: string;
  replace?: boolean;
  publish?: boolean;
  keys?: string[];
  json?: boolean;
}

async function describe(kind: string, path: string, o: AddFlags, work: string): Promise<NewTarget[]> {
  if (!existsSync(path)) throw new UsageError(`no such file or directory: ${path}`);
  switch (kind) {
    case "os-release":
      if (o.name)
        throw new UsageError("--name does not apply to an os-release (its targets are os/VERSION/...)");
      return describeOsRelease(path, {
        version: o.release,
        waves: parseWaves(o.wave ?? []),
        files: o.file,
        work,
      });
    case "image":
      if (o.name) throw new UsageError("--name does not apply to an image (its targets are named by digest)");
      return describeImage(path, { repository: o.imageName, digest: o.digest, sboms: o.sbom, work });
    case "advisory":
      return describeAdvisory(path, { name: o.name });
    case "livepatch-lib": {
      if (!o.replaces)
        throw new UsageError("livepatch-lib needs --replaces FILE: a copy of the library it replaces");
      if (!existsSync(o.replaces)) throw new UsageError(`no such file: ${o.replaces}`);
      return describeLivepatchLib(path, {
        fixed: libraryIdentityOf(readFileSync(path), path),
        replaces: libraryIdentityOf(readFileSync(o.replaces), o.replaces),
        library: o.lib,
        name: o.name,
      });
    }
    case "livepatch-kernel":
      return describeLivepatchKernel(path, moduleFactsOf(readFileSync(path)), {
        name: o.name,
        kernel: o.kernel,
      });
    default:
      throw new UsageError(`unknown kind "${kind}" (kinds: ${TARGET_KINDS.join(", ")})`);
  }
}

function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new UsageError(`--listen wants HOST:PORT (e.g. 127.0.0.1:8080), not "${v}"`);
  return { host: m[1] ?? m[2]!, port };
}

export function registerRepoCommands(program: Command): void {
  const repo = program
    .command("repo")
    .description("the TUF-signed update repository: OS releases, images, advisories, live patches")
    .addHelpText(
      "after",
      `
Examples:
  berth repo init /srv/berth-repo                           keys (root 2 of 3), version 1 of every role
  berth repo add /srv/berth-repo os-release out/container-host --release 2026.12.1
  berth repo add /srv/berth-repo advisory BSA-2026-0007.json
  berth repo add /srv/berth-repo livepatch-lib libz-fixed.so --replaces /usr/lib/x86_64-linux-gnu/libz.so.1
  berth repo publish /srv/berth-repo                        sign new targets, snapshot, timestamp
  berth repo refresh /srv/berth-repo                        re-sign the timestamp (run daily, e.g. from cron)
  berth repo rotate /srv/berth-repo --role root             root N+1 signed by the old and the new keys
  berth repo serve /srv/berth-repo --listen 127.0.0.1:8080
  berth repo verify http://127.0.0.1:8080 --trusted-root root.json`,
    );

  repo
    .command("init")
    .description("create a repository: Ed25519 keys (0600), version 1 of root, targets, snapshot, timestamp")
    .argument("<dir>", "new (or empty) directory")
    .option("--root-keys <n>", "number of root keys", "3")
    .option("--root-threshold <n>", "root keys that must sign", "2")
    .option("--targets-keys <n>", "number of targets keys", "1")
    .option("--targets-threshold <n>", "targets keys that must sign", "1")
    .option(
      "--offline-keys <dir>",
      "write the root and targets keys here (offline media) instead of DIR/keys",
    )
    .option("--expires <role=duration>", "expiry, e.g. timestamp=1d,snapshot=1w,targets=3mo,root=1y", collect)
    .option("--json", "JSON output")
    .action(
      async (
        dir: string,
        o: {
          rootKeys: string;
          rootThreshold: string;
          targetsKeys: string;
          targetsThreshold: string;
          offlineKeys?: string;
          expires?: string[];
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const r = await initRepository(dir, {
          rootKeys: positiveInt(o.rootKeys, "--root-keys"),
          rootThreshold: positiveInt(o.rootThreshold, "--root-threshold"),
          targetsKeys: positiveInt(o.targetsKeys, "--targets-keys"),
          targetsThreshold: positiveInt(o.targetsThreshold, "--targets-threshold"),
          offlineKeys: o.offlineKeys,
          expires: expiresOf(o),
        });
        if (o.json) return printJson(r);
        const ctx = contextOf(cmd);
        say(ctx, `repository ${dir}: trusted root ${r.root}`);
        for (const k of r.keys) say(ctx, `  ${k.role.padEnd(9)} ${k.keyid.slice(0, 16)}  ${k.file}`);
        say(ctx, "give nodes the trusted root; keep keys/root and keys/targets offline");
      },
    );

  repo
    .command("add")
    .description(
      "stage a target for the next publish (KIND: os-release, image, advisory, livepatch-lib, livepatch-kernel)",
    )
    .argument("<dir>", "the repository")
    .argument("<kind>", TARGET_KINDS.join(" | "))
    .argument("<path>", "build output directory, OCI layout, OSV file, .so or .ko")
    .option("--name <name>", "target name (advisory, livepatch-*; default from the file)")
    .option("--release <version>", "os-release: the release version (default from the manifest)")
    .option(
      "--wave <time=percent>",
      "os-release: a rollout wave, e.g. 2026-12-01T00:00:00Z=10 (repeatable)",
      collect,
    )
    .option(
      "--file <name>",
      "os-release: publish another file of the output directory too (repeatable)",
      collect,
    )
    .option("--image-name <repository>", "image: repository name when the layout does not say (berth/nginx)")
    .option("--digest <digest>", "image: which image of a layout with several")
    .option("--sbom <file>", "image: an SBOM file besides the layout's referrers (repeatable)", collect)
    .option("--replaces <file>", "livepatch-lib: a copy of the library the patch replaces")
    .option(
      "--lib <name>",
      "livepatch-lib: library name for berth patch lib apply --lib (default its soname)",
    )
    .option("--kernel <release>", "livepatch-kernel: refuse unless the module is built for this release")
    .option("--replace", "allow a name already published with other content")
    .option("--publish", "publish right after staging")
    .option("--keys <dir>", "key directory (repeatable; default DIR/keys)", collect)
    .option("--json", "JSON output")
    .action(async (dir: string, kind: string, path: string, o: AddFlags, cmd: Command) => {
      await requireRepo(dir);
      if (!isTargetKind(kind))
        throw new UsageError(`unknown kind "${kind}" (kinds: ${TARGET_KINDS.join(", ")})`);
      const work = await mkdtemp(join(tmpdir(), "berth-repo-add-"));
      try {
        const targets = await describe(kind, path, o, work);
        const staged = await stageTargets(dir, targets, { replace: o.replace });
        const published = o.publish ? await publish(dir, { keyDirs: o.keys }) : undefined;
        if (o.json) return printJson({ staged, published });
        const ctx = contextOf(cmd);
        for (const [name, t] of Object.entries(staged)) say(ctx, `staged ${name} (${formatBytes(t.length)})`);
        if (published) say(ctx, `published targets version ${published.targetsVersion}`);
        else say(ctx, `run berth repo publish ${dir} to sign`);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });

  repo
    .command("remove")
    .description("stage the removal of targets for the next publish")
    .argument("<dir>", "the repository")
    .argument("<names...>", "target names")
    .action(async (dir: string, names: string[], _o: unknown, cmd: Command) => {
      await requireRepo(dir);
      await stageRemoval(dir, names);
      say(contextOf(cmd), `staged removal of ${names.length} target${names.length === 1 ? "" : "s"}`);
    });

  repo
    .command("publish")
    .description("sign the staged targets into new targets, snapshot and timestamp metadata")
    .argument("<dir>", "the repository")
    .option(
      "--keys <dir>",
      "key directory, e.g. offline media with keys/targets (repeatable; default DIR/keys)",
      collect,
    )
    .option("--expires <role=duration>", "override expiries for this publish", collect)
    .option("--json", "JSON output")
    .action(async (dir: string, o: { keys?: string[]; expires?: string[]; json?: boolean }, cmd: Command) => {
      await requireRepo(dir);
      const r = await publish(dir, { keyDirs: o.keys, expires: expiresOf(o) });
      if (o.json) return printJson(r);
      say(
        contextOf(cmd),
        `targets v${r.targetsVersion} (${r.targets} targets; ${r.added.length} added, ${r.removed.length} removed), snapshot v${r.snapshotVersion}, timestamp v${r.timestampVersion}`,
      );
    });

  repo
    .command("refresh")
    .description("re-sign the timestamp (and the snapshot when it is about to expire) with the online keys")
    .argument("<dir>", "the repository")
    .option("--snapshot", "re-sign the snapshot too")
    .option("--keys <dir>", "key directory (repeatable; default DIR/keys)", collect)
    .option("--json", "JSON output")
    .action(async (dir: string, o: { keys?: string[]; snapshot?: boolean; json?: boolean }, cmd: Command) => {
      await requireRepo(dir);
      const r = await refresh(dir, { keyDirs: o.keys, snapshot: o.snapshot });
      if (o.json) return printJson(r);
      say(
        contextOf(cmd),
        `timestamp v${r.timestampVersion}${r.snapshotVersion ? `, snapshot v${r.snapshotVersion}` : ""}`,
      );
      for (const e of r.expiringSoon)
        warn(
          `${e.role} metadata expires ${e.expires}; ${e.role === "root" ? "rotate" : "publish"} with the offline keys`,
        );
    });

  repo
    .command("rotate")
    .description(
      "replace a role's keys: root N+1 signed by the old and the new root keys, the role re-signed",
    )
    .argument("<dir>", "the repository")
    .requiredOption("--role <role>", "root, targets, snapshot or timestamp")
    .option("--count <n>", "how many keys the role gets (default as now)")
    .option("--threshold <n>", "how many must sign (default as now)")
    .option("--new-keys <dir>", "where the new keys go (default beside the current ones)")
    .option("--keys <dir>", "key directory holding the current keys (repeatable; default DIR/keys)", collect)
    .option("--json", "JSON output")
    .action(
      async (
        dir: string,
        o: {
          role: string;
          count?: string;
          threshold?: string;
          newKeys?: string;
          keys?: string[];
          json?: boolean;
        },
        cmd: Command,
      ) => {
        await requireRepo(dir);
        if (!["root", "targets", "snapshot", "timestamp"].includes(o.role))
          throw new UsageError(`--role is root, targets, snapshot or timestamp, not "${o.role}"`);
        const r = await rotate(dir, {
          role: o.role as RoleName,
          count: positiveInt(o.count, "--count"),
          threshold: positiveInt(o.threshold, "--threshold"),
          newKeys: o.newKeys,
          keyDirs: o.keys,
        });
        if (o.json) return printJson(r);
        say(
          contextOf(cmd),
          `root v${r.rootVersion}: ${o.role} now ${r.threshold} of ${r.added.length} new keys (${r.added.map((k) => k.slice(0, 16)).join(", ")}); ${r.retired.length} old keys retired`,
        );
      },
    );

  repo
    .command("status")
    .description("the publisher's view: versions and expiries of every role, targets by kind, what is staged")
    .argument("<dir>", "the repository")
    .option("--json", "JSON output")
    .action(async (dir: string, o: { json?: boolean }, cmd: Command) => {
      const s = await readState(dir);
      const staged = await readStaged(pathsOf(dir));
      const kinds: Record<string, number> = {};
      for (const t of Object.values(s.targets.signed.targets)) {
        const k = String((t.custom as { kind?: string }).kind ?? "?");
        kinds[k] = (kinds[k] ?? 0) + 1;
      }
      const roles = [
        ["root", s.root.signed.version, s.root.signed.expires],
        ["targets", s.targets.signed.version, s.targets.signed.expires],
        ["snapshot", s.snapshot.signed.version, s.snapshot.signed.expires],
        ["timestamp", s.timestamp.signed.version, s.timestamp.signed.expires],
      ] as const;
      const out = {
        roles: Object.fromEntries(roles.map(([r, version, expires]) => [r, { version, expires }])),
        targets: kinds,
        staged: { add: Object.keys(staged.add), remove: staged.remove },
      };
      if (o.json) return printJson(out);
      const ctx = contextOf(cmd);
      say(
        ctx,
        renderTable(
          ["role", "version", "expires"],
          roles.map((r) => [...r]),
        ),
      );
      say(
        ctx,
        `targets: ${
          Object.entries(kinds)
            .map(([k, n]) => `${n} ${k}`)
            .join(", ") || "none"
        }`,
      );
      if (out.staged.add.length || out.staged.remove.length)
        say(
          ctx,
          `staged: ${out.staged.add.length} to add, ${out.staged.remove.length} to remove (berth repo publish)`,
        );
    });

  repo
    .command("verify")
    .description("a client run from a trusted root: what a node would accept, and why anything is refused")
    .argument("<location>", "repository URL, or a repository directory")
    .option("--trusted-root <file>", `the root.json to trust (default ${BAKED_ROOT})`)
    .option("--state <dir>", "start from this client state (a node's cache) instead of a fresh one")
    .option("--metadata-only", "check the metadata chain only, not the targets' bytes")
    .option("--json", "JSON output")
    .action(
      async (
        location: string,
        o: { trustedRoot?: string; state?: string; metadataOnly?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const trustedRoot = o.trustedRoot ?? BAKED_ROOT;
        if (!existsSync(trustedRoot))
          throw new UsageError(
            `no trusted root: pass --trusted-root FILE (this system has no ${BAKED_ROOT})`,
          );
        const ctx = contextOf(cmd);
        const task = ctx.progress.task("verifying targets", 0, "items");
        const r = await verifyRepository({
          url: location,
          trustedRoot,
          cacheDir: o.state,
          targets: !o.metadataOnly,
          onTarget: () => task.advance(1),
        });
        task.done();
        if (o.json) printJson(r);
        else {
          const t = r.trusted;
          say(
            ctx,
            `${r.url}: root v${t.root.version}, timestamp v${t.timestamp.version} (expires ${t.timestamp.expires}), snapshot v${t.snapshot.version}, targets v${t.targets.version} (${t.targets.count} targets)`,
          );
          if (r.targets.length)
            say(
              ctx,
              renderTable(
                ["target", "kind", "size", "verdict"],
                r.targets.map((v) => [
                  v.name,
                  v.kind,
                  formatBytes(v.length),
                  v.status === "refused" ? `refused: ${v.reason}` : v.status,
                ]),
              ),
            );
        }
        if (r.refused) {
          if (!o.json) process.stderr.write(`berth: ${r.refused} of ${r.targets.length} targets refused\n`);
          process.exitCode = 1;
        }
      },
    );

  repo
    .command("serve")
    .description("serve a repository as static files over HTTP (for tests and demos; any web server will do)")
    .argument("<dir>", "a repository directory (its repository/ tree is served) or a served tree")
    .option("--listen <host:port>", "address to listen on (port 0: any free port)", "127.0.0.1:8080")
    .action(async (dir: string, o: { listen: string }) => {
      const { host, port } = parseListen(o.listen);
      const tree = existsSync(join(dir, "repository", "metadata")) ? join(dir, "repository") : dir;
      if (!existsSync(join(tree, "metadata")))
        throw new UsageError(`${dir} is not a repository (no metadata/)`);
      const s = await serveRepository(tree, host, port);
      // The address goes out even with --quiet: a caller that asked for port 0 needs it.
      process.stdout.write(`serving ${tree} at ${s.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          s.close().then(resolve, resolve);
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
    });
}
