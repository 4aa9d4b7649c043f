// The rule set, in report order. IDs are stable; a test checks they are unique.

import type { Rule } from "../rule.ts";
import { accountRules } from "./accounts.ts";
import { auditRules } from "./audit.ts";
import { dockerRules } from "./docker.ts";
import { fileRules } from "./files.ts";
import { kernelRules } from "./kernel.ts";
import { kernelParamRules } from "./kernel-params.ts";
import { moduleRules } from "./modules.ts";
import { mountRules } from "./mounts.ts";
import { serviceRules } from "./services.ts";
import { sshRules } from "./ssh.ts";

export const RULES: Rule[] = [
  ...kernelParamRules,
  ...moduleRules,
  ...mountRules,
  ...fileRules,
  ...sshRules,
  ...accountRules,
  ...serviceRules,
  ...auditRules,
  ...kernelRules,
  ...dockerRules,
];
