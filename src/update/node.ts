// The node's side of the repository: the trust anchor and address baked into the image, the optional
// node settings in /etc/berth/update.conf (a pinned or maximum version, another address — never another
// trust anchor), and the release facts of the running image.

import { existsSync, readFileSync } from "node:fs";
import { BerthError } from "../common/errors.ts";
import { RELEASE_JSON, type ReleaseFacts } from "../os/update-files.ts";
import { BAKED_ROOT, bakedUrl, defaultCacheDir, RepoClient } from "../repo/client.ts";
import { readEnvFile } from "./state.ts";

export const NODE_CONFIG = "/etc/berth/update.conf";

export interface NodeConfig {
  /** REPOSITORY=: the address to use instead of the baked one. */
  repository?: string;
  /** PIN=: the release this node should run. */
  pin?: string;
  /** MAX_VERSION=: never beyond this release. */
  maxVersion?: string;
}

export function readNodeConfig(path = NODE_CONFIG): NodeConfig {
  const e = readEnvFile(path) ?? {};
  return {
    ...(e.REPOSITORY ? { repository: e.REPOSITORY } : {}),
    ...(e.PIN ? { pin: e.PIN } : {}),
    ...(e.MAX_VERSION ? { maxVersion: e.MAX_VERSION } : {}),
  };
}

export interface NodeRepository {
  client: RepoClient;
  url: string;
  trustedRoot: string;
}

/** The client a node uses: the baked trust anchor, and the address from --repository, the config or the image. */
export function nodeRepository(o: { repository?: string; config?: NodeConfig } = {}): NodeRepository {
  if (!existsSync(BAKED_ROOT))
    throw new BerthError(
      `this image trusts no repository (${BAKED_ROOT} is missing; build it with update.root in the profile)`,
    );
  const url = o.repository ?? o.config?.repository ?? bakedUrl();
  if (!url)
    throw new BerthError("no repository address: give --repository URL (the image has no update.repository)");
  const client = new RepoClient({ url, trustedRoot: BAKED_ROOT, cacheDir: defaultCacheDir(BAKED_ROOT) });
  return { client, url: client.url, trustedRoot: BAKED_ROOT };
}

/** What the running image says about its own release (berth-base's update.json). */
export function runningRelease(path = RELEASE_JSON): ReleaseFacts {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as ReleaseFacts;
  } catch {
    throw new BerthError(`${path} cannot be read: berth update runs on a Berth OS node`);
  }
}
